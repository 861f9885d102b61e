// SPDX-License-Identifier: MPL-2.0
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::backlog::{Backlog, Body};
use crate::common::NotConnected;
use crate::handed::Handed;
use crate::mode::RtmpMode;
use crate::net::client::{Cancel, ClientConnection, ConnectOptions, Opening, is_cancelled};
use crate::net::server::{PeerKind, PlayOptions, RelayBatch, Role, Server};
use crate::policy::{Reconnect, ReconnectSettings, Step};
use crate::rtmp::flv::{FlvReader, SoundFormat, SpeexHeaders, TAG_HEADER_SIZE, tag_type};
use crate::rtmp::message::type_id;
use crate::rtmp::session::{ClientConfig, ClientEvent, ClientMode};
use crate::rtmp::url::RtmpUrl;
use crate::shared::SharedSettings;
use crate::sync::lock;

pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("rtmpsink", gst::DebugColorFlags::empty(), Some("RTMP sink"))
});

pub mod defaults {
    pub const CHUNK_SIZE: u32 = crate::rtmp::session::DEFAULT_OUT_CHUNK_SIZE;
    pub const FLASH_VERSION: &str = "FMLE/3.0 (compatible; GStreamer rtmpsink)";
    pub const MAX_CLIENTS: u32 = 256;
    pub const CLIENT_QUEUE_TIME_MS: u32 = 5000;
    pub const CLIENT_QUEUE_BYTES: u32 = 16 << 20;
    pub const BACKLOG_MS: u32 = 10_000;
}

/// rtmp2sink's stop commands, with its nicks and values, so that a
/// launch line or code written for it sets the same.
#[glib::flags(name = "GstRtmpSinkStopCommands")]
pub enum StopCommands {
    #[flags_value(name = "Send none: just close the connection", nick = "none")]
    NONE = 0,
    #[flags_value(name = "Send FCUnpublish", nick = "fcunpublish")]
    FC_UNPUBLISH = 1 << 0,
    #[flags_value(name = "Send closeStream", nick = "closestream")]
    CLOSE_STREAM = 1 << 1,
    #[flags_value(name = "Send deleteStream", nick = "deletestream")]
    DELETE_STREAM = 1 << 2,
}

impl StopCommands {
    /// rtmp2sink's default: FCUnpublish and deleteStream.
    pub fn rtmp2_default() -> Self {
        StopCommands::FC_UNPUBLISH | StopCommands::DELETE_STREAM
    }

    /// The core's form.
    fn core(self) -> crate::rtmp::session::StopCommands {
        crate::rtmp::session::StopCommands {
            fc_unpublish: self.contains(StopCommands::FC_UNPUBLISH),
            close_stream: self.contains(StopCommands::CLOSE_STREAM),
            delete_stream: self.contains(StopCommands::DELETE_STREAM),
        }
    }
}

/// What to do with an Enhanced RTMP codec the server did not announce in
/// its connect answer (`fourCcList`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstRtmpSinkUnannouncedCodec")]
pub enum UnannouncedCodec {
    #[default]
    #[enum_value(
        name = "Send it anyway: servers such as nginx-rtmp announce nothing and relay it",
        nick = "send"
    )]
    Send,
    #[enum_value(name = "Fail with an error that names the codec", nick = "fail")]
    Fail,
}

/// The FourCC of an Enhanced RTMP audio or video tag body (legacy tags,
/// and tags whose codec comes per track, have none).
fn ex_fourcc(kind: u8, body: &[u8]) -> Option<[u8; 4]> {
    let b0 = *body.first()?;
    let (enhanced, multitrack) = match kind {
        tag_type::VIDEO => (b0 & 0x80 != 0, b0 & 0x0F == 6),
        tag_type::AUDIO => (b0 >> 4 == 9, b0 & 0x0F == 5),
        _ => (false, false),
    };
    let at = match (enhanced, multitrack) {
        (false, _) => return None,
        // One codec for all tracks, unless the type says each has its own.
        (true, true) if body.get(1)? >> 4 == 2 => return None,
        (true, true) => 2,
        (true, false) => 1,
    };
    body.get(at..at + 4)?.try_into().ok()
}

/// The element's role in the shared properties' blurbs and defaults.
pub const ROLE: crate::shared::Role = crate::shared::Role {
    client_verb: "publish to",
    server_verb: "serve players such as ffplay",
    flash_version: defaults::FLASH_VERSION,
    timeout_blurb: "a write that makes no progress and data the server does not acknowledge (a dead route); server mode: a client's handshake, connect and play, a player that reads nothing, and players draining at EOS",
    latency_span: "from entering a video/audio pad until its bytes are in the socket; server mode: in the players' queues",
};

/// What the `rtmpsink` bin's properties set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The properties rtmpsrc has too.
    pub shared: SharedSettings,
    pub chunk_size: u32,
    pub stop_commands: StopCommands,
    pub max_clients: u32,
    pub client_queue_time_ms: u32,
    pub client_queue_bytes: u32,
    pub gop_cache: bool,
    pub backlog_ms: u32,
    pub unannounced_codec: UnannouncedCodec,
    pub enhanced_to_legacy: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shared: SharedSettings::new(&ROLE),
            chunk_size: defaults::CHUNK_SIZE,
            stop_commands: StopCommands::rtmp2_default(),
            max_clients: defaults::MAX_CLIENTS,
            client_queue_time_ms: defaults::CLIENT_QUEUE_TIME_MS,
            client_queue_bytes: defaults::CLIENT_QUEUE_BYTES,
            gop_cache: true,
            backlog_ms: defaults::BACKLOG_MS,
            unannounced_codec: UnannouncedCodec::Send,
            enhanced_to_legacy: false,
        }
    }
}

enum Conn {
    Idle,
    Connecting(Opening),
    Connected(Box<ClientConnection>),
    /// The connection was lost: a new one is being made (after a delay).
    Reconnecting(Attempt),
    /// Server mode: players come and go.
    Serving(Arc<Server>),
    Failed,
}

/// A reconnection attempt under way.
struct Attempt {
    attempt: u32,
    /// Its wait, made again if a flush cancels it.
    delay: Duration,
    reason: String,
    /// Upstream is live: buffers go to the backlog meanwhile rather than
    /// waiting (a file waits, so nothing is dropped).
    live: bool,
    handle: Opening,
}

/// A move the server asked for (Enhanced RTMP reconnect request): the new
/// connection is made in the background while the stream goes on over the
/// old one, and taken at the next keyframe.
struct Switch {
    url: RtmpUrl,
    tc_url: String,
    handle: Opening,
}

struct State {
    conn: Conn,
    url: Option<RtmpUrl>,
    /// The tcUrl a server's reconnect request gave, for every connection
    /// from then on (instead of the `tc-url` setting or the location's).
    tc_url: Option<String>,
    switch: Option<Switch>,
    flv: FlvReader,
    /// flvmux's Speex header packets, left out (see `send_tag`).
    speex: SpeexHeaders,
    started: Option<Instant>,
    messages: u64,
    video: u64,
    audio: u64,
    last_stats: crate::rtmp::session::ConnectionStats,
    backlog: Backlog,
    /// Reconnecting is on: every message is kept in the backlog (read from
    /// the settings once, at start, not per message).
    keep_backlog: bool,
    /// `unannounced-codec=fail` (read once, at start).
    fail_unannounced: bool,
    /// Bytes the lost connection's server had acknowledged.
    acked: Option<u64>,
    /// The server's last acknowledgement (mod 2^32) the backlog was
    /// trimmed by.
    seen_ack: u32,
    reconnects: u64,
    /// Messages dropped from the backlog in the current outage, reported
    /// once it is over.
    outage_dropped: u64,
    /// When the current connection started publishing.
    connected_at: Option<Instant>,
    /// When to reconnect and when to give up (attempts count from a loss).
    reconnect: Reconnect,
    /// Server mode: messages of this render for the players, handed to the
    /// server's loop together by `flush`.
    staged: RelayBatch,
}

impl Default for State {
    fn default() -> Self {
        State {
            conn: Conn::Idle,
            url: None,
            tc_url: None,
            switch: None,
            flv: FlvReader::new(16 << 20),
            speex: SpeexHeaders::default(),
            started: None,
            messages: 0,
            video: 0,
            audio: 0,
            last_stats: Default::default(),
            backlog: Backlog::new(0),
            keep_backlog: false,
            fail_unannounced: false,
            acked: None,
            seen_ack: 0,
            reconnects: 0,
            outage_dropped: 0,
            connected_at: None,
            reconnect: Reconnect::new(ReconnectSettings {
                attempts: 0,
                first_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
            }),
            staged: RelayBatch::default(),
        }
    }
}

#[derive(Default)]
pub struct RtmpSinkConn {
    /// What the bin handed over when this element started.
    pub(crate) handed: Handed<Settings>,
    state: Mutex<State>,
    /// Reached by `unlock` without taking the state lock.
    cancel: Cancel,
    /// `peak-kbps`: changed while playing, applied at the next flush.
    peak_kbps: AtomicU32,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSinkConn {
    const NAME: &'static str = "GstRtmpSinkConn";
    type Type = super::RtmpSinkConn;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for RtmpSinkConn {}
impl GstObjectImpl for RtmpSinkConn {}

impl ElementImpl for RtmpSinkConn {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![crate::common::flv_pad_template(
                "sink",
                gst::PadDirection::Sink,
            )]
        });
        T.as_ref()
    }
}

/// A backlog replay is written out each time this much is encoded.
const REPLAY_SLICE: usize = 256 << 10;

/// A connection lost sooner than this after it started publishing was not
/// really accepted (see `connection_lost`).
const SHORT_LIVED: Duration = Duration::from_secs(1);

/// `@setDataFrame` as AMF0, put before an `onMetaData` script tag body.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// Encodes one FLV tag body as the message a publisher sends (metadata as
/// `@setDataFrame onMetaData`), not yet written. The connection keeps
/// references to the body's big pieces until they are written.
fn queue_on(c: &ClientConnection, kind: u8, ts: u32, body: &Body) -> crate::rtmp::Result<()> {
    let parts = body.pieces();
    let type_id = match kind {
        tag_type::AUDIO => type_id::AUDIO,
        tag_type::VIDEO => type_id::VIDEO,
        tag_type::SCRIPT => {
            let is_meta = parts
                .first()
                .is_some_and(|p| p.starts_with(b"\x02\x00\x0aonMetaData"));
            if is_meta {
                let mut v = Vec::with_capacity(parts.len() + 1);
                v.push(Bytes::from_static(SET_DATA_FRAME));
                v.extend_from_slice(parts);
                return c.queue_media_shared(type_id::DATA_AMF0, ts, &v);
            }
            type_id::DATA_AMF0
        }
        _ => return Ok(()),
    };
    c.queue_media_shared(type_id, ts, parts)
}

impl RtmpSinkConn {
    /// The settings this run goes by.
    fn settings(&self) -> Arc<Settings> {
        self.handed.get()
    }

    /// `peak-kbps` (0: no cap): a connection takes it at its next flush,
    /// a server's players at once.
    pub fn set_peak_kbps(&self, kbps: u32) {
        self.peak_kbps.store(kbps, Ordering::Relaxed);
        if self.settings().shared.mode == RtmpMode::Server
            && let Conn::Serving(server) = &lock(&self.state).conn
        {
            server.set_pacing(kbps);
        }
    }

    pub fn peak_kbps(&self) -> u32 {
        self.peak_kbps.load(Ordering::Relaxed)
    }

    /// The pacing cap on the connection's socket in bytes per second
    /// (`u32::MAX`: none), for `stats`.
    #[cfg(target_os = "linux")]
    fn pacing_rate(st: &State) -> Option<u32> {
        match &st.conn {
            Conn::Connected(c) => c.pacing_rate(),
            _ => None,
        }
    }

    pub fn stats(&self) -> gst::Structure {
        let st = lock(&self.state);
        let mut server = None;
        let (net, state) = match &st.conn {
            Conn::Idle => (st.last_stats, "stopped"),
            Conn::Connecting(_) => (st.last_stats, "connecting"),
            Conn::Reconnecting(_) => (st.last_stats, "reconnecting"),
            Conn::Connected(c) => (c.stats(), "publishing"),
            Conn::Serving(s) => {
                let stats = s.stats();
                let mut net = st.last_stats;
                let (bytes_in, bytes_out) = stats.bytes();
                net.bytes_in += bytes_in;
                net.bytes_out += bytes_out;
                server = Some(stats);
                (net, "serving")
            }
            Conn::Failed => (st.last_stats, "failed"),
        };
        let secs = st.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        let bitrate = if secs > 0.0 {
            (net.bytes_out as f64 * 8.0 / secs) as u64
        } else {
            0
        };
        let dropped: u64 = server
            .as_ref()
            .map_or(0, |s| s.peers.iter().map(|p| p.dropped).sum());
        let mut b = gst::Structure::builder("application/x-rtmp-sink-stats")
            .field("connection-state", state)
            .field("bytes-out", net.bytes_out)
            .field("bytes-in", net.bytes_in)
            .field("messages-out", st.messages)
            .field("video-frames", st.video)
            .field("audio-frames", st.audio)
            .field("dropped", dropped)
            .field("bitrate", bitrate)
            .field("peer-acknowledged", u64::from(net.peer_acked))
            .field("reconnects", st.reconnects)
            .field("backlog-messages", st.backlog.len() as u64)
            .field("backlog-bytes", st.backlog.bytes() as u64)
            .field("backlog-dropped", st.backlog.dropped);
        let client = match &st.conn {
            Conn::Connected(c) => Some(c.stats()),
            _ => None,
        };
        b = crate::common::rtmp2_stats(b, client.as_ref());
        if let Conn::Connected(c) = &st.conn {
            b = b.field("tls", c.tls_info().unwrap_or("")).field(
                "server-codecs",
                c.server_codecs().unwrap_or_default().join(","),
            );
        }
        // What the kernel paces the socket at (peak-kbps), in bytes/s; 0: no cap.
        #[cfg(target_os = "linux")]
        if let Some(rate) = Self::pacing_rate(&st) {
            b = b.field(
                "pacing-rate",
                if rate == u32::MAX { 0 } else { u64::from(rate) },
            );
        }
        if let Some(s) = server {
            let players = s
                .peers
                .iter()
                .filter(|p| p.kind == PeerKind::Player)
                .count();
            b = b
                .field("players", players as u32)
                .field("players-served", s.started)
                .field("connections-accepted", s.accepted)
                .field("connections-rejected", s.rejected)
                .field("gop-cache-bytes", s.gop_bytes)
                .field("clients", crate::common::peer_stats_array(&s));
        }
        b.build()
    }

    /// Server mode: asks the players to reconnect (see the bin's
    /// `request-reconnect` signal). Returns how many clients were asked.
    pub fn request_reconnect(&self, tc_url: Option<String>, why: String) -> u32 {
        match &lock(&self.state).conn {
            Conn::Serving(s) => s.request_reconnect(tc_url, why) as u32,
            _ => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "request-reconnect: not serving (mode=server)"
                );
                0
            }
        }
    }

    /// The connect parameters for `url`; `tc_url` as a reconnect request
    /// gave it, else the setting's, else the location's.
    fn client_config(&self, url: &RtmpUrl, tc_url: Option<&str>) -> ConnectOptions {
        let s = self.settings();
        let mut c = ClientConfig::new(ClientMode::Publish, url);
        s.shared.apply_to(&mut c, tc_url);
        // Enhanced RTMP: the codecs we send; with reconnecting on, we also
        // follow NetConnection.Connect.ReconnectRequest.
        let caps_ex = if s.shared.reconnect.enabled() {
            crate::common::CAPS_EX_RECONNECT
        } else {
            0
        };
        c.enhanced = Some(crate::common::enhanced_caps(ClientMode::Publish, caps_ex));
        c.chunk_size = s.chunk_size;
        s.shared.security.connect_options(c, url)
    }

    /// Waits for the connection to be up; errors are posted here.
    fn ensure_connected(&self, st: &mut State) -> Result<(), gst::FlowError> {
        self.wait_connected(st)
            .map_err(|n| n.post(self.obj().upcast_ref()))
    }

    /// Waits for the connection to be up; a connection that could not be
    /// made is the caller's to report.
    fn wait_connected(&self, st: &mut State) -> Result<(), NotConnected> {
        if let Conn::Connecting(_) = st.conn {
            let Conn::Connecting(h) = std::mem::replace(&mut st.conn, Conn::Failed) else {
                unreachable!()
            };
            let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
            match h.wait() {
                Ok(c) => {
                    gst::info!(CAT, imp = self, "publishing to {url}");
                    st.conn = Conn::Connected(Box::new(c));
                    st.connected_at = Some(Instant::now());
                }
                Err(e) if is_cancelled(&e) => {
                    st.conn = Conn::Idle;
                    return Err(NotConnected::Flow(gst::FlowError::Flushing));
                }
                Err(e) => {
                    return Err(NotConnected::Failed(gst::error_msg!(
                        crate::common::open_error(&e, gst::ResourceError::OpenWrite),
                        ("Could not publish to {}: {}", url, e)
                    )));
                }
            }
        }
        match st.conn {
            Conn::Connected(_) | Conn::Serving(_) => Ok(()),
            Conn::Idle => {
                // After a flush that cancelled the connect: start again.
                self.spawn_connect(st);
                self.wait_connected(st)
            }
            Conn::Reconnecting(_) => self.poll_reconnect(st, false).map_err(NotConnected::Flow),
            Conn::Failed | Conn::Connecting(_) => Err(NotConnected::Flow(gst::FlowError::Error)),
        }
    }

    /// Listens on the location's address for players (server mode). With
    /// port 0 the location then shows the port picked.
    fn start_server(&self, url: &RtmpUrl) -> Result<Server, gst::ErrorMessage> {
        let (options, role) = {
            let s = self.settings();
            let options = crate::common::server_options(
                url,
                &[],
                s.max_clients,
                s.shared.timeout,
                s.chunk_size,
                &s.shared.security,
            )?;
            let role = Role::Play(PlayOptions {
                queue_time: Duration::from_millis(u64::from(s.client_queue_time_ms)),
                queue_bytes: s.client_queue_bytes as usize,
                gop_cache: s.gop_cache,
                legacy_players_get_legacy_only: !s.enhanced_to_legacy,
                pacing_kbps: self.peak_kbps(),
            });
            (options, role)
        };
        crate::common::start_server(
            self.obj().upcast_ref(),
            url,
            options,
            role,
            "accept-player",
            *CAT,
            |l| self.handed.listening(l),
        )
    }

    fn spawn_connect(&self, st: &mut State) {
        let Some(url) = st.url.clone() else { return };
        let config = self.client_config(&url, st.tc_url.as_deref());
        let h = Opening::start("rtmpsink-connect", url, config, &self.cancel, None);
        st.conn = Conn::Connecting(h);
        st.started = Some(Instant::now());
    }

    /// One FLV tag body (in one or more pieces) to the server or players.
    fn send(&self, st: &mut State, kind: u8, ts: u32, body: Body) -> Result<(), gst::FlowError> {
        match &st.conn {
            Conn::Connected(c) if st.fail_unannounced => {
                let first = body.pieces().first().map(|b| &b[..]);
                self.check_announced(c, kind, first.unwrap_or_default())?
            }
            Conn::Connected(_) | Conn::Reconnecting(_) => {}
            Conn::Serving(server) => {
                // Players get metadata as onMetaData, as it was written.
                let type_id = match kind {
                    tag_type::AUDIO => type_id::AUDIO,
                    tag_type::VIDEO => type_id::VIDEO,
                    tag_type::SCRIPT => type_id::DATA_AMF0,
                    _ => return Ok(()),
                };
                return match server.stage(&mut st.staged, type_id, ts, &body.slices()) {
                    Ok(()) => {
                        self.count(st, kind);
                        Ok(())
                    }
                    Err(e) => Err(self.lost(st, e)),
                };
            }
            _ => return Err(gst::FlowError::Error),
        }
        if st.keep_backlog {
            // Kept by reference, in its pieces: no copy.
            let dropped = st.backlog.push(kind, ts, body.clone());
            st.outage_dropped += dropped;
            self.poll_server_requests(st);
            if st.backlog.newest_is_key()
                && st.switch.as_ref().is_some_and(|s| s.handle.is_finished())
            {
                // This keyframe (and what follows) goes to the new server.
                self.count(st, kind);
                return self.switch_now(st);
            }
        }
        self.count(st, kind);
        let Conn::Connected(c) = &st.conn else {
            // Reconnecting: the backlog has it.
            return Ok(());
        };
        match queue_on(c, kind, ts, &body) {
            Ok(()) => Ok(()),
            Err(e) => self.connection_lost(st, e),
        }
    }

    /// With `unannounced-codec=fail`: an Enhanced RTMP codec the server
    /// did not announce ends the stream with an error that names it.
    fn check_announced(
        &self,
        c: &ClientConnection,
        kind: u8,
        body: &[u8],
    ) -> Result<(), gst::FlowError> {
        let Some(fourcc) = ex_fourcc(kind, body) else {
            return Ok(());
        };
        let name = String::from_utf8_lossy(&fourcc);
        let announced = c.server_codecs().unwrap_or_default();
        if announced.iter().any(|f| *f == name || f == "*") {
            return Ok(());
        }
        let said = if announced.is_empty() {
            "no codecs".to_owned()
        } else {
            announced.join(", ")
        };
        gst::element_imp_error!(
            self,
            gst::StreamError::CodecNotFound,
            (
                "{} did not announce {} in its connect answer (it announced {}): set unannounced-codec=send to send it anyway",
                c.url().redacted(),
                name,
                said
            )
        );
        Err(gst::FlowError::Error)
    }

    fn count(&self, st: &mut State, kind: u8) {
        st.messages += 1;
        match kind {
            tag_type::AUDIO => st.audio += 1,
            tag_type::VIDEO => st.video += 1,
            _ => {}
        }
    }

    /// Reads what the server said: a reconnect request (Enhanced RTMP)
    /// starts a new connection in the background, to the server it names.
    fn poll_server_requests(&self, st: &mut State) {
        let Conn::Connected(c) = &st.conn else { return };
        let mut request = None;
        while let Some(ev) = c.poll_event() {
            if let ClientEvent::ReconnectRequest {
                tc_url,
                description,
            } = ev
            {
                request = Some((tc_url, description));
            }
        }
        let Some((tc_url, description)) = request else {
            return;
        };
        if st.switch.is_some() {
            return;
        }
        let Some(current) = st.url.clone() else {
            return;
        };
        let (url, tc_url) = match tc_url.as_deref().map(|t| current.redirected(t)) {
            None => (
                current.clone(),
                st.tc_url.clone().unwrap_or(current.tc_url()),
            ),
            Some(Ok(u)) => {
                let t = u.tc_url();
                (u, t)
            }
            Some(Err(e)) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "The server asked to reconnect to {}, which is not a usable RTMP URL: {}",
                        tc_url.unwrap_or_default(),
                        e
                    )
                );
                return;
            }
        };
        let reason = format!(
            "the server asked to reconnect{}{}",
            if url != current {
                format!(" to {}", url.redacted())
            } else {
                String::new()
            },
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            }
        );
        gst::info!(CAT, imp = self, "{reason}");
        self.post_state("reconnecting", 1, &reason, Duration::ZERO);
        let config = self.client_config(&url, Some(&tc_url));
        let handle = Opening::start("rtmpsink-switch", url.clone(), config, &self.cancel, None);
        st.switch = Some(Switch {
            url,
            tc_url,
            handle,
        });
    }

    /// At a keyframe, with the new connection made: the headers and the
    /// keyframe go to the new server, and the old connection is ended in the
    /// background. If the new one failed, the stream stays where it was.
    fn switch_now(&self, st: &mut State) -> Result<(), gst::FlowError> {
        let sw = st.switch.take().expect("a switch");
        let new = match sw.handle.wait() {
            Ok(c) => c,
            Err(e) => {
                if is_cancelled(&e) {
                    return Err(gst::FlowError::Flushing);
                }
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "Could not reconnect to {} as the server asked ({}): staying on the current connection",
                        sw.url.redacted(),
                        e
                    )
                );
                self.post_state("connected", 1, &e.to_string(), Duration::ZERO);
                return self.send_newest(st);
            }
        };
        // Headers and this keyframe: nothing the old server has had.
        let items = st.backlog.move_at_newest_key();
        let mut result = Ok(());
        for i in &items {
            if let Err(e) = queue_on(&new, i.kind, i.timestamp, &i.body) {
                result = Err(e);
                break;
            }
        }
        let old = std::mem::replace(&mut st.conn, Conn::Connected(Box::new(new)));
        if let Conn::Connected(old) = old {
            let cmds = self.settings().stop_commands;
            let cancel = self.cancel.clone();
            std::thread::Builder::new()
                .name("rtmpsink-leave".into())
                .spawn(move || {
                    old.finish(cmds.core(), &cancel).ok();
                })
                .expect("spawn a thread");
        }
        gst::info!(
            CAT,
            imp = self,
            "moved to {} as the server asked",
            sw.url.redacted()
        );
        st.url = Some(sw.url);
        st.tc_url = Some(sw.tc_url);
        st.backlog.reset_written();
        st.seen_ack = 0;
        st.reconnects += 1;
        st.connected_at = Some(Instant::now());
        self.post_state("connected", 1, "", Duration::ZERO);
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.connection_lost(st, e),
        }
    }

    /// Queues the newest backlog message on the current connection (what
    /// `send` does when no switch happens).
    fn send_newest(&self, st: &mut State) -> Result<(), gst::FlowError> {
        let Conn::Connected(c) = &st.conn else {
            return Ok(());
        };
        let Some(i) = st.backlog.newest() else {
            return Ok(());
        };
        match queue_on(c, i.kind, i.timestamp, &i.body) {
            Ok(()) => Ok(()),
            Err(e) => self.connection_lost(st, e),
        }
    }

    /// Writes out what `send` encoded.
    fn flush(&self, st: &mut State) -> Result<(), gst::FlowError> {
        let c = match &st.conn {
            Conn::Connected(c) => c,
            // The server's loop writes to players itself.
            Conn::Serving(server) => {
                return match server.hand_over(&mut st.staged, &self.cancel) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Flushing or failed: none of it is to go out.
                        st.staged = RelayBatch::default();
                        Err(self.lost(st, e))
                    }
                };
            }
            Conn::Reconnecting(_) => return Ok(()),
            _ => return Err(gst::FlowError::Error),
        };
        if let Err(e) = c.pace(self.peak_kbps.load(Ordering::Relaxed)) {
            gst::warning!(CAT, imp = self, "peak-kbps not applied: {e}");
        }
        match c.flush(&self.cancel) {
            Ok(()) => {
                if st.keep_backlog {
                    let net = c.stats();
                    st.backlog.written(net.bytes_out);
                    if net.peer_acked != st.seen_ack {
                        st.seen_ack = net.peer_acked;
                        if let Some(acked) = net.peer_acked_total() {
                            st.backlog.confirmed(acked);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => self.connection_lost(st, e),
        }
    }

    /// A send or write failed: unless reconnecting is off (or it was a
    /// cancel), a new connection is started and the stream goes on into
    /// the backlog meanwhile.
    fn connection_lost(&self, st: &mut State, e: crate::rtmp::Error) -> Result<(), gst::FlowError> {
        if is_cancelled(&e) || !st.reconnect.settings().enabled() {
            return Err(self.lost(st, e));
        }
        // A connection the server closes right after accepting the publish
        // is a refusal in all but name (nginx's `deny publish` does that):
        // the first one fails the stream; a new one counts as a failed
        // attempt, so the backoff keeps growing.
        let short = st.connected_at.is_some_and(|t| t.elapsed() < SHORT_LIVED);
        if short && st.reconnect.attempts() == 0 && st.reconnects == 0 {
            return Err(self.lost(st, e));
        }
        let Conn::Connected(c) = std::mem::replace(&mut st.conn, Conn::Failed) else {
            return Err(self.lost(st, e));
        };
        let net = c.stats();
        st.last_stats = net;
        // The acknowledged count is the low 32 bits of what the server got.
        st.acked = net.peer_acked_total();
        st.seen_ack = 0;
        drop(c);
        let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        gst::warning!(
            CAT,
            imp = self,
            "connection to {url} lost ({e}): reconnecting"
        );
        let step = if short {
            st.reconnect.on_attempt_failed(&e, Instant::now())
        } else {
            st.outage_dropped = 0;
            st.reconnect.on_lost(&e, Instant::now())
        };
        self.next_attempt(st, step, e.to_string(), self.upstream_is_live())
    }

    fn upstream_is_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        let obj = self.obj();
        let pad = obj.static_pad("sink").expect("sink pad");
        pad.peer_query(&mut q) && q.result().0
    }

    /// Does what the reconnect policy said: an attempt after its wait, or
    /// the end of the stream with why.
    fn next_attempt(
        &self,
        st: &mut State,
        step: Step,
        reason: String,
        live: bool,
    ) -> Result<(), gst::FlowError> {
        match step {
            Step::Retry { attempt, delay, .. } => {
                self.start_attempt(st, attempt, delay, reason, live);
                Ok(())
            }
            Step::GiveUp {
                attempts,
                reason: last,
                refused,
            } => {
                let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
                self.post_state("given-up", attempts, &last, Duration::ZERO);
                if refused {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::NotAuthorized,
                        (
                            "Connection to {} lost ({}), and reconnecting was refused: {}",
                            url,
                            reason,
                            last
                        )
                    );
                } else {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        (
                            "Connection to {} lost ({}) and {} reconnection attempts failed, the last with: {}",
                            url,
                            reason,
                            attempts,
                            last
                        )
                    );
                }
                st.conn = Conn::Failed;
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Starts reconnection attempt `attempt` after `delay`.
    fn start_attempt(
        &self,
        st: &mut State,
        attempt: u32,
        delay: Duration,
        reason: String,
        live: bool,
    ) {
        let Some(url) = st.url.clone() else { return };
        self.post_state("reconnecting", attempt, &reason, delay);
        let config = self.client_config(&url, st.tc_url.as_deref());
        let at = Instant::now() + delay;
        let handle = Opening::start("rtmpsink-reconnect", url, config, &self.cancel, Some(at));
        st.conn = Conn::Reconnecting(Attempt {
            attempt,
            delay,
            reason,
            live,
            handle,
        });
    }

    /// Takes the outcome of a reconnection attempt once there is one (or
    /// waits for it with `block`, or when upstream is not live): on success
    /// the new connection gets the headers and the backlog; on failure the
    /// next attempt starts, or, attempts used up, the element fails.
    fn poll_reconnect(&self, st: &mut State, block: bool) -> Result<(), gst::FlowError> {
        loop {
            let Conn::Reconnecting(r) = &st.conn else {
                return match st.conn {
                    Conn::Failed => Err(gst::FlowError::Error),
                    _ => Ok(()),
                };
            };
            if !block && r.live && !r.handle.is_finished() {
                return Ok(());
            }
            let Conn::Reconnecting(r) = std::mem::replace(&mut st.conn, Conn::Failed) else {
                unreachable!()
            };
            match r.handle.wait() {
                Ok(c) => return self.resume(st, c, r.attempt),
                Err(e) if is_cancelled(&e) => {
                    // A flush or stop: the same attempt again afterwards.
                    self.start_attempt(st, r.attempt, r.delay, r.reason, r.live);
                    return Err(gst::FlowError::Flushing);
                }
                Err(e) => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "reconnection attempt {} failed: {e}",
                        r.attempt
                    );
                    let step = st.reconnect.on_attempt_failed(&e, Instant::now());
                    self.next_attempt(st, step, r.reason, r.live)?;
                }
            }
        }
    }

    /// A reconnection attempt succeeded: the new connection gets the
    /// headers and the backlog from the first message the old server had
    /// not acknowledged, written out in slices.
    fn resume(
        &self,
        st: &mut State,
        c: ClientConnection,
        attempt: u32,
    ) -> Result<(), gst::FlowError> {
        st.reconnects += 1;
        self.post_state("connected", attempt, "", Duration::ZERO);
        if st.outage_dropped > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "{} messages fell out of the backlog while reconnecting (backlog is {} ms)",
                    st.outage_dropped,
                    self.settings().backlog_ms
                )
            );
        }
        let items = st.backlog.replay(st.acked.take());
        st.backlog.reset_written();
        gst::info!(
            CAT,
            imp = self,
            "reconnected after {} attempt(s): re-sending {} messages",
            attempt,
            items.len()
        );
        // Written out in slices as encoded: the chunked copy of
        // a whole backlog would double the memory it takes.
        let mut result = Ok(());
        let mut queued = 0;
        for i in &items {
            result = queue_on(&c, i.kind, i.timestamp, &i.body);
            queued += i.body.len();
            if result.is_ok() && queued >= REPLAY_SLICE {
                queued = 0;
                result = c.flush(&self.cancel);
            }
            if result.is_err() {
                break;
            }
        }
        st.conn = Conn::Connected(Box::new(c));
        st.connected_at = Some(Instant::now());
        if let Err(e) = result {
            return self.connection_lost(st, e);
        }
        self.flush(st)
    }

    fn post_state(&self, state: &str, attempt: u32, reason: &str, delay: Duration) {
        crate::common::post_connection_state(
            self.obj().upcast_ref(),
            state,
            attempt,
            reason,
            delay,
        );
    }

    /// Turns a failed send or write into the flow return, posting an error
    /// unless it was a cancel (flush or stop).
    fn lost(&self, st: &mut State, e: crate::rtmp::Error) -> gst::FlowError {
        if is_cancelled(&e) {
            return gst::FlowError::Flushing;
        }
        let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        gst::element_imp_error!(
            self,
            gst::ResourceError::Write,
            ("Connection to {} lost: {}", url, e)
        );
        if let Conn::Connected(c) = &st.conn {
            st.last_stats = c.stats();
        }
        st.conn = Conn::Failed;
        gst::FlowError::Error
    }

    /// Encodes the tags of one buffer (not yet written).
    fn render_buffer(&self, st: &mut State, buffer: &gst::BufferRef) -> Result<(), gst::FlowError> {
        if let Some(r) = self.render_one_tag(st, buffer) {
            return r;
        }
        // Anything else (the FLV header, tags split or joined across
        // buffers, a file read in blocks) goes through the FLV reader.
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        st.flv.feed(&map);
        loop {
            match st.flv.poll_tag() {
                Ok(Some(t)) => {
                    self.send_tag(st, t.tag_type, t.timestamp, Body::new(vec![t.data]))?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Demux,
                        ("Invalid FLV input: {}", e)
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }

    /// One tag of the input, sent unless it is one of the Speex header
    /// packets flvmux writes as audio tags (FLV has no place for them, and
    /// players decode them as noise): they are left out, as the `audio`
    /// pad leaves speexenc's out.
    fn send_tag(
        &self,
        st: &mut State,
        kind: u8,
        ts: u32,
        body: Body,
    ) -> Result<(), gst::FlowError> {
        // One byte looked at per audio tag, none per video tag; a Speex
        // tag's first bytes (or, right after a header, all of it) only for
        // Speex.
        let speex = |b: &Bytes| b.first().map(|&f| f >> 4 == SoundFormat::Speex as u8);
        if kind == tag_type::AUDIO && body.pieces().iter().find_map(speex) == Some(true) {
            let (head, n) = body.head();
            let header = match st.speex.wants_whole() {
                true => st.speex.is_header(&body.pieces().concat()),
                false => st.speex.is_header(&head[..n]),
            };
            if header {
                gst::debug!(CAT, imp = self, "Speex header packet at {} ms left out", ts);
                return Ok(());
            }
        }
        self.send(st, kind, ts, body)
    }

    /// One buffer holding exactly one whole tag, with nothing left over
    /// from earlier buffers: its memories go out as they are.
    fn render_one_tag(
        &self,
        st: &mut State,
        buffer: &gst::BufferRef,
    ) -> Option<Result<(), gst::FlowError>> {
        if st.flv.header().is_none()
            || st.flv.buffered() != 0
            || buffer.size() < TAG_HEADER_SIZE + 4
        {
            return None;
        }
        let mut h = [0u8; TAG_HEADER_SIZE];
        buffer.copy_to_slice(0, &mut h).ok()?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        if buffer.size() != TAG_HEADER_SIZE + size + 4 || h[0] & 0x20 != 0 {
            return None;
        }
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let parts = tag_body(buffer, size)?;
        Some(self.send_tag(st, h[0] & 0x1F, ts, Body::new(parts)))
    }
}

/// The body of the one tag `buffer` holds, the `size` bytes after its
/// header: pieces of the memories it is in, mapped and shared (no copy) so
/// that the backlog can keep them too. The memories of the header alone
/// and of the previous-tag-size after the body are not mapped at all.
/// None if a memory cannot be mapped.
fn tag_body(buffer: &gst::BufferRef, size: usize) -> Option<Vec<Bytes>> {
    let (mut skip, mut want) = (TAG_HEADER_SIZE, size);
    let mut parts = Vec::with_capacity(buffer.n_memory());
    for m in buffer.iter_memories_owned() {
        if want == 0 {
            break;
        }
        let len = m.size();
        if skip >= len {
            skip -= len;
            continue;
        }
        let m = Bytes::from_owner(m.into_mapped_memory_readable().ok()?);
        let n = want.min(len - skip);
        parts.push(m.slice(skip..skip + n));
        (skip, want) = (0, want - n);
    }
    Some(parts)
}

impl BaseSinkImpl for RtmpSinkConn {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mode = self.settings().shared.mode;
        let url = self.settings().shared.target.url(mode)?;
        self.cancel.reset();
        let mut st = lock(&self.state);
        *st = State::default();
        if mode == RtmpMode::Server {
            let server = self.start_server(&url)?;
            st.url = Some(url);
            st.started = Some(Instant::now());
            st.conn = Conn::Serving(Arc::new(server));
            return Ok(());
        }
        st.url = Some(url);
        {
            let s = self.settings();
            st.backlog = Backlog::new(s.backlog_ms);
            st.keep_backlog = s.shared.reconnect.enabled();
            st.fail_unannounced = s.unannounced_codec == UnannouncedCodec::Fail;
            st.reconnect = Reconnect::new(s.shared.reconnect);
        }
        self.spawn_connect(&mut st);
        if !self.settings().shared.async_connect {
            // The state change fails with the reason (posted once, by the
            // base class).
            self.wait_connected(&mut st)
                .map_err(|n| n.into_message(gst::ResourceError::OpenWrite))?;
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.cancel();
        let mut st = lock(&self.state);
        // A connection still opening is given up as it drops.
        match std::mem::replace(&mut st.conn, Conn::Idle) {
            Conn::Connected(c) => {
                st.last_stats = c.stats();
                drop(c);
            }
            Conn::Serving(s) => {
                s.stop();
                let (bytes_in, bytes_out) = s.stats().bytes();
                st.last_stats.bytes_in += bytes_in;
                st.last_stats.bytes_out += bytes_out;
            }
            _ => {}
        }
        Ok(())
    }

    crate::net::client::unlock_with_cancel!();

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut st = lock(&self.state);
        self.ensure_connected(&mut st)?;
        let rendered = self.render_buffer(&mut st, buffer);
        // What was encoded before a failure still goes out.
        let flushed = self.flush(&mut st);
        rendered.and(flushed)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn render_list(&self, list: &gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        // One write for the whole list (server mode: one hand-over to the
        // server's loop, which then writes each player once).
        let mut st = lock(&self.state);
        self.ensure_connected(&mut st)?;
        let rendered = list
            .iter()
            .try_for_each(|buffer| self.render_buffer(&mut st, buffer));
        let flushed = self.flush(&mut st);
        rendered.and(flushed)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // Everything written, the stop commands sent, the connection
            // closed: only then may EOS be posted.
            let mut st = lock(&self.state);
            if let Conn::Serving(server) = &st.conn {
                // Players get what is queued, then the end of the stream.
                let wait = self.settings().shared.timeout();
                match server.finish(wait, &self.cancel) {
                    Ok(()) => gst::info!(CAT, imp = self, "stream finished for every player"),
                    Err(e) if is_cancelled(&e) => {}
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Could not end the stream for players: {}", e)
                        );
                        return false;
                    }
                }
            } else if matches!(st.conn, Conn::Reconnecting(_))
                && self.poll_reconnect(&mut st, true).is_err()
            {
                return false;
            } else if self.ensure_connected(&mut st).is_ok()
                && let Conn::Connected(c) = std::mem::replace(&mut st.conn, Conn::Idle)
            {
                let cmds = self.settings().stop_commands.core();
                match c.finish(cmds, &self.cancel) {
                    Ok(end) => {
                        st.last_stats = end.stats;
                        gst::info!(
                            CAT,
                            imp = self,
                            "stream finished: {} bytes sent",
                            end.stats.bytes_out
                        );
                        if end.unconfirmed {
                            gst::element_imp_warning!(
                                self,
                                gst::ResourceError::Write,
                                (
                                    "The server did not confirm within {} s that it read the end of the stream (it answers pings, but not the one sent after the last frame): what it had not read may be lost",
                                    self.settings().shared.timeout
                                )
                            );
                        }
                    }
                    Err(e) if is_cancelled(&e) => {}
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Could not finish the stream: {}", e)
                        );
                        return false;
                    }
                }
            }
        }
        self.parent_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_tags_name_their_codec() {
        let v = tag_type::VIDEO;
        let a = tag_type::AUDIO;
        assert_eq!(ex_fourcc(v, b"\x90hvc1\x01"), Some(*b"hvc1"));
        assert_eq!(ex_fourcc(v, b"\xA1av01"), Some(*b"av01"));
        // Multitrack, one codec: the FourCC after the type byte; each
        // track its own codec: none to check up front.
        assert_eq!(ex_fourcc(v, b"\x96\x01vp09\x00"), Some(*b"vp09"));
        assert_eq!(ex_fourcc(v, b"\x96\x21hvc1\x00"), None);
        assert_eq!(ex_fourcc(v, &[0x17, 1, 0, 0, 0]), None, "legacy H.264");
        assert_eq!(ex_fourcc(a, b"\x91Opus\xfc"), Some(*b"Opus"));
        assert_eq!(ex_fourcc(a, b"\x95\x00fLaC\x00"), Some(*b"fLaC"));
        assert_eq!(ex_fourcc(a, &[0xAF, 1, 0x21]), None, "legacy AAC");
        assert_eq!(ex_fourcc(a, b"\x90Op"), None, "cut short");
        assert_eq!(ex_fourcc(tag_type::SCRIPT, b"\x90hvc1"), None);
        assert_eq!(ex_fourcc(v, b""), None);
    }

    /// However the muxer's (or flvmux's) buffer splits a tag into
    /// memories, the body comes out whole and in order, one piece per
    /// memory it is in, without the tag header or the previous-tag-size.
    #[test]
    fn a_tags_body_is_taken_from_the_memories_it_is_in() {
        gst::init().unwrap();
        let body: Vec<u8> = (0..40u8).collect();
        let mut tag = vec![tag_type::VIDEO, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0];
        tag.extend_from_slice(&body);
        tag.extend_from_slice(&51u32.to_be_bytes());
        // Where the memories end: the header alone, the header with the
        // body's start, the body across several, the body's end with the
        // previous-tag-size, the previous-tag-size alone.
        for cuts in [
            &[11, 51][..],
            &[16, 30, 51],
            &[5, 11, 20, 21, 40],
            &[11, 30],
            &[3, 8, 11, 12, 13, 50, 51, 53],
        ] {
            let mut buffer = gst::Buffer::new();
            {
                let b = buffer.get_mut().unwrap();
                let mut at = 0;
                for &end in cuts.iter().chain(std::iter::once(&tag.len())) {
                    b.append_memory(gst::Memory::from_slice(tag[at..end].to_vec()));
                    at = end;
                }
            }
            let parts = tag_body(&buffer, 40).unwrap();
            assert_eq!(parts.concat(), body, "memories ending at {cuts:?}");
            assert!(parts.iter().all(|p| !p.is_empty()), "{cuts:?}");
            let in_body = cuts
                .iter()
                .chain(std::iter::once(&tag.len()))
                .scan(0, |at, &end| {
                    let r = (*at, end);
                    *at = end;
                    Some(r)
                })
                .filter(|&(a, e)| a < 51 && e > 11)
                .count();
            assert_eq!(
                parts.len(),
                in_body,
                "one piece per memory the body is in: {cuts:?}"
            );
        }
    }
}
