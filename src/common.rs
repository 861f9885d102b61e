// SPDX-License-Identifier: MPL-2.0
//! What both elements do the same way: checking `location`, turning
//! `extra-connect-args` into connect command properties, and the server
//! mode's hooks (the accept signal, bus messages).

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::net::server::{Hooks, Notice, ServerOptions, StreamRequest};
use crate::rtmp::amf0::{Amf0Value, Properties};
use crate::rtmp::session::ServerConfig;
use crate::rtmp::url::{RtmpUrl, Scheme};
use crate::security::Security;

/// Why waiting for a client connection ended without one.
pub enum NotConnected {
    /// Flushing (the wait was cancelled), or a failure already posted.
    Flow(gst::FlowError),
    /// The connection could not be made: the error for the user, which the
    /// caller posts from a streaming thread (`post`) or returns from a
    /// state change (`into_message`), so that it is said once.
    Failed(gst::ErrorMessage),
}

impl NotConnected {
    /// From a streaming thread: the error posted, the flow to return.
    pub fn post(self, element: &gst::Element) -> gst::FlowError {
        match self {
            NotConnected::Flow(f) => f,
            NotConnected::Failed(m) => {
                element.post_error_message(m);
                gst::FlowError::Error
            }
        }
    }

    /// From `start` (`async-connect=false`): the error the state change
    /// fails with.
    pub fn into_message(self, otherwise: gst::ResourceError) -> gst::ErrorMessage {
        match self {
            NotConnected::Failed(m) => m,
            NotConnected::Flow(f) => gst::error_msg!(otherwise, ["Could not connect: {:?}", f]),
        }
    }
}

/// The error domain for a connection that could not be made: a refusal
/// (a login, a key, a certificate) is `NotAuthorized`, a stream the server
/// does not have `NotFound`, anything else `otherwise`.
pub fn open_error(e: &crate::rtmp::Error, otherwise: gst::ResourceError) -> gst::ResourceError {
    use crate::rtmp::error::ErrorKind;
    match (e.kind(), e.refusal()) {
        (ErrorKind::Rejected, Some(r)) if r.code == "NetStream.Play.StreamNotFound" => {
            gst::ResourceError::NotFound
        }
        (ErrorKind::Rejected, _) => gst::ResourceError::NotAuthorized,
        _ => otherwise,
    }
}

/// The fields of `extra-connect-args` that AMF0 can carry (strings,
/// booleans, numbers), in order.
pub fn connect_extra(args: &gst::Structure) -> Properties {
    args.iter()
        .filter_map(|(k, v)| to_amf(v).map(|a| (k.to_string(), a)))
        .collect()
}

fn to_amf(v: &glib::SendValue) -> Option<Amf0Value> {
    if let Ok(s) = v.get::<String>() {
        return Some(Amf0Value::String(s));
    }
    if let Ok(b) = v.get::<bool>() {
        return Some(Amf0Value::Boolean(b));
    }
    if let Ok(n) = v.get::<f64>() {
        return Some(Amf0Value::Number(n));
    }
    if let Ok(n) = v.get::<i32>() {
        return Some(Amf0Value::Number(f64::from(n)));
    }
    if let Ok(n) = v.get::<u32>() {
        return Some(Amf0Value::Number(f64::from(n)));
    }
    if let Ok(n) = v.get::<i64>() {
        return Some(Amf0Value::Number(n as f64));
    }
    None
}

/// What a server listens on and accepts, from its location and properties;
/// `rtmps://` loads the certificate and key now, so that a bad file fails
/// the state change with its name.
pub fn server_options(
    url: &RtmpUrl,
    keys: &[String],
    max_clients: u32,
    timeout_secs: u32,
    chunk_size: u32,
    security: &Security,
) -> Result<ServerOptions, gst::ErrorMessage> {
    let tls = match url.scheme {
        Scheme::Rtmp => None,
        Scheme::Rtmps => Some(crate::net::tls::server_config(&security.tls).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Cannot serve {}: {}", url.redacted(), e)
            )
        })?),
    };
    Ok(ServerOptions {
        host: url.host.clone(),
        port: url.port(),
        app: url.app.clone(),
        stream: url.stream_name().to_owned(),
        keys: keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        max_clients: max_clients as usize,
        timeout: Duration::from_secs(u64::from(timeout_secs.max(1))),
        session: ServerConfig {
            chunk_size,
            ..ServerConfig::default()
        },
        tls,
        auth: security.server_auth(Duration::from_secs(u64::from(timeout_secs.max(1)))),
        secure_token: security
            .secure_token()
            .map(|s| crate::rtmp::secure_token::Secret(s.to_owned())),
    })
}

/// A copy of `spec` (a child's property, such as a base sink's) for a bin
/// that forwards it to the child: same name, type, range, default, text
/// and flags. For the kinds of property the children have: booleans,
/// unsigned integers and samples.
pub fn forwarded_spec(spec: &glib::ParamSpec) -> glib::ParamSpec {
    let flags = spec.flags()
        & (glib::ParamFlags::READWRITE
            | gst::PARAM_FLAG_MUTABLE_PLAYING
            | gst::PARAM_FLAG_MUTABLE_PAUSED
            | gst::PARAM_FLAG_MUTABLE_READY);
    let (name, nick, blurb) = (spec.name(), spec.nick(), spec.blurb().unwrap_or_default());
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecBoolean>() {
        return glib::ParamSpecBoolean::builder(name)
            .nick(nick)
            .blurb(blurb)
            .default_value(p.default_value())
            .flags(flags)
            .build();
    }
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecUInt>() {
        return glib::ParamSpecUInt::builder(name)
            .nick(nick)
            .blurb(blurb)
            .minimum(p.minimum())
            .maximum(p.maximum())
            .default_value(p.default_value())
            .flags(flags)
            .build();
    }
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecUInt64>() {
        return glib::ParamSpecUInt64::builder(name)
            .nick(nick)
            .blurb(blurb)
            .minimum(p.minimum())
            .maximum(p.maximum())
            .default_value(p.default_value())
            .flags(flags)
            .build();
    }
    if spec.value_type() == gst::Sample::static_type() {
        return glib::ParamSpecBoxed::builder::<gst::Sample>(name)
            .nick(nick)
            .blurb(blurb)
            .flags(flags)
            .build();
    }
    unreachable!("no forwarded property is a {}", spec.value_type())
}

/// The strings of a `gst::Array` property value.
pub fn string_array(v: &glib::Value) -> Vec<String> {
    v.get::<gst::Array>()
        .map(|a| a.iter().filter_map(|v| v.get::<String>().ok()).collect())
        .unwrap_or_default()
}

/// A bin that can ask its server's clients to reconnect.
pub trait AsksReconnect {
    /// Asks every client to reconnect (see [`request_reconnect_signal`]);
    /// returns how many were asked.
    fn request_reconnect(&self, tc_url: Option<String>, why: String) -> u32;
}

/// The signals of a server bin `B`: `accept_name` (see [`accept_signal`])
/// and `request-reconnect` (see [`request_reconnect_signal`]).
pub fn server_signals<B>(accept_name: &str) -> Vec<glib::subclass::Signal>
where
    B: AsksReconnect + glib::prelude::IsA<glib::Object>,
{
    let ask = |obj: &glib::Value, tc_url, why| {
        obj.get::<glib::Object>()
            .ok()
            .and_then(|o| o.downcast::<B>().ok())
            .map_or(0, |bin| bin.request_reconnect(tc_url, why))
    };
    vec![accept_signal(accept_name), request_reconnect_signal(ask)]
}

/// Shows in `bin`'s `location` where its server listens (the port picked
/// when the location said 0): `set` writes the port into the bin's settings.
pub fn show_listening<B, S>(bin: &B, handed: &crate::handed::Handed<S>, set: fn(&B, u16))
where
    B: glib::prelude::IsA<glib::Object> + Send + Sync,
{
    let weak = bin.downgrade();
    handed.on_listening(move |port| {
        if let Some(bin) = weak.upgrade() {
            set(&bin, port);
            bin.notify("location");
            bin.notify("port");
        }
    });
}

/// The read-only `stats` property of both bins.
pub fn stats_property(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(blurb)
        .read_only()
        .build()
}

/// The one always pad of a connection element, carrying FLV.
pub fn flv_pad_template(name: &str, direction: gst::PadDirection) -> gst::PadTemplate {
    gst::PadTemplate::new(
        name,
        direction,
        gst::PadPresence::Always,
        &crate::caps::flv_caps(),
    )
    .expect("a valid pad template")
}

/// The media pad templates of an element: `video` and `audio` (track 0)
/// and `video_%u`/`audio_%u` (Enhanced RTMP multitrack), with the caps of
/// each kind; `gtype` for pads of a subclass (an aggregator's).
pub fn track_pad_templates(
    direction: gst::PadDirection,
    presence: gst::PadPresence,
    video: &gst::Caps,
    audio: &gst::Caps,
    gtype: Option<glib::Type>,
) -> Vec<gst::PadTemplate> {
    [
        ("video", video),
        ("audio", audio),
        ("video_%u", video),
        ("audio_%u", audio),
    ]
    .into_iter()
    .map(|(name, caps)| {
        match gtype {
            Some(t) => gst::PadTemplate::with_gtype(name, direction, presence, caps, t),
            None => gst::PadTemplate::new(name, direction, presence, caps),
        }
        .expect("a valid pad template")
    })
    .collect()
}

/// A signal `name(app, stream, address, query, user) -> bool` that decides
/// on each publisher or player (`user`: who logged in, empty without a
/// login): handlers run first, the first `false` wins, no handler accepts.
pub fn accept_signal(name: &str) -> glib::subclass::Signal {
    glib::subclass::Signal::builder(name)
        .param_types([
            String::static_type(),
            String::static_type(),
            String::static_type(),
            String::static_type(),
            String::static_type(),
        ])
        .return_type::<bool>()
        .run_last()
        .class_handler(|_| Some(true.to_value()))
        .accumulator(|_, _, v| {
            if v.get::<bool>().unwrap_or(true) {
                std::ops::ControlFlow::Continue(v.clone())
            } else {
                std::ops::ControlFlow::Break(v.clone())
            }
        })
        .build()
}

/// `request-reconnect(tc-url, description) -> guint`, an action signal of
/// the server elements: asks every client to reconnect (Enhanced RTMP
/// `NetConnection.Connect.ReconnectRequest`), to `tc-url` (NULL: this
/// server), and gives how many were asked. `ask` does it for the element.
pub fn request_reconnect_signal<F>(ask: F) -> glib::subclass::Signal
where
    F: Fn(&glib::Value, Option<String>, String) -> u32 + Send + Sync + 'static,
{
    glib::subclass::Signal::builder("request-reconnect")
        .param_types([String::static_type(), String::static_type()])
        .return_type::<u32>()
        .action()
        .class_handler(move |args| {
            let tc_url = args[1].get::<Option<String>>().ok().flatten();
            let why = args[2]
                .get::<Option<String>>()
                .ok()
                .flatten()
                .unwrap_or_else(|| "the server asks clients to reconnect".into());
            Some(ask(&args[0], tc_url, why).to_value())
        })
        .build()
}

/// The hooks a server element gives its loop: `signal` is emitted on
/// `bin` to decide, and what happens to connections is posted on the bus
/// as element messages `rtmp-client-connected`, `rtmp-client-rejected` and
/// `rtmp-client-disconnected`.
pub fn server_hooks(bin: &gst::Element, signal: &'static str, cat: gst::DebugCategory) -> Hooks {
    let weak = bin.downgrade();
    let notice = move |n: Notice| {
        let Some(bin) = weak.upgrade() else { return };
        let s = match n {
            Notice::Started {
                id,
                kind,
                addr,
                app,
                stream,
                user,
            } => {
                gst::info!(
                    cat,
                    obj = bin,
                    "{} {addr} started on {app}/{stream}{}",
                    kind.as_str(),
                    user.as_deref()
                        .map(|u| format!(" as '{u}'"))
                        .unwrap_or_default()
                );
                gst::Structure::builder("rtmp-client-connected")
                    .field("id", id)
                    .field("kind", kind.as_str())
                    .field("address", addr.to_string())
                    .field("app", app)
                    .field("stream", stream)
                    .field("user", user.unwrap_or_default())
                    .build()
            }
            Notice::Trouble(what) => {
                gst::element_warning!(bin, gst::ResourceError::OpenReadWrite, ("{}", what));
                return;
            }
            Notice::Rejected { addr, reason } => {
                gst::info!(cat, obj = bin, "refused {addr}: {reason}");
                gst::Structure::builder("rtmp-client-rejected")
                    .field("address", addr.to_string())
                    .field("reason", reason)
                    .build()
            }
            Notice::Closed {
                id,
                kind,
                addr,
                reason,
                bytes_in,
                bytes_out,
                dropped,
            } => {
                gst::info!(cat, obj = bin, "{} {addr} left: {reason}", kind.as_str());
                gst::Structure::builder("rtmp-client-disconnected")
                    .field("id", id)
                    .field("kind", kind.as_str())
                    .field("address", addr.to_string())
                    .field("reason", reason)
                    .field("bytes-in", bytes_in)
                    .field("bytes-out", bytes_out)
                    .field("dropped", dropped)
                    .build()
            }
        };
        let _ = bin.post_message(gst::message::Element::builder(s).src(&bin).build());
    };
    let weak = bin.downgrade();
    let accept = move |r: &StreamRequest| {
        let Some(bin) = weak.upgrade() else {
            return false;
        };
        let user = r.user.clone().unwrap_or_default();
        bin.emit_by_name::<bool>(
            signal,
            &[&r.app, &r.stream, &r.addr.to_string(), &r.query, &user],
        )
    };
    Hooks {
        notice: Box::new(notice),
        accept: Box::new(accept),
    }
}

/// The fields of rtmp2src's and rtmp2sink's `stats` (their
/// GstRtmpConnectionStats), from the client connection `c`, zeros without
/// one (as theirs are): what reads theirs reads ours.
pub fn rtmp2_stats(
    b: gst::structure::Builder,
    c: Option<&crate::rtmp::session::ConnectionStats>,
) -> gst::structure::Builder {
    let c = c.copied().unwrap_or_default();
    b.field("in-chunk-size", c.in_chunk_size)
        .field("out-chunk-size", c.out_chunk_size)
        .field("in-window-ack-size", c.in_window_ack_size)
        .field("out-window-ack-size", c.out_window_ack_size)
        .field("in-bytes-total", c.bytes_in)
        .field("out-bytes-total", c.bytes_out)
        .field("in-bytes-acked", c.in_bytes_acked)
        .field("out-bytes-acked", c.peer_acked_total().unwrap_or(0))
}

/// Per-connection counters as `stats` shows them: an array of structures.
pub fn peer_stats_array(stats: &crate::net::server::ServerStats) -> gst::Array {
    gst::Array::new(stats.peers.iter().map(|p| {
        gst::Structure::builder("client")
            .field("id", p.id)
            .field("kind", p.kind.as_str())
            .field("address", p.addr.to_string())
            .field("bytes-in", p.bytes_in)
            .field("bytes-out", p.bytes_out)
            .field("dropped", p.dropped)
            .field("lag-ms", p.lag_ms)
            .field("queued-bytes", p.queued_bytes)
            // A player's pacing cap in bytes/s (peak-kbps), 0: none.
            .field_if_some(
                "pacing-rate",
                p.pacing_rate
                    .map(|r| if r == u32::MAX { 0 } else { u64::from(r) }),
            )
            .build()
            .to_send_value()
    }))
}

/// Starts a server element's loop: listens on `url`'s address, emits
/// `signal` on the element's bin to decide on each client, posts what
/// happens there, and with port 0 gives `listening` the port picked (for the
/// bin's `location` to show). Errors are ready for `start()`.
pub fn start_server(
    element: &gst::Element,
    url: &RtmpUrl,
    options: ServerOptions,
    role: crate::net::server::Role,
    signal: &'static str,
    cat: gst::DebugCategory,
    listening: impl FnOnce(u16),
) -> Result<crate::net::server::Server, gst::ErrorMessage> {
    let bin = user_facing(element);
    let what = if signal == "accept-publisher" {
        "publishers"
    } else {
        "players"
    };
    check_open_files(&bin, options.max_clients, cat);
    let hooks = server_hooks(&bin, signal, cat);
    let server = crate::net::server::Server::start(options, role, hooks).map_err(|e| {
        gst::error_msg!(
            gst::ResourceError::OpenReadWrite,
            ("Could not listen for {}: {}", what, e)
        )
    })?;
    let addr = server.local_addr();
    gst::info!(cat, obj = element, "listening for {what} on {addr}");
    if url.port() != addr.port() {
        listening(addr.port());
    }
    Ok(server)
}

/// Descriptors a server needs beside its clients: the listener, the poll,
/// the pipeline's own.
const SPARE_FILES: u64 = 64;

/// Makes room for `max_clients` connections in the process's open-file
/// limit, as far as its hard limit allows; says so when it does not (the
/// connections past it would be refused by the system).
fn check_open_files(bin: &gst::Element, max_clients: usize, cat: gst::DebugCategory) {
    use crate::net::fdlimit::{OpenFiles, ensure_open_files};
    let needed = max_clients as u64 + SPARE_FILES;
    match ensure_open_files(needed) {
        Ok(OpenFiles::Enough) => {}
        Ok(OpenFiles::Raised { from, to }) => {
            gst::info!(cat, obj = bin, "open-file limit raised from {from} to {to}");
        }
        Ok(OpenFiles::TooLow { limit }) => gst::element_warning!(
            bin,
            gst::ResourceError::Settings,
            (
                "max-clients={} needs about {} open files, but this process may open {}: connections past that are refused. Raise the limit (ulimit -n, or LimitNOFILE= in a systemd unit)",
                max_clients,
                needed,
                limit
            )
        ),
        Err(e) => gst::debug!(cat, obj = bin, "could not read the open-file limit: {e}"),
    }
}

/// A `rtmp-connection-state` element message (connecting, connected,
/// reconnecting with attempt, reason and delay, given-up), posted from the
/// element's bin when it has one.
pub fn post_connection_state(
    element: &gst::Element,
    state: &str,
    attempt: u32,
    reason: &str,
    delay: Duration,
) {
    let src = user_facing(element);
    let s = gst::Structure::builder("rtmp-connection-state")
        .field("state", state)
        .field("attempt", attempt)
        .field("reason", reason)
        .field("delay-ms", delay.as_millis() as u64)
        .build();
    let _ = src.post_message(gst::message::Element::builder(s).src(&src).build());
}

/// The bin an element inside `rtmpsink`/`rtmpsrc` belongs to: where the
/// user connects signals and reads messages (the element itself outside one).
fn user_facing(element: &gst::Element) -> gst::Element {
    element
        .parent()
        .and_then(|p| p.downcast::<gst::Element>().ok())
        .unwrap_or_else(|| element.clone())
}

/// Enhanced RTMP FourCcInfoMask: the codec can be decoded.
const FOURCC_CAN_DECODE: f64 = 1.0;
/// FourCcInfoMask: the codec can be encoded (sent).
const FOURCC_CAN_ENCODE: f64 = 2.0;
/// FourCcInfoMask: the codec can be passed on without decoding.
const FOURCC_CAN_FORWARD: f64 = 4.0;
/// capsEx: follows NetConnection.Connect.ReconnectRequest.
pub const CAPS_EX_RECONNECT: u8 = 0x01;
/// capsEx: reads ModEx packet extensions.
pub const CAPS_EX_MODEX: u8 = 0x04;

/// What connect announces in Enhanced RTMP (`fourCcList`, the per-codec
/// info maps, `capsEx`): the codecs rtmpsink sends (publishing) or
/// rtmpsrc takes (playing), so that servers that filter or transcode by
/// capability send them.
pub fn enhanced_caps(
    mode: crate::rtmp::session::ClientMode,
    caps_ex: u8,
) -> crate::rtmp::session::EnhancedCaps {
    use crate::rtmp::amf0::Amf0Value;
    use crate::rtmp::session::ClientMode;
    let (video, audio, flags): (&[&str], &[&str], f64) = match mode {
        ClientMode::Publish => (
            &["avc1", "hvc1", "av01", "vp09"],
            &["mp4a", ".mp3", "Opus", "fLaC", "ac-3", "ec-3"],
            FOURCC_CAN_ENCODE,
        ),
        ClientMode::Play => (
            &["avc1", "hvc1", "av01", "vp09", "vp08"],
            &["mp4a", ".mp3", "Opus", "fLaC", "ac-3", "ec-3"],
            FOURCC_CAN_DECODE + FOURCC_CAN_FORWARD,
        ),
    };
    let map = |list: &[&str]| {
        list.iter()
            .map(|f| ((*f).to_owned(), Amf0Value::Number(flags)))
            .collect()
    };
    crate::rtmp::session::EnhancedCaps {
        fourcc_list: video.iter().chain(audio).map(|f| (*f).to_owned()).collect(),
        video_fourcc_info_map: map(video),
        audio_fourcc_info_map: map(audio),
        caps_ex: (caps_ex != 0).then_some(f64::from(caps_ex)),
    }
}

#[cfg(test)]
mod enhanced_caps_tests {
    use super::*;
    use crate::rtmp::amf0::Amf0Value;
    use crate::rtmp::session::ClientMode;

    #[test]
    fn each_side_announces_what_it_handles() {
        let publish = enhanced_caps(ClientMode::Publish, CAPS_EX_RECONNECT);
        assert_eq!(
            publish.fourcc_list,
            [
                "avc1", "hvc1", "av01", "vp09", "mp4a", ".mp3", "Opus", "fLaC", "ac-3", "ec-3"
            ]
        );
        assert_eq!(publish.caps_ex, Some(1.0));
        assert!(
            publish
                .video_fourcc_info_map
                .iter()
                .all(|(_, v)| *v == Amf0Value::Number(FOURCC_CAN_ENCODE))
        );
        let play = enhanced_caps(ClientMode::Play, CAPS_EX_MODEX);
        assert!(play.fourcc_list.iter().any(|f| f == "vp08"));
        assert_eq!(play.caps_ex, Some(4.0));
        assert_eq!(
            play.audio_fourcc_info_map[2],
            ("Opus".into(), Amf0Value::Number(5.0))
        );
        assert_eq!(enhanced_caps(ClientMode::Publish, 0).caps_ex, None);
    }
}

/// A media pad's kind and Enhanced RTMP track id, from its name: `video`
/// and `audio` are track 0, `video_N` and `audio_N` track N (0 to 255).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PadTrack {
    pub video: bool,
    pub track: u8,
}

impl PadTrack {
    pub fn from_name(name: &str) -> Option<PadTrack> {
        let (kind, number) = match name.split_once('_') {
            Some((k, n)) => (k, Some(n)),
            None => (name, None),
        };
        let video = match kind {
            "video" => true,
            "audio" => false,
            _ => return None,
        };
        let track = match number {
            None => 0,
            // Digits only: no sign, no spaces.
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok()?,
            Some(_) => return None,
        };
        Some(PadTrack { video, track })
    }

    /// The pad name: `video`/`audio` for track 0, else `video_N`/`audio_N`.
    pub fn name(self) -> String {
        let kind = if self.video { "video" } else { "audio" };
        match self.track {
            0 => kind.to_owned(),
            n => format!("{kind}_{n}"),
        }
    }
}

#[cfg(test)]
mod pad_track_tests {
    use super::PadTrack;

    #[test]
    fn names_and_tracks() {
        let t = |video, track| Some(PadTrack { video, track });
        assert_eq!(PadTrack::from_name("video"), t(true, 0));
        assert_eq!(PadTrack::from_name("audio"), t(false, 0));
        assert_eq!(PadTrack::from_name("video_0"), t(true, 0));
        assert_eq!(PadTrack::from_name("audio_7"), t(false, 7));
        assert_eq!(PadTrack::from_name("video_255"), t(true, 255));
        for bad in [
            "video_256",
            "video_",
            "video_-1",
            "video_+1",
            "sink",
            "audio_x",
            "src_1",
        ] {
            assert_eq!(PadTrack::from_name(bad), None, "{bad}");
        }
        assert_eq!(
            PadTrack {
                video: true,
                track: 0
            }
            .name(),
            "video"
        );
        assert_eq!(
            PadTrack {
                video: false,
                track: 3
            }
            .name(),
            "audio_3"
        );
    }
}
