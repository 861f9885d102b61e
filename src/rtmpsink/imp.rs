// SPDX-License-Identifier: MPL-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::conn::{self, RtmpSinkConn, StopCommands};
use super::mux::RtmpSinkMux;
use crate::shared::SharedSettings;
use crate::sync::lock;

/// The base sink's properties the bin hands to its connection sink as
/// they are (rtmp2sink, a base sink, has them), besides sync, ts-offset
/// and max-lateness, which it words for RTMP.
const BASE_SINK_PROPERTIES: [&str; 9] = [
    "async",
    "qos",
    "max-bitrate",
    "processing-deadline",
    "render-delay",
    "throttle-time",
    "enable-last-sample",
    "last-sample",
    "blocksize",
];

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Input {
    #[default]
    None,
    /// `video`/`audio` pads through the muxer.
    Elementary,
    /// The `sink` pad: FLV straight to the connection.
    Flv,
}

struct State {
    input: Input,
    mux: Option<RtmpSinkMux>,
    /// The muxer's extra latency and interleaving, applied when it is made.
    latency: gst::ClockTime,
    interleave: bool,
    /// The elementary pads requested before the element first left NULL:
    /// linked by a pipeline's description (gst-launch), not in answer to
    /// the stream.
    planned: Vec<gst::Pad>,
}

impl Default for State {
    fn default() -> Self {
        State {
            input: Input::None,
            mux: None,
            planned: Vec::new(),
            latency: gst::ClockTime::ZERO,
            interleave: true,
        }
    }
}

pub struct RtmpSink {
    /// What the properties say; handed to `conn` when it starts.
    settings: Mutex<conn::Settings>,
    conn: RtmpSinkConn,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSink {
    const NAME: &'static str = "GstRtmpSink";
    type Type = super::RtmpSink;
    type ParentType = gst::Bin;
    type Interfaces = (gst::URIHandler,);

    fn with_class(_klass: &Self::Class) -> Self {
        RtmpSink {
            settings: Mutex::default(),
            conn: glib::Object::builder()
                .property("name", "connection")
                .build(),
            state: Mutex::default(),
        }
    }
}

impl ObjectImpl for RtmpSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = SharedSettings::properties(&conn::ROLE);
            props.extend([
                glib::ParamSpecUInt::builder("backlog")
                    .nick("Backlog")
                    .blurb("Client mode: milliseconds of stream kept at most to re-send after a reconnection (whole GOPs; what the server acknowledged goes sooner; 0 keeps the GOP in progress only); what falls out while disconnected is counted in stats and reported")
                    .default_value(conn::imp_defaults::BACKLOG_MS)
                    .build(),
                glib::ParamSpecUInt::builder("max-clients")
                    .nick("Max clients")
                    .blurb("Server mode: connections at once, in any state; more are closed at once")
                    .minimum(1)
                    .default_value(conn::imp_defaults::MAX_CLIENTS)
                    .build(),
                glib::ParamSpecUInt::builder("client-queue-time")
                    .nick("Client queue time")
                    .blurb("Server mode: milliseconds of stream a player may fall behind before it skips to the next keyframe (a player that falls behind 3 times in 60 s is disconnected)")
                    .minimum(100)
                    .default_value(conn::imp_defaults::CLIENT_QUEUE_TIME_MS)
                    .build(),
                glib::ParamSpecUInt::builder("client-queue-bytes")
                    .nick("Client queue bytes")
                    .blurb("Server mode: bytes a player's queue may hold before it skips to the next keyframe")
                    .minimum(64 * 1024)
                    .default_value(conn::imp_defaults::CLIENT_QUEUE_BYTES)
                    .build(),
                glib::ParamSpecBoolean::builder("gop-cache")
                    .nick("GOP cache")
                    .blurb("Server mode: a new player starts at the last keyframe (playback starts at once) rather than the next one")
                    .default_value(true)
                    .build(),
                glib::ParamSpecBoolean::builder("enhanced-to-legacy-players")
                    .nick("Enhanced RTMP to legacy players")
                    .blurb("Server mode: send Enhanced RTMP tracks (H.265, AV1, VP9, Opus...) also to players whose connect announced no Enhanced RTMP codecs (FFmpeg reads them but announces them only with -rtmp_enhanced_codecs); false: those players get the legacy FLV tracks (H.264, AAC, MP3) only")
                    .default_value(false)
                    .build(),
                glib::ParamSpecUInt::builder("chunk-size")
                    .nick("Chunk size")
                    .blurb("RTMP chunk size to send with (the server is told with Set Chunk Size); larger costs less CPU")
                    .minimum(128)
                    .maximum(crate::rtmp::chunk::MAX_CHUNK_SIZE)
                    .default_value(conn::imp_defaults::CHUNK_SIZE)
                    .build(),
                glib::ParamSpecEnum::builder::<conn::UnannouncedCodec>("unannounced-codec")
                    .nick("Unannounced codec")
                    .blurb("Client mode: what to do when the server's connect answer did not announce (Enhanced RTMP fourCcList) a codec about to be sent: send it anyway, or fail naming it. stats shows what it announced (server-codecs)")
                    .default_value(conn::UnannouncedCodec::Send)
                    .build(),
                glib::ParamSpecFlags::builder::<StopCommands>("stop-commands")
                    .nick("Stop commands")
                    .blurb("Client mode: the commands sent at the end of the stream before closing, in this order: FCUnpublish, closeStream (on the stream), deleteStream; none: just close. rtmp2sink's flags, with its names and values")
                    .default_value(StopCommands::rtmp2_default())
                    .build(),
                crate::common::stats_property(
                    "bytes and messages out, bitrate, frames per kind, dropped, connection state",
                ),
                glib::ParamSpecBoolean::builder("sync")
                    .nick("Sync")
                    .blurb("Send each message at its time on the clock (false: as fast as it comes)")
                    .default_value(true)
                    .build(),
                glib::ParamSpecInt64::builder("ts-offset")
                    .nick("Timestamp offset")
                    .blurb("Nanoseconds added to buffer times when syncing")
                    .default_value(0)
                    .build(),
                glib::ParamSpecInt64::builder("max-lateness")
                    .nick("Max lateness")
                    .blurb("Nanoseconds a buffer may be late before it is dropped when syncing (-1: never)")
                    .minimum(-1)
                    .default_value(-1)
                    .build(),
                glib::ParamSpecUInt64::builder("latency")
                    .nick("Latency")
                    .blurb("Extra nanoseconds of latency reported to the pipeline (with sync, each message waits that much longer on the clock) and queued per pad in live pipelines")
                    .default_value(0)
                    .build(),
                glib::ParamSpecUInt::builder("peak-kbps")
                    .nick("Peak bitrate")
                    .blurb("The most kbit/s a connection sends at, its packets spread evenly by the kernel (Linux TCP pacing, as rtmp2sink's). Client mode: the connection to the server; a backlog re-sent after a reconnection or a file pushed with sync=false then goes no faster. Server mode: each player's, on its own; a joining player's burst of cached frames goes no faster (a player held below the stream's rate falls behind and skips, as any slow player). 0: no cap")
                    .maximum(crate::net::MAX_PACING_KBPS)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("interleave")
                    .nick("Interleave")
                    .blurb("Send audio and video frames in DTS order, each waiting until the other pads have reached its time (false: each frame as soon as it comes, in order within its own track only: the lowest latency)")
                    .default_value(true)
                    .mutable_playing()
                    .build(),
            ]);
            let conn = glib::Class::<gst::Element>::from_type(RtmpSinkConn::static_type())
                .expect("connection sink class");
            props.extend(BASE_SINK_PROPERTIES.iter().map(|name| {
                crate::common::forwarded_spec(
                    &conn.find_property(name).expect("a base sink property"),
                )
            }));
            props
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        // accept-player(app, stream, address, query, user) -> bool: server mode,
        // for each player whose app and stream name passed the checks.
        // request-reconnect(tc-url, description) -> guint: server mode, asks
        // the players to move.
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> =
            LazyLock::new(|| crate::common::server_signals::<super::RtmpSink>("accept-player"));
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        match name {
            "sync" | "ts-offset" | "max-lateness" => self.conn.set_property_from_value(name, value),
            n if BASE_SINK_PROPERTIES.contains(&n) => {
                self.conn.set_property_from_value(name, value)
            }
            "peak-kbps" => self
                .conn
                .imp()
                .set_peak_kbps(value.get().expect("type checked")),
            "latency" => {
                let l = gst::ClockTime::from_nseconds(value.get().expect("type checked"));
                let mut st = lock(&self.state);
                st.latency = l;
                if let Some(m) = &st.mux {
                    m.set_latency(l);
                }
            }
            "interleave" => {
                let on = value.get().expect("type checked");
                let mut st = lock(&self.state);
                st.interleave = on;
                if let Some(m) = &st.mux {
                    m.set_interleave(on);
                }
            }
            _ => {
                let mut s = lock(&self.settings);
                if s.shared.set(name, value, &conn::ROLE) {
                    drop(s);
                    for n in SharedSettings::also_changed(name) {
                        self.obj().notify(n);
                    }
                    return;
                }
                match name {
                    "max-clients" => s.max_clients = value.get().expect("type checked"),
                    "client-queue-time" => {
                        s.client_queue_time_ms = value.get().expect("type checked")
                    }
                    "client-queue-bytes" => {
                        s.client_queue_bytes = value.get().expect("type checked")
                    }
                    "gop-cache" => s.gop_cache = value.get().expect("type checked"),
                    "enhanced-to-legacy-players" => {
                        s.enhanced_to_legacy = value.get().expect("type checked")
                    }
                    "backlog" => s.backlog_ms = value.get().expect("type checked"),
                    "chunk-size" => s.chunk_size = value.get().expect("type checked"),
                    "stop-commands" => s.stop_commands = value.get().expect("type checked"),
                    "unannounced-codec" => s.unannounced_codec = value.get().expect("type checked"),
                    _ => unreachable!("unknown property {name}"),
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let name = pspec.name();
        match name {
            "sync" | "ts-offset" | "max-lateness" => self.conn.property_value(name),
            n if BASE_SINK_PROPERTIES.contains(&n) => self.conn.property_value(name),
            "peak-kbps" => self.conn.imp().peak_kbps().to_value(),
            "latency" => lock(&self.state).latency.nseconds().to_value(),
            "interleave" => lock(&self.state).interleave.to_value(),
            "stats" => {
                let mut s = self.conn.imp().stats();
                if let Some(m) = &lock(&self.state).mux {
                    let (v, a) = m.frame_counts();
                    s.set("video-frames-muxed", v);
                    s.set("audio-frames-muxed", a);
                    if lock(&self.settings).shared.measure_latency {
                        m.write_latencies(&mut s);
                    }
                }
                s.to_value()
            }
            _ => {
                let s = lock(&self.settings);
                if let Some(v) = s.shared.get(name) {
                    return v;
                }
                match name {
                    "max-clients" => s.max_clients.to_value(),
                    "client-queue-time" => s.client_queue_time_ms.to_value(),
                    "client-queue-bytes" => s.client_queue_bytes.to_value(),
                    "gop-cache" => s.gop_cache.to_value(),
                    "enhanced-to-legacy-players" => s.enhanced_to_legacy.to_value(),
                    "backlog" => s.backlog_ms.to_value(),
                    "chunk-size" => s.chunk_size.to_value(),
                    "stop-commands" => s.stop_commands.to_value(),
                    "unannounced-codec" => s.unannounced_codec.to_value(),
                    _ => unreachable!("unknown property {name}"),
                }
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add(&self.conn).expect("add the connection sink");
        crate::common::show_listening(&*self.obj(), &self.conn.imp().handed, |bin, l| {
            lock(&bin.imp().settings).shared.target.listening_on(l)
        });
    }
}

impl crate::common::AsksReconnect for super::RtmpSink {
    fn request_reconnect(&self, tc_url: Option<String>, why: String) -> u32 {
        self.imp().conn.imp().request_reconnect(tc_url, why)
    }
}

impl GstObjectImpl for RtmpSink {}

impl ElementImpl for RtmpSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTMP sink",
                "Sink/Network/Video/Audio",
                "Publishes H.264, H.265, AV1, VP9 video and AAC, MP3, Opus, FLAC, AC-3, E-AC-3, G.711, PCM audio (or FLV) to an RTMP server, legacy or Enhanced RTMP",
                "gst-plugin-rtmp developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // video/audio (track 0), video_%u/audio_%u (Enhanced RTMP
            // multitrack: the number is the track id), and sink for FLV.
            let mut t = crate::common::track_pad_templates(
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &crate::caps::video_caps(),
                &crate::caps::audio_caps(),
                None,
            );
            t.push(
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::flv_caps(),
                )
                .unwrap(),
            );
            t
        });
        T.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        // The connection sink starts at NullToReady.
        let handed = &self.conn.imp().handed;
        handed.hand_at(transition, gst::StateChange::NullToReady, &self.settings);
        if transition == gst::StateChange::ReadyToPaused
            && let Some(m) = &lock(&self.state).mux
        {
            m.set_measure_latency(lock(&self.settings).shared.measure_latency);
        }
        self.parent_change_state(transition)
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        req_name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let name = templ.name_template().to_string();
        let planned = self.obj().current_state() == gst::State::Null;
        let mut st = lock(&self.state);
        let mut unused_mux = None;
        let target = match (name.as_str(), st.input) {
            ("sink", Input::None) => {
                st.input = Input::Flv;
                // Every elementary pad is gone: so goes the muxer, which
                // holds the connection's pad.
                unused_mux = st.mux.take();
                self.conn.static_pad("sink")?
            }
            ("video" | "audio" | "video_%u" | "audio_%u", Input::None | Input::Elementary) => {
                let mux = match &st.mux {
                    Some(m) => m.clone(),
                    None => {
                        let m: RtmpSinkMux =
                            glib::Object::builder().property("name", "mux").build();
                        m.set_latency(st.latency);
                        m.set_interleave(st.interleave);
                        m.set_measure_latency(lock(&self.settings).shared.measure_latency);
                        self.obj().add(&m).ok()?;
                        m.link(&self.conn).ok()?;
                        m.sync_state_with_parent().ok();
                        st.mux = Some(m.clone());
                        m
                    }
                };
                // The muxer checks the name and that the track is free.
                let mux_templ = mux.pad_template(&name)?;
                let pad = mux.request_pad(&mux_templ, req_name, caps)?;
                st.input = Input::Elementary;
                pad
            }
            _ => {
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Pad,
                    ("rtmpsink takes either video/audio pads or one FLV sink pad, not both")
                );
                return None;
            }
        };
        drop(st);
        if let Some(m) = unused_mux {
            self.remove_mux(m);
        }
        // Named as the muxer's pad ("video", "audio_2"); the FLV pad "sink".
        let flv = name == "sink";
        let ghost_name = if flv { name } else { target.name().to_string() };
        let ghost = gst::GhostPad::builder_from_template_with_target(templ, &target)
            .ok()?
            .name(ghost_name.as_str())
            .build();
        if self.obj().current_state() > gst::State::Null {
            ghost.set_active(true).ok();
        }
        self.obj().add_pad(&ghost).ok()?;
        if planned && !flv {
            lock(&self.state).planned.push(ghost.clone().upcast());
        }
        Some(ghost.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let ghost = pad.downcast_ref::<gst::GhostPad>();
        let target = ghost.and_then(|g| g.target());
        self.obj().remove_pad(pad).ok();
        let mut st = lock(&self.state);
        st.planned.retain(|p| p != pad);
        if let (Some(t), Some(m)) = (target, &st.mux)
            && t.parent().as_ref() == Some(m.upcast_ref())
        {
            m.release_request_pad(&t);
        }
        let has_pads = !self.obj().sink_pads().is_empty();
        if !has_pads {
            st.input = Input::None;
        }
    }
}

impl BinImpl for RtmpSink {}

impl RtmpSink {
    /// Whether `pad`, linked to a source's first elementary pad, stands for
    /// the whole stream: it is the element's only pad, and the pipeline's
    /// description linked it before anything played (`rtmpsrc ! queue !
    /// rtmpsink`: gst-launch links the queue to the first template that
    /// fits, `video`, while a relay of the whole stream is meant).
    pub(crate) fn relays_whole_stream_on(&self, pad: &gst::Pad) -> bool {
        let st = lock(&self.state);
        st.input == Input::Elementary
            && st.planned.contains(pad)
            && self.obj().sink_pads().as_slice() == std::slice::from_ref(pad)
    }

    /// `pad` released and one of `template` (named `name`) in its place,
    /// linked to what `pad` was linked to. None, with a pad like the old
    /// one put back and linked, where the new one cannot be had or linked.
    pub(crate) fn replace_pad(
        &self,
        pad: &gst::Pad,
        template: &str,
        name: Option<&str>,
    ) -> Option<gst::Pad> {
        let obj = self.obj();
        let upstream = pad.peer();
        let (old_template, old_name) = (pad.pad_template()?, pad.name());
        if let Some(up) = &upstream {
            up.unlink(pad).ok();
        }
        // For FLV in place of the last elementary pad the muxer goes,
        // unlinked first: losing its last pad, it would end the stream on
        // the connection.
        let unused_mux = if template == "sink" && obj.sink_pads().len() == 1 {
            lock(&self.state).mux.take()
        } else {
            None
        };
        if let Some(m) = &unused_mux {
            m.unlink(&self.conn);
        }
        obj.release_request_pad(pad);
        if let Some(m) = unused_mux {
            self.remove_mux(m);
        }
        let new = obj.pad_template(template).and_then(|t| {
            let new = obj.request_pad(&t, name, None)?;
            match &upstream {
                Some(up) if up.link(&new).is_err() => {
                    obj.release_request_pad(&new);
                    None
                }
                _ => Some(new),
            }
        });
        if new.is_none() {
            gst::warning!(
                super::conn::imp::CAT,
                imp = self,
                "no {template} pad in place of {old_name}: it is put back"
            );
            let back = obj.request_pad(&old_template, Some(&old_name), None);
            if let (Some(up), Some(back)) = (&upstream, &back) {
                up.link(back).ok();
            }
        }
        new
    }

    /// The muxer out of the bin, once it has no pad to take anything.
    fn remove_mux(&self, mux: RtmpSinkMux) {
        mux.unlink(&self.conn);
        mux.set_state(gst::State::Null).ok();
        self.obj().remove(&mux).ok();
    }
}

crate::shared::impl_uri_handler!(RtmpSink, Sink);
