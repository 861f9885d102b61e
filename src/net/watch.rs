// SPDX-License-Identifier: MPL-2.0
//! The watch: one thread for the whole process that wakes a connection's
//! thread when the streaming thread reading its socket has been away for
//! `HANDOVER` (held downstream, or the pipeline paused), so that the
//! connection's thread takes the socket over (and rescues the stream, see
//! `Server::set_rescue` and `ClientConnection::set_rescue`).
//!
//! The connection's threads wait with no time limit. Before, each looked
//! for itself, and had to choose between noticing late and waking often:
//! a wake-up of a sleeping thread costs about what a message's own work
//! does on a machine with idle cores (a context's publishers spent 7% of
//! their CPU on five looks a second each), so the looks grew apart to one
//! a second, and a held stream stopped for 0.2 to 1.2 s. The watch wakes
//! when the earliest of its connections could be due, and at most every
//! `MIN_GAP`: a few times a second for a whole process, however many
//! connections it has, and a held stream is taken over within `HANDOVER`
//! and `MIN_GAP`.
//!
//! When every streaming thread has been in its wait for `QUIET` (no
//! publisher yet, a stream that stopped), the watch parks: nothing can be
//! due until one of them leaves, and the first to leave unparks it
//! ([`left`]: one atomic load per message while the watch is awake). An
//! idle process then wakes for nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::HANDOVER;
use crate::sync::lock;

/// A connection whose thread takes over from an absent streaming thread.
pub(crate) trait Watched: Send + Sync {
    /// Wakes the connection's thread if it waits and its streaming
    /// thread has been away for `HANDOVER` (by `now`). Otherwise, when
    /// that could be the case at the earliest, if sooner than `HANDOVER`
    /// from now (None: not before then).
    fn look(&self, now: Instant) -> Option<Instant>;

    /// Whether its streaming thread is in its wait and has been since
    /// `QUIET` before `now` (or it is stopping): nothing is due until that
    /// thread leaves, which calls [`left`].
    fn quiet(&self, now: Instant) -> bool;
}

/// How long every streaming thread must have stayed in its wait before
/// the watch parks: a live stream's threads leave many times a second, so
/// the watch parks only when streams stop, and a stream's first message
/// after a pause is what unparks it, not each one.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// The watch is parked (or about to): the next streaming thread to leave
/// its wait unparks it. Apart from `WATCH`, so that [`left`] never starts
/// the watch's thread.
static PARKED: AtomicBool = AtomicBool::new(false);

/// A streaming thread left its wait (see `Presence::leave`): the watch,
/// if parked, looks again. One atomic load unless it is parked.
pub(crate) fn left() {
    if PARKED.load(Ordering::SeqCst)
        && PARKED.swap(false, Ordering::SeqCst)
        && let Ok(w) = WATCH.as_ref()
    {
        w.thread.unpark();
    }
}

/// The least time between two looks, so that a connection whose thread
/// has not yet woken from the last look is not looked at in a loop.
const MIN_GAP: Duration = Duration::from_millis(25);

struct Watch {
    watched: Mutex<Vec<Weak<dyn Watched>>>,
    /// The watch's thread, which sleeps parked: a connection that comes
    /// (its streaming thread may never come) and a streaming thread that
    /// leaves a quiet wait unpark it.
    thread: Thread,
}

static WATCH: LazyLock<Result<Arc<Watch>, String>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<Arc<Watch>>();
    let handle = std::thread::Builder::new()
        .name("rtmp-watch".into())
        .spawn(move || {
            if let Ok(w) = rx.recv() {
                w.run()
            }
        })
        .map_err(|e| format!("could not start the connections' watch thread: {e}"))?;
    let watch = Arc::new(Watch {
        watched: Mutex::default(),
        thread: handle.thread().clone(),
    });
    tx.send(watch.clone())
        .map_err(|_| "the connections' watch thread ended at its start".to_owned())?;
    Ok(watch)
});

/// Has the watch look after `connection` for as long as it lives.
pub(crate) fn watch(connection: Weak<dyn Watched>) -> Result<(), String> {
    let watch = WATCH.as_ref().map_err(Clone::clone)?;
    lock(&watch.watched).push(connection);
    PARKED.store(false, Ordering::SeqCst);
    watch.thread.unpark();
    Ok(())
}

impl Watch {
    /// The connections still alive (the others are forgotten).
    fn alive(&self) -> Vec<Arc<dyn Watched>> {
        let mut alive = Vec::new();
        lock(&self.watched).retain(|w| match w.upgrade() {
            Some(c) => {
                alive.push(c);
                true
            }
            None => false,
        });
        alive
    }

    fn run(&self) {
        loop {
            let alive = self.alive();
            let now = Instant::now();
            let due = alive.iter().filter_map(|c| c.look(now)).min();
            if due.is_none() && alive.iter().all(|c| c.quiet(now)) {
                // Said before the second look: a streaming thread that
                // leaves after its look sees it and unparks us; one that
                // left before, the second look sees.
                PARKED.store(true, Ordering::SeqCst);
                let now = Instant::now();
                if alive.iter().all(|c| c.quiet(now)) {
                    drop(alive);
                    while PARKED.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    continue;
                }
                PARKED.store(false, Ordering::SeqCst);
            }
            drop(alive);
            let next = due.unwrap_or(now + HANDOVER).max(now + MIN_GAP);
            // Woken sooner (a connection came): look again at once.
            std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A streaming thread that left at a given time and never came back.
    struct Gone {
        left: Instant,
        woken: Mutex<Option<Instant>>,
        looks: AtomicUsize,
    }

    impl Watched for Gone {
        fn look(&self, now: Instant) -> Option<Instant> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            let due = self.left + HANDOVER;
            if now < due {
                return Some(due);
            }
            lock(&self.woken).get_or_insert(now);
            None
        }

        fn quiet(&self, _: Instant) -> bool {
            false
        }
    }

    /// A connection whose thread waits until its streaming thread has been
    /// away for `HANDOVER`, as the servers' and readers' threads do.
    struct Waiting {
        presence: Mutex<super::super::Presence>,
        signal: crate::sync::Signal,
    }

    impl Watched for Waiting {
        fn look(&self, now: Instant) -> Option<Instant> {
            lock(&self.presence).look(&self.signal, now)
        }

        fn quiet(&self, now: Instant) -> bool {
            lock(&self.presence).quiet(now)
        }
    }

    /// With every streaming thread in its wait, the watch parks; one that
    /// then leaves and stays away unparks it, and its connection's thread
    /// is woken once away for `HANDOVER`, as when the watch was awake.
    #[test]
    fn a_parked_watch_still_wakes_a_connection_whose_streaming_thread_left() {
        let mut presence = super::super::Presence::default();
        presence.enter();
        let c = Arc::new(Waiting {
            presence: Mutex::new(presence),
            signal: crate::sync::Signal::default(),
        });
        let c2 = c.clone();
        let waiter = std::thread::spawn(move || {
            let mut p = lock(&c2.presence);
            while !p.away() {
                p = c2.signal.wait(p);
            }
            Instant::now()
        });
        while !c.signal.has_waiters() {
            std::thread::yield_now();
        }
        let watched: Arc<dyn Watched> = c.clone();
        watch(Arc::downgrade(&watched)).unwrap();
        // In its wait and never left: quiet at once. (Other tests'
        // connections may keep the watch awake for a while.)
        let until = Instant::now() + Duration::from_secs(20);
        while !PARKED.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "the watch never parked");
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = {
            let mut p = lock(&c.presence);
            p.leave();
            p.left.unwrap()
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !waiter.is_finished() {
            assert!(
                Instant::now() < until,
                "the parked watch never woke the connection"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let woken = waiter.join().unwrap();
        assert!(woken >= left + HANDOVER, "woken before it was due");
        drop(watched);
    }

    /// The watch wakes a connection once its streaming thread has been
    /// away for `HANDOVER`, not before; and lets go of one that is gone.
    #[test]
    fn an_absent_streaming_thread_is_noticed_once_away_long_enough() {
        let gone = Arc::new(Gone {
            left: Instant::now(),
            woken: Mutex::default(),
            looks: AtomicUsize::new(0),
        });
        let watched: Arc<dyn Watched> = gone.clone();
        let weak = Arc::downgrade(&watched);
        drop(watched);
        watch(weak.clone()).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let woken = loop {
            if let Some(t) = *lock(&gone.woken) {
                break t;
            }
            assert!(
                Instant::now() < until,
                "the watch never woke the connection"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(woken >= gone.left + HANDOVER, "woken before it was due");
        assert!(gone.looks.load(Ordering::SeqCst) >= 1);
        drop(gone);
        // Gone: the watch forgets it at its next look.
        let until = Instant::now() + Duration::from_secs(30);
        while lock(&WATCH.as_ref().unwrap().watched)
            .iter()
            .any(|w| w.ptr_eq(&weak))
        {
            assert!(
                Instant::now() < until,
                "the watch kept a dropped connection"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
