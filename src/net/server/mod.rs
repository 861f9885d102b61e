// SPDX-License-Identifier: MPL-2.0
//! RTMP servers for the elements. An event loop (mio, non-blocking sockets)
//! runs over the listening socket and every connection, so that no peer,
//! however slow or hostile, holds up a streaming thread, and a thousand
//! players cost one thread.
//!
//! Who runs the loop depends on the role. Serving players (rtmpsink), a
//! thread of its own, always. Taking a publisher (rtmpsrc), the streaming
//! thread runs it itself while it waits for the next message, so that a
//! message goes from the socket to the pad with no thread hand-off; the
//! server's thread takes the loop over only while the streaming thread has
//! been away for `HANDOVER` (the pipeline paused or blocked downstream;
//! the process's watch wakes it then, see super::watch), so that
//! handshakes, pings and deadlines never wait on the pipeline; what it
//! reads then goes to the element's rescue, if it set one (rtmpsrc's pad
//! queues take it, see `set_rescue`).
//! In a context (super::context), the context's thread stands in for the
//! streaming thread: it runs the loop a step at a time (`try_event`)
//! whenever the loop's poll (`poll_fd`) is ready.
//!
//! The loop accepts connections up to a limit, runs a [`ServerSession`] for
//! each, checks the application and stream name (and the application's own
//! verdict), and hands the rest to its role: `publish` takes one publisher
//! at a time for `rtmpsrc`, `play` serves any number of players for
//! `rtmpsink`.

mod linger;
mod play;
mod publish;

use std::collections::VecDeque;
use std::io::{ErrorKind as IoKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::rtmp::auth::{ServerAuth, Verdict};
use crate::rtmp::error::{Error, ErrorKind, Result};
use crate::rtmp::idmap::IdMap;
use crate::rtmp::secure_token::Secret;
use crate::rtmp::session::{ClientEvent, ServerConfig, ServerEvent, ServerSession};
use crate::rtmp::url::redact_key;
use crate::sync::{Signal, lock, wait_at_most};

pub use play::PlayOptions;
pub use publish::PublishOptions;

use super::client::{Cancel, Next};
use super::watch::{self, Watched};
use super::{EventQueue, Presence, Queued, Rescue};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_PEER: usize = 2;
/// How often deadlines are checked and the stats snapshot refreshed.
const TICK: Duration = Duration::from_millis(100);
/// How long a closed connection may take to read what was sent last
/// before the socket goes (so that a reset cannot discard it).
const LINGER: Duration = Duration::from_secs(2);
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// Plaintext handed to TLS at a time, so that rustls holds at most this
/// much encrypted output per connection beyond the queue.
const TLS_BATCH: usize = 64 * 1024;
/// The kernel's send buffer for a player: without a bound, Linux lets a
/// player that stops reading soak up megabytes before anything shows in
/// its queue (so it would neither skip nor be cut off in time), and a
/// thousand of them gigabytes of kernel memory. 512 KiB still carries
/// 20 Mbit/s over a 200 ms round trip.
const PLAYER_SEND_BUFFER: usize = 512 * 1024;

/// What every server needs, whatever its role.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on: a name, an IPv4 or IPv6 address.
    pub host: String,
    /// 0 picks a free port; [`Server::local_addr`] tells which.
    pub port: u16,
    /// The application clients must connect to; empty accepts any.
    pub app: String,
    /// The stream name clients must publish or play (without a query);
    /// empty accepts any (unless `keys` is set).
    pub stream: String,
    /// Further stream names (keys) that are accepted.
    pub keys: Vec<String>,
    /// Connections at once, in any state; more are closed at once.
    pub max_clients: usize,
    /// The handshake, `connect` and the start of publishing or playing must
    /// fit in it; a publisher silent for that long, or a player that reads
    /// nothing for that long, is cut off.
    pub timeout: Duration,
    pub session: ServerConfig,
    /// `rtmps://`: every connection is TLS with this configuration (our
    /// certificate, and client certificates required if it says so).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients must log in (Adobe or Limelight) before connect succeeds.
    pub auth: Option<ServerAuth>,
    /// Clients must answer a SecureToken challenge with this secret before
    /// they publish or play.
    pub secure_token: Option<Secret>,
}

/// A SecureToken challenge's nonce: the answer is the nonce itself, so it
/// comes from the system's secure random source, never a guessable one.
fn secure_nonce() -> Option<[u8; 16]> {
    let mut nonce = [0u8; 16];
    super::tls::secure_random(&mut nonce).then_some(nonce)
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Not publishing or playing yet.
    Pending,
    Publisher,
    Player,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Pending => "connecting",
            PeerKind::Publisher => "publisher",
            PeerKind::Player => "player",
        }
    }
}

/// A publish or play request, for the application to decide on.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub kind: PeerKind,
    pub addr: SocketAddr,
    pub app: String,
    /// The stream name without its query.
    pub stream: String,
    /// What followed `?` in the stream name (tokens, expiry...), if anything.
    pub query: String,
    /// The user the client logged in as, when the server asks for a login.
    pub user: Option<String>,
}

/// What happened to a connection, for bus messages and logs. Stream names
/// here are redacted.
#[derive(Debug, Clone)]
pub enum Notice {
    Started {
        id: u64,
        kind: PeerKind,
        addr: SocketAddr,
        app: String,
        stream: String,
        user: Option<String>,
    },
    Rejected {
        addr: SocketAddr,
        reason: String,
    },
    /// Something the user should hear about (as a warning), such as being
    /// out of file descriptors.
    Trouble(String),
    Closed {
        id: u64,
        kind: PeerKind,
        addr: SocketAddr,
        reason: String,
        bytes_in: u64,
        bytes_out: u64,
        dropped: u64,
    },
}

/// The element's side of the loop: told what happens, asked what to accept.
/// Both run on whichever thread runs the loop (the publish role's is often
/// the streaming thread) and must not block for long.
pub struct Hooks {
    pub notice: Box<dyn Fn(Notice) + Send + Sync>,
    pub accept: Box<dyn Fn(&StreamRequest) -> bool + Send + Sync>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            notice: Box::new(|_| {}),
            accept: Box::new(|_| true),
        }
    }
}

/// One connection's counters, as `stats` shows them.
#[derive(Debug, Clone)]
pub struct PeerStats {
    pub id: u64,
    pub kind: PeerKind,
    pub addr: SocketAddr,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Messages a player skipped because it fell behind.
    pub dropped: u64,
    /// How far behind the newest message a player's queue reaches (ms).
    pub lag_ms: u64,
    pub queued_bytes: u64,
    /// A player's pacing cap as the kernel holds it (bytes/s), where one
    /// was asked for (peak-kbps).
    pub pacing_rate: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    pub peers: Vec<PeerStats>,
    pub accepted: u64,
    pub rejected: u64,
    /// Players or publishers that have started, in all.
    pub started: u64,
    /// Messages relayed to players (play) or taken from publishers (publish).
    pub messages: u64,
    /// Bytes of the cached GOP (play).
    pub gop_bytes: u64,
}

impl ServerStats {
    /// Bytes in and out over the peers connected now.
    pub fn bytes(&self) -> (u64, u64) {
        self.peers
            .iter()
            .fold((0, 0), |(i, o), p| (i + p.bytes_in, o + p.bytes_out))
    }
}

/// Which role a server plays.
pub enum Role {
    /// Take one publisher at a time (rtmpsrc).
    Publish(PublishOptions),
    /// Serve players (rtmpsink).
    Play(PlayOptions),
}

/// What the element and the loop share.
struct Shared {
    inner: Mutex<Inner>,
    /// Play role: room in the inbox, the stream's end done, the loop gone.
    changed: Condvar,
    /// Publish role: wakes the server's thread waiting for the loop to
    /// be free, to take it (the watch) or to stop.
    handover: Signal,
    /// Publish role: what the server's thread does with what it read
    /// while it runs the loop in the streaming thread's stead (see
    /// `Server::set_rescue`).
    rescue: Mutex<Option<Rescue>>,
}

impl Watched for Shared {
    fn look(&self, now: Instant) -> Option<Instant> {
        let inner = lock(&self.inner);
        match inner.stop {
            true => None,
            false => inner.streaming.look(&self.handover, now),
        }
    }

    fn quiet(&self, now: Instant) -> bool {
        let inner = lock(&self.inner);
        inner.stop || inner.streaming.quiet(now)
    }
}

/// Publish role: the events read and not yet taken, for a rescue (see
/// `Server::set_rescue`).
struct ServerQueued<'a> {
    shared: &'a Shared,
    waker: &'a Waker,
}

impl Queued for ServerQueued<'_> {
    fn pop_media(&self) -> Option<(ClientEvent, Instant)> {
        let mut inner = lock(&self.shared.inner);
        let next = inner.events.pop_media()?;
        if resume_reading(&mut inner) {
            self.waker.wake().ok();
        }
        Some(next)
    }
}

/// After an event was taken: whether the publisher, not read while the
/// queue was full, may be read again (the loop must then be woken, once).
fn resume_reading(inner: &mut Inner) -> bool {
    let resume = inner.reading_paused && inner.events.bytes < super::MAX_QUEUED_BYTES / 2;
    if resume {
        inner.reading_paused = false;
        inner.resume_reading = true;
    }
    resume
}

/// The loop, for whichever thread runs it (see the module's notes).
struct Driver {
    lp: Mutex<Loop>,
    /// The streaming thread waits for the loop: the server's thread lets
    /// go of it after its current step.
    wanted: AtomicBool,
    waker: Arc<Waker>,
}

#[derive(Default)]
struct Inner {
    stop: bool,
    /// The loop could not go on.
    failure: Option<Error>,
    stats: ServerStats,
    // Play: messages to relay, and the end of the stream.
    inbox: VecDeque<play::Relay>,
    inbox_bytes: usize,
    finish: bool,
    finished: bool,
    // Publish: what the publisher sent, for the element.
    events: EventQueue,
    /// The publisher is not being read (the queue was full) ...
    reading_paused: bool,
    /// ... and the element has taken enough to read on: the loop's cue.
    resume_reading: bool,
    /// Reconnect requests to send (Enhanced RTMP): where to, and why.
    reconnect_requests: Vec<(Option<String>, String)>,
    /// Play: a new pacing cap for every player (kbit/s, 0: none).
    pacing: Option<u32>,
    /// Publish: the streaming thread is in `next_event` (it runs the loop
    /// or is about to), or when it last left.
    streaming: Presence,
}

/// A running server; dropping it stops the loop and closes every connection.
pub struct Server {
    shared: Arc<Shared>,
    /// Publish role: the loop, which `next_event` runs itself.
    driver: Option<Arc<Driver>>,
    waker: Arc<Waker>,
    thread: Mutex<Option<JoinHandle<()>>>,
    addr: SocketAddr,
    chunk_size: u32,
    poll_fd: RawFd,
}

fn bind(host: &str, port: u16) -> Result<std::net::TcpListener> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::new(ErrorKind::Io, format!("could not resolve '{host}': {e}")))?
        .collect();
    let mut last = None;
    for a in addrs {
        match std::net::TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => {
                let why = match e.kind() {
                    IoKind::AddrInUse => "the address is already in use".to_owned(),
                    IoKind::AddrNotAvailable => "no such local address".to_owned(),
                    IoKind::PermissionDenied => {
                        "permission denied (ports below 1024 need privileges)".to_owned()
                    }
                    _ => e.to_string(),
                };
                last = Some(Error::new(
                    ErrorKind::Io,
                    format!("could not listen on {a}: {why}"),
                ));
            }
        }
    }
    Err(last
        .unwrap_or_else(|| Error::new(ErrorKind::Io, format!("'{host}' resolved to no address"))))
}

/// Messages encoded for players and not yet handed to the loop (see
/// `Server::stage`).
#[derive(Default)]
pub struct RelayBatch {
    relays: Vec<play::Relay>,
    bytes: usize,
}

impl Server {
    /// Binds and starts the loop. Binding errors come back here, so that
    /// the element's state change fails with them.
    pub fn start(options: ServerOptions, role: Role, hooks: Hooks) -> Result<Server> {
        let std_listener = bind(&options.host, options.port)?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("listening socket: {e}")))?;
        // A listen queue for a crowd connecting at once (the kernel caps it
        // at net.core.somaxconn): with the default 128, the rest of a burst
        // of players has its SYNs dropped and retries seconds later.
        let backlog = options.max_clients.clamp(128, 65_535) as i32;
        socket2::SockRef::from(&std_listener).listen(backlog).ok();
        std_listener.set_nonblocking(true).ok();
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new().map_err(|e| Error::new(ErrorKind::Io, format!("poll: {e}")))?;
        let poll_fd = poll.as_raw_fd();
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| Error::new(ErrorKind::Io, format!("poll: {e}")))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER)
                .map_err(|e| Error::new(ErrorKind::Io, format!("poll: {e}")))?,
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            handover: Signal::default(),
            rescue: Mutex::new(None),
        });
        let chunk_size = options.session.chunk_size;
        let role = match role {
            Role::Publish(o) => RoleState::Publish(publish::PublishRole::new(o)),
            Role::Play(o) => RoleState::Play(Box::new(play::PlayRole::new(o))),
        };
        let inline = matches!(role, RoleState::Publish(_));
        let lp = Loop {
            poll,
            events: Events::with_capacity(1024),
            last_tick: Instant::now(),
            settled: false,
            listener,
            peers: IdMap::default(),
            next_token: FIRST_PEER,
            next_id: 1,
            options,
            hooks,
            scratch: vec![0u8; 64 * 1024],
            plain: Vec::with_capacity(64 * 1024),
            role,
            shared: shared.clone(),
            stats: ServerStats::default(),
            accept_blocked: false,
            told_out_of_files: None,
            told_no_pacing: false,
        };
        let driver = Arc::new(Driver {
            lp: Mutex::new(lp),
            wanted: AtomicBool::new(false),
            waker: waker.clone(),
        });
        if inline {
            let watched: Arc<dyn Watched> = shared.clone();
            watch::watch(Arc::downgrade(&watched)).map_err(|e| Error::new(ErrorKind::Io, e))?;
        }
        let d = driver.clone();
        let thread = std::thread::Builder::new()
            .name("rtmp-server".into())
            .spawn(move || {
                let r = match inline {
                    true => d.serve_when_idle(),
                    false => lock(&d.lp).run(),
                };
                let mut lp = lock(&d.lp);
                lp.close_all("server stopped");
                let mut inner = lock(&lp.shared.inner);
                if let Err(e) = r {
                    inner.failure.get_or_insert(e);
                }
                inner.finished = true;
                drop(inner);
                lp.shared.changed.notify_all();
            })
            .map_err(|e| Error::new(ErrorKind::Io, format!("could not start a thread: {e}")))?;
        Ok(Server {
            shared,
            driver: inline.then_some(driver),
            waker,
            thread: Mutex::new(Some(thread)),
            addr,
            chunk_size,
            poll_fd,
        })
    }

    /// The address actually listened on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> ServerStats {
        lock(&self.shared.inner).stats.clone()
    }

    /// The failure that stopped the loop, if one did.
    pub fn failure(&self) -> Option<Error> {
        lock(&self.shared.inner).failure.clone()
    }

    /// Wakes whichever thread waits in the loop: the loop takes what it
    /// was asked for, and a streaming thread whose element unlocked sees
    /// its `Cancel` at once (with no connection the loop has no deadline
    /// that would wake it).
    pub fn wake(&self) {
        self.waker.wake().ok();
    }

    /// Play role: encodes one message for every player into `batch`;
    /// `hand_over` gives the batch to the loop.
    pub fn stage(
        &self,
        batch: &mut RelayBatch,
        type_id: u8,
        timestamp: u32,
        parts: &[&[u8]],
    ) -> Result<()> {
        let r = play::Relay::new(type_id, timestamp, parts, self.chunk_size)?;
        batch.bytes += r.size();
        batch.relays.push(r);
        Ok(())
    }

    /// Play role: hands what `batch` holds to the loop at once, so that the
    /// loop wakes once and writes each player once for all of it (not once
    /// per message). Never waits on a socket; it waits only if the loop has
    /// fallen far behind (bounded memory), and `cancel` ends that wait.
    pub fn hand_over(&self, batch: &mut RelayBatch, cancel: &Cancel) -> Result<()> {
        if batch.relays.is_empty() {
            return Ok(());
        }
        let mut inner = lock(&self.shared.inner);
        while inner.inbox_bytes > play::MAX_INBOX_BYTES {
            if let Some(e) = &inner.failure {
                return Err(e.clone());
            }
            if cancel.is_cancelled() {
                return Err(super::client::cancelled());
            }
            inner = wait_at_most(&self.shared.changed, inner, TICK);
        }
        if let Some(e) = &inner.failure {
            return Err(e.clone());
        }
        inner.inbox_bytes += std::mem::take(&mut batch.bytes);
        inner.inbox.extend(batch.relays.drain(..));
        drop(inner);
        self.wake();
        Ok(())
    }

    /// Play role: the stream is over. Players get what is queued, then
    /// StreamEOF and onStatus, and are closed; returns once all are gone,
    /// or after `wait` (the stragglers are closed then).
    pub fn finish(&self, wait: Duration, cancel: &Cancel) -> Result<()> {
        lock(&self.shared.inner).finish = true;
        self.wake();
        let end = Instant::now() + wait;
        let mut inner = lock(&self.shared.inner);
        while !inner.finished {
            if cancel.is_cancelled() {
                return Err(super::client::cancelled());
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            inner = wait_at_most(&self.shared.changed, inner, (end - now).min(TICK));
        }
        match inner.failure.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Publish role: the next thing the publisher did, waiting up to `wait`.
    /// `StreamBegin` starts a publisher, `StreamEnded` ends one; media and
    /// metadata come in between. While nothing is queued, the calling
    /// thread runs the loop itself (see the module's notes).
    pub fn next_event(&self, wait: Duration, cancel: &Cancel) -> Result<Next> {
        // One clock read per turn (a publisher sending a message at a time
        // costs a turn or two per message).
        let mut now = Instant::now();
        let end = now + wait;
        let mut inner = lock(&self.shared.inner);
        if let Some(next) = self.take_event(&mut inner, cancel, now >= end) {
            inner.streaming.leave();
            return next;
        }
        inner.streaming.enter();
        drop(inner);
        let mut lp = self.take_loop();
        let next = loop {
            let mut inner = lock(&self.shared.inner);
            if let Some(next) = self.take_event(&mut inner, cancel, now >= end) {
                break next;
            }
            drop(inner);
            // With no connection the loop has no deadline of its own: the
            // thread sleeps until one comes, the element unlocks (see
            // `wake`) or the caller's wait ends.
            let mut slice = end.saturating_duration_since(now);
            if !lp.quiet() {
                slice = slice.min(TICK);
            }
            if let Some(end) = self.step(&mut lp, slice) {
                break end;
            }
            now = Instant::now();
        };
        drop(lp);
        let mut inner = lock(&self.shared.inner);
        inner.streaming.leave();
        next
    }

    /// Publish role: what the server's thread does with the events it read
    /// while the streaming thread has been away for `HANDOVER` (held
    /// downstream), after each step of the loop, until set to None. Without
    /// one, they wait for that thread (up to a limit, then the publisher is
    /// not read).
    pub(crate) fn set_rescue(&self, rescue: Option<Rescue>) {
        *lock(&self.shared.rescue) = rescue;
    }

    /// Publish role: whether an event is queued (the next `next_event` or
    /// `try_event` returns it at once).
    pub fn has_event(&self) -> bool {
        !lock(&self.shared.inner).events.is_empty()
    }

    /// Publish role, for a thread that serves many servers (a context, see
    /// super::context): the next event without waiting, after a step of
    /// the loop if none is queued and `steps` allows one (it counts them
    /// down); None if there is none.
    pub fn try_event(&self, cancel: &Cancel, steps: &mut u32) -> Result<Option<Next>> {
        let mut inner = lock(&self.shared.inner);
        // Queued events are taken without a clock read each: the call that
        // finds none (every service ends with one) records the leaving.
        if let Some(next) = self.take_event(&mut inner, cancel, false) {
            return next.map(Some);
        }
        if *steps == 0 {
            inner.streaming.leave();
            return Ok(None);
        }
        *steps -= 1;
        inner.streaming.enter();
        drop(inner);
        let mut lp = self.take_loop();
        let ended = self.step(&mut lp, Duration::ZERO);
        drop(lp);
        let mut inner = lock(&self.shared.inner);
        inner.streaming.leave();
        match ended {
            Some(end) => end.map(Some),
            None => self.take_event(&mut inner, cancel, false).transpose(),
        }
    }

    /// The descriptor of the loop's poll, readable when the loop has
    /// something to do (publish role: what a context waits on).
    pub fn poll_fd(&self) -> RawFd {
        self.poll_fd
    }

    /// The loop, for the streaming thread (publish role): the server's
    /// thread, if it has it, lets go after its current step.
    fn take_loop(&self) -> MutexGuard<'_, Loop> {
        let Some(driver) = &self.driver else {
            unreachable!("the streaming thread runs the loop in the publish role only")
        };
        match driver.lp.try_lock() {
            Ok(lp) => lp,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                driver.wanted.store(true, Ordering::SeqCst);
                self.wake();
                let lp = lock(&driver.lp);
                driver.wanted.store(false, Ordering::SeqCst);
                lp
            }
        }
    }

    /// One step of the loop for the streaming thread; what it ends with,
    /// if it ended (told to stop, or failed).
    fn step(&self, lp: &mut Loop, timeout: Duration) -> Option<Result<Next>> {
        match lp.step(Some(timeout)) {
            Ok(false) => None,
            Ok(true) => Some(Ok(Next::Closed)),
            Err(e) => {
                lock(&self.shared.inner).failure.get_or_insert(e.clone());
                Some(Err(e))
            }
        }
    }

    /// What `next_event` returns without waiting, if anything: an event,
    /// the loop's failure, a cancel, or the end of the wait (`waited`: the
    /// caller's latest reading of the clock is past it).
    fn take_event(&self, inner: &mut Inner, cancel: &Cancel, waited: bool) -> Option<Result<Next>> {
        if let Some((e, at)) = inner.events.pop() {
            if resume_reading(inner) {
                self.wake();
            }
            return Some(Ok(Next::Event(e, at)));
        }
        if let Some(e) = &inner.failure {
            return Some(Err(e.clone()));
        }
        if cancel.is_cancelled() {
            return Some(Err(super::client::cancelled()));
        }
        if waited {
            return Some(Ok(Next::Idle));
        }
        None
    }

    /// Asks every publisher and player to reconnect (Enhanced RTMP
    /// `NetConnection.Connect.ReconnectRequest`), to `tc_url` if given (a
    /// server being drained, or load being moved), else to this server.
    /// Returns how many clients were asked.
    pub fn request_reconnect(&self, tc_url: Option<String>, description: String) -> usize {
        let clients = lock(&self.shared.inner)
            .stats
            .peers
            .iter()
            .filter(|p| p.kind != PeerKind::Pending)
            .count();
        lock(&self.shared.inner)
            .reconnect_requests
            .push((tc_url, description));
        self.wake();
        clients
    }

    /// Play role: caps how fast every player's socket sends, those
    /// connected and those to come (kbit/s, 0: no cap; see
    /// `PlayOptions::pacing_kbps`).
    pub fn set_pacing(&self, kbps: u32) {
        lock(&self.shared.inner).pacing = Some(kbps);
        self.wake();
    }

    /// Stops the loop and closes every connection.
    pub fn stop(&self) {
        lock(&self.shared.inner).stop = true;
        self.shared.handover.notify_all();
        self.wake();
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            t.join().ok();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Compares without stopping at the first difference, so that timing does
/// not tell an attacker how much of a key was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A queued piece of output: session bytes (commands, control) or a relayed
/// media message with its time, which a player that falls behind may drop.
struct Out {
    bytes: Bytes,
    /// Unwrapped timestamp (ms) of a droppable media message.
    media_ts: Option<i64>,
}

struct Peer {
    id: u64,
    sock: TcpStream,
    /// `rtmps://`: the TLS stage between the socket and the session; `out`
    /// then holds plaintext not yet encrypted.
    tls: Option<Box<rustls::ServerConnection>>,
    /// close_notify has been queued (once everything before it was).
    close_notified: bool,
    addr: SocketAddr,
    session: ServerSession,
    out: VecDeque<Out>,
    /// Bytes of `out`'s front already written.
    out_off: usize,
    out_bytes: usize,
    kind: PeerKind,
    /// The stream being published or played.
    stream_id: u32,
    app: String,
    /// Who logged in, when a login is asked for.
    user: Option<String>,
    /// Must be publishing or playing by then.
    start_deadline: Option<Instant>,
    last_in: Instant,
    /// When the output queue last made progress (or became non-empty).
    last_out: Instant,
    /// Set once the connection is ending: written out, then closed.
    closing: Option<String>,
    /// After our side is shut: when to give up waiting for the peer.
    linger_until: Option<Instant>,
    /// The peer has closed its side (read gave 0).
    peer_closed: bool,
    read_paused: bool,
    media_bytes_out: u64,
    player: play::PlayerState,
    /// The pacing cap the kernel took for this socket (bytes/s), once one
    /// was set.
    pacing_rate: Option<u32>,
}

/// Why what a peer sent could not be taken.
enum FeedError {
    Tls(rustls::Error),
    Session(crate::rtmp::Error),
}

impl Peer {
    /// Gives the session what was read from the socket (decrypted first
    /// over TLS, into `plain`).
    fn feed(&mut self, read: &[u8], plain: &mut Vec<u8>, now: Instant) -> Result<(), FeedError> {
        let input = match self.tls.as_mut() {
            None => read,
            Some(tls) => {
                plain.clear();
                super::tls::decrypt(tls, read, plain).map_err(FeedError::Tls)?;
                &plain[..]
            }
        };
        self.session.feed(input, now).map_err(FeedError::Session)
    }

    /// A connection just taken, before its handshake: it must be
    /// publishing or playing by `start_deadline`.
    fn new(
        id: u64,
        sock: TcpStream,
        tls: Option<Box<rustls::ServerConnection>>,
        addr: SocketAddr,
        session: ServerSession,
        start_deadline: Instant,
        now: Instant,
    ) -> Self {
        Peer {
            id,
            sock,
            tls,
            close_notified: false,
            addr,
            session,
            out: VecDeque::new(),
            out_off: 0,
            out_bytes: 0,
            kind: PeerKind::Pending,
            stream_id: 0,
            app: String::new(),
            user: None,
            start_deadline: Some(start_deadline),
            last_in: now,
            last_out: now,
            closing: None,
            linger_until: None,
            peer_closed: false,
            read_paused: false,
            media_bytes_out: 0,
            player: Default::default(),
            pacing_rate: None,
        }
    }

    /// Caps how fast the socket sends (kbit/s, 0: no cap) and keeps the
    /// rate the kernel took, for `stats`.
    fn pace(&mut self, kbps: u32) -> std::io::Result<()> {
        super::set_pacing_rate((&self.sock).into(), kbps)?;
        #[cfg(target_os = "linux")]
        {
            self.pacing_rate = super::pacing_rate((&self.sock).into());
        }
        Ok(())
    }

    fn queue_session_output(&mut self) {
        let b = self.session.take_send_buf();
        if !b.is_empty() {
            self.out_bytes += b.len();
            self.out.push_back(Out {
                bytes: b,
                media_ts: None,
            });
        }
    }

    fn queue_media(&mut self, bytes: Bytes, ts: i64) {
        self.out_bytes += bytes.len();
        self.media_bytes_out += bytes.len() as u64;
        self.out.push_back(Out {
            bytes,
            media_ts: Some(ts),
        });
    }

    /// Whether anything waits to be written: queued output, or records
    /// TLS has encrypted.
    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Marks `n` bytes of the queue as taken (written, or handed to TLS).
    fn consume(&mut self, mut n: usize) {
        self.out_bytes -= n;
        while n > 0 {
            let front = self.out.front().expect("consumed bytes were queued");
            let left = front.bytes.len() - self.out_off;
            if n >= left {
                n -= left;
                self.out_off = 0;
                self.out.pop_front();
            } else {
                self.out_off += n;
                n = 0;
            }
        }
    }

    /// Over TLS: what rustls encrypted goes out first, then the next piece
    /// of the queue is encrypted, until the socket is full.
    fn flush_tls(&mut self, now: Instant) -> std::io::Result<()> {
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(());
            };
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(0) => return Err(IoKind::WriteZero.into()),
                    Ok(_) => self.last_out = now,
                    Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(front) = self.out.front() else {
                return Ok(());
            };
            let b = &front.bytes[self.out_off..];
            let n = tls.writer().write(&b[..b.len().min(TLS_BATCH)])?;
            if n == 0 {
                return Ok(());
            }
            self.consume(n);
        }
    }

    /// Writes as much as the socket takes. Returns an error when the
    /// connection is broken.
    fn flush(&mut self, now: Instant) -> std::io::Result<()> {
        if self.tls.is_some() {
            return self.flush_tls(now);
        }
        while !self.out.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (i, o) in self.out.iter().take(MAX_IOV).enumerate() {
                let b = if i == 0 {
                    &o.bytes[self.out_off..]
                } else {
                    &o.bytes[..]
                };
                iov[n_iov] = IoSlice::new(b);
                n_iov += 1;
            }
            match self.sock.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(IoKind::WriteZero.into()),
                Ok(n) => {
                    self.last_out = now;
                    self.consume(n);
                }
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Forgets what is queued: the connection is broken. TLS goes too
    /// (nothing more is read from a broken connection, nor sent).
    fn drop_output(&mut self) {
        self.out.clear();
        self.out_off = 0;
        self.out_bytes = 0;
        self.tls = None;
    }

    /// The oldest queued media time, for a player's lag.
    fn oldest_media_ts(&self) -> Option<i64> {
        self.out.iter().find_map(|o| o.media_ts)
    }

    /// TLS ends with close_notify, after everything before it: queued
    /// once, and written out as far as the socket takes it now.
    fn notify_close(&mut self, now: Instant) -> std::io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        if self.close_notified {
            return Ok(());
        }
        self.close_notified = true;
        tls.send_close_notify();
        self.flush(now)
    }

    fn close_with(&mut self, reason: impl Into<String>, now: Instant) {
        if self.closing.is_none() {
            self.closing = Some(reason.into());
            self.start_deadline = None;
            // What is queued gets a bounded time to go out.
            self.last_out = now;
        }
    }

    fn stats(&self) -> PeerStats {
        let s = self.session.stats();
        PeerStats {
            id: self.id,
            kind: self.kind,
            addr: self.addr,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out + self.media_bytes_out,
            dropped: self.player.dropped,
            lag_ms: self.player.lag_ms(self),
            queued_bytes: self.out_bytes as u64,
            pacing_rate: self.pacing_rate,
        }
    }
}

enum RoleState {
    Publish(publish::PublishRole),
    Play(Box<play::PlayRole>),
}

impl Driver {
    /// Publish role, the server's thread: runs the loop while the
    /// streaming thread has been away from it for `HANDOVER` (the watch
    /// wakes it then, see `watch`), and gives it back as soon as that
    /// thread wants it. Returns when told to stop.
    fn serve_when_idle(&self) -> Result<()> {
        let shared = lock(&self.lp).shared.clone();
        loop {
            let mut inner = lock(&shared.inner);
            loop {
                if inner.stop {
                    return Ok(());
                }
                if inner.streaming.away() {
                    break;
                }
                inner = shared.handover.wait(inner);
            }
            drop(inner);
            let mut lp = lock(&self.lp);
            self.rescue(&shared);
            while !self.wanted.load(Ordering::SeqCst) {
                if lp.step(Some(TICK))? {
                    return Ok(());
                }
                self.rescue(&shared);
            }
        }
    }

    /// Publish role, the server's thread with the loop: the rescue set, if
    /// any, is given what was read.
    fn rescue(&self, shared: &Shared) {
        let rescue = lock(&shared.rescue).clone();
        if let Some(rescue) = rescue {
            rescue(&ServerQueued {
                shared,
                waker: &self.waker,
            });
        }
    }
}

struct Loop {
    poll: Poll,
    /// Reused by every step, whichever thread runs it.
    events: Events,
    /// When deadlines were last checked.
    last_tick: Instant,
    /// At that check there was no connection (and none waiting to be
    /// accepted): the stats said so, and nothing has a deadline.
    settled: bool,
    listener: TcpListener,
    peers: IdMap<Token, Peer>,
    next_token: usize,
    next_id: u64,
    options: ServerOptions,
    hooks: Hooks,
    scratch: Vec<u8>,
    /// Plaintext of what was just read over TLS.
    plain: Vec<u8>,
    role: RoleState,
    shared: Arc<Shared>,
    stats: ServerStats,
    /// Out of file descriptors: connections wait in the listen queue until
    /// one closes (then they are accepted), and when it was last said.
    accept_blocked: bool,
    told_out_of_files: Option<Instant>,
    /// A pacing cap could not be set (a system without it): said once.
    told_no_pacing: bool,
}

/// How often being out of file descriptors is said again.
const OUT_OF_FILES_WARNING_EVERY: Duration = Duration::from_secs(10);

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        IoKind::ConnectionReset => "connection reset by the peer".into(),
        IoKind::BrokenPipe => "connection closed by the peer".into(),
        _ => e.to_string(),
    }
}

impl Loop {
    /// Runs until told to stop. With no connection nothing here has a
    /// deadline: the thread then sleeps until a peer connects or the
    /// element asks for something (every request wakes the loop).
    fn run(&mut self) -> Result<()> {
        while !self.step((!self.quiet()).then_some(TICK))? {}
        Ok(())
    }

    /// Waits up to `timeout` (None: until something happens) for the
    /// sockets and does what they and the element ask. Returns true when
    /// told to stop.
    fn step(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let polled = self.poll.poll(&mut events, timeout);
        if let Err(e) = polled
            && e.kind() != IoKind::Interrupted
        {
            self.events = events;
            return Err(Error::new(ErrorKind::Io, format!("poll failed: {e}")));
        }
        let now = Instant::now();
        {
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    t => {
                        if ev.is_read_closed() || ev.is_error() {
                            // The end is queued behind the data: read to it.
                            self.read_peer(t, now, true);
                        } else if ev.is_readable() {
                            self.read_peer(t, now, false);
                        }
                        if ev.is_writable()
                            && let Some(p) = self.peers.get_mut(&t)
                            && let Err(e) = p.flush(now)
                        {
                            p.close_with(io_reason(&e), now);
                            p.drop_output();
                        }
                    }
                }
            }
        }
        self.events = events;
        if self.take_requests(now) {
            return Ok(true);
        }
        if let RoleState::Play(play) = &self.role {
            play.end_drained_players(&mut self.peers, now);
        }
        if now.duration_since(self.last_tick) >= TICK {
            self.last_tick = now;
            self.sweep(now);
            self.publish_stats();
            self.settled = self.peers.is_empty() && !self.accept_blocked;
        }
        self.reap(now);
        Ok(false)
    }

    /// Nothing to look at until something happens: no connection, none
    /// held back in the listen queue, and the stats already say so. Each
    /// step otherwise comes back within `TICK` for the deadlines.
    fn quiet(&self) -> bool {
        self.settled && self.peers.is_empty() && !self.accept_blocked
    }

    /// Takes what the element asked for. Returns true when told to stop.
    fn take_requests(&mut self, now: Instant) -> bool {
        let (stop, inbox, finish, resume, reconnects, pacing) = {
            let mut inner = lock(&self.shared.inner);
            let inbox = std::mem::take(&mut inner.inbox);
            let reconnects = std::mem::take(&mut inner.reconnect_requests);
            let pacing = inner.pacing.take();
            let had = inner.inbox_bytes > 0;
            inner.inbox_bytes = 0;
            let resume = std::mem::take(&mut inner.resume_reading);
            let r = (inner.stop, inbox, inner.finish, resume, reconnects, pacing);
            drop(inner);
            if had {
                self.shared.changed.notify_all();
            }
            r
        };
        if stop {
            return true;
        }
        for (tc_url, why) in reconnects {
            for p in self.peers.values_mut() {
                if p.kind == PeerKind::Pending || p.closing.is_some() {
                    continue;
                }
                match p.session.request_reconnect(tc_url.as_deref(), &why) {
                    Ok(()) => p.queue_session_output(),
                    Err(e) => p.close_with(e.to_string(), now),
                }
            }
        }
        if let (Some(kbps), RoleState::Play(play)) = (pacing, &mut self.role)
            && kbps != play.pacing_kbps()
        {
            play.set_pacing_kbps(kbps);
            let failed = self.peers.values_mut().filter_map(|p| p.pace(kbps).err());
            if let Some(e) = failed.last() {
                self.cannot_pace(e);
            }
        }
        let relayed = !inbox.is_empty();
        if let RoleState::Play(play) = &mut self.role {
            for r in inbox {
                self.stats.messages += 1;
                play.relay(r, &mut self.peers);
            }
            if finish && !play.finishing {
                play.finish(&mut self.peers, now);
            }
        }
        if resume {
            let paused: Vec<Token> = self
                .peers
                .iter()
                .filter(|(_, p)| p.read_paused)
                .map(|(t, _)| *t)
                .collect();
            for t in paused {
                if let Some(p) = self.peers.get_mut(&t) {
                    p.read_paused = false;
                }
                self.read_peer(t, now, true);
            }
        }
        // Anything relayed goes out now; edge-triggered writability only
        // tells when a full socket has room again.
        for p in self.peers.values_mut() {
            if p.has_output()
                && let Err(e) = p.flush(now)
            {
                p.close_with(io_reason(&e), now);
                p.drop_output();
            }
        }
        if relayed && let RoleState::Play(play) = &self.role {
            play.check_overflows(&mut self.peers, now);
        }
        false
    }

    /// Takes the connections waiting on the listener, until none is left
    /// or no file descriptor is.
    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((sock, addr)) => self.admit(sock, addr, now),
                Err(e) if e.kind() == IoKind::WouldBlock => {
                    self.accept_blocked = false;
                    return;
                }
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors (or kernel memory): the
                    // connection stays queued and is taken when one closes.
                    self.accept_blocked = true;
                    let quiet = self
                        .told_out_of_files
                        .is_some_and(|t| now.duration_since(t) < OUT_OF_FILES_WARNING_EVERY);
                    if !quiet {
                        self.told_out_of_files = Some(now);
                        (self.hooks.notice)(Notice::Trouble(format!(
                            "cannot take new connections: {e} ({} open, max-clients {}); raise the open-file limit (ulimit -n)",
                            self.peers.len(),
                            self.options.max_clients
                        )));
                    }
                    return;
                }
            }
        }
    }

    /// A new connection becomes a peer (its handshake next), unless the
    /// server is full or its stream has ended: it is then closed, and the
    /// refusal noticed.
    fn admit(&mut self, mut sock: TcpStream, addr: SocketAddr, now: Instant) {
        self.stats.accepted += 1;
        let finishing = matches!(&self.role, RoleState::Play(p) if p.finishing);
        if self.peers.len() >= self.options.max_clients || finishing {
            self.stats.rejected += 1;
            let reason = if finishing {
                "the stream has ended".to_owned()
            } else {
                format!(
                    "too many connections (max-clients is {})",
                    self.options.max_clients
                )
            };
            (self.hooks.notice)(Notice::Rejected { addr, reason });
            return;
        }
        sock.set_nodelay(true).ok();
        if matches!(self.role, RoleState::Play(_)) {
            socket2::SockRef::from(&sock)
                .set_send_buffer_size(PLAYER_SEND_BUFFER)
                .ok();
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut sock, token, interest)
            .is_err()
        {
            return;
        }
        let tls = match &self.options.tls {
            Some(c) => match rustls::ServerConnection::new(c.clone()) {
                Ok(t) => Some(Box::new(t)),
                Err(e) => {
                    self.stats.rejected += 1;
                    let reason = format!("TLS: {e}");
                    (self.hooks.notice)(Notice::Rejected { addr, reason });
                    self.poll.registry().deregister(&mut sock).ok();
                    return;
                }
            },
            None => None,
        };
        let mut config = self.options.session.clone();
        config.handshake_timeout = self.options.timeout;
        let session = ServerSession::new(config, now, &super::handshake_random());
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.options.timeout;
        let mut peer = Peer::new(id, sock, tls, addr, session, deadline, now);
        if let RoleState::Play(play) = &self.role
            && play.pacing_kbps() > 0
            && let Err(e) = peer.pace(play.pacing_kbps())
        {
            self.cannot_pace(e);
        }
        self.peers.insert(token, peer);
    }

    /// A player's socket could not be paced (a system without it): said
    /// once; the players are served unpaced.
    fn cannot_pace(&mut self, e: std::io::Error) {
        if !std::mem::replace(&mut self.told_no_pacing, true) {
            (self.hooks.notice)(Notice::Trouble(format!(
                "peak-kbps not applied to the players: {e}"
            )));
        }
    }

    /// Reads what a connection sent and acts on it, until the socket is
    /// empty (`to_the_end`: until it says so, or ends).
    fn read_peer(&mut self, token: Token, now: Instant, to_the_end: bool) {
        loop {
            let Some(p) = self.peers.get_mut(&token) else {
                return;
            };
            if p.read_paused {
                return;
            }
            match p.sock.read(&mut self.scratch) {
                Ok(0) => {
                    p.peer_closed = true;
                    if p.closing.is_none() {
                        let why = if p.kind == PeerKind::Publisher {
                            "the publisher closed the connection"
                        } else {
                            "the peer closed the connection"
                        };
                        p.close_with(why, now);
                        p.drop_output();
                    }
                    return;
                }
                Ok(n) => {
                    p.last_in = now;
                    // Less than asked for: the socket is empty now, and
                    // (edge-triggered) says so again when more comes; no
                    // read just to hear it would block.
                    let drained = !to_the_end && n < self.scratch.len();
                    if p.closing.is_some() {
                        // Ending: what the peer still says does not matter.
                        if drained {
                            return;
                        }
                        continue;
                    }
                    if let Err(e) = p.feed(&self.scratch[..n], &mut self.plain, now) {
                        self.refuse_input(token, e, now);
                        return;
                    }
                    self.handle_events(token, now);
                    // The TLS handshake's answers go out as they come.
                    if let Some(p) = self.peers.get_mut(&token)
                        && p.has_output()
                        && let Err(e) = p.flush(now)
                    {
                        p.close_with(io_reason(&e), now);
                        p.drop_output();
                        return;
                    }
                    if drained {
                        return;
                    }
                }
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => {
                    let p = self.peers.get_mut(&token).expect("looked up above");
                    p.close_with(io_reason(&e), now);
                    p.drop_output();
                    return;
                }
            }
        }
    }

    /// A peer whose input could not be taken: a client the session
    /// refused (a SecureToken not answered) is a rejection, as a wrong key
    /// is; anything else closes the connection with what went wrong, after
    /// what the session or TLS queued to say so (a TLS alert).
    fn refuse_input(&mut self, token: Token, e: FeedError, now: Instant) {
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        let reason = match e {
            FeedError::Tls(e) => {
                if p.flush(now).is_err() {
                    p.drop_output();
                }
                let reason = format!("TLS: {e}");
                if p.kind == PeerKind::Pending {
                    return self.reject(token, reason, now);
                }
                reason
            }
            FeedError::Session(e) => {
                p.queue_session_output();
                if e.kind() == ErrorKind::Rejected {
                    return self.reject(token, e.reason().to_owned(), now);
                }
                format!("protocol error: {e}")
            }
        };
        p.close_with(reason, now);
    }

    fn handle_events(&mut self, token: Token, now: Instant) {
        loop {
            let Some(p) = self.peers.get_mut(&token) else {
                return;
            };
            let Some(ev) = p.session.poll_event() else {
                p.queue_session_output();
                return;
            };
            match ev {
                ServerEvent::ConnectRequest(params) => {
                    self.connect_request(token, &params.app, now)
                }
                ServerEvent::PublishRequest {
                    stream_id, name, ..
                } => {
                    self.stream_request(token, PeerKind::Publisher, stream_id, &name, now);
                }
                ServerEvent::PlayRequest {
                    stream_id,
                    name,
                    reset,
                    ..
                } => {
                    if let Some(p) = self.peers.get_mut(&token) {
                        p.player.reset = reset;
                    }
                    self.stream_request(token, PeerKind::Player, stream_id, &name, now);
                }
                other => match &mut self.role {
                    RoleState::Publish(r) => {
                        r.on_event(token, other, &mut self.peers, &self.shared, now)
                    }
                    RoleState::Play(r) => r.on_event(token, other, &mut self.peers, now),
                },
            }
        }
    }

    /// Checks a connect request (`app`, with any login query after a
    /// `?`): the application, the login when one is asked for, then the
    /// SecureToken challenge when one is set.
    fn connect_request(&mut self, token: Token, app: &str, now: Instant) {
        let (app, login) = app.split_once('?').unwrap_or((app, ""));
        let want = &self.options.app;
        if !want.is_empty() && app != want {
            let description = format!("no application '{app}' here");
            let reason = format!("unknown application '{app}'");
            return self.refuse_connect(token, &description, reason, now);
        }
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        if let Some(auth) = self.options.auth.as_mut() {
            let r = super::handshake_random();
            let random: [u8; 8] = r[..8].try_into().expect("8 bytes");
            match auth.check(app, login, now, &random) {
                Verdict::Accept { user } => p.user = Some(user),
                Verdict::Refuse { description, why } => {
                    return self.refuse_connect(token, &description, format!("login: {why}"), now);
                }
            }
        }
        p.app = app.to_owned();
        let accepted = match &self.options.secure_token {
            None => p.session.accept_connect(),
            Some(Secret(secret)) => match secure_nonce() {
                Some(nonce) => p.session.accept_connect_challenged(secret, &nonce),
                None => {
                    let description = "the server cannot make a SecureToken challenge";
                    let why = "no secure random numbers for a SecureToken challenge";
                    return self.refuse_connect(token, description, why.into(), now);
                }
            },
        };
        if let Err(e) = accepted {
            p.close_with(format!("protocol error: {e}"), now);
        }
    }

    /// Refuses a connect request: the peer is told `description`
    /// (NetConnection.Connect.Rejected), then the connection is refused
    /// for `reason` (what the log and the notice say).
    fn refuse_connect(&mut self, token: Token, description: &str, reason: String, now: Instant) {
        if let Some(p) = self.peers.get_mut(&token) {
            p.session
                .reject_connect("NetConnection.Connect.Rejected", description)
                .ok();
            p.queue_session_output();
        }
        self.reject(token, reason, now);
    }

    /// Checks a publish or play request and passes it to the role.
    fn stream_request(
        &mut self,
        token: Token,
        kind: PeerKind,
        stream_id: u32,
        name: &str,
        now: Instant,
    ) {
        let Some(p) = self.peers.get(&token) else {
            return;
        };
        let (stream, query) = name.split_once('?').unwrap_or((name, ""));
        let publisher = kind == PeerKind::Publisher;
        match (publisher, &self.role) {
            (true, RoleState::Publish(_)) | (false, RoleState::Play(_)) => {}
            (true, RoleState::Play(_)) | (false, RoleState::Publish(_)) => {
                let (code, what) = match publisher {
                    true => (
                        "NetStream.Publish.Denied",
                        "this server only serves players",
                    ),
                    false => (
                        "NetStream.Play.Failed",
                        "this server only takes a publisher",
                    ),
                };
                let reason = format!("{} refused: {what}", kind.as_str());
                return self.refuse_stream(token, stream_id, code, what, reason, now);
            }
        }
        let request = StreamRequest {
            kind,
            addr: p.addr,
            app: p.app.clone(),
            stream: stream.to_owned(),
            query: query.to_owned(),
            user: p.user.clone(),
        };
        let known = self.knows_stream(stream);
        if !known || !(self.hooks.accept)(&request) {
            let why = match known {
                true => "refused by the application",
                false => "unknown stream name or key",
            };
            let code = match publisher {
                true => "NetStream.Publish.Unauthorized",
                false => "NetStream.Play.StreamNotFound",
            };
            let what = if publisher { "publish" } else { "play" };
            let reason = format!("{what} of '{}' refused: {why}", redact_key(stream));
            return self.refuse_stream(token, stream_id, code, why, reason, now);
        }
        let started = match &mut self.role {
            RoleState::Publish(r) => r.start_publisher(
                token,
                stream_id,
                &mut self.peers,
                &self.shared,
                &self.hooks,
                now,
            ),
            RoleState::Play(r) => r.start_player(token, stream_id, &mut self.peers, now),
        };
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        match started {
            Ok(()) => {
                p.kind = kind;
                p.stream_id = stream_id;
                p.start_deadline = None;
                p.queue_session_output();
                self.stats.started += 1;
                (self.hooks.notice)(Notice::Started {
                    id: p.id,
                    kind,
                    addr: p.addr,
                    app: p.app.clone(),
                    stream: redact_key(stream),
                    user: p.user.clone(),
                });
            }
            Err(reason) => {
                p.queue_session_output();
                self.reject(token, reason, now);
            }
        }
    }

    /// Whether this server takes `stream` (a name or key; any when none
    /// is set), compared in constant time.
    fn knows_stream(&self, stream: &str) -> bool {
        let o = &self.options;
        let same = |k: &str| constant_time_eq(stream.as_bytes(), k.as_bytes());
        (o.stream.is_empty() && o.keys.is_empty())
            || (!o.stream.is_empty() && same(&o.stream))
            // Every key is compared, whether or not one matched already.
            || o.keys.iter().fold(false, |m, k| m | same(k))
    }

    /// Refuses a publish or play request: the peer is told `code` and
    /// `why`, then the connection is refused for `reason` (what the log
    /// and the notice say).
    fn refuse_stream(
        &mut self,
        token: Token,
        stream_id: u32,
        code: &str,
        why: &str,
        reason: String,
        now: Instant,
    ) {
        if let Some(p) = self.peers.get_mut(&token) {
            p.session.reject_stream(stream_id, code, why).ok();
            p.queue_session_output();
        }
        self.reject(token, reason, now);
    }

    /// Refuses a connection: what is queued (the refusal) goes out, then
    /// it closes.
    fn reject(&mut self, token: Token, reason: String, now: Instant) {
        self.stats.rejected += 1;
        if let Some(p) = self.peers.get_mut(&token) {
            (self.hooks.notice)(Notice::Rejected {
                addr: p.addr,
                reason: reason.clone(),
            });
            p.kind = PeerKind::Pending;
            p.close_with(reason, now);
        }
    }

    /// Deadlines: the start of a session, silent publishers, players that
    /// read nothing, closing connections that never drain.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.options.timeout;
        let secs = timeout.as_secs_f64();
        for p in self.peers.values_mut() {
            if p.closing.is_some() {
                if p.linger_until.is_none()
                    && p.has_output()
                    && now - p.last_out > LINGER.min(timeout)
                {
                    p.drop_output();
                }
                continue;
            }
            if let Err(e) = p.session.handle_timeout(now) {
                p.close_with(e.to_string(), now);
                continue;
            }
            if p.start_deadline.is_some_and(|d| now >= d) {
                p.close_with(
                    format!("did not start publishing or playing within {secs:.0} s"),
                    now,
                );
            } else if p.kind == PeerKind::Publisher && !p.read_paused && now - p.last_in > timeout {
                p.close_with(format!("the publisher sent nothing for {secs:.0} s"), now);
            } else if p.has_output() && now - p.last_out > timeout {
                p.drop_output();
                p.close_with(format!("the peer read nothing for {secs:.0} s"), now);
            }
        }
    }

    /// Ends connections that are closing and drained: our side is shut,
    /// and after the peer closes too (or LINGER) the socket goes.
    fn reap(&mut self, now: Instant) {
        let mut ended = Vec::new();
        let mut gone = Vec::new();
        for (t, p) in self.peers.iter_mut() {
            if p.closing.is_none() || p.has_output() {
                continue;
            }
            if !p.close_notified && p.tls.is_some() {
                if p.notify_close(now).is_err() {
                    p.drop_output();
                }
                if p.has_output() {
                    continue;
                }
            }
            match p.linger_until {
                None => {
                    p.sock.shutdown(Shutdown::Write).ok();
                    ended.push(*t);
                    if p.peer_closed {
                        gone.push(*t);
                    } else {
                        p.linger_until = Some(now + LINGER);
                    }
                }
                Some(until) if now >= until || p.peer_closed => gone.push(*t),
                Some(_) => {}
            }
        }
        for t in ended {
            self.ended(t, now);
        }
        let freed = !gone.is_empty();
        for t in gone {
            if let Some(mut p) = self.peers.remove(&t) {
                self.poll.registry().deregister(&mut p.sock).ok();
            }
        }
        if freed && self.accept_blocked {
            self.accept(now);
        }
        // The stream's end is done once every player has been sent all
        // and shut (lingering ones only wait for their peer).
        if let RoleState::Play(play) = &self.role
            && play.finishing
            && self.peers.values().all(|p| p.linger_until.is_some())
        {
            let mut inner = lock(&self.shared.inner);
            if !inner.finished {
                inner.finished = true;
                drop(inner);
                self.shared.changed.notify_all();
            }
        }
    }

    /// A connection has sent its last byte: the role and the application
    /// hear of it now, not when the socket finally goes.
    fn ended(&mut self, token: Token, now: Instant) {
        let Some(p) = self.peers.get(&token) else {
            return;
        };
        let reason = p.closing.clone().unwrap_or_else(|| "closed".into());
        if p.kind != PeerKind::Pending {
            let s = p.stats();
            (self.hooks.notice)(Notice::Closed {
                id: p.id,
                kind: p.kind,
                addr: p.addr,
                reason: reason.clone(),
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                dropped: s.dropped,
            });
        }
        if let RoleState::Publish(r) = &mut self.role {
            r.on_closed(token, &reason, &self.shared, now);
        }
    }

    /// The server stops: every connection goes. Those that were ending
    /// politely already (see `reap`) get what is queued for them, if it
    /// goes without waiting, and their peers' last words are read on
    /// another thread (`linger`); the others are cut.
    fn close_all(&mut self, reason: &str) {
        let now = Instant::now();
        let tokens: Vec<Token> = self.peers.keys().copied().collect();
        let mut lingering = Vec::new();
        for t in tokens {
            let Some(p) = self.peers.get_mut(&t) else {
                continue;
            };
            let ending = p.closing.is_some() && !p.peer_closed;
            let shut = p.linger_until.is_some();
            p.close_with(reason, now);
            if !shut {
                self.ended(t, now);
            }
            let Some(mut p) = self.peers.remove(&t) else {
                continue;
            };
            self.poll.registry().deregister(&mut p.sock).ok();
            if !ending {
                p.sock.shutdown(Shutdown::Both).ok();
                continue;
            }
            if !shut {
                p.notify_close(now).ok();
                p.flush(now).ok();
                p.sock.shutdown(Shutdown::Write).ok();
            }
            lingering.push((p.sock, p.linger_until.unwrap_or(now + LINGER)));
        }
        linger::hand_off(lingering);
    }

    fn publish_stats(&mut self) {
        let mut s = self.stats.clone();
        s.peers = self.peers.values().map(Peer::stats).collect();
        s.peers.sort_by_key(|p| p.id);
        if let RoleState::Play(p) = &self.role {
            s.gop_bytes = p.gop_bytes() as u64;
        }
        lock(&self.shared.inner).stats = s;
    }
}
