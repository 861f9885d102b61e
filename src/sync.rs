// SPDX-License-Identifier: MPL-2.0
//! Locks that survive a panicked holder, and bounded condition waits: what
//! every thread-sharing part of the plugin needs the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `m`, taking the data as it is if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` for at most `wait`, giving the guard back either way.
pub(crate) fn wait_at_most<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    wait: Duration,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, wait)
        .unwrap_or_else(|p| p.into_inner())
        .0
}

/// A condition variable that knows whether anyone waits on it, so that a
/// notification nobody waits for costs no system call (std's makes one
/// each time). A waiter counts itself before it lets go of the lock, so a
/// notifier that changed the state under that same lock and then finds
/// no waiter cannot have missed one.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    cv: Condvar,
    waiters: AtomicUsize,
}

impl Signal {
    /// [`wait_at_most`] on this signal.
    pub(crate) fn wait_at_most<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        wait: Duration,
    ) -> MutexGuard<'a, T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let guard = wait_at_most(&self.cv, guard, wait);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Waits on this signal with no time limit: for a waiter that some
    /// other thread is sure to wake (see `net::watch`).
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let guard = self.cv.wait(guard).unwrap_or_else(|p| p.into_inner());
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Whether a thread waits on this signal now. Read under the lock the
    /// waiters wait with, it cannot be out of date.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0
    }

    /// Wakes every waiter, if there is one.
    pub(crate) fn notify_all(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// A waiter that counted itself is woken by the change it waits for,
    /// long before its timeout.
    #[test]
    fn a_signal_wakes_a_counted_waiter() {
        let state = Arc::new((Mutex::new(false), Signal::default()));
        let s = state.clone();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let mut done = lock(&s.0);
            while !*done {
                done = s.1.wait_at_most(done, Duration::from_secs(30));
            }
            start.elapsed()
        });
        while state.1.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        *lock(&state.0) = true;
        state.1.notify_all();
        assert!(waiter.join().unwrap() < Duration::from_secs(30));
        assert_eq!(state.1.waiters.load(Ordering::SeqCst), 0);
    }
}
