// SPDX-License-Identifier: MPL-2.0
//! Settings handed from a bin to its connection element.
//!
//! Each bin (`rtmpsink`, `rtmpsrc`) owns its properties; when its
//! connection element is about to start, the bin hands it a snapshot, which
//! the connection reads for the whole run, never taking the bin's lock.
//! What the connection learns that the bin shows as a property (the port a
//! server listening on port 0 picked) goes back through a callback.

use std::sync::{Arc, Mutex};

use crate::sync::lock;

type Listening = Box<dyn Fn(u16) + Send + Sync>;

/// The snapshot a connection element runs with, and the way back.
pub struct Handed<S> {
    settings: Mutex<Arc<S>>,
    listening: Mutex<Option<Listening>>,
}

impl<S: Default> Default for Handed<S> {
    fn default() -> Self {
        Handed {
            settings: Mutex::new(Arc::new(S::default())),
            listening: Mutex::new(None),
        }
    }
}

impl<S> Handed<S> {
    /// The bin hands over its settings as they are now.
    pub fn hand(&self, settings: S) {
        *lock(&self.settings) = Arc::new(settings);
    }

    /// At the state change `starts_at` (where the connection element
    /// starts), hands over the bin's settings as they are then.
    pub fn hand_at(
        &self,
        transition: gst::StateChange,
        starts_at: gst::StateChange,
        bin_settings: &Mutex<S>,
    ) where
        S: Clone,
    {
        if transition == starts_at {
            let snapshot = lock(bin_settings).clone();
            self.hand(snapshot);
        }
    }

    /// The settings last handed over (the defaults before that).
    pub fn get(&self) -> Arc<S> {
        lock(&self.settings).clone()
    }

    /// What to call when a server starts listening on a port picked for it.
    pub fn on_listening(&self, f: impl Fn(u16) + Send + Sync + 'static) {
        *lock(&self.listening) = Some(Box::new(f));
    }

    /// A server started listening on `port`, picked for it (the settings
    /// said 0).
    pub fn listening(&self, port: u16) {
        if let Some(f) = lock(&self.listening).as_ref() {
            f(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_does_not_follow_later_changes() {
        let h: Handed<Vec<u32>> = Handed::default();
        assert!(h.get().is_empty());
        let mut bins = vec![1];
        h.hand(bins.clone());
        let running = h.get();
        bins.push(2);
        h.hand(bins.clone());
        assert_eq!(*running, vec![1]);
        assert_eq!(*h.get(), vec![1, 2]);
    }

    #[test]
    fn the_listening_port_goes_back() {
        let h: Handed<()> = Handed::default();
        h.listening(1);
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        h.on_listening(move |p| *g.lock().unwrap() = Some(p));
        h.listening(40000);
        assert_eq!(*got.lock().unwrap(), Some(40000));
    }
}
