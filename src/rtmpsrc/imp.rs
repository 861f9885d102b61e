// SPDX-License-Identifier: MPL-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::conn::{CAT, ROLE, RtmpSrcConn, Settings, defaults};
use super::demux::RtmpSrcDemux;
use crate::shared::SharedSettings;
use crate::sync::lock;

/// The longest `context-wait`: half the time after which an element's own
/// thread takes its server's loop over from a pipeline that stopped asking
/// (crate::net::HANDOVER), so that between two rounds of the context the
/// loop stays the context's.
const MAX_CONTEXT_WAIT_MS: u32 = (crate::net::HANDOVER.as_millis() / 2) as u32;

/// The base source's properties rtmp2src and librtmp's rtmpsrc have (both
/// are base sources) that the bin hands to its connection source, so that
/// a launch line setting them works here too. They change what leaves
/// rtmpsrc no more than they do there: see each blurb.
const BASE_SRC_PROPERTIES: [&str; 3] = ["blocksize", "do-timestamp", "typefind"];

pub struct RtmpSrc {
    /// What the properties say; handed to `conn` when it starts.
    settings: Mutex<Settings>,
    conn: RtmpSrcConn,
    /// With pad-queues, a thread per output pad (the demuxer's queues): with
    /// a single streaming thread, a downstream that holds one pad until the
    /// other has data (decodebin inside uridecodebin and playbin does) would
    /// deadlock. The streaming thread still pushes while downstream keeps
    /// up (see the demuxer's lanes: direct pushes, and their rescue).
    demux: RtmpSrcDemux,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSrc {
    const NAME: &'static str = "GstRtmpSrc";
    type Type = super::RtmpSrc;
    type ParentType = gst::Bin;
    type Interfaces = (gst::URIHandler,);

    fn with_class(_klass: &Self::Class) -> Self {
        RtmpSrc {
            settings: Mutex::default(),
            conn: glib::Object::builder()
                .property("name", "connection")
                .build(),
            demux: glib::Object::builder().property("name", "demux").build(),
        }
    }
}

impl ObjectImpl for RtmpSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = SharedSettings::properties(&ROLE);
            props.extend([
                glib::ParamSpecUInt::builder("idle-timeout")
                    .nick("Idle timeout")
                    .blurb("Seconds without any message from the server before it is an error, or with reconnect-attempts a reason to reconnect (0: wait for ever; a reconnecting client pings a quiet server, so a dead route shows within timeout)")
                    .default_value(defaults::IDLE_TIMEOUT)
                    .build(),
                glib::ParamSpecUInt::builder("buffer-length")
                    .nick("Buffer length")
                    .blurb("Milliseconds of buffer told to the server (SetBufferLength)")
                    .default_value(defaults::BUFFER_LENGTH)
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("Milliseconds of latency reported to the pipeline, to absorb network jitter when playing in sync")
                    .default_value(defaults::LATENCY_MS)
                    .build(),
                glib::ParamSpecBoolean::builder("eos-on-disconnect")
                    .nick("EOS on disconnect")
                    .blurb("End the stream (EOS) when the connection is lost without the server ending it, instead of an error")
                    .default_value(false)
                    .build(),
                glib::ParamSpecUInt::builder("publisher-restart-timeout")
                    .nick("Publisher restart timeout")
                    .blurb("Milliseconds to wait, after the server says the stream ended (StreamEOF), for a publisher that reconnects; playback then resumes with DISCONT. 0: the stream ends at once")
                    .default_value(0)
                    .build(),
                gst::ParamSpecArray::builder("stream-keys")
                    .nick("Stream keys")
                    .blurb("Server mode: stream names (keys) a publisher may use besides the location's, e.g. <\"key1\",\"key2\">; with none and no stream in the location, any is accepted. Compared in constant time, never logged")
                    .element_spec(&glib::ParamSpecString::builder("key").build())
                    .build(),
                glib::ParamSpecUInt::builder("max-clients")
                    .nick("Max clients")
                    .blurb("Server mode: connections at once, in any state; more are closed at once")
                    .minimum(1)
                    .default_value(defaults::MAX_CLIENTS)
                    .build(),
                glib::ParamSpecBoolean::builder("publisher-takeover")
                    .nick("Publisher takeover")
                    .blurb("Server mode: a second publisher of the stream replaces the first (true) or is refused with NetStream.Publish.BadName (false)")
                    .default_value(false)
                    .build(),
                glib::ParamSpecUInt::builder("publisher-timeout")
                    .nick("Publisher timeout")
                    .blurb("Server mode: seconds to wait for a publisher (an error if none ever came) and for the next one after one leaves (then EOS). 0: wait for ever")
                    .default_value(0)
                    .build(),
                glib::ParamSpecBoolean::builder("eos-on-unpublish")
                    .nick("EOS on unpublish")
                    .blurb("Server mode: end the stream (EOS) when the publisher stops or disconnects, instead of waiting for the next one")
                    .default_value(false)
                    .build(),
                glib::ParamSpecBoolean::builder("pad-queues")
                    .nick("Pad queues")
                    .blurb("A queue and a thread behind each output pad, so that any downstream works (decodebin, muxers, sinks that preroll). A pad whose downstream took 16 buffers in a row at once (under 5 ms each) gets them from the streaming thread while its queue is empty, with no thread hand-off; a push held there sends the pad back to its queue, and the connection's thread queues what it reads meanwhile. Not where two pads meet downstream with no queue in between, in any element but an aggregator (matroskamux, which holds one pad for the other), nor after such a push was rescued: every pad then keeps to its queue. Off: the streaming thread, which reads the socket, pushes on every pad itself, always: no hand-off and no bookkeeping (least CPU and latency); a downstream that waits on one pad for another's data then needs its own queue after each pad (or sinks with async=false)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("auto-flv")
                    .nick("Auto FLV")
                    .blurb("Give the stream as FLV on src by itself where what took the first elementary pad wants the whole stream (decodebin, decodebin3 or parsebin when flvdemux reads the stream; filesink and the other byte sinks; rtmpsink past a queue, as the launch line linked it; a tee whose every branch is one of those) or nothing took it (rtmpsrc ! queue ! flvdemux), as librtmp's rtmpsrc gave it. Off: the elementary pads stay, whatever takes them (an application that makes a decodebin per pad). Never inside playbin or uridecodebin")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("num-buffers")
                    .nick("Number of buffers")
                    .blurb("Buffers to give out before the stream ends (EOS), over all pads together: frames on the elementary pads, FLV tags on src (-1: no limit), as BaseSrc's num-buffers")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("context")
                    .nick("Context")
                    .blurb("Server mode: the name of a thread that every rtmpsrc with the same context in the process shares: it reads all their publishers and pushes their buffers, instead of a streaming thread each waking for every message (far less CPU with many publishers). Empty: a thread of its own. With pad-queues (the default), a push held downstream holds the others of the context until their servers' own threads take their publishers over (about 0.2 s); with pad-queues=false, until it ends")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("context-wait")
                    .nick("Context wait")
                    .blurb("Server mode, with a context: the shared thread wakes at most once per this many milliseconds and takes everything that came meanwhile (fewer wake-ups, less CPU, up to this much more latency). 0: it wakes for every message. The first element of a context sets it for all")
                    .maximum(MAX_CONTEXT_WAIT_MS)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                crate::common::stats_property(
                    "connection state, bytes and messages in, audio/video messages, timestamp resyncs",
                ),
                glib::ParamSpecUInt::builder("blocksize")
                    .nick("Block size")
                    .blurb("BaseSrc's, as in rtmp2src, which also ignores it: every buffer is a whole frame (an FLV tag on src), whatever this says")
                    .default_value(4096)
                    .build(),
                glib::ParamSpecBoolean::builder("do-timestamp")
                    .nick("Do timestamp")
                    .blurb("BaseSrc's, as in rtmp2src: it would stamp a buffer that has no timestamp with the running time it leaves at, and none leaves without one here (nor from rtmp2src): frames and FLV tags carry the stream's time")
                    .default_value(false)
                    .build(),
                glib::ParamSpecBoolean::builder("typefind")
                    .nick("Typefind")
                    .blurb("BaseSrc's, deprecated there and without effect since GStreamer 1.0, as in rtmp2src: caps come from the stream's sequence headers")
                    .default_value(false)
                    .build(),
            ]);
            props
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        // accept-publisher(app, stream, address, query, user) -> bool: server mode,
        // for each publisher whose app and stream name passed the checks.
        // request-reconnect(tc-url, description) -> guint: server mode, asks
        // the publisher to move.
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> =
            LazyLock::new(|| crate::common::server_signals::<super::RtmpSrc>("accept-publisher"));
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if BASE_SRC_PROPERTIES.contains(&pspec.name()) {
            self.conn.set_property_from_value(pspec.name(), value);
            return;
        }
        let mut s = lock(&self.settings);
        if s.shared.set(pspec.name(), value, &ROLE) {
            drop(s);
            for n in SharedSettings::also_changed(pspec.name()) {
                self.obj().notify(n);
            }
            return;
        }
        match pspec.name() {
            "stream-keys" => s.stream_keys = crate::common::string_array(value),
            "max-clients" => s.max_clients = value.get().expect("type checked"),
            "publisher-takeover" => s.publisher_takeover = value.get().expect("type checked"),
            "publisher-timeout" => s.publisher_timeout = value.get().expect("type checked"),
            "eos-on-unpublish" => s.eos_on_unpublish = value.get().expect("type checked"),
            "pad-queues" => s.pad_queues = value.get().expect("type checked"),
            "auto-flv" => s.auto_flv = value.get().expect("type checked"),
            "num-buffers" => s.num_buffers = value.get().expect("type checked"),
            "context" => {
                s.context = value
                    .get::<Option<String>>()
                    .expect("type checked")
                    .unwrap_or_default()
            }
            "context-wait" => s.context_wait = value.get().expect("type checked"),
            "idle-timeout" => s.idle_timeout = value.get().expect("type checked"),
            "buffer-length" => s.buffer_length = value.get().expect("type checked"),
            "latency" => s.latency_ms = value.get().expect("type checked"),
            "eos-on-disconnect" => s.eos_on_disconnect = value.get().expect("type checked"),
            "publisher-restart-timeout" => {
                s.restart_timeout_ms = value.get().expect("type checked")
            }
            n => unreachable!("unknown property {n}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            let mut s = self.conn.imp().stats();
            if lock(&self.settings).shared.measure_latency {
                self.demux.imp().write_latencies(&mut s);
            }
            return s.to_value();
        }
        if BASE_SRC_PROPERTIES.contains(&pspec.name()) {
            return self.conn.property_value(pspec.name());
        }
        let s = lock(&self.settings);
        if let Some(v) = s.shared.get(pspec.name()) {
            return v;
        }
        match pspec.name() {
            "stream-keys" => gst::Array::new(s.stream_keys.iter()).to_value(),
            "max-clients" => s.max_clients.to_value(),
            "publisher-takeover" => s.publisher_takeover.to_value(),
            "publisher-timeout" => s.publisher_timeout.to_value(),
            "eos-on-unpublish" => s.eos_on_unpublish.to_value(),
            "pad-queues" => s.pad_queues.to_value(),
            "auto-flv" => s.auto_flv.to_value(),
            "num-buffers" => s.num_buffers.to_value(),
            "context" => s.context.to_value(),
            "context-wait" => s.context_wait.to_value(),
            "idle-timeout" => s.idle_timeout.to_value(),
            "buffer-length" => s.buffer_length.to_value(),
            "latency" => s.latency_ms.to_value(),
            "eos-on-disconnect" => s.eos_on_disconnect.to_value(),
            "publisher-restart-timeout" => s.restart_timeout_ms.to_value(),
            n => unreachable!("unknown property {n}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_many([
            self.conn.upcast_ref::<gst::Element>(),
            self.demux.upcast_ref(),
        ])
        .expect("add children");
        self.conn
            .link(&self.demux)
            .expect("link connection to demuxer");
        crate::common::show_listening(&*obj, &self.conn.imp().handed, |bin, l| {
            lock(&bin.imp().settings).shared.target.listening_on(l)
        });
        let weak = obj.downgrade();
        self.demux.connect_pad_added(move |demux, pad| {
            let Some(bin) = weak.upgrade() else { return };
            // The FLV pad is ghosted where it was requested; one the
            // demuxer made for what took the first pad, here.
            if pad.name() == "src" && !demux.imp().flv_is_auto() {
                return;
            }
            // "video", "audio", "video_%u" or "audio_%u": the same names here.
            let templ = pad
                .pad_template()
                .and_then(|t| bin.pad_template(t.name_template()))
                .expect("same template names");
            let ghost = gst::GhostPad::builder_from_template_with_target(&templ, pad)
                .expect("ghost")
                .name(pad.name())
                .build();
            ghost.set_active(true).ok();
            bin.add_pad(&ghost).ok();
        });
        let weak = obj.downgrade();
        self.demux.connect_no_more_pads(move |_| {
            if let Some(bin) = weak.upgrade() {
                bin.no_more_pads();
            }
        });
        let weak = obj.downgrade();
        self.demux.connect_pad_removed(move |_, pad| {
            let Some(bin) = weak.upgrade() else { return };
            if let Some(g) = bin.static_pad(&pad.name()) {
                bin.remove_pad(&g).ok();
            }
        });
    }
}

impl crate::common::AsksReconnect for super::RtmpSrc {
    fn request_reconnect(&self, tc_url: Option<String>, why: String) -> u32 {
        self.imp().conn.imp().request_reconnect(tc_url, why)
    }
}

impl GstObjectImpl for RtmpSrc {}

impl ElementImpl for RtmpSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTMP source",
                "Source/Network/Video/Audio",
                "Plays an RTMP stream (legacy or Enhanced RTMP) as H.264, H.265, AV1, VP9, AAC, MP3, Opus, FLAC, AC-3, E-AC-3 and legacy FLV elementary streams, or as FLV on its src pad (on request, or by itself where what took the first elementary pad wants the whole stream: decodebin, filesink, a queue before flvdemux)",
                "gst-plugin-rtmp developers",
            )
        });
        Some(&*META)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        // The connection source starts at ReadyToPaused.
        let handed = &self.conn.imp().handed;
        handed.hand_at(transition, gst::StateChange::ReadyToPaused, &self.settings);
        if transition == gst::StateChange::ReadyToPaused {
            let (queues, measure, limit, auto_flv) = {
                let s = lock(&self.settings);
                (
                    s.pad_queues,
                    s.shared.measure_latency,
                    s.num_buffers,
                    s.auto_flv,
                )
            };
            let demux = self.demux.imp();
            demux.set_pad_queues(queues);
            demux.set_auto_flv(auto_flv);
            demux.set_num_buffers(limit);
            demux.set_measure_latency(measure);
        }
        self.parent_change_state(transition)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let d = RtmpSrcDemux::static_type();
            let klass = glib::Class::<gst::Element>::from_type(d).expect("demuxer class");
            // The sometimes pads first: uridecodebin and urisourcebin
            // (playbin) take a source as one with pads to wait for only
            // when its first source template says so. `rtmpsrc ! flvdemux`
            // still gets `src`, the only template whose caps fit; a
            // downstream of any caps (`queue`, `filesink`) waits for the
            // first elementary pad unless it names `src`.
            ["video", "audio", "video_%u", "audio_%u", "src"]
                .iter()
                .map(|n| {
                    let t = klass.pad_template(n).expect("template");
                    gst::PadTemplate::new(n, gst::PadDirection::Src, t.presence(), t.caps())
                        .unwrap()
                })
                .collect()
        });
        T.as_ref()
    }

    /// `src`: the stream as FLV instead of elementary pads (see the
    /// demuxer's `flv_pad`).
    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let target = match self.demux.imp().request_flv() {
            Ok(p) => p,
            Err(why) => {
                gst::warning!(CAT, imp = self, "no src pad: {why}");
                return None;
            }
        };
        let ghost = gst::GhostPad::builder_from_template(templ)
            .name("src")
            .build();
        if ghost.set_target(Some(&target)).is_err() {
            gst::warning!(CAT, imp = self, "no src pad: the FLV pad would not link");
            self.demux.imp().release_flv();
            return None;
        }
        if self.obj().current_state() > gst::State::Ready {
            ghost.set_active(true).ok();
        }
        self.obj().add_pad(&ghost).ok()?;
        Some(ghost.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        pad.set_active(false).ok();
        self.obj().remove_pad(pad).ok();
        self.demux.imp().release_flv();
    }
}

impl BinImpl for RtmpSrc {}

crate::shared::impl_uri_handler!(RtmpSrc, Src);
