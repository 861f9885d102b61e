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

use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::HANDOVER;
use crate::sync::{lock, wait_at_most};

/// A connection whose thread takes over from an absent streaming thread.
pub(crate) trait Watched: Send + Sync {
    /// Wakes the connection's thread if it waits and its streaming
    /// thread has been away for `HANDOVER` (by `now`). Otherwise, when
    /// that could be the case at the earliest, if sooner than `HANDOVER`
    /// from now (None: not before then).
    fn look(&self, now: Instant) -> Option<Instant>;
}

/// The least time between two looks, so that a connection whose thread
/// has not yet woken from the last look is not looked at in a loop.
const MIN_GAP: Duration = Duration::from_millis(25);

#[derive(Default)]
struct Watch {
    watched: Mutex<Vec<Weak<dyn Watched>>>,
    /// A connection came: the thread looks at once (its streaming thread
    /// may never come).
    added: Condvar,
}

static WATCH: LazyLock<Result<Arc<Watch>, String>> = LazyLock::new(|| {
    let watch = Arc::new(Watch::default());
    let w = watch.clone();
    std::thread::Builder::new()
        .name("rtmp-watch".into())
        .spawn(move || w.run())
        .map(|_| watch)
        .map_err(|e| format!("could not start the connections' watch thread: {e}"))
});

/// Has the watch look after `connection` for as long as it lives.
pub(crate) fn watch(connection: Weak<dyn Watched>) -> Result<(), String> {
    let watch = WATCH.as_ref().map_err(Clone::clone)?;
    lock(&watch.watched).push(connection);
    watch.added.notify_one();
    Ok(())
}

impl Watch {
    fn run(&self) {
        let mut alive: Vec<Arc<dyn Watched>> = Vec::new();
        let mut watched = lock(&self.watched);
        loop {
            watched.retain(|w| match w.upgrade() {
                Some(c) => {
                    alive.push(c);
                    true
                }
                None => false,
            });
            if alive.is_empty() {
                watched = self.added.wait(watched).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            drop(watched);
            let now = Instant::now();
            let next = alive
                .drain(..)
                .filter_map(|c| c.look(now))
                .fold(now + HANDOVER, Instant::min)
                .max(now + MIN_GAP);
            watched = lock(&self.watched);
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                watched = wait_at_most(&self.added, watched, wait);
            }
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
