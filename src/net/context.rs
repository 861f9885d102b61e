// SPDX-License-Identifier: MPL-2.0
//! Contexts: one thread that serves many server-mode sources, the way
//! nginx's worker serves every publisher (and GStreamer's threadshare
//! elements share their `context`).
//!
//! A source in a context has no thread of its own doing the work: the
//! context's thread waits on all its members' event loops at once (each
//! member's mio poll is itself pollable), and when one has something ready
//! calls the member's [`Member::service`], which takes what is there
//! without waiting and pushes it downstream. Sharing one thread is what
//! saves the CPU: on a machine with many low-rate streams, waking a thread
//! per message costs several times the message's own work. With a wait
//! (`context-wait`), the thread wakes at most once per wait and takes
//! everything that arrived meanwhile, for fewer wake-ups still.
//!
//! Contexts are found by name, process-wide; the thread starts with the
//! first member's [`Context::get`] and ends when the last user lets go.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::rtmp::error::{Error, ErrorKind, Result};
use crate::rtmp::idmap::IdMap;
use crate::sync::lock;

/// What a context's thread runs.
pub trait Member: Send + Sync {
    /// Does what is ready, without waiting for anything but downstream.
    /// Returns when to be called again even if nothing becomes ready (for
    /// deadlines), or None for "only when ready".
    fn service(&self) -> Option<Instant>;

    /// The context's thread cannot go on (its poll failed): the member
    /// will not be served again.
    fn failed(&self, why: &str);
}

const WAKER: Token = Token(0);

/// Where a context's thread is in a push downstream for a member, and
/// since when: a member whose own thread finds its stream unserved for a
/// while looks here to tell a context's thread held downstream (a direct
/// push that a muxer or a sink holds: the members' own threads rescue
/// their streams) from one with nothing to do.
#[derive(Default)]
pub struct Pushes {
    /// Nanoseconds from `EPOCH` when the push under way began; 0: none.
    since: AtomicU64,
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Pushes {
    /// Runs `push`, marked as under way.
    pub fn during<R>(&self, push: impl FnOnce() -> R) -> R {
        let began = EPOCH.elapsed().as_nanos().max(1) as u64;
        self.since.store(began, Ordering::Release);
        let r = push();
        self.since.store(0, Ordering::Release);
        r
    }

    /// How long the push under way has taken so far, if one is.
    pub fn held_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            began => Some(EPOCH.elapsed().saturating_sub(Duration::from_nanos(began))),
        }
    }
}

/// Members due within this of each other are served in the same wake-up.
const SLACK: Duration = Duration::from_millis(5);

struct Entry {
    member: Arc<dyn Member>,
    due: Option<Instant>,
}

struct Members {
    next_token: usize,
    entries: IdMap<Token, Entry>,
}

struct Inner {
    name: String,
    wait: Duration,
    registry: Registry,
    waker: Waker,
    members: Mutex<Members>,
    stop: AtomicBool,
    pushes: Arc<Pushes>,
}

/// A shared thread, by name. Dropping the last handle stops it.
pub struct Context {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static CONTEXTS: LazyLock<Mutex<HashMap<String, Weak<Context>>>> = LazyLock::new(Mutex::default);

impl Context {
    /// The context called `name`, started with `wait` if it is new. One
    /// that runs already keeps the wait it was started with (see
    /// [`Context::wait`]).
    pub fn get(name: &str, wait: Duration) -> Result<Arc<Context>> {
        let mut all = lock(&CONTEXTS);
        if let Some(c) = all.get(name).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let c = Arc::new(Context::start(name, wait)?);
        all.retain(|_, w| w.strong_count() > 0);
        all.insert(name.to_owned(), Arc::downgrade(&c));
        Ok(c)
    }

    fn start(name: &str, wait: Duration) -> Result<Context> {
        let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("context {name}: {e}"));
        let poll = Poll::new().map_err(io)?;
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            wait,
            registry: poll.registry().try_clone().map_err(io)?,
            waker: Waker::new(poll.registry(), WAKER).map_err(io)?,
            members: Mutex::new(Members {
                next_token: 1,
                entries: IdMap::default(),
            }),
            stop: AtomicBool::new(false),
            pushes: Arc::default(),
        });
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rtmp-ctx-{name}"))
            .spawn(move || i.run(poll))
            .map_err(io)?;
        Ok(Context {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where the context's thread is in a push (see `Pushes`): members
    /// mark theirs with it.
    pub fn pushes(&self) -> Arc<Pushes> {
        self.inner.pushes.clone()
    }

    /// The wait this context runs with.
    pub fn wait(&self) -> Duration {
        self.inner.wait
    }

    /// Adds a member, served when `fd` (a poll's own descriptor, which the
    /// member keeps open while registered) becomes readable, and once at
    /// once. It stays until the registration is dropped.
    pub fn add(&self, member: Arc<dyn Member>, fd: RawFd) -> Result<Registration> {
        let token = {
            let mut m = lock(&self.inner.members);
            let token = Token(m.next_token);
            m.next_token += 1;
            m.entries.insert(
                token,
                Entry {
                    member,
                    due: Some(Instant::now()),
                },
            );
            token
        };
        if let Err(e) = self
            .inner
            .registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            lock(&self.inner.members).entries.remove(&token);
            return Err(Error::new(
                ErrorKind::Io,
                format!("context {}: {e}", self.inner.name),
            ));
        }
        self.inner.waker.wake().ok();
        Ok(Registration {
            inner: self.inner.clone(),
            token,
            fd,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.waker.wake().ok();
        if let Some(t) = lock(&self.thread).take() {
            t.join().ok();
        }
    }
}

/// A member's place in its context; dropping it takes the member out (a
/// service already under way finishes: the member itself must see that it
/// has been stopped).
pub struct Registration {
    inner: Arc<Inner>,
    token: Token,
    fd: RawFd,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.registry.deregister(&mut SourceFd(&self.fd)).ok();
        lock(&self.inner.members).entries.remove(&self.token);
    }
}

impl Inner {
    fn run(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(256);
        let mut ready = Vec::new();
        loop {
            let timeout = {
                let m = lock(&self.members);
                m.entries
                    .values()
                    .filter_map(|e| e.due)
                    .min()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                // Not expected with a valid poll; serving on would spin.
                let why = format!("the shared thread of context {} failed: {e}", self.name);
                let members: Vec<_> = lock(&self.members)
                    .entries
                    .values()
                    .map(|e| e.member.clone())
                    .collect();
                for m in members {
                    m.failed(&why);
                }
                return;
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let round = Instant::now();
            ready.clear();
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKER));
            ready.extend(
                lock(&self.members)
                    .entries
                    .iter()
                    .filter(|(_, e)| e.due.is_some_and(|d| d <= round + SLACK))
                    .map(|(t, _)| *t),
            );
            // Ready and due: served once (sorted, not searched, for many).
            ready.sort_unstable();
            ready.dedup();
            for t in &ready {
                let Some(member) = lock(&self.members).entries.get(t).map(|e| e.member.clone())
                else {
                    continue;
                };
                let due = member.service();
                if let Some(e) = lock(&self.members).entries.get_mut(t) {
                    e.due = due;
                }
            }
            // Throttled: what arrives meanwhile waits for the next round.
            if !self.wait.is_zero() {
                let next = round + self.wait;
                let now = Instant::now();
                if next > now && !self.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(next - now);
                }
            }
        }
    }
}
