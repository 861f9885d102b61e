// SPDX-License-Identifier: MPL-2.0
//! Drivers that run the sans-IO core over real sockets.
//!
//! The rule for which runs where (one concurrency model per job):
//!
//! - [`client`]: the elements in client mode. The streaming thread writes
//!   (so a slow server slows the pipeline, and a cancel unblocks it within
//!   a socket time slice); one reader thread per connection answers
//!   acknowledgements and pings and queues what the server sends. TLS sits
//!   between the socket and the session here.
//! - [`server`]: the elements in server mode. One mio loop thread per
//!   element runs every connection (non-blocking sockets), so no peer can
//!   hold up a streaming thread and a thousand players cost one thread; the
//!   streaming thread only hands messages over (bounded) and takes events.
//! - [`context`]: many rtmpsrc mode=server sharing one thread (the
//!   `context` property): that thread runs each one's loop when its poll
//!   is ready and pushes its buffers, in place of a streaming thread each.
//! - [`blocking`]: not the elements'. One thread, one socket, `rtmp://`
//!   only: what tests, examples and tools use to reach a server in a few
//!   lines. It stays because it is the shortest way to drive a session
//!   against a real peer, not because an element needs it.
//! - `watch` (private to this module): one thread for the whole process that wakes a connection's
//!   thread once the streaming thread reading its socket (rtmpsrc, both
//!   modes) has been away for `HANDOVER`, so that it takes the socket over;
//!   the connections' threads wait for it rather than look for themselves.
//!
//! Nothing else starts threads: connecting in the background (rtmpsink's
//! async connect, reconnection attempts) is a short-lived thread that makes
//! a [`client::ClientConnection`] and hands it over.

pub mod blocking;
pub mod client;
pub mod context;
pub mod fdlimit;
pub mod server;
pub mod tls;
pub(crate) mod watch;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtmp::error::{Error, ErrorKind};
use crate::rtmp::session::ClientEvent;

/// Whether connecting again may succeed where this failure happened. A
/// lost connection, a timeout, an unreachable server may heal; so may a
/// stream name the server still holds for a publisher it lost, or a
/// stream not yet published. A refusal (a wrong login, an unknown key, a
/// rejected application, a certificate that does not verify) or a setting
/// that cannot work would only be met again: the elements give up on it
/// at once instead of retrying in a loop.
pub fn worth_retrying(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Rejected => e.refusal().is_some_and(|r| {
            r.code.ends_with(".BadName") || r.code == "NetStream.Play.StreamNotFound"
        }),
        ErrorKind::Unsupported | ErrorKind::Malformed => false,
        _ => true,
    }
}

/// How long a streaming thread that reads its own socket (rtmpsrc, both
/// modes) may be away from it before a thread of the connection reads for
/// it (the watch wakes that thread then, see `watch`).
pub(crate) const HANDOVER: Duration = Duration::from_millis(200);

/// Where that streaming thread is: in its wait for the next message (it
/// reads, or is about to), or when it last left it.
#[derive(Default)]
struct Presence {
    inside: bool,
    left: Option<Instant>,
}

impl Presence {
    fn enter(&mut self) {
        self.inside = true;
    }

    fn leave(&mut self) {
        self.inside = false;
        self.left = Some(Instant::now());
        watch::left();
    }

    /// In its wait, and since `watch::QUIET` before `now` at least: the
    /// watch need not look until it leaves.
    fn quiet(&self, now: Instant) -> bool {
        self.inside
            && self
                .left
                .is_none_or(|t| now.saturating_duration_since(t) >= watch::QUIET)
    }

    /// Away for `HANDOVER` (or never came): the connection's thread reads.
    fn away(&self) -> bool {
        let now = Instant::now();
        self.away_at(now).is_some_and(|at| at <= now)
    }

    /// When the streaming thread is (or was) away for `HANDOVER`, if it is
    /// out of its wait: `now` if it never came.
    fn away_at(&self, now: Instant) -> Option<Instant> {
        match (self.inside, self.left) {
            (true, _) => None,
            (false, Some(t)) => Some(t + HANDOVER),
            (false, None) => Some(now),
        }
    }

    /// The watch's look for a connection whose thread waits on `signal`
    /// while this is its streaming thread (see `watch::Watched`): wakes it
    /// if that thread is away, else says when it could be at the earliest.
    fn look(&self, signal: &crate::sync::Signal, now: Instant) -> Option<Instant> {
        if !signal.has_waiters() {
            // It reads, or is about to look for itself before it waits.
            return None;
        }
        let at = self.away_at(now)?;
        if at <= now {
            signal.notify_all();
            return None;
        }
        Some(at)
    }
}

/// Events a connection's thread read while the streaming thread was away
/// (held downstream), not yet taken: what a `Rescue` takes.
pub(crate) trait Queued {
    /// The next event if it is media (audio, video, metadata); anything
    /// else stays queued, with what follows it, for `next_event`.
    fn pop_media(&self) -> Option<(ClientEvent, Instant)>;
}

/// What a connection's thread does with what it read while it reads in
/// the streaming thread's stead (that thread held downstream for
/// `HANDOVER`), after each read; see `Server::set_rescue` and
/// `ClientConnection::set_rescue`. It must not wait: the reading waits
/// for it.
pub(crate) type Rescue = std::sync::Arc<dyn Fn(&dyn Queued) + Send + Sync>;

fn is_media(e: &ClientEvent) -> bool {
    matches!(
        e,
        ClientEvent::Video { .. } | ClientEvent::Audio { .. } | ClientEvent::Data { .. }
    )
}

/// Bytes of received media a connection may hold for its element: a full
/// queue stops reading, so a stalled pipeline slows the peer down through
/// TCP instead of filling memory.
const MAX_QUEUED_BYTES: usize = 32 << 20;

/// Received events waiting for the element, counted in bytes, each with
/// the time it was read (for the latency in rtmpsrc's stats).
#[derive(Default)]
struct EventQueue {
    events: VecDeque<(ClientEvent, Instant)>,
    bytes: usize,
}

fn event_size(e: &ClientEvent) -> usize {
    match e {
        ClientEvent::Audio { payload, .. } | ClientEvent::Video { payload, .. } => {
            payload.len() + 64
        }
        _ => 256,
    }
}

impl EventQueue {
    /// Events read at `at`.
    fn with(events: impl IntoIterator<Item = ClientEvent>, at: Instant) -> Self {
        let mut q = EventQueue::default();
        for e in events {
            q.push(e, at);
        }
        q
    }

    fn push(&mut self, e: ClientEvent, at: Instant) {
        self.bytes += event_size(&e);
        self.events.push_back((e, at));
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The next event if it is media (see `Queued`).
    fn pop_media(&mut self) -> Option<(ClientEvent, Instant)> {
        match self.events.front() {
            Some((e, _)) if is_media(e) => self.pop(),
            _ => None,
        }
    }

    fn pop(&mut self) -> Option<(ClientEvent, Instant)> {
        let e = self.events.pop_front()?;
        self.bytes -= event_size(&e.0);
        Some(e)
    }
}

/// Reads what the socket holds into `buf` without waiting for more
/// (`WouldBlock` when it holds nothing, or where the system cannot say),
/// whatever its read timeout.
pub(crate) fn recv_now(stream: &std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which
        // is borrowed mutably for the call; the descriptor is the
        // stream's, open while it is borrowed.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
    #[cfg(not(unix))]
    {
        let _ = (stream, buf);
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// The highest `peak-kbps`: its rate in bytes per second fits the 32 bits
/// the socket option takes.
pub const MAX_PACING_KBPS: u32 = i32::MAX as u32 / 125;

/// Caps how fast the kernel sends on `stream` at `kbps` kbit/s, spreading
/// the packets evenly (Linux: `SO_MAX_PACING_RATE`, which TCP's own
/// pacing honours with any queueing discipline); 0 lifts the cap. An
/// error where the system has no such option.
pub(crate) fn set_pacing_rate(stream: socket2::SockRef<'_>, kbps: u32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let rate: u32 = match kbps {
            0 => u32::MAX,
            k => k.min(MAX_PACING_KBPS) * 125,
        };
        // SAFETY: the option reads one u32 from the pointer, whose size is
        // passed; the descriptor is the stream's, open while it is borrowed.
        let r = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MAX_PACING_RATE,
                (&rate as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (stream, kbps);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "pacing needs Linux's SO_MAX_PACING_RATE",
        ))
    }
}

/// The pacing cap on `stream` in bytes per second (`u32::MAX`: none), where
/// the system tells.
#[cfg(target_os = "linux")]
pub(crate) fn pacing_rate(stream: socket2::SockRef<'_>) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut rate: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes (one u32) through the
    // pointer and sets `len`; the descriptor is open while borrowed.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&mut rate as *mut u32).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(rate)
}

/// Bytes written to `stream` that its peer has not acknowledged yet, where
/// the system tells (Linux: `SIOCOUTQ`).
fn unacknowledged(stream: &std::net::TcpStream) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
        let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        (r == 0).then(|| usize::try_from(n).unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        None
    }
}

/// Waits until the peer has acknowledged everything written to `stream`,
/// for as long as it keeps taking bytes: an error when nothing moved for
/// `stall` (what is left would be lost), `cancelled` when asked.
fn wait_sent(
    stream: &std::net::TcpStream,
    stall: Duration,
    cancel: &client::Cancel,
) -> crate::rtmp::Result<()> {
    let mut last = usize::MAX;
    let mut moved = Instant::now();
    while let Some(left) = unacknowledged(stream) {
        if left == 0 {
            break;
        }
        if left < last {
            last = left;
            moved = Instant::now();
        } else if moved.elapsed() >= stall {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the server took none of the last {left} bytes for {:.0} s: they are lost",
                    stall.as_secs_f64()
                ),
            ));
        }
        if !cancel.sleep_until(Instant::now() + Duration::from_millis(5)) {
            return Err(client::cancelled());
        }
    }
    Ok(())
}

/// Bytes for the handshake's random field. They need not be secret, only
/// unlike another connection's; a splitmix64 stream seeded from the clock,
/// the process and a counter is enough.
pub fn handshake_random() -> [u8; crate::rtmp::handshake::RANDOM_SIZE] {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; crate::rtmp::handshake::RANDOM_SIZE];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// A set of video track ids (Enhanced RTMP multitrack): the tracks a
/// player, or a new connection, has had a keyframe of.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TrackSet([u64; 4]);

impl TrackSet {
    pub fn insert(&mut self, t: u8) {
        self.0[usize::from(t / 64)] |= 1 << (t % 64);
    }

    pub fn contains(&self, t: u8) -> bool {
        self.0[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }

    /// Whether a video frame goes to a player that has these tracks: every
    /// keyframe does (and starts its track), other frames only on a track
    /// started. Everything else always goes.
    pub fn admits(&mut self, video: Option<(u8, bool)>) -> bool {
        match video {
            Some((t, true)) => {
                self.insert(t);
                true
            }
            Some((t, false)) => self.contains(t),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::error::Refusal;

    /// The watch wakes a waiting connection's thread only once its
    /// streaming thread has been out of its wait for HANDOVER (or never
    /// came), and says when to look again until then.
    #[test]
    fn a_presence_is_due_handover_after_it_left() {
        use crate::sync::{Signal, lock};
        use std::sync::{Arc, Mutex};
        let t0 = Instant::now();
        // Never came: due at once.
        assert_eq!(Presence::default().away_at(t0), Some(t0));
        let mut inside = Presence::default();
        inside.enter();
        let state = Arc::new((Mutex::new((inside, 0u32)), Signal::default()));
        let s = state.clone();
        // A connection's thread: counts its wake-ups until the presence is
        // away, as the servers' and readers' threads do.
        let waiter = std::thread::spawn(move || {
            let mut g = lock(&s.0);
            while !g.0.away() {
                g = s.1.wait(g);
                g.1 += 1;
            }
        });
        while !state.1.has_waiters() {
            std::thread::yield_now();
        }
        let mut g = lock(&state.0);
        assert_eq!(g.0.look(&state.1, t0), None, "inside its wait: never due");
        g.0.leave();
        let left = g.0.left.unwrap();
        assert_eq!(g.0.look(&state.1, left), Some(left + HANDOVER));
        assert_eq!(g.1, 0, "not woken before it was due");
        assert_eq!(g.0.look(&state.1, left + HANDOVER), None);
        drop(g);
        // The waiter may find the presence not yet away by its own clock
        // (HANDOVER has not passed in real time): it waits again, and the
        // next look past the time wakes it for good.
        while !waiter.is_finished() {
            let g = lock(&state.0);
            g.0.look(&state.1, Instant::now());
            drop(g);
            std::thread::sleep(Duration::from_millis(10));
        }
        waiter.join().unwrap();
        assert!(lock(&state.0).1 >= 1);
    }

    /// `recv_now` never waits, whatever the socket's read timeout: it says
    /// WouldBlock on an empty socket at once, then gives what came, then
    /// sees the end.
    #[test]
    fn recv_now_does_not_wait() {
        use std::io::{ErrorKind as IoKind, Write};
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 8];
        let start = Instant::now();
        let e = recv_now(&stream, &mut buf).unwrap_err();
        assert_eq!(e.kind(), IoKind::WouldBlock);
        assert!(start.elapsed() < Duration::from_secs(30));
        peer.write_all(b"0123456789").unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            match recv_now(&stream, &mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == IoKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"0123456789");
        drop(peer);
        loop {
            match recv_now(&stream, &mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == IoKind::WouldBlock => std::thread::yield_now(),
                r => panic!("{r:?}"),
            }
        }
    }

    fn refusal(command: &'static str, code: &str) -> Error {
        Error::refused(
            Refusal {
                command,
                code: code.into(),
                description: String::new(),
            },
            "refused",
        )
    }

    #[test]
    fn refusals_are_not_retried_but_losses_are() {
        assert!(worth_retrying(&Error::new(ErrorKind::Io, "reset")));
        assert!(worth_retrying(&Error::new(ErrorKind::Timeout, "late")));
        assert!(worth_retrying(&Error::new(ErrorKind::Closed, "closed")));
        assert!(worth_retrying(&refusal(
            "publish",
            "NetStream.Publish.BadName"
        )));
        assert!(worth_retrying(&refusal(
            "play",
            "NetStream.Play.StreamNotFound"
        )));
        assert!(!worth_retrying(&refusal(
            "connect",
            "NetConnection.Connect.Rejected"
        )));
        assert!(!worth_retrying(&refusal(
            "publish",
            "NetStream.Publish.Unauthorized"
        )));
        // A login that failed, a certificate that did not verify.
        assert!(!worth_retrying(&Error::new(
            ErrorKind::Rejected,
            "authentication failed: wrong user name or password"
        )));
        assert!(!worth_retrying(&Error::unsupported(
            "could not read CA file"
        )));
    }
}
