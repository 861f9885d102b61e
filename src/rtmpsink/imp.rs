// SPDX-License-Identifier: MPL-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::conn::{self, RtmpSinkConn, StopCommands};
use super::mux::RtmpSinkMux;
use crate::mode::RtmpMode;
use crate::rtmp::url::RtmpUrl;
use crate::security::Security;
use crate::sync::lock;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("rtmpsink", gst::DebugColorFlags::empty(), Some("RTMP sink"))
});

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Input {
    #[default]
    None,
    /// `video`/`audio` pads through the muxer.
    Elementary,
    /// The `sink` pad: FLV straight to the connection.
    Flv,
}

#[derive(Default)]
struct State {
    input: Input,
    mux: Option<RtmpSinkMux>,
    /// The muxer's extra latency, applied when it is made.
    latency: gst::ClockTime,
}

pub struct RtmpSink {
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
            let mut props = vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("RTMP URL to publish to: rtmp://[user:pass@]host[:port]/app[/instance]/stream[?query]")
                    .build(),
                glib::ParamSpecEnum::builder::<RtmpMode>("mode")
                    .nick("Mode")
                    .blurb("client: publish to a server; server: listen on the location's address (rtmp://0.0.0.0:1935/app/stream, port 0 picks one) and serve players such as ffplay")
                    .build(),
                glib::ParamSpecInt::builder("reconnect-attempts")
                    .nick("Reconnect attempts")
                    .blurb("Client mode: attempts to reconnect after the connection is lost (-1: for ever, 0: do not reconnect; the stream then fails)")
                    .minimum(-1)
                    .default_value(conn::imp_defaults::RECONNECT_ATTEMPTS)
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-delay")
                    .nick("Reconnect delay")
                    .blurb("Client mode: milliseconds before the first reconnection attempt; each further one waits twice as long, up to reconnect-max-delay")
                    .default_value(conn::imp_defaults::RECONNECT_DELAY_MS)
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-max-delay")
                    .nick("Reconnect max delay")
                    .blurb("Client mode: the longest wait between reconnection attempts, in milliseconds")
                    .default_value(conn::imp_defaults::RECONNECT_MAX_DELAY_MS)
                    .build(),
                glib::ParamSpecUInt::builder("backlog")
                    .nick("Backlog")
                    .blurb("Client mode: milliseconds of stream kept to re-send after a reconnection (whole GOPs); what falls out while disconnected is counted in stats and reported")
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
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Seconds to wait for the server: connecting, each answer, a write that makes no progress, and data the server does not acknowledge (a dead route). Server mode: for a client's handshake, connect and play, before a player that reads nothing is cut off, and for players to drain at EOS")
                    .minimum(1)
                    .default_value(conn::imp_defaults::TIMEOUT)
                    .build(),
                glib::ParamSpecBoolean::builder("async-connect")
                    .nick("Async connect")
                    .blurb("Connect in the background while the pipeline starts; if false, the state change waits for the connection and fails with it")
                    .default_value(true)
                    .build(),
                glib::ParamSpecUInt::builder("chunk-size")
                    .nick("Chunk size")
                    .blurb("RTMP chunk size to send with (the server is told with Set Chunk Size); larger costs less CPU")
                    .minimum(128)
                    .maximum(crate::rtmp::chunk::MAX_CHUNK_SIZE)
                    .default_value(conn::imp_defaults::CHUNK_SIZE)
                    .build(),
                glib::ParamSpecString::builder("flash-version")
                    .nick("Flash version")
                    .blurb("flashVer sent in connect")
                    .default_value(Some(conn::imp_defaults::FLASH_VERSION))
                    .build(),
                glib::ParamSpecString::builder("tc-url")
                    .nick("tcUrl")
                    .blurb("tcUrl sent in connect, if it must differ from the one made from location")
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("extra-connect-args")
                    .nick("Extra connect arguments")
                    .blurb("Extra properties for the connect command object, e.g. \"args, pageUrl=(string)x, fpad=(boolean)false\"")
                    .build(),
                glib::ParamSpecFlags::builder::<StopCommands>("stop-commands")
                    .nick("Stop commands")
                    .blurb("Commands sent at end of stream before closing")
                    .default_value(StopCommands::all())
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("bytes and messages out, bitrate, frames per kind, dropped, connection state")
                    .read_only()
                    .build(),
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
                    .blurb("Extra nanoseconds to wait, in live pipelines, for a late audio or video buffer before interleaving without it")
                    .default_value(0)
                    .build(),
            ];
            props.extend(Security::properties());
            props
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        // accept-player(app, stream, address, query) -> bool: server mode,
        // for each player whose app and stream name passed the checks.
        // request-reconnect(tc-url, description) -> guint: server mode, asks
        // the players to move.
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                crate::common::accept_signal("accept-player"),
                crate::common::request_reconnect_signal(|obj, tc_url, why| {
                    let obj = obj.get::<super::RtmpSink>().expect("signal on rtmpsink");
                    obj.imp().conn.request_reconnect(tc_url, why)
                }),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        match name {
            "sync" | "ts-offset" | "max-lateness" => self.conn.set_property_from_value(name, value),
            "latency" => {
                let l = gst::ClockTime::from_nseconds(value.get().expect("type checked"));
                let mut st = lock(&self.state);
                st.latency = l;
                if let Some(m) = &st.mux {
                    m.set_property("latency", l);
                }
            }
            _ => {
                let mut s = self.conn.settings();
                if s.security.set(name, value) {
                    return;
                }
                match name {
                    "location" => s.location = value.get().expect("type checked"),
                    "mode" => s.mode = value.get().expect("type checked"),
                    "max-clients" => s.max_clients = value.get().expect("type checked"),
                    "client-queue-time" => {
                        s.client_queue_time_ms = value.get().expect("type checked")
                    }
                    "client-queue-bytes" => {
                        s.client_queue_bytes = value.get().expect("type checked")
                    }
                    "gop-cache" => s.gop_cache = value.get().expect("type checked"),
                    "reconnect-attempts" => {
                        s.reconnect_attempts = value.get().expect("type checked")
                    }
                    "reconnect-delay" => s.reconnect_delay_ms = value.get().expect("type checked"),
                    "reconnect-max-delay" => {
                        s.reconnect_max_delay_ms = value.get().expect("type checked")
                    }
                    "backlog" => s.backlog_ms = value.get().expect("type checked"),
                    "timeout" => s.timeout = value.get().expect("type checked"),
                    "async-connect" => s.async_connect = value.get().expect("type checked"),
                    "chunk-size" => s.chunk_size = value.get().expect("type checked"),
                    "flash-version" => {
                        s.flash_version = value
                            .get::<Option<String>>()
                            .expect("type checked")
                            .unwrap_or_else(|| conn::imp_defaults::FLASH_VERSION.into())
                    }
                    "tc-url" => s.tc_url = value.get().expect("type checked"),
                    "extra-connect-args" => {
                        s.extra_connect_args = value.get().expect("type checked")
                    }
                    "stop-commands" => s.stop_commands = value.get().expect("type checked"),
                    _ => unreachable!("unknown property {name}"),
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let name = pspec.name();
        match name {
            "sync" | "ts-offset" | "max-lateness" => self.conn.property_value(name),
            "latency" => lock(&self.state).latency.nseconds().to_value(),
            "stats" => {
                let mut s = self.conn.stats();
                if let Some(m) = &lock(&self.state).mux {
                    let (v, a) = m.frame_counts();
                    s.set("video-frames-muxed", v);
                    s.set("audio-frames-muxed", a);
                }
                s.to_value()
            }
            _ => {
                let s = self.conn.settings();
                if let Some(v) = s.security.get(name) {
                    return v;
                }
                match name {
                    "location" => s.location.to_value(),
                    "mode" => s.mode.to_value(),
                    "max-clients" => s.max_clients.to_value(),
                    "client-queue-time" => s.client_queue_time_ms.to_value(),
                    "client-queue-bytes" => s.client_queue_bytes.to_value(),
                    "gop-cache" => s.gop_cache.to_value(),
                    "reconnect-attempts" => s.reconnect_attempts.to_value(),
                    "reconnect-delay" => s.reconnect_delay_ms.to_value(),
                    "reconnect-max-delay" => s.reconnect_max_delay_ms.to_value(),
                    "backlog" => s.backlog_ms.to_value(),
                    "timeout" => s.timeout.to_value(),
                    "async-connect" => s.async_connect.to_value(),
                    "chunk-size" => s.chunk_size.to_value(),
                    "flash-version" => s.flash_version.to_value(),
                    "tc-url" => s.tc_url.to_value(),
                    "extra-connect-args" => s.extra_connect_args.to_value(),
                    "stop-commands" => s.stop_commands.to_value(),
                    _ => unreachable!("unknown property {name}"),
                }
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add(&self.conn).expect("add the connection sink");
    }
}

impl GstObjectImpl for RtmpSink {}

impl ElementImpl for RtmpSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTMP sink",
                "Sink/Network/Video/Audio",
                "Publishes H.264 and AAC/MP3 (or FLV) to an RTMP server",
                "gst-plugin-rtmp developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "video",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::h264_caps(),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "audio",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::audio_caps(),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::flv_caps(),
                )
                .unwrap(),
            ]
        });
        T.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let name = templ.name_template().to_string();
        let mut st = lock(&self.state);
        let target = match (name.as_str(), st.input) {
            ("sink", Input::None) => {
                st.input = Input::Flv;
                self.conn.static_pad("sink")?
            }
            ("video" | "audio", Input::None | Input::Elementary) => {
                if self.obj().static_pad(&name).is_some() {
                    gst::warning!(CAT, imp = self, "rtmpsink already has a {name} pad");
                    return None;
                }
                let mux = match &st.mux {
                    Some(m) => m.clone(),
                    None => {
                        let m: RtmpSinkMux =
                            glib::Object::builder().property("name", "mux").build();
                        m.set_property("latency", st.latency);
                        self.obj().add(&m).ok()?;
                        m.link(&self.conn).ok()?;
                        m.sync_state_with_parent().ok();
                        st.mux = Some(m.clone());
                        m
                    }
                };
                st.input = Input::Elementary;
                mux.request_pad_simple(&name)?
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
        let ghost = gst::GhostPad::builder_from_template_with_target(templ, &target)
            .ok()?
            .name(name.as_str())
            .build();
        if self.obj().current_state() > gst::State::Null {
            ghost.set_active(true).ok();
        }
        self.obj().add_pad(&ghost).ok()?;
        Some(ghost.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let ghost = pad.downcast_ref::<gst::GhostPad>();
        let target = ghost.and_then(|g| g.target());
        self.obj().remove_pad(pad).ok();
        let mut st = lock(&self.state);
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

impl URIHandlerImpl for RtmpSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

    fn protocols() -> &'static [&'static str] {
        &["rtmp", "rtmps"]
    }

    fn uri(&self) -> Option<String> {
        self.conn.settings().location.clone()
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        RtmpUrl::parse(uri).map_err(|e| glib::Error::new(gst::URIError::BadUri, &e.to_string()))?;
        self.conn.settings().location = Some(uri.to_owned());
        Ok(())
    }
}
