// SPDX-License-Identifier: MPL-2.0
//! A client connection for the elements: the streaming thread writes
//! (cancellably, with stall detection), a reader thread answers the server
//! (acknowledgements, pings) and notices errors and disconnection at once.
//! Over `rtmps://` a TLS stage sits between the socket and the session:
//! the reader decrypts what it reads, the writer encrypts what it sends.

use std::collections::VecDeque;
use std::io::{ErrorKind as IoKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use super::blocking::tcp_connect;
use super::tls::{self, TlsSettings};
use super::watch::{self, Watched};
use super::{EventQueue, Presence, Queued, Rescue, recv_now};
use crate::rtmp::auth::{ClientAuth, ClientAuthMode, Credentials, with_query};
use crate::rtmp::error::{Error, ErrorKind, Result};
use crate::rtmp::session::{
    ClientConfig, ClientEvent, ClientSession, ClientState, ConnectionStats, StopCommands,
};
use crate::rtmp::url::{RtmpUrl, Scheme};
use crate::sync::{Signal, lock, wait_at_most};

/// How often blocked socket calls look at the cancel flag.
const SLICE: Duration = Duration::from_millis(100);
/// Unsent bytes a client socket may hold (see `TCP_NOTSENT_LOWAT` where it
/// is set): some 65 ms of an 8 Mbit/s stream, 0.25 s of 2 Mbit/s.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NOTSENT_LOWAT: u32 = 64 << 10;
use super::MAX_QUEUED_BYTES;

/// How long a failed write waits for the reader to name the cause.
const READER_GRACE: Duration = Duration::from_millis(200);

/// Plaintext handed to TLS at a time: rustls holds what it encrypted until
/// the socket takes it, so this bounds that buffer too.
const TLS_BATCH: usize = 64 * 1024;
/// How a connection ended (`ClientConnection::finish`).
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub stats: ConnectionStats,
    /// The server answers pings but did not answer the one sent after the
    /// last message within the timeout: it may not have read the end.
    pub unconfirmed: bool,
}

/// The pings a publisher sends: one when the publish starts (does the
/// server answer them?) and one after its last message (see `finish`).
const PROBE_PING: u32 = 1;
const FINAL_PING: u32 = 2;
/// Marks `Shared::ping_answer` as holding an answer.
const ANSWERED: u64 = 1 << 32;
/// The most pieces one vectored write takes (a 4096-byte chunk is two:
/// its header and its payload), well under the system's IOV_MAX.
const WRITE_PIECES: usize = 64;

/// The TLS connection the reader and the writer share. Lock order: the
/// writer, then this; the reader takes this alone.
type SharedTls = Arc<Mutex<rustls::ClientConnection>>;

/// What a client connection is made with.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The RTMP session's configuration (app, stream, timeouts...).
    pub session: ClientConfig,
    /// For `rtmps://`: certificates and what to check.
    pub tls: TlsSettings,
    /// Logging in when the server asks (Adobe, Limelight).
    pub auth_mode: ClientAuthMode,
    pub credentials: Option<Credentials>,
}

/// Connects a login may take: announce, answer, and one the server may
/// ask for again; a server that wants more is not logging us in.
const MAX_LOGIN_CONNECTS: usize = 4;

/// What waiting for the next event gave.
#[derive(Debug)]
pub enum Next {
    /// An event, and when it was read from the socket.
    Event(ClientEvent, Instant),
    /// Nothing came within the wait.
    Idle,
    /// The server closed the connection and every event was taken.
    Closed,
}

/// A flag that makes a connection's blocking calls give up soon, and
/// wakes a thread that waits on it ([`Cancel::sleep_until`]) at once.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Default, Debug)]
struct CancelInner {
    flag: AtomicBool,
    lock: Mutex<()>,
    woken: Condvar,
}

impl Cancel {
    /// A flag not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag and wakes whoever sleeps on it.
    pub fn cancel(&self) {
        let _g = lock(&self.0.lock);
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.woken.notify_all();
    }

    /// Lowers the flag (a flush is over).
    pub fn reset(&self) {
        self.0.flag.store(false, Ordering::SeqCst)
    }

    /// Whether the flag is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Waits until `deadline`, or less if cancelled; returns false then.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut g = lock(&self.0.lock);
        loop {
            if self.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            g = wait_at_most(&self.0.woken, g, deadline - now);
        }
    }
}

/// A connection being opened on a thread of its own, so that the
/// streaming thread can carry on (or wait for it without holding a lock
/// that stats and state changes need). Dropped without [`Opening::wait`],
/// it waits for its thread to end (raise its cancel first): no thread
/// outlives the element that started it.
#[derive(Debug)]
pub struct Opening(Option<JoinHandle<Result<ClientConnection>>>);

impl Opening {
    /// Starts opening `url` on a thread named `thread`, not before
    /// `not_before` (a reconnection's backoff); `cancel` ends the wait and
    /// the attempt.
    pub fn start(
        thread: &str,
        url: RtmpUrl,
        options: ConnectOptions,
        cancel: &Cancel,
        not_before: Option<Instant>,
    ) -> Opening {
        let cancel = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                if let Some(at) = not_before
                    && !cancel.sleep_until(at)
                {
                    return Err(cancelled());
                }
                ClientConnection::open(&url, options, &cancel)
            })
            .expect("spawn a thread");
        Opening(Some(handle))
    }

    /// Whether the outcome is there (`wait` would not block).
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(|h| h.is_finished())
    }

    /// The connection, or why there is none.
    pub fn wait(mut self) -> Result<ClientConnection> {
        let handle = self.0.take().expect("waited for once");
        handle.join().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Closed,
                "the thread opening the connection panicked",
            ))
        })
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.join().ok();
        }
    }
}

/// `unlock` and `unlock_stop` for a base sink or source whose blocking
/// calls all watch its `cancel` ([`Cancel`]): written inside the
/// `BaseSinkImpl`/`BaseSrcImpl` block.
macro_rules! unlock_with_cancel {
    () => {
        fn unlock(&self) -> Result<(), gst::ErrorMessage> {
            self.cancel.cancel();
            Ok(())
        }

        fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
            self.cancel.reset();
            Ok(())
        }
    };
}
pub(crate) use unlock_with_cancel;

/// The error of a call that gave up because it was asked to.
pub(crate) fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "cancelled")
}

/// Whether an error is the cancel flag's doing rather than the network's.
pub fn is_cancelled(e: &Error) -> bool {
    e.kind() == ErrorKind::Cancelled
}

/// A socket read or write that only ran out of its time slice (the socket
/// timeouts are short so that cancels are seen): not an error. A real
/// ETIMEDOUT (the kernel gave up on an unacknowledged connection) is one;
/// Linux reports the slice's end as EAGAIN, Windows as a timeout.
fn slice_ended(e: &std::io::Error) -> bool {
    match e.kind() {
        IoKind::WouldBlock | IoKind::Interrupted => true,
        IoKind::TimedOut => cfg!(windows),
        _ => false,
    }
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    let why = match e.kind() {
        IoKind::ConnectionReset => "connection reset by the server".to_owned(),
        IoKind::BrokenPipe => "connection closed by the server".to_owned(),
        IoKind::TimedOut => {
            "connection timed out: the server acknowledged nothing for the timeout".to_owned()
        }
        _ => e.to_string(),
    };
    Error::new(ErrorKind::Io, format!("{what}: {why}"))
}

struct Writer {
    stream: TcpStream,
    /// Bytes taken from the session and not yet written (over TLS: not yet
    /// encrypted), in order.
    queue: VecDeque<Bytes>,
    tls: Option<SharedTls>,
}

fn stalled(stall: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "timed out writing: nothing could be written for {:.0} s (the server stopped reading, or the route to it is gone)",
            stall.as_secs_f64()
        ),
    )
}

impl Writer {
    /// Writes the queue out. Gives up with `cancelled` when asked (keeping
    /// what is unwritten, so the stream stays whole), and with a timeout
    /// when the server reads nothing for `stall`.
    fn flush(&mut self, cancel: Option<&Cancel>, stall: Duration) -> Result<()> {
        match self.tls.clone() {
            Some(t) => self.flush_tls(&t, cancel, stall),
            None => self.flush_plain(cancel, stall),
        }
    }

    /// Over TLS: what rustls has encrypted goes out first; then the next
    /// piece of the queue is encrypted. Unencrypted bytes stay queued on a
    /// cancel, as over plain TCP.
    fn flush_tls(
        &mut self,
        tls: &Mutex<rustls::ClientConnection>,
        cancel: Option<&Cancel>,
        stall: Duration,
    ) -> Result<()> {
        let mut last_progress = Instant::now();
        loop {
            if cancel.is_some_and(Cancel::is_cancelled) {
                return Err(cancelled());
            }
            let mut t = lock(tls);
            if !t.wants_write() {
                if self.queue.is_empty() {
                    return Ok(());
                }
                // The pieces (chunk headers between payloads) in one call:
                // rustls cuts records from them as from one buffer.
                let (iov, k) = front_slices(&self.queue, TLS_BATCH);
                let n = t
                    .writer()
                    .write_vectored(&iov[..k])
                    .map_err(|e| io_err("TLS", e))?;
                if n == 0 {
                    // rustls takes nothing after close_notify.
                    return Err(Error::new(ErrorKind::Closed, "the TLS session has ended"));
                }
                self.consumed(n);
                continue;
            }
            match t.write_tls(&mut self.stream) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Closed,
                        "connection closed by the server",
                    ));
                }
                Ok(_) => last_progress = Instant::now(),
                Err(e) if slice_ended(&e) => {
                    drop(t);
                    if last_progress.elapsed() >= stall {
                        return Err(stalled(stall));
                    }
                }
                Err(e) => return Err(io_err("write failed", e)),
            }
        }
    }

    /// Takes `n` written bytes off the front of the queue.
    fn consumed(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.queue.front_mut().expect("written from the queue");
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    fn flush_plain(&mut self, cancel: Option<&Cancel>, stall: Duration) -> Result<()> {
        let mut last_progress = Instant::now();
        while !self.queue.is_empty() {
            if cancel.is_some_and(Cancel::is_cancelled) {
                return Err(cancelled());
            }
            // The pieces (chunk headers, payloads written from where they
            // are) go out in one write; the kernel takes what fits.
            let (iov, k) = front_slices(&self.queue, usize::MAX);
            match self.stream.write_vectored(&iov[..k]) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Closed,
                        "connection closed by the server",
                    ));
                }
                Ok(n) => {
                    last_progress = Instant::now();
                    self.consumed(n);
                }
                Err(e) if slice_ended(&e) => {
                    if last_progress.elapsed() >= stall {
                        return Err(stalled(stall));
                    }
                }
                Err(e) => return Err(io_err("write failed", e)),
            }
        }
        Ok(())
    }
}

/// The first pieces of `queue` (at most WRITE_PIECES of them, and at most
/// `limit` bytes), for one vectored write.
fn front_slices(queue: &VecDeque<Bytes>, limit: usize) -> ([IoSlice<'_>; WRITE_PIECES], usize) {
    let mut iov = [IoSlice::new(&[]); WRITE_PIECES];
    let (mut k, mut room) = (0, limit);
    for (slot, b) in iov.iter_mut().zip(queue) {
        if room == 0 {
            break;
        }
        let take = b.len().min(room);
        *slot = IoSlice::new(&b[..take]);
        room -= take;
        k += 1;
    }
    (iov, k)
}

/// The reading side of a connection: the socket, and the TLS stage when
/// there is one.
struct Reader {
    stream: TcpStream,
    tls: Option<SharedTls>,
    host: String,
    raw: Vec<u8>,
    /// Over TLS: the plaintext of the last read.
    plain: Vec<u8>,
    /// Without TLS: how much of `raw` the last read filled.
    raw_len: usize,
    /// The last read filled `raw`: the socket most likely holds more.
    full: bool,
}

/// What one read gave.
enum Read1 {
    /// Plaintext is in `Reader::plain` (possibly none: a TLS record may
    /// carry only protocol messages).
    Data,
    /// The server closed its side.
    Closed,
    /// The socket's time slice ended with nothing read.
    Idle,
}

impl Reader {
    /// Reads once from the socket (waiting up to its time slice, or, with
    /// `wait` false, not at all) and, over TLS, decrypts it.
    fn read_once(&mut self, wait: bool) -> std::io::Result<Result<Read1>> {
        self.plain.clear();
        self.raw_len = 0;
        self.full = false;
        let got = if wait {
            self.stream.read(&mut self.raw)
        } else {
            recv_now(&self.stream, &mut self.raw)
        };
        let n = match got {
            Ok(0) => return Ok(Ok(Read1::Closed)),
            Ok(n) => n,
            Err(e) if slice_ended(&e) => return Ok(Ok(Read1::Idle)),
            Err(e) => return Err(e),
        };
        self.full = n == self.raw.len();
        let Some(t) = &self.tls else {
            // Plain TCP: the bytes read are the data, not copied again.
            self.raw_len = n;
            return Ok(Ok(Read1::Data));
        };
        let r = tls::decrypt(&mut lock(t), &self.raw[..n], &mut self.plain);
        Ok(match r {
            Ok(d) if d.closed && self.plain.is_empty() => Ok(Read1::Closed),
            Ok(_) => Ok(Read1::Data),
            Err(e) => Err(tls::tls_error(&e, &self.host)),
        })
    }

    /// What the last read gave the session.
    fn data(&self) -> &[u8] {
        if self.tls.is_some() {
            &self.plain
        } else {
            &self.raw[..self.raw_len]
        }
    }

    /// Whether TLS has records of its own to send (an alert, a key update).
    fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| lock(t).wants_write())
    }
}

/// Socket options for an RTMP connection: read and write slices (so that
/// a cancel is seen), a bound on unacknowledged data, and little unsent
/// data held by the kernel.
fn tune_socket(stream: &TcpStream, timeout: Duration) {
    stream.set_read_timeout(Some(SLICE)).ok();
    stream.set_write_timeout(Some(SLICE)).ok();
    // What we sent and the server never acknowledged (the route is
    // gone, the server's host is down) ends the connection after the
    // timeout, instead of the kernel's retries of a quarter of an hour.
    let sock = socket2::SockRef::from(stream);
    sock.set_tcp_user_timeout(Some(timeout)).ok();
    // Bytes the kernel holds unsent are only delay: past this many, a
    // write waits, so a slow uplink slows the pipeline (where a live
    // source drops frames) instead of queueing seconds of stream in
    // the socket. Bytes in flight do not count: a fast route still fills.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_notsent_lowat(NOTSENT_LOWAT).ok();
}

/// The TLS handshake of an rtmps connection: the connection, and its
/// version and cipher suite for the logs. What the server sent after it
/// goes to `early_plain`.
fn start_tls(
    stream: &mut TcpStream,
    url: &RtmpUrl,
    settings: &TlsSettings,
    timeout: Duration,
    cancel: &Cancel,
    early_plain: &mut Vec<u8>,
) -> Result<(rustls::ClientConnection, String)> {
    let config = tls::client_config(settings)?;
    let mut conn = rustls::ClientConnection::new(config, tls::server_name(&url.host)?)
        .map_err(|e| tls::tls_error(&e, &url.host))?;
    tls_handshake(stream, &mut conn, &url.host, timeout, cancel, early_plain)?;
    let info = format!(
        "{} {}",
        conn.protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS"),
        conn.negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("")
    );
    Ok((conn, info))
}

/// Drives a new session (handshake, connect, createStream, publish or
/// play) until it streams; gives the events it raised on the way. A
/// publisher then sends a ping, to learn whether the server answers them.
fn drive_to_stream(
    session: &mut ClientSession,
    reader: &mut Reader,
    writer: &mut Writer,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<VecDeque<ClientEvent>> {
    let mut early = VecDeque::new();
    loop {
        session.take_send_pieces(&mut writer.queue);
        writer.flush(Some(cancel), timeout)?;
        if matches!(
            session.state(),
            ClientState::Publishing { .. } | ClientState::Playing { .. }
        ) {
            break;
        }
        match reader
            .read_once(true)
            .map_err(|e| io_err("read failed", e))??
        {
            Read1::Closed => {
                // A TLS server that wants a client certificate (or
                // another one) takes the TLS handshake, then hangs up.
                let hint = if reader.tls.is_some() && session.state() == ClientState::Handshaking {
                    " right after the TLS handshake: it may require a client certificate (tls-certificate-file, tls-key-file) it trusts"
                } else {
                    ""
                };
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!(
                        "server closed the connection during {}{hint}",
                        stage_name(session.state())
                    ),
                ));
            }
            Read1::Data => session.feed(reader.data(), Instant::now())?,
            Read1::Idle => {}
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        session.handle_timeout(Instant::now())?;
        while let Some(ev) = session.poll_event() {
            early.push_back(ev);
        }
    }
    while let Some(ev) = session.poll_event() {
        early.push_back(ev);
    }
    if matches!(session.state(), ClientState::Publishing { .. }) {
        // Whether the server answers pings: then the end of the stream
        // waits for its answer to one (see `finish`).
        session.ping(PROBE_PING)?;
        session.take_send_pieces(&mut writer.queue);
        writer.flush(Some(cancel), timeout)?;
    }
    Ok(early)
}

/// Runs the TLS handshake over `stream` within `timeout`; what the server
/// sent after it (normally nothing yet) is left in `plain`.
fn tls_handshake(
    stream: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
    host: &str,
    timeout: Duration,
    cancel: &Cancel,
    plain: &mut Vec<u8>,
) -> Result<()> {
    let end = Instant::now() + timeout;
    let mut buf = vec![0u8; 16 * 1024];
    let late = || {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "TLS handshake with {host} did not finish within {:.0} s (does that port speak rtmps://?)",
                timeout.as_secs_f64()
            ),
        )
    };
    loop {
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(_) => {}
                Err(e) if slice_ended(&e) => {
                    if Instant::now() >= end {
                        return Err(late());
                    }
                }
                Err(e) => return Err(io_err("TLS handshake", e)),
            }
        }
        if !tls.is_handshaking() {
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        if Instant::now() >= end {
            return Err(late());
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!("{host} closed the connection during the TLS handshake"),
                ));
            }
            Ok(n) => {
                if let Err(e) = tls::decrypt(tls, &buf[..n], plain) {
                    // Tell the server why (the alert rustls queued).
                    let _ = tls.write_tls(stream);
                    return Err(tls::tls_error(&e, host));
                }
            }
            Err(e) if slice_ended(&e) => {}
            Err(e) => return Err(io_err("TLS handshake", e)),
        }
    }
}

struct Shared {
    session: Mutex<ClientSession>,
    writer: Mutex<Writer>,
    /// The first failure the reader saw: the connection cannot go on.
    failure: Mutex<Option<Error>>,
    /// Events for the owner (the play side reads these; a publisher may
    /// ignore them), bounded in bytes: a full queue stops the reader, so a
    /// stalled pipeline slows the server down through TCP instead of
    /// filling memory.
    events: Mutex<EventQueue>,
    events_changed: Signal,
    server_closed: AtomicBool,
    /// The value the server's last PingResponse carried, with ANSWERED
    /// set; 0 before the first.
    ping_answer: AtomicU64,
    stop_reader: AtomicBool,
    timeout: Duration,
    opened: Instant,
    /// The socket's reading side. The reader thread has it, except while
    /// a player's streaming thread waits in `next_event`: that thread
    /// reads itself then, so that a message goes from the socket to the
    /// pad with no thread hand-off (a publisher never calls it, and its
    /// reader thread reads all along).
    reader: Mutex<Reader>,
    turns: Mutex<Turns>,
    /// Wakes the reader thread waiting for its turn: to take it (the
    /// watch) or to stop.
    turn_changed: Signal,
    /// The streaming thread waits for the reader thread to let go.
    wanted: AtomicBool,
    /// A player: what the reader thread does with what it read while it
    /// reads in the streaming thread's stead (see `set_rescue`).
    rescue: Mutex<Option<Rescue>>,
}

impl Watched for Shared {
    fn look(&self, now: Instant) -> Option<Instant> {
        let t = lock(&self.turns);
        if self.stop_reader.load(Ordering::SeqCst) {
            return None;
        }
        t.streaming.look(&self.turn_changed, now)
    }

    fn quiet(&self, now: Instant) -> bool {
        self.stop_reader.load(Ordering::SeqCst) || lock(&self.turns).streaming.quiet(now)
    }
}

impl Queued for Shared {
    fn pop_media(&self) -> Option<(ClientEvent, Instant)> {
        let mut q = lock(&self.events);
        let full = q.bytes > MAX_QUEUED_BYTES;
        let next = q.pop_media()?;
        drop(q);
        if full {
            // The reader thread waits for room.
            self.events_changed.notify_all();
        }
        Some(next)
    }
}

/// Who reads a player's socket (see `Shared::reader`).
#[derive(Default)]
struct Turns {
    /// The streaming thread has read itself: it is a player.
    streaming_reads: bool,
    streaming: Presence,
}

impl Turns {
    /// Whether the reader thread reads now: for a publisher always, for a
    /// player while its streaming thread is away.
    fn reader_thread_reads(&self) -> bool {
        !self.streaming_reads || self.streaming.away()
    }
}

/// An open client connection, publishing or playing.
pub struct ClientConnection {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    url: RtmpUrl,
    /// Over TLS: the protocol version and cipher suite agreed.
    tls_info: Option<String>,
    /// The codecs the server announced in its connect answer (Enhanced
    /// RTMP `fourCcList`); `None` if it announced none.
    server_codecs: Option<Vec<String>>,
    /// The pacing cap on the socket, in kbit/s (0: none), as last set.
    paced_kbps: AtomicU32,
}

/// The `fourCcList` of a connect answer's command object, if it has one.
fn announced_codecs(events: &VecDeque<ClientEvent>) -> Option<Vec<String>> {
    events.iter().find_map(|ev| match ev {
        ClientEvent::Connected { properties, .. } => match properties.get("fourCcList")? {
            crate::rtmp::amf0::Amf0Value::StrictArray(list) => Some(
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    })
}

impl ClientConnection {
    /// Connects (over TLS for `rtmps://`), runs the handshake,
    /// `connect` and `createStream`, and starts publishing or playing,
    /// logging in (on new connections) when the server asks. Each network
    /// wait is bounded by the configuration's response timeout; `cancel`
    /// stops it sooner.
    pub fn open(url: &RtmpUrl, options: ConnectOptions, cancel: &Cancel) -> Result<Self> {
        let mut login = ClientAuth::new(
            options.auth_mode,
            options.credentials.clone(),
            &options.session.app,
        );
        for _ in 0..MAX_LOGIN_CONNECTS {
            let mut config = options.session.clone();
            if let Some(q) = login.connect_query() {
                config.app = with_query(&config.app, q);
                config.tc_url = with_query(&config.tc_url, q);
            }
            match Self::open_once(url, config, &options.tls, cancel) {
                Err(e) => match e.refusal() {
                    Some(r) if r.command == "connect" && r.description.contains("authmod=") => {
                        let nonce = super::handshake_random();
                        let nonce = u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]);
                        login.on_refused(&r.description, nonce)?;
                    }
                    _ => return Err(e),
                },
                ok => return ok,
            }
        }
        Err(Error::new(
            ErrorKind::Rejected,
            "authentication failed: the server kept asking for a login",
        ))
    }

    fn open_once(
        url: &RtmpUrl,
        config: ClientConfig,
        tls: &TlsSettings,
        cancel: &Cancel,
    ) -> Result<Self> {
        let timeout = config.response_timeout;
        let mut stream = tcp_connect(url, timeout)?;
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        tune_socket(&stream, timeout);
        // What the server sent on after the TLS handshake, in plain text.
        let mut early_plain = Vec::new();
        let (tls, tls_info) = match url.scheme {
            Scheme::Rtmp => (None, None),
            Scheme::Rtmps => {
                let (conn, info) =
                    start_tls(&mut stream, url, tls, timeout, cancel, &mut early_plain)?;
                (Some(Arc::new(Mutex::new(conn))), Some(info))
            }
        };
        let now = Instant::now();
        let mut session = ClientSession::new(config, now, &super::handshake_random());
        if !early_plain.is_empty() {
            session.feed(&early_plain, now)?;
        }
        let mut reader = Reader {
            stream: stream.try_clone().map_err(|e| io_err("socket", e))?,
            tls: tls.clone(),
            host: url.host.clone(),
            raw: vec![0u8; 64 * 1024],
            plain: Vec::with_capacity(64 * 1024),
            raw_len: 0,
            full: false,
        };
        let mut writer = Writer {
            stream,
            queue: VecDeque::new(),
            tls,
        };
        let early = drive_to_stream(&mut session, &mut reader, &mut writer, timeout, cancel)?;
        let server_codecs = announced_codecs(&early);
        let shared = Arc::new(Shared {
            session: Mutex::new(session),
            writer: Mutex::new(writer),
            failure: Mutex::new(None),
            events: Mutex::new(EventQueue::with(early, Instant::now())),
            events_changed: Signal::default(),
            server_closed: AtomicBool::new(false),
            ping_answer: AtomicU64::new(0),
            stop_reader: AtomicBool::new(false),
            timeout,
            opened: Instant::now(),
            reader: Mutex::new(reader),
            turns: Mutex::default(),
            turn_changed: Signal::default(),
            wanted: AtomicBool::new(false),
            rescue: Mutex::new(None),
        });
        let s2 = shared.clone();
        let reader = std::thread::Builder::new()
            .name("rtmp-reader".into())
            .spawn(move || read_loop(&s2))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("could not start the reader thread: {e}"),
                )
            })?;
        Ok(ClientConnection {
            shared,
            reader: Some(reader),
            url: url.clone(),
            tls_info,
            server_codecs,
            paced_kbps: AtomicU32::new(0),
        })
    }

    pub fn url(&self) -> &RtmpUrl {
        &self.url
    }

    /// Over TLS, what was agreed ("TLSv1_3 TLS13_AES_256_GCM_SHA384").
    pub fn tls_info(&self) -> Option<&str> {
        self.tls_info.as_deref()
    }

    /// The codecs the server announced (Enhanced RTMP `fourCcList`), if it
    /// announced any; "*" means any.
    pub fn server_codecs(&self) -> Option<&[String]> {
        self.server_codecs.as_deref()
    }

    /// The failure that ended the connection, if one did.
    pub fn failure(&self) -> Option<Error> {
        lock(&self.shared.failure).clone()
    }

    pub fn stats(&self) -> ConnectionStats {
        lock(&self.shared.session).stats()
    }

    pub fn poll_event(&self) -> Option<ClientEvent> {
        let e = lock(&self.shared.events).pop().map(|(e, _)| e);
        // Only when there was one: a notify is a syscall even with no one
        // waiting, and a publisher asks after every message.
        if e.is_some() {
            self.shared.events_changed.notify_all();
        }
        e
    }

    /// Waits up to `wait` for the next event. A failure of the connection
    /// comes as an error once the events before it are taken; `cancel`
    /// ends the wait early with a `cancelled` error. While nothing is
    /// queued, the calling thread reads the socket itself (see
    /// `Shared::reader`).
    pub fn next_event(&self, wait: Duration, cancel: &Cancel) -> Result<Next> {
        let shared = &*self.shared;
        let end = Instant::now() + wait;
        if let Some(next) = self.take_event(cancel, end) {
            lock(&shared.turns).streaming.leave();
            return next;
        }
        {
            let mut t = lock(&shared.turns);
            if !t.streaming_reads {
                // A player: from now on the reader thread waits while
                // this thread reads, and the watch wakes it should this
                // thread stay away.
                t.streaming_reads = true;
                let watched: Arc<dyn Watched> = self.shared.clone();
                watch::watch(Arc::downgrade(&watched)).map_err(|e| Error::new(ErrorKind::Io, e))?;
            }
            t.streaming.enter();
        }
        let mut reader = match shared.reader.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // The reader thread lets go after its current read.
                shared.wanted.store(true, Ordering::SeqCst);
                let r = lock(&shared.reader);
                shared.wanted.store(false, Ordering::SeqCst);
                r
            }
        };
        let next = loop {
            if let Some(next) = self.take_event(cancel, end) {
                break next;
            }
            if !read_step(&mut reader, shared, true) && self.take_event(cancel, end).is_none() {
                break Ok(Next::Closed);
            }
        };
        drop(reader);
        lock(&shared.turns).streaming.leave();
        next
    }

    /// A player: what the reader thread does with the events it read while
    /// the streaming thread has been away for `HANDOVER` (held downstream),
    /// after each read, until set to None. Without one, they wait for that
    /// thread (up to a limit, then the socket is not read).
    pub(crate) fn set_rescue(&self, rescue: Option<Rescue>) {
        *lock(&self.shared.rescue) = rescue;
    }

    /// Whether the next `next_event` returns at once: an event is queued,
    /// or the last read filled the read buffer and the socket, read now
    /// without waiting, held more. A stream coming faster than it is
    /// played (a backlog, a file served as fast as it is read) is then
    /// demuxed a buffer or several at a time before the pads' threads are
    /// woken, and a live one, read a frame at a time, wakes them at once.
    pub fn has_event(&self) -> bool {
        if !lock(&self.shared.events).is_empty() {
            return true;
        }
        // The reader thread may be reading: then it is not for us to.
        let Ok(mut reader) = self.shared.reader.try_lock() else {
            return false;
        };
        reader.full
            && read_step(&mut reader, &self.shared, false)
            && !lock(&self.shared.events).is_empty()
    }

    /// What `next_event` returns without waiting, if anything: an event,
    /// the end of the connection, a cancel, or the end of the wait.
    fn take_event(&self, cancel: &Cancel, end: Instant) -> Option<Result<Next>> {
        let mut q = lock(&self.shared.events);
        let full = q.bytes > MAX_QUEUED_BYTES;
        if let Some((e, at)) = q.pop() {
            drop(q);
            if full {
                // The reader thread waits for room.
                self.shared.events_changed.notify_all();
            }
            return Some(Ok(Next::Event(e, at)));
        }
        drop(q);
        if let Some(e) = self.failure() {
            return Some(Err(e));
        }
        if self.shared.server_closed.load(Ordering::SeqCst) {
            return Some(Ok(Next::Closed));
        }
        if cancel.is_cancelled() {
            return Some(Err(cancelled()));
        }
        if Instant::now() >= end {
            return Some(Ok(Next::Idle));
        }
        None
    }

    fn check(&self) -> Result<()> {
        match self.failure() {
            Some(e) => Err(e),
            None if self.shared.server_closed.load(Ordering::SeqCst) => Err(Error::new(
                ErrorKind::Closed,
                "the server closed the connection",
            )),
            None => Ok(()),
        }
    }

    /// Sends one audio, video or data message made of `parts` and writes
    /// it out. On `cancelled` the bytes stay queued and go out first next time.
    pub fn send_media_parts(
        &self,
        type_id: u8,
        timestamp: u32,
        parts: &[&[u8]],
        cancel: &Cancel,
    ) -> Result<()> {
        self.queue_media_parts(type_id, timestamp, parts)?;
        self.flush(cancel)
    }

    /// Encodes a message without writing it yet (see `flush`): a batch of
    /// messages then goes out in one write.
    pub fn queue_media_parts(&self, type_id: u8, timestamp: u32, parts: &[&[u8]]) -> Result<()> {
        self.check()?;
        lock(&self.shared.session).send_media_parts(type_id, timestamp, parts)
    }

    /// Like [`queue_media_parts`](Self::queue_media_parts), with pieces
    /// the connection may keep: the big ones are not copied but written
    /// from where they are, between the chunk headers, in one vectored
    /// write (to the socket, or to TLS, which cuts its records from them
    /// as from one buffer).
    pub fn queue_media_shared(&self, type_id: u8, timestamp: u32, parts: &[Bytes]) -> Result<()> {
        self.check()?;
        lock(&self.shared.session).send_media_shared(type_id, timestamp, parts)
    }

    /// Caps the rate the socket sends at (kbit/s, 0: no cap; see
    /// `set_pacing_rate`), if it is not that already. A system without
    /// pacing says so once in `Err`; the stream goes on unpaced.
    pub fn pace(&self, kbps: u32) -> Result<()> {
        // Per flush: a plain load while the cap stays as it is.
        if self.paced_kbps.load(Ordering::Relaxed) == kbps {
            return Ok(());
        }
        self.paced_kbps.store(kbps, Ordering::Relaxed);
        super::set_pacing_rate((&lock(&self.shared.writer).stream).into(), kbps).map_err(|e| {
            Error::new(
                ErrorKind::Unsupported,
                format!("cannot pace the socket: {e}"),
            )
        })
    }

    /// The socket's pacing cap in bytes per second (`u32::MAX`: none).
    #[cfg(target_os = "linux")]
    pub fn pacing_rate(&self) -> Option<u32> {
        super::pacing_rate((&lock(&self.shared.writer).stream).into())
    }

    /// Writes out everything encoded so far. On `cancelled` the bytes stay
    /// queued and go out first next time, so the stream stays whole.
    pub fn flush(&self, cancel: &Cancel) -> Result<()> {
        self.check()?;
        let mut w = lock(&self.shared.writer);
        lock(&self.shared.session).take_send_pieces(&mut w.queue);
        match w.flush(Some(cancel), self.shared.timeout) {
            Err(e) if !is_cancelled(&e) => {
                drop(w);
                // The reader may see the cause (the kernel's timeout, say,
                // where the writer then only finds the pipe broken): a
                // moment for it to say so, so that the error names it.
                if e.kind() == ErrorKind::Io || e.kind() == ErrorKind::Closed {
                    let end = Instant::now() + READER_GRACE;
                    let mut q = lock(&self.shared.events);
                    while self.failure().is_none()
                        && !self.shared.server_closed.load(Ordering::SeqCst)
                        && Instant::now() < end
                    {
                        q = self.shared.events_changed.wait_at_most(q, READER_GRACE);
                    }
                }
                self.fail(e.clone());
                Err(self.failure().unwrap_or(e))
            }
            r => r,
        }
    }

    /// Sends a ping to the server now (see `ClientSession::ping`).
    pub fn ping(&self, cancel: &Cancel) -> Result<()> {
        self.check()?;
        let ms = Instant::now()
            .duration_since(self.shared.opened)
            .as_millis() as u32;
        lock(&self.shared.session).ping(ms)?;
        self.flush(cancel)
    }

    /// Asks the server for the played stream from `millis` on (see
    /// `ClientSession::seek`).
    pub fn seek(&self, millis: u32, cancel: &Cancel) -> Result<()> {
        self.check()?;
        lock(&self.shared.session).seek(millis)?;
        self.flush(cancel)
    }

    fn fail(&self, e: Error) {
        let mut f = lock(&self.shared.failure);
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// Ends politely: the chosen stop commands, everything written, the
    /// server's answer to a last ping awaited (when it answers pings),
    /// our side shut, then a bounded wait for the server to close.
    pub fn finish(mut self, cmds: StopCommands, cancel: &Cancel) -> Result<Finished> {
        let r = self.finish_inner(cmds, cancel);
        self.close();
        r.map(|unconfirmed| Finished {
            stats: self.stats(),
            unconfirmed,
        })
    }

    /// Waits (at most the connection's timeout) until the server answers
    /// the ping `value`, closes, or the connection fails or is cancelled;
    /// false when the time ran out first.
    fn wait_for_ping_answer(&self, value: u32, cancel: &Cancel) -> bool {
        self.wait_until(self.shared.timeout, || {
            self.shared.ping_answer.load(Ordering::SeqCst) == ANSWERED | u64::from(value)
                || self.shared.server_closed.load(Ordering::SeqCst)
                || self.failure().is_some()
                || cancel.is_cancelled()
        })
    }

    /// Waits until `done` (looked at whenever the reader signals the
    /// condition, and every SLICE) or for `limit`; whether `done` came.
    fn wait_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut q = lock(&self.shared.events);
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            q = self
                .shared
                .events_changed
                .wait_at_most(q, (end - now).min(SLICE));
        }
    }

    /// Returns whether the server, which answers pings, left the last one
    /// unanswered for the whole timeout (so may not have read everything).
    fn finish_inner(&self, cmds: StopCommands, cancel: &Cancel) -> Result<bool> {
        self.check()?;
        let mut w = lock(&self.shared.writer);
        let confirm = {
            let mut s = lock(&self.shared.session);
            s.stop_with(cmds)?;
            // A ping after the last message, if the server answers them.
            let confirm = s.pings_answered() > 0;
            if confirm {
                s.ping(FINAL_PING)?;
            }
            s.take_send_pieces(&mut w.queue);
            confirm
        };
        // Everything queued goes out before TLS's close_notify: a peer
        // stops reading at that alert, and what came after it is lost.
        w.flush(Some(cancel), self.shared.timeout)?;
        let mut unconfirmed = false;
        if confirm {
            // Closing our side may end the connection before the server
            // has read all that is on its way: a proxy in front of it (an
            // RTMPS terminator such as nginx's stream module) closes its
            // own connection to the server when we close ours, and what
            // the server had not read yet is lost in the reset. The
            // server's answer to the last ping says that it has read
            // everything before it.
            unconfirmed = !self.wait_for_ping_answer(FINAL_PING, cancel);
        }
        if let Some(t) = &w.tls {
            lock(t).send_close_notify();
            w.flush(Some(cancel), self.shared.timeout)?;
        }
        w.stream.shutdown(Shutdown::Write).ok();
        // Closing while the kernel still holds bytes for a slow uplink
        // would lose them (the server's answers, unread after close, make
        // it a reset): wait until the server has every byte.
        let sent = super::wait_sent(&w.stream, self.shared.timeout, cancel);
        drop(w);
        sent?;
        // The server closes once it has read everything: wait for that
        // (the reader says so on the condition).
        self.wait_until(self.shared.timeout.min(Duration::from_secs(3)), || {
            self.shared.server_closed.load(Ordering::SeqCst) || cancel.is_cancelled()
        });
        Ok(unconfirmed)
    }

    fn close(&mut self) {
        self.shared.stop_reader.store(true, Ordering::SeqCst);
        {
            let _t = lock(&self.shared.turns);
            self.shared.turn_changed.notify_all();
        }
        if let Ok(w) = self.shared.writer.try_lock() {
            w.stream.shutdown(Shutdown::Both).ok();
        }
        if let Some(h) = self.reader.take() {
            h.join().ok();
        }
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.close();
    }
}

fn stage_name(s: ClientState) -> &'static str {
    match s {
        ClientState::Handshaking => "the handshake",
        ClientState::Connecting => "connect",
        ClientState::CreatingStream => "createStream",
        ClientState::StartingPublish { .. } => "publish",
        ClientState::StartingPlay { .. } => "play",
        _ => "the session",
    }
}

fn read_loop(shared: &Shared) {
    loop {
        // A player's streaming thread reads itself while it is around.
        let mut t = lock(&shared.turns);
        loop {
            if shared.stop_reader.load(Ordering::SeqCst) {
                return;
            }
            if t.reader_thread_reads() {
                break;
            }
            t = shared.turn_changed.wait(t);
        }
        drop(t);
        let mut reader = lock(&shared.reader);
        rescue(shared);
        loop {
            if shared.stop_reader.load(Ordering::SeqCst) || !read_step(&mut reader, shared, true) {
                return;
            }
            rescue(shared);
            if shared.wanted.load(Ordering::SeqCst) {
                break;
            }
        }
    }
}

/// The reader thread, reading in a player's streaming thread's stead: the
/// rescue set, if any, is given what was read.
fn rescue(shared: &Shared) {
    let rescue = lock(&shared.rescue).clone();
    if let Some(rescue) = rescue {
        rescue(shared);
    }
}

/// Reads once (`wait`: see `Reader::read_once`) and hands what came to the
/// session and the event queue; false once the connection is over (closed,
/// or failed: `failure` says).
fn read_step(reader: &mut Reader, shared: &Shared, wait: bool) -> bool {
    let fail = |e: Error| {
        let mut f = lock(&shared.failure);
        if f.is_none() {
            *f = Some(e);
        }
        drop(f);
        shared.events_changed.notify_all();
    };
    match reader.read_once(wait) {
        Ok(Ok(Read1::Closed)) => {
            shared.server_closed.store(true, Ordering::SeqCst);
            shared.events_changed.notify_all();
            false
        }
        Ok(Ok(Read1::Data)) => {
            // A full queue: wait for the owner before reading more (only
            // the reader thread gets here with one: the streaming thread
            // reads when the queue is empty).
            {
                let mut q = lock(&shared.events);
                while q.bytes > MAX_QUEUED_BYTES && !shared.stop_reader.load(Ordering::SeqCst) {
                    q = shared.events_changed.wait_at_most(q, SLICE);
                }
            }
            let pending = {
                let mut s = lock(&shared.session);
                let answered = s.pings_answered();
                if let Err(e) = s.feed(reader.data(), Instant::now()) {
                    drop(s);
                    fail(e);
                    return false;
                }
                let mut evs = lock(&shared.events);
                let read_at = Instant::now();
                // `finish` waits for a ping's answer on the condition (set
                // under its lock, so that the waiter cannot miss it).
                let mut any = s.pings_answered() != answered;
                if any && let Some(v) = s.last_ping_answer() {
                    shared
                        .ping_answer
                        .store(ANSWERED | u64::from(v), Ordering::SeqCst);
                }
                while let Some(ev) = s.poll_event() {
                    evs.push(ev, read_at);
                    any = true;
                }
                drop(evs);
                if any {
                    shared.events_changed.notify_all();
                }
                s.pending_bytes() > 0
            };
            // Acknowledgements, ping answers and TLS's own records go
            // out now unless the streaming thread is writing (it will
            // take them along).
            if (pending || reader.tls_wants_write())
                && let Ok(mut w) = shared.writer.try_lock()
            {
                lock(&shared.session).take_send_pieces(&mut w.queue);
                if let Err(e) = w.flush(None, shared.timeout) {
                    drop(w);
                    fail(e);
                    return false;
                }
            }
            true
        }
        Ok(Ok(Read1::Idle)) => true,
        Ok(Err(e)) => {
            fail(e);
            false
        }
        Err(e) => {
            if !shared.stop_reader.load(Ordering::SeqCst) {
                fail(io_err("connection lost", e));
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Many pieces, some of a byte, through a socket that takes a little
    /// at a time: every byte arrives, in order, and the queue empties.
    #[test]
    fn vectored_writes_keep_pieces_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(4096)
            .unwrap();
        stream.set_write_timeout(Some(SLICE)).unwrap();
        let mut want = Vec::new();
        let mut queue = VecDeque::new();
        for i in 0..300usize {
            let len = [1, 3, 4096, 12, 777, 65_536][i % 6];
            let piece: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            want.extend_from_slice(&piece);
            queue.push_back(Bytes::from(piece));
        }
        let total = want.len();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(total);
            let mut buf = [0u8; 5000];
            while got.len() < total {
                let n = peer.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {} of {total} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let mut w = Writer {
            stream,
            queue,
            tls: None,
        };
        w.flush(None, Duration::from_secs(30)).unwrap();
        assert!(w.queue.is_empty());
        assert!(reader.join().unwrap() == want);
    }
}
