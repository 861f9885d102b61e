// SPDX-License-Identifier: MPL-2.0
//! How long frames spend inside an element (rtmpsink: entering a pad to
//! leaving through the socket; rtmpsrc: read from the socket to leaving a
//! pad), for the `stats` property.
//!
//! A frame's arrival travels with it in the buffer's `offset` field, as
//! nanoseconds of [`stamp`], between elements inside our bins only: the
//! field is set where the frame comes in and given back (to
//! `BUFFER_OFFSET_NONE`) where it leaves, so users never see it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use crate::sync::lock;

/// `GST_BUFFER_OFFSET_NONE`: no stamp.
pub const NONE: u64 = u64::MAX;

/// Frames kept per kind: the figures are of the last this many.
pub const WINDOW: usize = 1024;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Fixes the clock's zero; before any instant to be stamped is taken (at
/// plugin load), since earlier instants all stamp as 0.
pub fn init() {
    LazyLock::force(&EPOCH);
}

/// `at` as nanoseconds of a process-wide monotonic clock (never
/// [`NONE`]).
pub fn stamp(at: Instant) -> u64 {
    let ns = at.saturating_duration_since(*EPOCH).as_nanos();
    u64::try_from(ns).unwrap_or(NONE - 1).min(NONE - 1)
}

/// The time since a [`stamp`], if `offset` holds one.
pub fn since(offset: u64, now: Instant) -> Option<u64> {
    (offset != NONE).then(|| stamp(now).saturating_sub(offset))
}

/// The last [`WINDOW`] latencies of one kind of frame.
#[derive(Debug, Default)]
pub struct Window {
    samples: Vec<u64>,
    /// Where the next sample goes once the window is full.
    next: usize,
}

impl Window {
    pub fn record(&mut self, ns: u64) {
        if self.samples.len() < WINDOW {
            self.samples.push(ns);
        } else {
            self.samples[self.next] = ns;
            self.next = (self.next + 1) % WINDOW;
        }
    }

    pub fn clear(&mut self) {
        self.samples.clear();
        self.next = 0;
    }

    /// The median and the 99th percentile (nearest rank), in ns; zeros
    /// before the first frame.
    pub fn p50_p99(&self) -> (u64, u64) {
        if self.samples.is_empty() {
            return (0, 0);
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let rank = |p: usize| s[(s.len() * p).div_ceil(100).max(1) - 1];
        (rank(50), rank(99))
    }
}

/// Latency windows for video and audio frames.
#[derive(Debug, Default)]
pub struct Latencies {
    pub video: Window,
    pub audio: Window,
}

impl Latencies {
    pub fn clear(&mut self) {
        self.video.clear();
        self.audio.clear();
    }

    /// Sets `video-latency-p50`, `video-latency-p99` and the same for
    /// audio (ns) on a stats structure.
    pub fn write_to(&self, s: &mut gst::StructureRef) {
        let (v50, v99) = self.video.p50_p99();
        let (a50, a99) = self.audio.p50_p99();
        s.set("video-latency-p50", v50);
        s.set("video-latency-p99", v99);
        s.set("audio-latency-p50", a50);
        s.set("audio-latency-p99", a99);
    }
}

/// Frames timed as they leave an element's pads (rtmpsrc: the demuxer's
/// streaming thread, or a pad's queue thread, just before it pushes), from
/// the arrival stamp they carry. Off, a frame costs one relaxed load.
#[derive(Debug, Default)]
pub struct Departures {
    on: AtomicBool,
    windows: Mutex<Latencies>,
}

impl Departures {
    /// On or off (before data flows, so that every frame timed carries a
    /// stamp); the windows start empty.
    pub fn set(&self, on: bool) {
        lock(&self.windows).clear();
        self.on.store(on, Ordering::Relaxed);
    }

    /// `buffer` leaves now: records its time inside, if it carries an
    /// arrival, and takes the stamp off (it stays inside the element).
    pub fn depart(&self, video: bool, buffer: &mut gst::Buffer) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let Some(ns) = since(buffer.offset(), Instant::now()) else {
            return;
        };
        {
            let mut w = lock(&self.windows);
            match video {
                true => w.video.record(ns),
                false => w.audio.record(ns),
            }
        }
        buffer.make_mut().set_offset(NONE);
    }

    /// See [`Latencies::write_to`].
    pub fn write_to(&self, s: &mut gst::StructureRef) {
        lock(&self.windows).write_to(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_by_nearest_rank_over_the_last_window() {
        let mut w = Window::default();
        assert_eq!(w.p50_p99(), (0, 0));
        w.record(7);
        assert_eq!(w.p50_p99(), (7, 7));
        w.clear();
        for v in 1..=100 {
            w.record(v);
        }
        assert_eq!(w.p50_p99(), (50, 99));
        // Older samples leave the window: after WINDOW large ones, only
        // they count.
        for _ in 0..WINDOW {
            w.record(1_000);
        }
        assert_eq!(w.p50_p99(), (1_000, 1_000));
        w.record(5);
        assert_eq!(w.samples.len(), WINDOW);
        assert_eq!(w.p50_p99(), (1_000, 1_000));
    }

    #[test]
    fn stamps_are_monotonic_and_never_none() {
        init();
        let a = Instant::now();
        let b = a + Duration::from_micros(1500);
        assert_eq!(since(stamp(a), b), Some(1_500_000));
        assert_eq!(since(u64::MAX, b), None);
        assert!(stamp(a) < u64::MAX);
        // A stamp later than now (cannot happen, but must not wrap).
        assert_eq!(since(stamp(b), a), Some(0));
    }

    #[test]
    fn departures_time_stamped_frames_only_while_on_and_take_the_stamp_off() {
        gst::init().unwrap();
        init();
        let d = Departures::default();
        let stamped = || {
            let mut b = gst::Buffer::new();
            b.get_mut().unwrap().set_offset(stamp(Instant::now()));
            b
        };
        let (mut v, mut a) = (stamped(), stamped());
        std::thread::sleep(Duration::from_millis(20));
        d.depart(true, &mut v);
        assert_ne!(v.offset(), NONE, "off: the buffer is left alone");
        d.set(true);
        d.depart(true, &mut v);
        assert_eq!(v.offset(), NONE);
        std::thread::sleep(Duration::from_millis(30));
        d.depart(false, &mut a);
        // A frame without a stamp is not timed.
        let mut none = gst::Buffer::new();
        d.depart(false, &mut none);
        let mut s = gst::Structure::new_empty("stats");
        d.write_to(&mut s);
        let v50 = s.get::<u64>("video-latency-p50").unwrap();
        let a50 = s.get::<u64>("audio-latency-p50").unwrap();
        assert!(v50 >= 20_000_000, "video {v50}");
        assert!(a50 >= 50_000_000 && a50 > v50, "audio {a50}");
        d.set(false);
        d.write_to(&mut s);
        assert_eq!(s.get::<u64>("audio-latency-p50").unwrap(), 0);
    }
}
