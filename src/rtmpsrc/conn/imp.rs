// SPDX-License-Identifier: MPL-2.0
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::common::NotConnected;
use crate::handed::Handed;
use crate::mode::RtmpMode;
use crate::net::client::{Cancel, ClientConnection, ConnectOptions, Next, Opening, is_cancelled};
use crate::net::context::{Context, Member, Pushes};
use crate::net::server::{PeerKind, PublishOptions, Role, Server};
use crate::net::{Queued, Rescue};
use crate::policy::{OnEvent, OnQuiet, Reconnect, SourcePolicy, SourceSettings, Step};
use crate::rtmp::flv::tag_type;
use crate::rtmp::message::DataMessage;
use crate::rtmp::session::{ClientConfig, ClientEvent, ClientMode, StopCommands};
use crate::rtmp::url::RtmpUrl;
use crate::rtmpsrc::demux::{RtmpSrcDemux, Tag};
use crate::shared::SharedSettings;
use crate::sync::lock;

use super::time::{ClockCache, TimeMap};

pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtmpsrc",
        gst::DebugColorFlags::empty(),
        Some("RTMP source"),
    )
});

pub mod defaults {
    pub const IDLE_TIMEOUT: u32 = 0;
    pub const BUFFER_LENGTH: u32 = 1000;
    pub const LATENCY_MS: u32 = 200;
    pub const FLASH_VERSION: &str = "LNX 9,0,124,2";
    /// Server mode: connections at once (publishers, refused ones, scans).
    pub const MAX_CLIENTS: u32 = 16;
}

/// Context mode: how often a member is served even when nothing is ready,
/// so that the server's own deadlines (handshakes, a silent publisher) are
/// looked at as often as its thread would.
const SERVICE_EVERY: Duration = Duration::from_millis(100);

/// The element's role in the shared properties' blurbs and defaults.
pub const ROLE: crate::shared::Role = crate::shared::Role {
    client_verb: "play from",
    server_verb: "take a publisher such as OBS or FFmpeg",
    flash_version: defaults::FLASH_VERSION,
    timeout_blurb: "and (server mode) a client's handshake, connect and publish, and a publisher that goes silent",
    latency_span: "from the read that brought it until it leaves its pad",
};

/// What the `rtmpsrc` bin's properties set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The properties rtmpsink has too.
    pub shared: SharedSettings,
    pub idle_timeout: u32,
    pub buffer_length: u32,
    pub latency_ms: u32,
    pub eos_on_disconnect: bool,
    pub restart_timeout_ms: u32,
    pub stream_keys: Vec<String>,
    pub max_clients: u32,
    pub publisher_takeover: bool,
    pub publisher_timeout: u32,
    pub eos_on_unpublish: bool,
    /// A queue and a thread behind each output pad (read by the bin).
    pub pad_queues: bool,
    /// The stream as FLV on src where what took the first pad wants it
    /// whole (read by the bin, see the demuxer's `first_pad_taken`).
    pub auto_flv: bool,
    /// Buffers to give out before EOS, -1: no limit (read by the bin).
    pub num_buffers: i32,
    /// Server mode: the shared thread's name (empty: a thread of our own).
    pub context: String,
    /// Server mode, with a context: the shared thread's wait, in ms.
    pub context_wait: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shared: SharedSettings::new(&ROLE),
            idle_timeout: defaults::IDLE_TIMEOUT,
            buffer_length: defaults::BUFFER_LENGTH,
            latency_ms: defaults::LATENCY_MS,
            eos_on_disconnect: false,
            restart_timeout_ms: 0,
            stream_keys: Vec::new(),
            max_clients: defaults::MAX_CLIENTS,
            publisher_takeover: false,
            publisher_timeout: 0,
            eos_on_unpublish: false,
            pad_queues: true,
            auto_flv: true,
            num_buffers: -1,
            context: String::new(),
            context_wait: 0,
        }
    }
}

enum Conn {
    Idle,
    Connecting(Opening),
    /// The streaming thread is waiting for the connect thread, without the
    /// state lock (so that stats and stop are not held up).
    Joining,
    /// Shared with the streaming thread, which waits for messages without
    /// the state lock.
    Connected(Arc<ClientConnection>),
    /// Server mode: listening, publishers come and go.
    Serving(Arc<Server>),
    Failed,
}

/// Where messages come from: a server we play from, or publishers that
/// reach our own server. Both give the same events.
#[derive(Clone)]
enum Source {
    Client(Arc<ClientConnection>),
    Server(Arc<Server>),
}

impl Source {
    fn next_event(&self, wait: Duration, cancel: &Cancel) -> crate::rtmp::Result<Next> {
        match self {
            Source::Client(c) => c.next_event(wait, cancel),
            Source::Server(s) => s.next_event(wait, cancel),
        }
    }

    fn has_event(&self) -> bool {
        match self {
            Source::Client(c) => c.has_event(),
            Source::Server(s) => s.has_event(),
        }
    }

    /// What the connection's thread does with what it reads while the
    /// streaming thread is held downstream (see conn's `rescue`).
    fn set_rescue(&self, rescue: Option<Rescue>) {
        match self {
            Source::Client(c) => c.set_rescue(rescue),
            Source::Server(s) => s.set_rescue(rescue),
        }
    }
}

struct State {
    conn: Conn,
    url: Option<RtmpUrl>,
    /// `measure-latency`: stamp each buffer's arrival (crate::latency).
    measure_latency: bool,
    time: TimeMap,
    discont: bool,
    messages: u64,
    video: u64,
    audio: u64,
    resyncs: u64,
    restarts: u64,
    bytes_in: u64,
    /// What to do with events, silences and losses (set at start).
    policy: SourcePolicy,
    reconnects: u64,
    /// The segment went out (the base class sends its own only with a
    /// buffer it made, and tags go to the demuxer without one).
    segment_pushed: bool,
    /// Context mode: when the silence so far is next looked at.
    quiet_due: Option<Instant>,
    /// The server said the stream is recorded (StreamIsRecorded): it can
    /// be sought.
    recorded: bool,
    /// The stream's length, from its metadata (`duration`, when above 0).
    duration: Option<gst::ClockTime>,
    /// Where the stream ends: before the first frame at or after this
    /// RTMP time (ms), whatever the server sends. librtmp's `stop=` in the
    /// location, or the stop of the last seek that had one.
    stop_ms: Option<u32>,
    /// The flags of the last seek's segment (a segment seek's), given on
    /// the segments that follow it.
    segment_flags: gst::SegmentFlags,
    /// Where a seek is.
    seek: Seek,
    /// The RTMP time of the last audio or video message: where a recorded
    /// stream resumes after a reconnection.
    position: Option<u32>,
    /// The RTMP time of the last video key frame.
    last_key: Option<u32>,
}

/// A seek's way from the request to the first tag of the new position.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Seek {
    #[default]
    None,
    /// `seek` sent at `since` for `target`: what the server sent before
    /// its answer (NetStream.Seek.Notify) is of the old position.
    Asked {
        since: Instant,
        target: gst::ClockTime,
    },
    /// Answered: the next tag starts the new segment (see `stamp`).
    Answered { target: gst::ClockTime },
    /// A recorded stream played again after a reconnection, from a key
    /// frame at or before `from` (RTMP ms), where it was: the next audio or
    /// video message starts a segment at `from`, so that what was given
    /// before the connection was lost falls before it (decoded again as
    /// the frames after it need, not shown again). Also a recorded stream
    /// played from librtmp's `start=`: its position is then the stream's.
    Resume { from: u32 },
}

/// How long a seek's answer is waited for, dropping what comes meanwhile,
/// before the stream is taken as it comes (a server that ignores `seek`).
const SEEK_ANSWER_WAIT: Duration = Duration::from_secs(5);

impl Default for State {
    fn default() -> Self {
        State {
            conn: Conn::Idle,
            measure_latency: false,
            url: None,
            time: TimeMap::default(),
            discont: false,
            messages: 0,
            video: 0,
            audio: 0,
            resyncs: 0,
            restarts: 0,
            bytes_in: 0,
            policy: SourcePolicy::new(
                SourceSettings {
                    server: false,
                    idle_timeout: None,
                    eos_on_disconnect: false,
                    restart_wait: None,
                    eos_on_unpublish: false,
                    publisher_timeout: None,
                    reconnect: false,
                },
                Instant::now(),
            ),
            reconnects: 0,
            segment_pushed: false,
            quiet_due: None,
            recorded: false,
            duration: None,
            stop_ms: None,
            segment_flags: gst::SegmentFlags::empty(),
            seek: Seek::None,
            position: None,
            last_key: None,
        }
    }
}

/// Context mode: where the streaming thread waits while the context's
/// thread does its work, and the flow it then returns with.
#[derive(Default)]
struct Park {
    outcome: Mutex<Option<gst::FlowError>>,
    woken: Condvar,
}

impl Park {
    /// The first outcome stands.
    fn finish(&self, flow: gst::FlowError) {
        lock(&self.outcome).get_or_insert(flow);
        self.woken.notify_all();
    }

    fn done(&self) -> bool {
        lock(&self.outcome).is_some()
    }

    fn wait(&self) -> gst::FlowError {
        let mut o = lock(&self.outcome);
        loop {
            if let Some(flow) = *o {
                return flow;
            }
            o = self.woken.wait(o).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The demuxer behind the source pad, and its sink pad: tags are handed to
/// it straight, with no buffer and no pad push in between (no FLV framing
/// made here for the demuxer to parse back), by the streaming thread or a
/// context's.
#[derive(Clone)]
struct Direct {
    demux: RtmpSrcDemux,
    peer: gst::Pad,
}

impl Direct {
    fn of(src: &gst::Pad) -> Option<Direct> {
        let peer = src.peer()?;
        let demux = peer.parent_element()?.downcast().ok()?;
        Some(Direct { demux, peer })
    }

    /// A tag to the demuxer as a chain call would give it: under its sink
    /// pad's stream lock, and not while that pad is flushing. `direct`:
    /// its buffer may skip its pad's queue, pushed by `push_pending` (see
    /// the demuxer's `take_tag`).
    fn hand_over(&self, tag: Tag, direct: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _stream = self.peer.stream_lock();
        if self.peer.pad_flags().contains(gst::PadFlags::FLUSHING) {
            return Err(gst::FlowError::Flushing);
        }
        self.demux.imp().take_tag(tag, direct)
    }

    /// Pushes the buffer the last `hand_over` set aside, if any, with no
    /// lock held.
    fn push_pending(&self) {
        self.demux.imp().push_pending();
    }

    /// Wakes the demuxer's pad threads for what it queued (see `Tag::more`).
    fn wake(&self) {
        self.demux.imp().wake_lanes();
    }

    /// Tells the demuxer that a rescue queued tags (see its `rescued`).
    fn rescued(&self) {
        self.demux.imp().rescued();
    }

    /// Whether the demuxer can take a tag without waiting for room.
    fn have_room(&self) -> bool {
        self.demux.imp().have_room()
    }
}

/// The connection's thread rescues the streaming thread until this goes.
struct Rescued(Source);

impl Drop for Rescued {
    fn drop(&mut self) {
        self.0.set_rescue(None);
    }
}

/// An rtmpsrc in a context: what the context's thread serves.
struct InContext {
    conn: glib::WeakRef<super::RtmpSrcConn>,
    server: Arc<Server>,
    direct: Direct,
    /// The context's thread's pushes, for the rescue (see
    /// `rescued_in_context`).
    pushes: Arc<Pushes>,
    park: Park,
    /// Held while the context's thread serves this member: `stop` waits on
    /// it before the server goes.
    serving: Mutex<()>,
}

impl Member for InContext {
    fn service(&self) -> Option<Instant> {
        let _serving = lock(&self.serving);
        if self.park.done() {
            return None;
        }
        let conn = self.conn.upgrade()?;
        conn.imp().service(self)
    }

    fn failed(&self, why: &str) {
        if let Some(conn) = self.conn.upgrade() {
            self.park.finish(conn.imp().fail(why, true));
        }
    }
}

#[derive(Default)]
pub struct RtmpSrcConn {
    /// What the bin handed over when this element started.
    pub(crate) handed: Handed<Settings>,
    state: Mutex<State>,
    cancel: Cancel,
    /// Server mode with a context: the shared thread (from start to stop).
    context: Mutex<Option<Arc<Context>>>,
    /// Context mode: what the context's thread serves, for `unlock` and
    /// `stop`.
    member: Mutex<Option<Arc<InContext>>>,
    /// The pipeline's clock and base time, for the running time of every
    /// message (see `running_time_at`).
    clock: Mutex<Option<ClockCache>>,
    /// Held from taking an event to handing its tag to the demuxer, by the
    /// streaming thread or the connection's thread rescuing it (see
    /// `rescue`): tags reach the demuxer in the order they were read.
    delivery: Mutex<()>,
}

/// A context's thread in one push this long is held downstream (see
/// `rescued_in_context`); the server's thread looks only once its
/// element's stream has gone unserved for `HANDOVER` anyway.
const CONTEXT_HELD: Duration = Duration::from_millis(50);

#[glib::object_subclass]
impl ObjectSubclass for RtmpSrcConn {
    const NAME: &'static str = "GstRtmpSrcConn";
    type Type = super::RtmpSrcConn;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for RtmpSrcConn {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for RtmpSrcConn {}

impl ElementImpl for RtmpSrcConn {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![crate::common::flv_pad_template(
                "src",
                gst::PadDirection::Src,
            )]
        });
        T.as_ref()
    }

    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        *lock(&self.clock) = None;
        self.parent_set_clock(clock)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        *lock(&self.clock) = None;
        self.parent_change_state(transition)
    }
}

impl RtmpSrcConn {
    /// The settings this run goes by.
    fn settings(&self) -> Arc<Settings> {
        self.handed.get()
    }

    /// Server mode: asks the publisher to reconnect (see the bin's
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

    pub fn stats(&self) -> gst::Structure {
        let st = lock(&self.state);
        let mut server = None;
        let (state, bytes) = match &st.conn {
            Conn::Idle => ("stopped", st.bytes_in),
            Conn::Connecting(_) | Conn::Joining => ("connecting", st.bytes_in),
            Conn::Connected(c) => ("playing", c.stats().bytes_in),
            Conn::Serving(s) => {
                let stats = s.stats();
                let bytes = stats.bytes().0 + st.bytes_in;
                let state = if st.policy.publishing() {
                    "receiving"
                } else {
                    "listening"
                };
                server = Some(stats);
                (state, bytes)
            }
            Conn::Failed => ("failed", st.bytes_in),
        };
        let mut b = gst::Structure::builder("application/x-rtmp-src-stats")
            .field("connection-state", state)
            .field("bytes-in", bytes)
            .field("messages-in", st.messages)
            .field("video-messages", st.video)
            .field("audio-messages", st.audio)
            .field("resyncs", st.resyncs)
            .field("publisher-restarts", st.restarts)
            .field("reconnects", st.reconnects);
        let client = match &st.conn {
            Conn::Connected(c) => Some(c.stats()),
            _ => None,
        };
        b = crate::common::rtmp2_stats(b, client.as_ref());
        if let Conn::Connected(c) = &st.conn {
            b = b.field("tls", c.tls_info().unwrap_or(""));
        }
        if let Some(s) = server {
            let publisher = s
                .peers
                .iter()
                .find(|p| p.kind == PeerKind::Publisher)
                .map(|p| p.addr.to_string());
            b = b
                .field("publishers", st.policy.publishers())
                .field("publisher-address", publisher.unwrap_or_default())
                .field("connections-accepted", s.accepted)
                .field("connections-rejected", s.rejected)
                .field("clients", crate::common::peer_stats_array(&s));
        }
        b.build()
    }

    fn client_config(&self, url: &RtmpUrl) -> ConnectOptions {
        let s = self.settings();
        let mut c = ClientConfig::new(ClientMode::Play, url);
        s.shared.apply_to(&mut c, None);
        c.buffer_ms = s.buffer_length;
        // Enhanced RTMP: the codecs we take (the first track of each kind).
        c.enhanced = Some(crate::common::enhanced_caps(
            ClientMode::Play,
            crate::common::CAPS_EX_MODEX,
        ));
        s.shared.security.connect_options(c, url)
    }

    fn spawn_connect(&self, st: &mut State) {
        let Some(url) = st.url.clone() else { return };
        let config = self.client_config(&url);
        let h = Opening::start("rtmpsrc-connect", url, config, &self.cancel, None);
        st.conn = Conn::Connecting(h);
    }

    /// The connection, once up; waits for the connect thread without
    /// holding the state lock. Errors are posted here.
    fn ensure_connected(&self) -> Result<Source, gst::FlowError> {
        self.wait_connected()
            .map_err(|n| n.post(self.obj().upcast_ref()))
    }

    /// The connection, once up; a connection that could not be made is
    /// the caller's to report.
    fn wait_connected(&self) -> Result<Source, NotConnected> {
        loop {
            let mut st = lock(&self.state);
            match std::mem::replace(&mut st.conn, Conn::Joining) {
                Conn::Connected(c) => {
                    st.conn = Conn::Connected(c.clone());
                    return Ok(Source::Client(c));
                }
                Conn::Serving(s) => {
                    st.conn = Conn::Serving(s.clone());
                    return Ok(Source::Server(s));
                }
                Conn::Idle => {
                    // After a flush that cancelled the connect: start again.
                    self.spawn_connect(&mut st);
                }
                Conn::Connecting(h) => {
                    let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
                    drop(st);
                    let r = h.wait();
                    let mut st = lock(&self.state);
                    match r {
                        Ok(c) => {
                            gst::info!(CAT, imp = self, "playing {url}");
                            let c = Arc::new(c);
                            st.conn = Conn::Connected(c.clone());
                            return Ok(Source::Client(c));
                        }
                        Err(e) if is_cancelled(&e) => {
                            st.conn = Conn::Idle;
                            return Err(NotConnected::Flow(gst::FlowError::Flushing));
                        }
                        Err(e) => {
                            st.conn = Conn::Failed;
                            return Err(NotConnected::Failed(gst::error_msg!(
                                crate::common::open_error(&e, gst::ResourceError::OpenRead),
                                ("Could not play {}: {}", url, e)
                            )));
                        }
                    }
                }
                other @ (Conn::Joining | Conn::Failed) => {
                    st.conn = other;
                    return Err(NotConnected::Flow(gst::FlowError::Error));
                }
            }
        }
    }

    /// What the settings say about ends, silences and losses.
    fn source_settings(&self) -> SourceSettings {
        let s = self.settings();
        let secs = |n: u32| (n > 0).then(|| Duration::from_secs(u64::from(n)));
        SourceSettings {
            server: s.shared.mode == RtmpMode::Server,
            idle_timeout: secs(s.idle_timeout),
            eos_on_disconnect: s.eos_on_disconnect,
            restart_wait: (s.restart_timeout_ms > 0)
                .then(|| Duration::from_millis(u64::from(s.restart_timeout_ms))),
            eos_on_unpublish: s.eos_on_unpublish,
            publisher_timeout: secs(s.publisher_timeout),
            reconnect: s.shared.reconnect.enabled(),
        }
    }

    /// Reconnecting ended without a connection: the error says why.
    fn give_up(
        &self,
        url: &RtmpUrl,
        reason: &str,
        attempts: u32,
        last: &str,
        refused: bool,
    ) -> gst::FlowError {
        crate::common::post_connection_state(
            self.obj().upcast_ref(),
            "given-up",
            attempts,
            last,
            Duration::ZERO,
        );
        let (domain, what) = if refused {
            (
                gst::ResourceError::NotAuthorized,
                format!("reconnecting was refused: {last}"),
            )
        } else {
            (
                gst::ResourceError::Read,
                format!("{attempts} reconnection attempts failed, the last with: {last}"),
            )
        };
        gst::element_imp_error!(
            self,
            domain,
            (
                "Connection to {} lost ({}), and {}",
                url.redacted(),
                reason,
                what
            )
        );
        lock(&self.state).conn = Conn::Failed;
        gst::FlowError::Error
    }

    /// Client mode, the connection lost: new ones with backoff until one
    /// plays (the stream then resumes with DISCONT and a fresh time
    /// mapping) or the policy gives up (an error).
    fn reconnect(&self, reason: &str) -> Result<Source, gst::FlowError> {
        let mut policy = Reconnect::new(self.settings().shared.reconnect);
        let Some(url) = lock(&self.state).url.clone() else {
            return Err(gst::FlowError::Error);
        };
        let lost = crate::rtmp::Error::new(crate::rtmp::ErrorKind::Closed, reason);
        let mut step = policy.on_lost(&lost, Instant::now());
        loop {
            let (attempt, at, delay) = match step {
                Step::Retry { attempt, at, delay } => (attempt, at, delay),
                Step::GiveUp {
                    attempts,
                    reason: last,
                    refused,
                } => return Err(self.give_up(&url, reason, attempts, &last, refused)),
            };
            crate::common::post_connection_state(
                self.obj().upcast_ref(),
                "reconnecting",
                attempt,
                reason,
                delay,
            );
            gst::warning!(
                CAT,
                imp = self,
                "connection to {} lost ({reason}): attempt {attempt} in {delay:?}",
                url.redacted()
            );
            if !self.cancel.sleep_until(at) {
                return Err(gst::FlowError::Flushing);
            }
            // A recorded stream goes on where it was, not from its start:
            // `play` from the last key frame (in milliseconds, as servers
            // take it; 1 ms before, as nginx's FLV reader goes to the key
            // frame after the time asked for), see `Seek::Resume`.
            let mut config = self.client_config(&url);
            let resume = {
                let st = lock(&self.state);
                st.position
                    .filter(|_| st.recorded)
                    .map(|at| (at, st.last_key.unwrap_or(at).min(at)))
            };
            if let Some((_, key)) = resume {
                config.session.play_start = f64::from(key.saturating_sub(1));
            }
            match ClientConnection::open(&url, config, &self.cancel) {
                Ok(c) => {
                    let c = Arc::new(c);
                    let mut st = lock(&self.state);
                    st.conn = Conn::Connected(c.clone());
                    match resume {
                        Some((at, key)) => {
                            gst::info!(
                                CAT,
                                imp = self,
                                "the recorded stream resumes at {at} ms, from the key frame at {key} ms"
                            );
                            st.time.resume_at(at);
                            st.seek = Seek::Resume { from: at };
                        }
                        None => st.time.restart(),
                    }
                    st.discont = true;
                    st.reconnects += 1;
                    st.policy.on_reconnected(Instant::now());
                    drop(st);
                    crate::common::post_connection_state(
                        self.obj().upcast_ref(),
                        "connected",
                        attempt,
                        "",
                        Duration::ZERO,
                    );
                    return Ok(Source::Client(c));
                }
                Err(e) if is_cancelled(&e) => return Err(gst::FlowError::Flushing),
                Err(e) => step = policy.on_attempt_failed(&e, Instant::now()),
            }
        }
    }

    /// Listens on the location's address (server mode). With port 0 the
    /// location then shows the port picked.
    fn start_server(&self, url: &RtmpUrl) -> Result<Server, gst::ErrorMessage> {
        let (options, role) = {
            let s = self.settings();
            let options = crate::common::server_options(
                url,
                &s.stream_keys,
                s.max_clients,
                s.shared.timeout,
                crate::rtmp::session::DEFAULT_OUT_CHUNK_SIZE,
                &s.shared.security,
            )?;
            let role = Role::Publish(PublishOptions {
                takeover: s.publisher_takeover,
            });
            (options, role)
        };
        crate::common::start_server(
            self.obj().upcast_ref(),
            url,
            options,
            role,
            "accept-publisher",
            *CAT,
            |l| self.handed.listening(l),
        )
    }

    /// The running time (ns) of a message read at `read_at`.
    fn running_time_at(&self, read_at: Instant) -> i64 {
        let mut cache = lock(&self.clock);
        // Messages read since the lookup tell the time: no clock read of
        // its own per message.
        if cache.as_ref().is_none_or(|c| c.stale(read_at)) {
            let obj = self.obj();
            *cache = match (obj.clock(), obj.base_time()) {
                (Some(clock), Some(base)) => Some(ClockCache::new(clock, base)),
                _ => None,
            };
        }
        cache.as_ref().map_or(0, |c| c.running_time(read_at))
    }

    /// A segment from running time `start` (its base too: running time
    /// goes on as mapped), at stream time `time` there, to where the
    /// stream stops, if it does (so that downstream clips the frames that
    /// cross it).
    fn segment_from(
        &self,
        st: &State,
        start: gst::ClockTime,
        time: gst::ClockTime,
        what: &str,
    ) -> gst::Event {
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        segment.set_flags(st.segment_flags);
        segment.set_start(start);
        segment.set_base(start);
        segment.set_time(time);
        if let Some(stop) = st.stop_ms {
            let stop = gst::ClockTime::from_mseconds(u64::from(stop));
            segment.set_stop(start + stop.saturating_sub(time));
        }
        gst::info!(
            CAT,
            imp = self,
            "{what}: the stream goes on at {time} from running time {start} to {}",
            segment.stop().display()
        );
        gst::event::Segment::new(&segment)
    }

    /// A message's running time and flags, for the demuxer.
    fn stamp(
        &self,
        st: &mut State,
        kind: u8,
        ts: u32,
        body: bytes::Bytes,
        read_at: Instant,
    ) -> Tag {
        let now = self.running_time_at(read_at);
        let (rt, resync) = if kind == tag_type::SCRIPT {
            (st.time.current(now), false)
        } else {
            st.position = Some(ts);
            // A key frame, legacy or Enhanced RTMP (the frame type's bits).
            if kind == tag_type::VIDEO && body.first().is_some_and(|b| (b >> 4) & 7 == 1) {
                st.last_key = Some(ts);
            }
            st.time.map(ts, now)
        };
        gst::trace!(
            CAT,
            imp = self,
            "tag {kind} ts {ts} ms at running time {now} ns -> {rt} ns{}",
            if resync { " (resync)" } else { "" }
        );
        if resync && st.messages > 0 {
            st.resyncs += 1;
            gst::info!(
                CAT,
                imp = self,
                "RTMP time jumped or reset: resynchronising (DISCONT)"
            );
        }
        st.messages += 1;
        // The first tag of a sought position: its running time starts the
        // segment, whose stream time is the tag's own (the position the
        // server went to: a key frame at or after the target, or wherever
        // a server without an index restarts), or the target for metadata.
        // After a reconnection, the first audio or video: the point where
        // the stream was starts it (see `Seek::Resume`).
        let segment = match st.seek {
            Seek::Answered { target } => {
                st.seek = Seek::None;
                let time = match kind {
                    tag_type::SCRIPT => target,
                    _ => gst::ClockTime::from_mseconds(u64::from(ts)),
                };
                Some(self.segment_from(st, gst::ClockTime::from_nseconds(rt), time, "sought"))
            }
            Seek::Resume { from } if kind != tag_type::SCRIPT => {
                st.seek = Seek::None;
                let from = from.max(ts);
                let start = st.time.running_time_of(from).unwrap_or(rt);
                Some(self.segment_from(
                    st,
                    gst::ClockTime::from_nseconds(start),
                    gst::ClockTime::from_mseconds(u64::from(from)),
                    "resumed",
                ))
            }
            _ => None,
        };
        Tag {
            segment,
            kind,
            ts,
            body,
            running_time: rt,
            discont: resync || std::mem::take(&mut st.discont),
            arrival: match st.measure_latency {
                true => crate::latency::stamp(read_at),
                false => crate::latency::NONE,
            },
            more: false,
        }
    }
}

impl BaseSrcImpl for RtmpSrcConn {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mode = self.settings().shared.mode;
        let url = self.settings().shared.target.url(mode)?;
        self.cancel.reset();
        let mut st = lock(&self.state);
        *st = State::default();
        st.stop_ms = url.options.stop_ms;
        if let Some(from) = url.options.start_ms.filter(|_| !url.options.live) {
            // librtmp's `start=`: the first audio or video starts a segment
            // at its own RTMP time, as after a resumption, so that the
            // position is the stream's.
            st.seek = Seek::Resume { from };
        }
        st.url = Some(url);
        st.measure_latency = self.settings().shared.measure_latency;
        match mode {
            RtmpMode::Client => {
                if !self.settings().context.is_empty() {
                    gst::warning!(CAT, imp = self, "context is for mode=server: not used");
                }
                self.spawn_connect(&mut st)
            }
            RtmpMode::Server => {
                let server = self.start_server(st.url.as_ref().expect("set above"))?;
                st.conn = Conn::Serving(Arc::new(server));
                *lock(&self.context) = self.join_context()?;
            }
        }
        st.policy = SourcePolicy::new(self.source_settings(), Instant::now());
        drop(st);
        if mode == RtmpMode::Client && !self.settings().shared.async_connect {
            // The state change fails with the reason (posted once, by the
            // base class).
            self.wait_connected()
                .map_err(|n| n.into_message(gst::ResourceError::OpenRead))?;
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.cancel();
        if let Some(m) = lock(&self.member).take() {
            // The context's thread is done with us once it lets go of this.
            m.park.finish(gst::FlowError::Flushing);
            drop(lock(&m.serving));
        }
        *lock(&self.context) = None;
        let mut st = lock(&self.state);
        // A connection still opening is given up as it drops.
        match std::mem::replace(&mut st.conn, Conn::Idle) {
            Conn::Connected(c) => {
                st.bytes_in = c.stats().bytes_in;
                // The streaming thread has let go by now (stop comes after it).
                if let Ok(c) = Arc::try_unwrap(c) {
                    c.finish(
                        StopCommands {
                            delete_stream: true,
                            ..StopCommands::NONE
                        },
                        &self.cancel,
                    )
                    .ok();
                }
            }
            Conn::Serving(s) => {
                st.bytes_in += s.stats().bytes().0;
                s.stop();
            }
            _ => {}
        }
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.cancel();
        // A streaming thread waiting in its server's loop with no
        // connection sleeps until woken.
        if let Conn::Serving(s) = &lock(&self.state).conn {
            s.wake();
        }
        if let Some(m) = &*lock(&self.member) {
            m.park.finish(gst::FlowError::Flushing);
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.reset();
        Ok(())
    }

    fn event(&self, event: &gst::Event) -> bool {
        if let gst::EventView::Seek(seek) = event.view() {
            let (_, _, start_type, _, _, _) = seek.get();
            if start_type == gst::SeekType::None {
                // The base class would keep the last seek's start, and the
                // server would go back there: RTMP's seek needs a position.
                gst::debug!(CAT, imp = self, "a seek needs a start position");
                return false;
            }
        }
        BaseSrcImplExt::parent_event(self, event)
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let ms = self.settings().latency_ms;
                q.set(
                    true,
                    gst::ClockTime::from_mseconds(u64::from(ms)),
                    gst::ClockTime::NONE,
                );
                true
            }
            // A recorded stream's length, as its metadata gives it (as
            // librtmp's rtmpsrc answers), and where it can be sought; a
            // live one's answers are the base class's (no length, not
            // seekable).
            gst::QueryViewMut::Duration(q) if q.format() == gst::Format::Time => {
                let st = lock(&self.state);
                match st.duration.filter(|_| self.can_seek(&st)) {
                    Some(d) => {
                        q.set(d);
                        true
                    }
                    None => {
                        drop(st);
                        BaseSrcImplExt::parent_query(self, query)
                    }
                }
            }
            gst::QueryViewMut::Seeking(q) if q.format() == gst::Format::Time => {
                let st = lock(&self.state);
                if !self.can_seek(&st) {
                    drop(st);
                    return BaseSrcImplExt::parent_query(self, query);
                }
                q.set(true, gst::ClockTime::ZERO, st.duration);
                true
            }
            _ => BaseSrcImplExt::parent_query(self, query),
        }
    }

    fn is_seekable(&self) -> bool {
        self.can_seek(&lock(&self.state))
    }

    /// A seek in time of a recorded stream: `seek` to the server, whose
    /// answer and first tag of the new position start the next segment
    /// (see `on_event` and `stamp`). RTMP's seek has a position only: a
    /// stop is kept here, where the stream then ends (EOS, or
    /// segment-done for a segment seek). The base class has flushed and
    /// holds the streaming thread. Its first call, as the stream starts,
    /// is no seek.
    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            gst::debug!(CAT, imp = self, "only seeks in time");
            return false;
        };
        if segment.rate() != 1.0 {
            // A server plays forwards, in real time or as fast as it goes.
            gst::debug!(CAT, imp = self, "seeks at rate 1.0 only");
            return false;
        }
        let target = segment.start().unwrap_or(gst::ClockTime::ZERO);
        let stop_ms = segment
            .stop()
            .map(|s| u32::try_from(s.mseconds()).unwrap_or(u32::MAX));
        let mut st = lock(&self.state);
        let Conn::Connected(c) = &st.conn else {
            return true;
        };
        if !self.can_seek(&st) {
            // The base class's seek as the stream starts: nothing to do.
            return true;
        }
        let c = c.clone();
        let millis = u32::try_from(target.mseconds()).unwrap_or(u32::MAX);
        if let Err(e) = c.seek(millis, &Cancel::new()) {
            gst::warning!(CAT, imp = self, "seek to {target} not sent: {e}");
            return false;
        }
        gst::info!(CAT, imp = self, "seeking to {target}");
        // The running time starts again after the flush: so does the
        // mapping of the server's time onto it, and the base time is
        // looked up again.
        st.time = TimeMap::default();
        st.discont = true;
        // Without a stop of its own, a seek plays to the location's.
        st.stop_ms = stop_ms.or(st.url.as_ref().and_then(|u| u.options.stop_ms));
        st.segment_flags = segment.flags();
        st.seek = Seek::Asked {
            since: Instant::now(),
            target,
        };
        drop(st);
        *lock(&self.clock) = None;
        true
    }
}

impl RtmpSrcConn {
    /// Whether the stream can be sought now: played from a server that
    /// said it is recorded.
    fn can_seek(&self, st: &State) -> bool {
        st.recorded && matches!(st.conn, Conn::Connected(_))
    }

    /// One event from the connection, as the policy says: a tag to give,
    /// nothing, or the end.
    /// `read_at`: when it came from the socket, carried in the buffer's
    /// offset to the bin's pads (see crate::latency).
    fn on_event(&self, ev: ClientEvent, read_at: Instant) -> Result<Option<Tag>, gst::FlowError> {
        let mut st = lock(&self.state);
        // Context mode: a silence counts from here.
        st.quiet_due = None;
        if self.waiting_for_seek(&mut st, &ev, read_at) {
            return Ok(None);
        }
        match &ev {
            ClientEvent::StreamIsRecorded(_) => st.recorded = true,
            ClientEvent::Data {
                data: DataMessage::OnMetaData(m),
                ..
            } => {
                st.duration = m
                    .get("duration")
                    .and_then(|d| d.as_f64())
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .map(gst::ClockTime::from_seconds_f64);
            }
            _ => {}
        }
        if !self.as_policy_says(&mut st, &ev, read_at)? {
            return Ok(None);
        }
        let Some((kind, ts, body)) = self.tag_of(&mut st, ev) else {
            return Ok(None);
        };
        // The first frame of a new position starts its segment even past
        // the stop (downstream clips it): an EOS without a segment after
        // the seek's flush would leave the pads without one.
        let starts_segment = matches!(st.seek, Seek::Answered { .. } | Seek::Resume { .. });
        if kind != tag_type::SCRIPT && !starts_segment && st.stop_ms.is_some_and(|stop| ts >= stop)
        {
            gst::info!(
                CAT,
                imp = self,
                "a frame at {ts} ms, at or past the stop: EOS"
            );
            return Err(gst::FlowError::Eos);
        }
        Ok(Some(self.stamp(&mut st, kind, ts, body, read_at)))
    }

    /// After a seek was asked: whether `ev` is to be left out while the
    /// server's answer is awaited (what it still sends from the old
    /// position, for up to `SEEK_ANSWER_WAIT`). The answer, or media past
    /// that wait, ends the wait.
    fn waiting_for_seek(&self, st: &mut State, ev: &ClientEvent, read_at: Instant) -> bool {
        let Seek::Asked { since, target } = st.seek else {
            return false;
        };
        match ev {
            ClientEvent::Status(s) if s.code.starts_with("NetStream.Seek.") => {
                if s.code != "NetStream.Seek.Notify" {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Seek,
                        ("The server could not seek to {}: {}", target, s)
                    );
                }
                st.seek = Seek::Answered { target };
                true
            }
            ClientEvent::Audio { .. }
            | ClientEvent::Video { .. }
            | ClientEvent::Data { .. }
            | ClientEvent::StreamEnded { .. }
            | ClientEvent::StreamBegin(_)
                if read_at.saturating_duration_since(since) < SEEK_ANSWER_WAIT =>
            {
                true
            }
            ClientEvent::Audio { .. } | ClientEvent::Video { .. } => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "no answer to the seek in {SEEK_ANSWER_WAIT:?}: going on with what comes"
                );
                st.seek = Seek::Answered { target };
                false
            }
            _ => false,
        }
    }

    /// What the policy makes of `ev` (the last message from the peer came
    /// when it was read): whether it is delivered, or the end (EOS).
    /// A new publisher restarts the clock mapping, with a DISCONT.
    fn as_policy_says(
        &self,
        st: &mut State,
        ev: &ClientEvent,
        read_at: Instant,
    ) -> Result<bool, gst::FlowError> {
        match st.policy.on_event(ev, read_at) {
            OnEvent::Skip => Ok(false),
            OnEvent::Eos(why) => {
                gst::info!(CAT, imp = self, "{why}: EOS");
                Err(gst::FlowError::Eos)
            }
            OnEvent::PublisherStarted { restart } => {
                gst::info!(CAT, imp = self, "a publisher started");
                if restart {
                    // A new publisher: its clock starts afresh, so does the
                    // mapping (DISCONT), and the demuxer re-sends caps.
                    st.time.restart();
                    st.restarts += 1;
                    st.discont = true;
                }
                Ok(false)
            }
            OnEvent::DeliverAfterRestart => {
                gst::info!(CAT, imp = self, "the publisher is back: resuming");
                st.time.restart();
                st.restarts += 1;
                Ok(true)
            }
            OnEvent::Deliver => Ok(true),
        }
    }

    /// The FLV tag (type, timestamp, body) a media or data message makes,
    /// counted; None for anything else, and for an empty body.
    fn tag_of(&self, st: &mut State, ev: ClientEvent) -> Option<(u8, u32, bytes::Bytes)> {
        let (kind, ts, body): (u8, u32, bytes::Bytes) = match ev {
            ClientEvent::Video { timestamp, payload } => {
                st.video += 1;
                (tag_type::VIDEO, timestamp, payload)
            }
            ClientEvent::Audio { timestamp, payload } => {
                st.audio += 1;
                (tag_type::AUDIO, timestamp, payload)
            }
            ClientEvent::Data { timestamp, data } => {
                let body = match data {
                    DataMessage::OnMetaData(v) => DataMessage::OnMetaData(v).encode(),
                    DataMessage::SetDataFrame { name, value } if name == "onMetaData" => {
                        DataMessage::OnMetaData(value).encode()
                    }
                    // Cue points, captions, text: as a server passes them
                    // on to its players, the handler and its values (the
                    // FLV pad gives them; the demuxer reads onMetaData only).
                    DataMessage::SetDataFrame { name, value } => DataMessage::Other {
                        name,
                        values: vec![value],
                    }
                    .encode(),
                    other @ DataMessage::Other { .. } => other.encode(),
                    DataMessage::SampleAccess { .. } => return None,
                };
                (tag_type::SCRIPT, timestamp, body.into())
            }
            other => {
                gst::debug!(CAT, imp = self, "{other:?}");
                return None;
            }
        };
        (!body.is_empty()).then_some((kind, ts, body))
    }

    /// Server mode: the context named in the settings, if any.
    fn join_context(&self) -> Result<Option<Arc<Context>>, gst::ErrorMessage> {
        let s = self.settings();
        if s.context.is_empty() {
            return Ok(None);
        }
        let wait = Duration::from_millis(u64::from(s.context_wait));
        let ctx = Context::get(&s.context, wait)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Failed, ("{}", e)))?;
        if ctx.wait() != wait {
            gst::warning!(
                CAT,
                imp = self,
                "context {} already runs with a context-wait of {} ms, not {} ms",
                ctx.name(),
                ctx.wait().as_millis(),
                wait.as_millis()
            );
        }
        gst::info!(CAT, imp = self, "served by context {}", ctx.name());
        Ok(Some(ctx))
    }

    /// The demuxer to hand tags to, after the segment they belong to.
    fn direct(&self) -> Result<Direct, gst::FlowError> {
        let src = self.obj().static_pad("src").expect("a source has its pad");
        let direct = Direct::of(&src).ok_or(gst::FlowError::NotLinked)?;
        if !std::mem::replace(&mut lock(&self.state).segment_pushed, true) {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            src.push_event(gst::event::Segment::new(&segment));
        }
        Ok(direct)
    }

    /// Context mode, the streaming thread: the context's thread does what
    /// `create` would (see `service`) and pushes into the demuxer itself;
    /// this thread waits until the stream stops there (EOS, an error) or
    /// here (unlock), and returns the flow that says why.
    fn run_in_context(&self, ctx: &Context, server: &Arc<Server>) -> gst::FlowError {
        let direct = match self.direct() {
            Ok(d) => d,
            Err(flow) => return flow,
        };
        let pushes = ctx.pushes();
        // The server's thread goes on reading while the context's thread
        // is held in a direct push, for this member or another.
        let _rescued = self.rescued_in_context(server, &direct, pushes.clone());
        let member = Arc::new(InContext {
            conn: self.obj().downgrade(),
            server: server.clone(),
            direct,
            pushes,
            park: Park::default(),
            serving: Mutex::new(()),
        });
        *lock(&self.member) = Some(member.clone());
        // An unlock before the member was there.
        if self.cancel.is_cancelled() {
            return gst::FlowError::Flushing;
        }
        let registration = match ctx.add(member.clone(), server.poll_fd()) {
            Ok(r) => r,
            Err(e) => return self.fail(&e.to_string(), false),
        };
        let flow = member.park.wait();
        drop(registration);
        flow
    }

    /// Context mode, the context's thread: what `create` does, without
    /// waiting. Every event the server has goes through the policy into
    /// the demuxer; a silence is looked at when due. Returns when to be
    /// served again for deadlines; stops the parked streaming thread when
    /// the stream stops.
    fn service(&self, member: &InContext) -> Option<Instant> {
        let (server, park) = (&member.server, &member.park);
        // One step of the loop reads what is there; the context hears of
        // what comes after (the loop's poll becomes ready again).
        let mut steps = 1;
        loop {
            if park.done() {
                return None;
            }
            // As in `create`: tags reach the demuxer in the order they
            // were read, whichever thread read them (see `rescue`).
            let delivery = lock(&self.delivery);
            let quiet = match server.try_event(&self.cancel, &mut steps) {
                Ok(Some(Next::Event(ev, at))) => {
                    let r = self.on_event(ev, at).and_then(|tag| match tag {
                        Some(mut tag) => {
                            tag.more = server.has_event();
                            member.direct.hand_over(tag, true).map(drop)
                        }
                        None => {
                            if !server.has_event() {
                                member.direct.wake();
                            }
                            Ok(())
                        }
                    });
                    drop(delivery);
                    member.pushes.during(|| member.direct.push_pending());
                    match r {
                        Ok(()) => continue,
                        Err(flow) => {
                            park.finish(flow);
                            return None;
                        }
                    }
                }
                Ok(Some(Next::Closed)) => lock(&self.state).policy.on_lost(None),
                Ok(Some(Next::Idle) | None) => {
                    let now = Instant::now();
                    let mut st = lock(&self.state);
                    let wait = st.policy.wait(now);
                    let due = *st.quiet_due.get_or_insert(now + wait);
                    if now < due {
                        return Some(due.min(now + SERVICE_EVERY));
                    }
                    st.quiet_due = None;
                    st.policy.on_idle(now)
                }
                Err(e) if is_cancelled(&e) => {
                    park.finish(gst::FlowError::Flushing);
                    return None;
                }
                Err(e) => lock(&self.state).policy.on_lost(Some(&e)),
            };
            drop(delivery);
            if park.done() {
                return None;
            }
            match quiet {
                // Pings and reconnections are client mode's.
                OnQuiet::Wait | OnQuiet::Ping | OnQuiet::Reconnect(_) => {}
                OnQuiet::Eos(why) => {
                    gst::info!(CAT, imp = self, "{why}: EOS");
                    park.finish(gst::FlowError::Eos);
                    return None;
                }
                OnQuiet::Lost(why) => {
                    park.finish(self.fail(&why, true));
                    return None;
                }
                OnQuiet::TimedOut(why) => {
                    park.finish(self.fail(&why, false));
                    return None;
                }
            }
        }
    }

    /// The streaming thread: has the connection's thread rescue it (see
    /// `rescue`) until the guard goes.
    fn rescued_by(&self, source: &Source, direct: &Direct) -> Rescued {
        let conn = self.obj().downgrade();
        let direct = direct.clone();
        source.set_rescue(Some(Arc::new(move |queued: &dyn Queued| {
            if let Some(conn) = conn.upgrade() {
                conn.imp().rescue(queued, &direct);
            }
        })));
        Rescued(source.clone())
    }

    /// Context mode: has the server's thread rescue this element's stream
    /// (see `rescue`) while the context's thread has been held in a push
    /// for `CONTEXT_HELD` (for this element or another of the context:
    /// either way nobody else reads this one's publisher), until the
    /// guard goes. A server whose publisher merely went quiet is left to
    /// the context.
    fn rescued_in_context(
        &self,
        server: &Arc<Server>,
        direct: &Direct,
        pushes: Arc<Pushes>,
    ) -> Rescued {
        let conn = self.obj().downgrade();
        let direct = direct.clone();
        server.set_rescue(Some(Arc::new(move |queued: &dyn Queued| {
            if pushes.held_for().is_some_and(|t| t >= CONTEXT_HELD)
                && let Some(conn) = conn.upgrade()
            {
                conn.imp().rescue(queued, &direct);
            }
        })));
        Rescued(Source::Server(server.clone()))
    }

    /// The connection's thread (the server's, or a client's reader), once
    /// the streaming thread has been away from the socket for a while
    /// (held downstream: a pause, or a direct push that a muxer holds
    /// until another pad has data, see the demuxer's lanes): what was read
    /// goes on to the demuxer's pad queues, so that such a downstream gets
    /// its other pad's data. Media only, while every queue has room, and
    /// never while the streaming thread delivers; the rest waits for that
    /// thread.
    fn rescue(&self, queued: &dyn Queued, direct: &Direct) {
        let _delivery = match self.delivery.try_lock() {
            Ok(d) => d,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let mut queued_any = false;
        while direct.have_room() {
            let Some((ev, at)) = queued.pop_media() else {
                break;
            };
            // Media never ends the stream (see the policy's `on_event`):
            // anything but a tag is one to skip.
            let Ok(Some(mut tag)) = self.on_event(ev, at) else {
                continue;
            };
            tag.more = true;
            queued_any = true;
            if direct.hand_over(tag, false).is_err() {
                // The streaming thread hears of it with its next tag.
                break;
            }
        }
        if queued_any {
            gst::log!(
                CAT,
                imp = self,
                "rescued the stream while the streaming thread is held"
            );
            direct.rescued();
            direct.wake();
        }
    }

    /// Whether the stream stopped on an error this element posted (a
    /// connect that failed, a connection lost for good, a server that
    /// failed), until it starts again.
    pub fn failed(&self) -> bool {
        matches!(lock(&self.state).conn, Conn::Failed)
    }

    /// The stream cannot go on: the error says why, for a user.
    fn fail(&self, why: &str, lost: bool) -> gst::FlowError {
        let mut st = lock(&self.state);
        let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        let server = matches!(st.conn, Conn::Serving(_));
        st.conn = Conn::Failed;
        drop(st);
        let text = match (lost, server) {
            (true, true) => format!("The RTMP server on {url} failed: {why}"),
            (true, false) => format!("Connection to {url} lost: {why}"),
            (false, _) => format!("{why} ({url})"),
        };
        gst::element_imp_error!(self, gst::ResourceError::Read, ("{}", text));
        gst::FlowError::Error
    }
}

impl PushSrcImpl for RtmpSrcConn {
    /// Waits for each message (without the state lock, so stats and stop
    /// stay responsive) and does what the policy says with it (a tag to
    /// the demuxer, see `Direct`), or with a silence or a loss; returns
    /// only when the stream stops, with why.
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let mut source = self.ensure_connected()?;
        if let Source::Server(server) = &source
            && let Some(ctx) = lock(&self.context).clone()
        {
            return Err(self.run_in_context(&ctx, server));
        }
        // Tags go to the demuxer straight; this returns only when the
        // stream stops (EOS, an error, a flush, a pause). The base class
        // holds no lock of its own around this call (GstBaseSrc of 1.22
        // lets go of its live lock around `create`), so a downstream that
        // holds a hand-over holds up a pause no more than it would the base
        // class's own push (tests/server.rs pauses with a pad held).
        let direct = self.direct()?;
        // The connection's thread goes on reading while a direct push is
        // held, so buffers may skip the demuxer's pad queues.
        let mut _rescued = self.rescued_by(&source, &direct);
        loop {
            let wait = lock(&self.state).policy.wait(Instant::now());
            let delivery = lock(&self.delivery);
            let next = source.next_event(wait, &self.cancel);
            let quiet = match next {
                Ok(Next::Event(ev, at)) => {
                    let r = self.on_event(ev, at).and_then(|tag| match tag {
                        Some(mut tag) => {
                            tag.more = source.has_event();
                            direct.hand_over(tag, true).map(drop)
                        }
                        // The last tag said more would follow, and this
                        // was it: the demuxer's pads must not wait for
                        // the next read.
                        None if !source.has_event() => {
                            direct.wake();
                            Ok(())
                        }
                        None => Ok(()),
                    });
                    drop(delivery);
                    direct.push_pending();
                    r?;
                    continue;
                }
                Ok(Next::Idle) => lock(&self.state).policy.on_idle(Instant::now()),
                Ok(Next::Closed) => lock(&self.state).policy.on_lost(None),
                Err(e) if is_cancelled(&e) => return Err(gst::FlowError::Flushing),
                Err(e) => lock(&self.state).policy.on_lost(Some(&e)),
            };
            drop(delivery);
            match quiet {
                OnQuiet::Wait => {}
                OnQuiet::Ping => {
                    if let Source::Client(c) = &source
                        && let Err(e) = c.ping(&self.cancel)
                        && !is_cancelled(&e)
                    {
                        source = self.reconnect(&e.to_string())?;
                        _rescued = self.rescued_by(&source, &direct);
                    }
                }
                OnQuiet::Reconnect(why) => {
                    source = self.reconnect(&why)?;
                    _rescued = self.rescued_by(&source, &direct);
                }
                OnQuiet::Eos(why) => {
                    gst::info!(CAT, imp = self, "{why}: EOS");
                    return Err(gst::FlowError::Eos);
                }
                OnQuiet::Lost(why) => return Err(self.fail(&why, true)),
                OnQuiet::TimedOut(why) => return Err(self.fail(&why, false)),
            }
        }
    }
}
