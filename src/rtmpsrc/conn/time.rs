// SPDX-License-Identifier: MPL-2.0
//! Time for rtmpsrc's frames: RTMP milliseconds mapped onto the pipeline's
//! running time ([`TimeMap`]), and the running time of the moment a message
//! was read ([`ClockCache`]).

use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::rtmp::chunk::TimestampUnwrapper;

/// How far ahead of the clock a message's time may map before the mapping
/// of RTMP time onto running time starts again (with DISCONT). Generous:
/// servers that keep a GOP cache, and publishers faster than real time,
/// send seconds ahead at the start, which is no jump.
const RESYNC_AHEAD_NS: i64 = 10_000_000_000;
/// How far behind the clock: a timestamp reset, or data that comes this
/// late, starts the mapping again rather than being played in a burst.
const RESYNC_BEHIND_NS: i64 = 3_000_000_000;

/// RTMP milliseconds onto running time: fixed at the first message, started
/// again when a message strays too far from the clock (publisher restart,
/// timestamp reset or jump); see RESYNC_AHEAD_NS and RESYNC_BEHIND_NS.
#[derive(Default, Debug)]
pub(super) struct TimeMap {
    unwrap: TimestampUnwrapper,
    /// Running time (ns) minus RTMP time (ns).
    offset: Option<i64>,
    /// The last running time given out: a new mapping never starts before
    /// it, so output time never goes back (a burst maps ahead of the clock).
    last: Option<i64>,
    /// RTMP time (ns) that the next mapping puts where the first message
    /// would go (see `resume_at`).
    resume: Option<i64>,
}

impl TimeMap {
    /// Where a message whose time means nothing goes (metadata: servers
    /// stamp it 0, or anything): with the last time given out, never
    /// moving the mapping.
    pub(super) fn current(&self, now: i64) -> u64 {
        self.last.unwrap_or(now).max(0) as u64
    }

    pub(super) fn map(&mut self, ts: u32, now: i64) -> (u64, bool) {
        let ms = self.unwrap.unwrap(ts);
        let t = ms * 1_000_000;
        let resync = match self.offset {
            None => true,
            // Before the point resumed at: behind the clock by design.
            Some(_) if self.resume.is_some_and(|r| t < r) => false,
            Some(o) => {
                let ahead = o + t - now;
                !(-RESYNC_BEHIND_NS..=RESYNC_AHEAD_NS).contains(&ahead)
            }
        };
        if resync {
            let anchor = self.last.map_or(now, |l| l.max(now));
            let at = self.resume.map_or(t, |r| r.max(t));
            self.offset = Some(anchor - at);
        }
        if self.resume.is_some_and(|r| t >= r) {
            self.resume = None;
        }
        let rt = (self.offset.unwrap_or(0) + t).max(0);
        self.last = Some(self.last.map_or(rt, |l| l.max(rt)));
        (rt as u64, resync)
    }

    /// A new publisher: its clock starts afresh; the next message maps anew.
    pub(super) fn restart(&mut self) {
        self.unwrap.reset();
        self.offset = None;
        self.resume = None;
    }

    /// A recorded stream played again from a key frame before `ms`, where
    /// it was: the mapping starts so that `ms` (not the first message)
    /// goes on from the last time given out. What comes before it maps
    /// earlier, and falls before the segment (see `Seek::Resume`).
    pub(super) fn resume_at(&mut self, ms: u32) {
        self.restart();
        self.resume = Some(i64::from(ms) * 1_000_000);
    }

    /// The running time (ns) of RTMP time `ms` in the current mapping.
    pub(super) fn running_time_of(&self, ms: u32) -> Option<u64> {
        self.offset
            .map(|o| (o + i64::from(ms) * 1_000_000).max(0) as u64)
    }
}

/// The clock and base time as last looked up: a lookup takes the
/// element's lock twice and a reference on the clock, which a message's
/// running time does not need to pay each time. Forgotten when the clock
/// or the state changes, and looked up again for the first message read
/// `CLOCK_RECHECK` or more after the last lookup (an application may move
/// the base time while playing).
pub(super) struct ClockCache {
    clock: gst::Clock,
    base: gst::ClockTime,
    at: Instant,
    /// The system clock's time at `at`, when the pipeline's clock is the
    /// monotonic system clock (GStreamer's default): that clock and
    /// `Instant` are both CLOCK_MONOTONIC, so a message's time is its read
    /// time against that pair, with no clock read of its own (which took
    /// 2% of taking a publisher's messages).
    monotonic: Option<gst::ClockTime>,
}

impl ClockCache {
    pub(super) fn new(clock: gst::Clock, base: gst::ClockTime) -> Self {
        let system = clock.type_() == gst::SystemClock::static_type()
            && clock.property::<gst::ClockType>("clock-type") == gst::ClockType::Monotonic;
        let monotonic = system.then(|| clock.time());
        ClockCache {
            clock,
            base,
            at: Instant::now(),
            monotonic,
        }
    }

    /// Looked up `CLOCK_RECHECK` or more before `read_at`: to be looked up
    /// again (an application may have moved the base time).
    pub(super) fn stale(&self, read_at: Instant) -> bool {
        read_at.saturating_duration_since(self.at) >= CLOCK_RECHECK
    }

    /// The running time (ns) of something that happened at `when`: by
    /// the pair above where there is one, else by reading the clock now.
    pub(super) fn running_time(&self, when: Instant) -> i64 {
        let clock = match self.monotonic {
            Some(then) => shift(then, self.at, when),
            None => self.clock.time(),
        };
        clock.saturating_sub(self.base).nseconds() as i64
    }
}

/// `then`, the clock's time at `at`, moved to `when` (earlier or later).
fn shift(then: gst::ClockTime, at: Instant, when: Instant) -> gst::ClockTime {
    match when.checked_duration_since(at) {
        Some(later) => then.saturating_add(gst::ClockTime::from_nseconds(later.as_nanos() as u64)),
        None => then.saturating_sub(gst::ClockTime::from_nseconds(
            at.duration_since(when).as_nanos() as u64,
        )),
    }
}

const CLOCK_RECHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use gst::glib;

    /// On the system clock (monotonic), a message's running time is its
    /// read time against the pair looked up, earlier or later, in step
    /// with the clock itself; any other clock is read for each message.
    #[test]
    fn running_time_follows_the_read_time_on_the_system_clock() {
        gst::init().unwrap();
        let clock = gst::SystemClock::obtain();
        let base = clock.time().saturating_sub(gst::ClockTime::from_seconds(3));
        let cache = ClockCache::new(clock.clone(), base);
        let then = cache
            .monotonic
            .expect("the default clock is the monotonic system clock");
        let ms = Duration::from_millis;
        let rt = |when| cache.running_time(when);
        let at = |d: gst::ClockTime| (d.saturating_sub(base)).nseconds() as i64;
        assert_eq!(
            rt(cache.at + ms(40)),
            at(then + gst::ClockTime::from_mseconds(40))
        );
        assert_eq!(
            rt(cache.at - ms(15)),
            at(then - gst::ClockTime::from_mseconds(15))
        );
        // In step with the clock: between two reads of it (less the
        // moment between the two reads of the pair, however preempted).
        let before = at(clock.time());
        let now = rt(Instant::now());
        let after = at(clock.time());
        assert!(
            before - 100_000_000 <= now && now <= after,
            "{before} {now} {after}"
        );
        // Before the base time: 0, not negative.
        assert_eq!(rt(cache.at - Duration::from_secs(5)), 0);
        // A clock of another kind is read each time.
        let realtime = glib::Object::builder::<gst::SystemClock>()
            .property("clock-type", gst::ClockType::Realtime)
            .build();
        assert!(ClockCache::new(realtime.upcast(), base).monotonic.is_none());
    }

    #[test]
    fn time_map_follows_the_clock_and_resyncs_on_jumps() {
        let ms = 1_000_000i64;
        let mut m = TimeMap::default();
        // First message anchors: RTMP 5000 ms arrives at running time 1 s.
        assert_eq!(m.map(5000, 1000 * ms), (1000 * ms as u64, true));
        // Steady: follows the RTMP clock, whatever the arrival jitter.
        assert_eq!(m.map(5040, 1100 * ms), (1040 * ms as u64, false));
        // A burst 8 s ahead of the clock is no jump.
        assert_eq!(m.map(13_000, 1200 * ms), (9000 * ms as u64, false));
        // Wrap of the 32-bit RTMP clock: continuous.
        let mut w = TimeMap::default();
        w.map(u32::MAX - 20, 0);
        assert_eq!(w.map(19, 40 * ms), (40 * ms as u64, false));
        // A reset to 0 (publisher restart): resync to the clock, DISCONT.
        assert_eq!(m.map(0, 10_000 * ms), (10_000 * ms as u64, true));
        // A resync never maps before what was already given out: the burst
        // above reached 9 s, a restart at 5 s continues from there.
        let mut b = TimeMap::default();
        b.map(0, 0);
        b.map(9000, 100 * ms);
        b.restart();
        assert_eq!(b.map(0, 5000 * ms), (9000 * ms as u64, true));
        assert_eq!(m.map(40, 10_050 * ms), (10_040 * ms as u64, false));
        // A jump an hour ahead: resync rather than stall for an hour.
        assert_eq!(m.map(3_600_000, 10_100 * ms), (10_100 * ms as u64, true));
    }

    /// A recorded stream played again from the key frame before where it
    /// was: the point it was at goes on from the last time given out, the
    /// frames before it map before that, and a GOP longer than the
    /// resync's bound is no jump.
    #[test]
    fn time_map_resumes_where_it_was() {
        let ms = 1_000_000i64;
        let mut m = TimeMap::default();
        m.map(0, 0);
        assert_eq!(m.map(14_000, 14_000 * ms), (14_000 * ms as u64, false));
        // Lost there; back 2 s later from the key frame at 6 s.
        m.resume_at(14_000);
        assert_eq!(m.map(6000, 16_000 * ms), (8000 * ms as u64, true));
        assert_eq!(m.running_time_of(14_000), Some(16_000 * ms as u64));
        assert_eq!(m.map(6040, 16_001 * ms), (8040 * ms as u64, false));
        assert_eq!(m.map(14_000, 16_010 * ms), (16_000 * ms as u64, false));
        // From there on, the usual bounds.
        assert_eq!(m.map(14_040, 16_050 * ms), (16_040 * ms as u64, false));
        assert!(m.map(0, 16_100 * ms).1);
    }
}
