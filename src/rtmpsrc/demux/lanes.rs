// SPDX-License-Identifier: MPL-2.0
//! The demuxer's output queues (rtmpsrc `pad-queues=true`, the default):
//! a thread per output pad pushes what the streaming thread queued for it,
//! so that a downstream holding one pad (a sink prerolling or waiting for
//! its clock, a muxer waiting for the other pad) holds neither the reader
//! of the socket nor the other pads.
//!
//! What a frame costs on the way matters here (every publisher of an
//! ingest server and every player pays it per frame), so this does less
//! than a multiqueue: the streaming thread queues, and wakes a pad's
//! thread (if it sleeps) once it has demuxed everything one read of the
//! socket brought, not for each frame; that thread takes everything queued
//! in one go. A player reading a few frames per read wakes each pad's
//! thread once per read; a publisher sending a frame at a time, once per
//! frame; no level bookkeeping across pads.
//!
//! Bounded like the multiqueue it replaces: a pad's queue holds at most
//! `MAX_TIME` of stream time or `MAX_BYTES`; beyond that the streaming
//! thread waits (and TCP slows the peer down) until the pad's downstream
//! takes some.
//!
//! Direct pushes: waking a pad's thread per frame is most of what a frame
//! costs a publisher sending one at a time (an ingest server's case), and
//! most downstreams (a queue, an appsink, a parser into a filesink) never
//! hold a push. So a pad whose thread has shown that its downstream takes
//! buffers at once (`PROVEN` pushes in a row, none held for `HELD`) gets
//! its buffers from the streaming thread itself while its queue is empty
//! and its thread asleep: the buffer is set aside (`Pending`) and pushed by
//! the caller once it let go of its locks (`push_pending`). A direct push
//! held for `HELD` or more puts the pad back on its queue until it proves
//! itself again, over twice as many pushes each time. The one thing the
//! queues are for, a downstream that holds one pad until another has data
//! (a muxer), is then the caller's to rescue: only a caller with another
//! thread to go on reading while it is held asks for direct pushes
//! (rtmpsrc's streaming thread, whose connection's thread, the server's or
//! a client's reader, takes the socket over and queues what it reads here:
//! see conn's `rescue`; a context's thread, for which every member's
//! server's thread does it: see conn's `rescued_in_context`). A rescue takes a
//! while (the connection's thread looks for a held streaming thread
//! every 0.2 to 1 s), and such a downstream would hold every direct push
//! the same way. So before a pad's buffers go directly, its thread looks
//! downstream for an element where two pads meet and may wait for each
//! other (see `joins`), and once a direct push was rescued (`rescued`); in
//! either case no pad gets direct pushes again until the pads go.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::joins;
use crate::latency::Departures;
use crate::sync::lock;

/// What one pad's queue holds at most before the streaming thread waits:
/// this much stream time between the newest buffer in and the last out...
const MAX_TIME: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// ...or this many bytes (timestamps that do not move must not make the
/// time bound useless).
const MAX_BYTES: usize = 32 << 20;
/// A pad's thread is woken when this many buffers wait for it, even if
/// the streaming thread has more of the same read to demux.
const WAKE_AFTER: usize = 32;
/// A push that takes this long was held downstream (a sink waiting for
/// its clock or its preroll, a muxer for another pad, a decoder): that
/// pad's buffers are not pushed directly (see the module's notes).
const HELD: Duration = Duration::from_millis(5);
/// Pushes in a row from a pad's thread, none held, before its buffers go
/// directly; twice as many after each fall back, up to `PROVEN_AT_MOST`.
const PROVEN: u32 = 16;
const PROVEN_AT_MOST: u32 = 1024;

pub enum Item {
    Buffer(gst::Buffer),
    /// Serialized events (caps, segment, tags, EOS): in order with the
    /// buffers.
    Event(gst::Event),
}

struct Lane {
    pad: gst::Pad,
    /// A video pad (for the latency figures).
    video: bool,
    items: VecDeque<Item>,
    /// Bytes of the buffers queued or being pushed.
    bytes: usize,
    /// DTS of the newest buffer queued and of the last one pushed out
    /// (the first queued while nothing went out yet).
    newest: Option<gst::ClockTime>,
    last_out: Option<gst::ClockTime>,
    /// What downstream said to the last buffer; the streaming thread gets
    /// it back for its next one (flow combining, errors, flushing).
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    flushing: bool,
    /// The pad's thread sleeps on `wake` and must be woken for new items.
    parked: bool,
    wake: Arc<Condvar>,
    /// Pushes in a row that downstream took at once, and how many make
    /// the pad's buffers go directly (see the module's notes).
    quick: u32,
    proven: u32,
    /// Downstream was looked at since the pad last fell back to its queue
    /// (see `joins`): its buffers may go directly.
    looked: bool,
    /// A buffer of this pad is set aside for a direct push or being
    /// pushed so: the pad's thread leaves what is queued behind it alone.
    direct: bool,
    /// Counts the flushes, so that a buffer set aside before one is not
    /// pushed after it.
    epoch: u64,
}

impl Lane {
    fn full(&self) -> bool {
        let span = match (self.newest, self.last_out) {
            (Some(n), Some(o)) => n.saturating_sub(o),
            _ => gst::ClockTime::ZERO,
        };
        self.bytes >= MAX_BYTES || span >= MAX_TIME
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
        self.newest = None;
        self.last_out = None;
    }

    /// Whether the next buffer may skip the queue: nothing waits before it
    /// and the pad's thread sleeps, downstream has shown it takes buffers
    /// at once (and was looked at), and the last one went through.
    fn may_push_directly(&self) -> bool {
        self.items.is_empty()
            && self.parked
            && !self.direct
            && self.proven()
            && self.looked
            && self.flow.is_ok()
    }

    /// Enough pushes in a row were taken at once.
    fn proven(&self) -> bool {
        self.quick >= self.proven
    }

    /// A push took `took`: whether downstream held it counts towards (or
    /// against) direct pushes.
    fn pushed(&mut self, took: Duration, direct: bool) {
        if took < HELD {
            self.quick = self.quick.saturating_add(1);
        } else {
            self.quick = 0;
            self.looked = false;
            if direct {
                self.proven = (self.proven * 2).min(PROVEN_AT_MOST);
            }
        }
    }
}

/// A buffer set aside for a direct push (see the module's notes).
struct Pending {
    pad: gst::Pad,
    video: bool,
    buffer: gst::Buffer,
    epoch: u64,
}

#[derive(Default)]
struct State {
    lanes: Vec<Lane>,
    /// The streaming thread waits on `space` for a full queue.
    producer_waits: bool,
    pending: Option<Pending>,
    /// Downstream joins two pads with no queue in between (see `joins`),
    /// or a direct push was held until the caller's rescue queued what it
    /// read: no more direct pushes.
    joined: bool,
}

impl State {
    fn lane(&mut self, pad: &gst::Pad) -> Option<&mut Lane> {
        self.lanes.iter_mut().find(|l| l.pad == *pad)
    }
}

/// The queues of one demuxer's output pads.
pub struct Lanes {
    state: Mutex<State>,
    space: Condvar,
    /// Where buffers leaving are timed (the demuxer's measure-latency).
    departures: Arc<Departures>,
}

impl Lanes {
    pub fn new(departures: Arc<Departures>) -> Lanes {
        Lanes {
            state: Mutex::default(),
            space: Condvar::new(),
            departures,
        }
    }

    /// A queue for `pad` (of video or audio), whose activation (see
    /// `activate`) starts and stops its thread.
    pub fn add(&self, pad: &gst::Pad, video: bool) {
        let mut st = lock(&self.state);
        if st.lane(pad).is_none() {
            st.lanes.push(Lane {
                pad: pad.clone(),
                video,
                items: VecDeque::new(),
                bytes: 0,
                newest: None,
                last_out: None,
                flow: Ok(gst::FlowSuccess::Ok),
                flushing: true,
                parked: false,
                wake: Arc::default(),
                quick: 0,
                proven: PROVEN,
                looked: false,
                direct: false,
                epoch: 0,
            });
        }
    }

    /// Forgets `pad`'s queue (the pad is gone, its thread stopped).
    pub fn remove(&self, pad: &gst::Pad) {
        let mut st = lock(&self.state);
        st.lanes.retain(|l| l.pad != *pad);
        if st.pending.as_ref().is_some_and(|p| p.pad == *pad) {
            st.pending = None;
        }
    }

    /// Forgets every queue (their pads are gone, their threads stopped).
    pub fn clear(&self) {
        let mut st = lock(&self.state);
        st.lanes.clear();
        st.pending = None;
        st.joined = false;
    }

    /// The pad's activation function: active, its thread starts; inactive,
    /// what is queued is dropped and the thread stops.
    pub fn activate(
        self: &Arc<Self>,
        pad: &gst::Pad,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if active {
            self.resume(pad);
            Ok(())
        } else {
            self.flush(pad);
            pad.stop_task()
                .map_err(|e| gst::loggable_error!(gst::CAT_RUST, "{e}"))
        }
    }

    /// Flush start on every pad: the queues are dropped, the streaming
    /// thread stops waiting for room, downstream is told before the
    /// threads pause (it may be what holds them).
    pub fn flush_start(&self, event: &gst::Event) {
        let pads = self.pads();
        for p in &pads {
            self.flush(p);
        }
        for p in &pads {
            p.push_event(event.clone());
            p.pause_task().ok();
        }
    }

    /// Flush stop on every pad: downstream first, then the threads resume
    /// with empty queues.
    pub fn flush_stop(self: &Arc<Self>, event: &gst::Event) {
        let pads = self.pads();
        for p in &pads {
            p.push_event(event.clone());
            self.resume(p);
        }
    }

    fn pads(&self) -> Vec<gst::Pad> {
        lock(&self.state)
            .lanes
            .iter()
            .map(|l| l.pad.clone())
            .collect()
    }

    /// Drops what `pad` has queued and stops its thread and the streaming
    /// thread from waiting on it, until `resume`.
    fn flush(&self, pad: &gst::Pad) {
        let mut st = lock(&self.state);
        if let Some(lane) = st.lane(pad) {
            lane.flushing = true;
            lane.epoch += 1;
            lane.clear();
            lane.wake.notify_one();
        }
        self.space.notify_all();
    }

    fn resume(self: &Arc<Self>, pad: &gst::Pad) {
        {
            let mut st = lock(&self.state);
            let Some(lane) = st.lane(pad) else { return };
            lane.clear();
            lane.flushing = false;
            lane.flow = Ok(gst::FlowSuccess::Ok);
        }
        let lanes = Arc::downgrade(self);
        let weak = pad.downgrade();
        pad.start_task(move || {
            if let (Some(lanes), Some(pad)) = (lanes.upgrade(), weak.upgrade()) {
                lanes.run(&pad);
            }
        })
        .ok();
    }

    /// Queues `item` for `pad`'s thread; for a buffer, what downstream
    /// said to the pad's last one (an error stops the streaming thread the
    /// way a direct push would). Waits while the pad's queue is full.
    /// `later`: the pad's thread need not be woken before `wake` (more of
    /// the same read follows). `direct`: the caller pushes a buffer of a
    /// pad that may skip its queue itself, with `push_pending`, and has
    /// another thread to go on reading while that push is held (see the
    /// module's notes).
    pub fn push(
        &self,
        pad: &gst::Pad,
        item: Item,
        later: bool,
        direct: bool,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut st = lock(&self.state);
        loop {
            let set_aside = direct && st.pending.is_none() && !st.joined;
            let Some(lane) = st.lane(pad) else {
                return Err(gst::FlowError::Flushing);
            };
            if lane.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let Item::Buffer(b) = &item else { break };
            match lane.flow {
                Ok(_) | Err(gst::FlowError::NotLinked) => {}
                Err(e) => return Err(e),
            }
            if set_aside && lane.may_push_directly() {
                lane.direct = true;
                let (flow, epoch, video) = (lane.flow, lane.epoch, lane.video);
                let Item::Buffer(buffer) = item else {
                    unreachable!("matched above")
                };
                st.pending = Some(Pending {
                    pad: pad.clone(),
                    video,
                    buffer,
                    epoch,
                });
                return flow;
            }
            if !lane.full() {
                lane.bytes += b.size();
                if let Some(dts) = b.dts_or_pts() {
                    lane.newest = Some(dts);
                    lane.last_out.get_or_insert(dts);
                }
                break;
            }
            // Full: whatever waits to be woken must run now, or nothing
            // would ever make room.
            let wake = Self::take_parked(&mut st);
            st.producer_waits = true;
            drop(st);
            wake.iter().for_each(|w| w.notify_one());
            st = lock(&self.state);
            if !st.producer_waits {
                // The room came meanwhile; the wakeup is gone with it.
                continue;
            }
            st = self.space.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let lane = st.lane(pad).expect("checked above");
        let flow = lane.flow;
        lane.items.push_back(item);
        // Behind a direct push, the pad's thread waits for it to end.
        let now = !later || lane.items.len() >= WAKE_AFTER;
        let wake = (lane.parked && !lane.direct && now).then(|| {
            lane.parked = false;
            lane.wake.clone()
        });
        // Woken after the lock is let go, or the woken thread would find
        // it held and sleep again on it.
        drop(st);
        if let Some(w) = wake {
            w.notify_one();
        }
        flow
    }

    /// Pushes the buffer `push` set aside for a direct push, if any (the
    /// caller holds none of the locks a rescuing thread needs). What
    /// downstream says is the pad's next `push`'s, as for a queued buffer.
    pub fn push_pending(&self) {
        let Some(Pending {
            pad,
            video,
            mut buffer,
            epoch,
        }) = lock(&self.state).pending.take()
        else {
            return;
        };
        self.departures.depart(video, &mut buffer);
        let start = Instant::now();
        let r = pad.push(buffer);
        let took = start.elapsed();
        let mut st = lock(&self.state);
        let Some(lane) = st.lane(&pad) else { return };
        lane.direct = false;
        if lane.flushing || lane.epoch != epoch {
            return;
        }
        lane.flow = r;
        lane.pushed(took, true);
        if took >= HELD {
            gst::debug!(
                super::imp::CAT,
                obj = pad,
                "downstream held a direct push for {took:?}: queued again"
            );
        }
        // What a rescuing thread queued behind it.
        let wake = (lane.parked && !lane.items.is_empty()).then(|| {
            lane.parked = false;
            lane.wake.clone()
        });
        drop(st);
        if let Some(w) = wake {
            w.notify_one();
        }
    }

    /// The caller's rescue queued what it read while the streaming thread
    /// was held (see the module's notes): if that was in a direct push,
    /// downstream holds a pad until another has data, and would hold the
    /// next direct push the same way; the pads keep to their queues.
    pub fn rescued(&self) {
        let mut st = lock(&self.state);
        if st.joined {
            return;
        }
        let Some(lane) = st.lanes.iter().find(|l| l.direct) else {
            return;
        };
        gst::info!(
            super::imp::CAT,
            obj = lane.pad,
            "downstream holds this pad until another has data (a muxer with \
             no queue before it?): every pad keeps to its queue from now on"
        );
        st.joined = true;
    }

    /// Whether every pad's queue has room: a thread that must not wait
    /// (a rescue, see the module's notes) queues only then.
    pub fn have_room(&self) -> bool {
        lock(&self.state).lanes.iter().all(|l| !l.full())
    }

    /// Wakes the pads' threads that sleep with something queued for them.
    pub fn wake(&self) {
        let wake = Self::take_parked(&mut lock(&self.state));
        wake.iter().for_each(|w| w.notify_one());
    }

    /// The sleeping threads with something queued, marked awake.
    fn take_parked(st: &mut State) -> Vec<Arc<Condvar>> {
        st.lanes
            .iter_mut()
            .filter(|l| l.parked && !l.direct && !l.items.is_empty())
            .map(|l| {
                l.parked = false;
                l.wake.clone()
            })
            .collect()
    }

    /// One round of a pad's thread: waits for items, pushes all of them.
    fn run(&self, pad: &gst::Pad) {
        let (batch, video) = {
            let mut st = lock(&self.state);
            loop {
                let Some(lane) = st.lane(pad) else {
                    drop(st);
                    pad.pause_task().ok();
                    return;
                };
                if lane.flushing {
                    drop(st);
                    pad.pause_task().ok();
                    return;
                }
                if !lane.items.is_empty() && !lane.direct {
                    lane.parked = false;
                    break (std::mem::take(&mut lane.items), lane.video);
                }
                lane.parked = true;
                let wake = lane.wake.clone();
                st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut failed = false;
        for item in batch {
            match item {
                Item::Event(e) => {
                    pad.push_event(e);
                }
                Item::Buffer(mut b) => {
                    let (size, dts) = (b.size(), b.dts_or_pts());
                    // After an error, the rest of this round is dropped:
                    // the streaming thread hears of it with its next push.
                    let r = match failed {
                        true => None,
                        false => {
                            self.departures.depart(video, &mut b);
                            let start = Instant::now();
                            let r = pad.push(b);
                            Some((r, start.elapsed()))
                        }
                    };
                    let mut st = lock(&self.state);
                    let wake_producer = std::mem::take(&mut st.producer_waits);
                    if let Some(lane) = st.lane(pad)
                        && !lane.flushing
                    {
                        lane.bytes = lane.bytes.saturating_sub(size);
                        if dts.is_some() {
                            lane.last_out = dts;
                        }
                        if let Some((r, took)) = r {
                            failed = !matches!(r, Ok(_) | Err(gst::FlowError::NotLinked));
                            lane.flow = r;
                            lane.pushed(took, false);
                        }
                    }
                    drop(st);
                    if wake_producer {
                        self.space.notify_all();
                    }
                }
            }
        }
        self.look_downstream(pad);
    }

    /// Once `pad`'s thread has shown that downstream takes its buffers at
    /// once, and before they go directly: whether downstream joins two
    /// pads (see `joins`). Looked at with no lock held (it walks the
    /// pipeline's pads).
    fn look_downstream(&self, pad: &gst::Pad) {
        {
            let mut st = lock(&self.state);
            let joined = st.joined;
            match st.lane(pad) {
                Some(lane) if !joined && !lane.looked && lane.proven() => {}
                _ => return,
            }
        }
        let meet = joins::meet(&self.pads());
        let mut st = lock(&self.state);
        if meet && !st.joined {
            gst::info!(
                super::imp::CAT,
                obj = pad,
                "downstream joins two pads with no queue in between: every pad \
                 keeps to its queue"
            );
            st.joined = true;
        }
        if let Some(lane) = st.lane(pad) {
            lane.looked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pad's buffers skip its queue only once its thread pushed `PROVEN`
    /// in a row that downstream took at once and looked downstream, with
    /// its queue empty and its thread asleep; a held direct push puts it back on its queue, and it
    /// then takes twice as many (up to `PROVEN_AT_MOST`).
    #[test]
    fn direct_pushes_are_earned_and_lost() {
        gst::init().unwrap();
        let mut lane = Lane {
            pad: gst::Pad::builder(gst::PadDirection::Src).build(),
            video: true,
            items: VecDeque::new(),
            bytes: 0,
            newest: None,
            last_out: None,
            flow: Ok(gst::FlowSuccess::Ok),
            flushing: false,
            parked: true,
            wake: Arc::default(),
            quick: 0,
            proven: PROVEN,
            looked: false,
            direct: false,
            epoch: 0,
        };
        let quick = Duration::from_micros(50);
        for _ in 0..PROVEN - 1 {
            lane.pushed(quick, false);
        }
        assert!(!lane.may_push_directly());
        // A push held on the pad's own thread starts the count again.
        lane.pushed(HELD, false);
        assert_eq!((lane.quick, lane.proven), (0, PROVEN));
        for _ in 0..PROVEN {
            lane.pushed(quick, false);
        }
        // Not before downstream was looked at (its thread does it then).
        assert!(lane.proven() && !lane.may_push_directly());
        lane.looked = true;
        assert!(lane.may_push_directly());
        // Not while its thread is awake, something waits in its queue, a
        // direct push is on, or the last push failed.
        lane.parked = false;
        assert!(!lane.may_push_directly());
        lane.parked = true;
        lane.items.push_back(Item::Event(gst::event::Eos::new()));
        assert!(!lane.may_push_directly());
        lane.items.clear();
        lane.direct = true;
        assert!(!lane.may_push_directly());
        lane.direct = false;
        lane.flow = Err(gst::FlowError::NotLinked);
        assert!(!lane.may_push_directly());
        lane.flow = Ok(gst::FlowSuccess::Ok);
        // A held direct push: back to the queue, twice the proof, and a
        // look downstream again.
        lane.pushed(Duration::from_millis(40), true);
        assert!(!lane.may_push_directly());
        assert_eq!(lane.proven, 2 * PROVEN);
        assert!(!lane.looked);
        for _ in 0..2 * PROVEN {
            lane.pushed(quick, true);
        }
        lane.looked = true;
        assert!(lane.may_push_directly());
        for _ in 0..20 {
            lane.pushed(HELD, true);
        }
        assert_eq!(lane.proven, PROVEN_AT_MOST);
    }
}
