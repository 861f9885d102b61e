// SPDX-License-Identifier: MPL-2.0
//! Locks that survive a panicked holder, and bounded condition waits: what
//! every thread-sharing part of the plugin needs the same way.

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
