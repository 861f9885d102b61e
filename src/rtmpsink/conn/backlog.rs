// SPDX-License-Identifier: MPL-2.0
//! What rtmpsink keeps to survive a lost connection: the last `keep` of
//! messages (whole GOPs, starting at a keyframe), the latest metadata and
//! sequence headers, and how far the server has acknowledged. After a
//! reconnection, the new connection gets the headers, then everything from
//! the keyframe before the first message the server did not confirm.
//! Enhanced RTMP multitrack streams keep a sequence header per track; the
//! keyframes of the lowest video track are the start points, and each other
//! video track is replayed from its own first keyframe after the start.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::net::TrackSet;
use crate::rtmp::chunk::TimestampUnwrapper;
use crate::rtmp::flv::{RelayRole, audio_relay_role, relay_track, tag_type, video_relay_role};

/// A message body as the pieces it came in (the muxer's tag header, then
/// the payload's own memories), shared, never copied together.
#[derive(Debug, Clone, Default)]
pub struct Body(Vec<Bytes>);

impl Body {
    pub fn new(pieces: Vec<Bytes>) -> Self {
        Body(pieces)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// The pieces, shared.
    pub fn pieces(&self) -> &[Bytes] {
        &self.0
    }

    /// The pieces as slices, for the chunk encoder.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.0.iter().map(|b| &b[..]).collect()
    }

    /// Its first bytes (up to 32, across pieces), enough for the roles
    /// and tracks read from a tag's start.
    pub fn head(&self) -> ([u8; 32], usize) {
        let mut out = [0u8; 32];
        let mut n = 0;
        for b in &self.0 {
            let k = (out.len() - n).min(b.len());
            out[n..n + k].copy_from_slice(&b[..k]);
            n += k;
            if n == out.len() {
                break;
            }
        }
        (out, n)
    }
}

/// One message as it was (or will be) sent.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: u8,
    pub timestamp: u32,
    pub body: Body,
    /// Audio and video: the Enhanced RTMP track (0 unless multitrack).
    track: u8,
    /// A video frame: its track and whether it is a keyframe.
    video: Option<(u8, bool)>,
    /// Unwrapped time (ms).
    time: i64,
    /// The connection's byte count once this was written, if it was.
    written_at: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Backlog {
    items: VecDeque<Item>,
    /// The points a new connection may start at (keyframes; any audio
    /// frame in a stream without video), as sequence numbers: the n-th
    /// message ever held is n, and `items[0]` is `front_seq`. Kept apart
    /// so that no push has to look through a GOP for its next keyframe.
    keys: VecDeque<u64>,
    front_seq: u64,
    keep_ms: i64,
    unwrap: TimestampUnwrapper,
    meta: Option<Item>,
    /// The latest sequence header of each audio and video track.
    configs: Vec<Item>,
    has_video: bool,
    /// The lowest video track seen: its keyframes are the start points.
    main_track: u8,
    newest: i64,
    /// The last push was a start point (see `newest_is_key`).
    newest_key: bool,
    /// Messages that fell out before they were ever written.
    pub dropped: u64,
}

const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

impl Backlog {
    pub fn new(keep_ms: u32) -> Self {
        Backlog {
            keep_ms: i64::from(keep_ms),
            ..Default::default()
        }
    }

    /// Records a message about to be sent; returns how many unwritten
    /// messages fell out of the backlog to make room.
    pub fn push(&mut self, kind: u8, timestamp: u32, body: Body) -> u64 {
        let time = self.unwrap.unwrap(timestamp);
        let (head, n) = body.head();
        let head = &head[..n];
        let track = match kind {
            tag_type::VIDEO | tag_type::AUDIO => relay_track(kind == tag_type::VIDEO, head),
            _ => 0,
        };
        let role = match kind {
            tag_type::VIDEO => {
                if !self.has_video || track < self.main_track {
                    self.main_track = track;
                }
                self.has_video = true;
                video_relay_role(head)
            }
            tag_type::AUDIO => audio_relay_role(head),
            _ if head.starts_with(ON_METADATA) => RelayRole::Config,
            _ => RelayRole::Frame,
        };
        let key = match kind {
            tag_type::VIDEO => role == RelayRole::Key && track == self.main_track,
            tag_type::AUDIO => !self.has_video,
            _ => false,
        };
        let video = (kind == tag_type::VIDEO && role != RelayRole::Config)
            .then_some((track, role == RelayRole::Key));
        let item = Item {
            kind,
            timestamp,
            body,
            track,
            video,
            time,
            written_at: None,
        };
        if role == RelayRole::Config {
            // Kept apart: a new connection gets the latest ones first.
            if kind == tag_type::VIDEO || kind == tag_type::AUDIO {
                let same = |c: &Item| c.kind == kind && c.track == track;
                match self.configs.iter_mut().find(|c| same(c)) {
                    Some(c) => *c = item,
                    None => self.configs.push(item),
                }
            } else {
                self.meta = Some(item);
            }
            self.newest_key = false;
            return 0;
        }
        self.newest_key = key;
        self.newest = self.newest.max(time);
        if key {
            self.keys
                .push_back(self.front_seq + self.items.len() as u64);
        }
        self.items.push_back(item);
        self.trim()
    }

    /// Where sequence number `seq` is in `items`.
    fn index_of(&self, seq: u64) -> usize {
        (seq - self.front_seq) as usize
    }

    /// Lets the first `n` messages go; how many of them were never written.
    fn drop_front(&mut self, n: usize) -> u64 {
        self.front_seq += n as u64;
        while self.keys.front().is_some_and(|&k| k < self.front_seq) {
            self.keys.pop_front();
        }
        self.items
            .drain(..n)
            .filter(|i| i.written_at.is_none())
            .count() as u64
    }

    /// Drops whole GOPs from the front while the next one still starts
    /// `keep` or more before the newest message.
    fn trim(&mut self) -> u64 {
        let cutoff = self.newest - self.keep_ms;
        let mut dropped = 0;
        loop {
            let front = self.front_seq;
            let next_key = self
                .keys
                .iter()
                .find(|&&k| k > front)
                .map(|&k| self.index_of(k));
            let cut = match next_key {
                Some(k) if self.items[k].time <= cutoff => k,
                // Nothing to start at yet, or it is recent: keep it all,
                // unless the front is older than twice the backlog (a
                // stream without keyframes for that long). With a backlog
                // of 0 that keeps the GOP in progress: the least a new
                // connection can start from (headers, then a keyframe).
                _ => {
                    let Some(front) = self.items.front() else {
                        break;
                    };
                    let front_is_key = self.keys.front() == Some(&self.front_seq);
                    if front.time <= self.newest - 2 * self.keep_ms.max(1) && !front_is_key {
                        1
                    } else {
                        break;
                    }
                }
            };
            dropped += self.drop_front(cut);
        }
        self.dropped += dropped;
        dropped
    }

    /// Everything pushed so far has been written, and the connection has
    /// sent `bytes_out` bytes in all.
    pub fn written(&mut self, bytes_out: u64) {
        for i in self.items.iter_mut().rev() {
            if i.written_at.is_some() {
                break;
            }
            i.written_at = Some(bytes_out);
        }
    }

    /// The server confirmed `acked` bytes of this connection: whatever comes
    /// before the keyframe a replay would start at (see `replay`) is never
    /// needed again, and goes. While the server acknowledges, the backlog
    /// holds the unconfirmed messages and the GOP they start in, not all of
    /// `keep`; `keep` bounds it when it does not (an outage, a server that
    /// never acknowledges).
    pub fn confirmed(&mut self, acked: u64) {
        let Some(start) = self.start_after(Some(acked)) else {
            return;
        };
        self.drop_front(start);
    }

    /// Where a replay after `acked` confirmed bytes starts: the keyframe
    /// before the first message not confirmed, or the first keyframe held.
    fn start_after(&self, acked: Option<u64>) -> Option<usize> {
        let first_unconfirmed = self
            .items
            .iter()
            .position(|i| match (i.written_at, acked) {
                (Some(w), Some(a)) => w > a,
                _ => true,
            })
            .unwrap_or(self.items.len());
        let last = self.front_seq + first_unconfirmed as u64;
        let at_or_before = self.keys.partition_point(|&k| k <= last);
        let key = match at_or_before {
            0 => self.keys.front(),
            n => self.keys.get(n - 1),
        };
        key.map(|&k| self.index_of(k))
    }

    /// A new connection: every message counts as not yet written.
    pub fn reset_written(&mut self) {
        for i in &mut self.items {
            i.written_at = None;
        }
    }

    /// What to send on a new connection, in order: the metadata and
    /// sequence headers (stamped with the first message's time), then the
    /// messages from the keyframe before the first one the old connection's
    /// server had not acknowledged (`acked`: bytes it confirmed), or from
    /// the first keyframe held.
    pub fn replay(&self, acked: Option<u64>) -> Vec<Item> {
        self.start_after(acked)
            .map_or_else(Vec::new, |s| self.starting_at(s))
    }

    /// For a move to another server at the keyframe just pushed: the
    /// headers, then that keyframe (what came before it went to the old
    /// server, written or still queued there).
    pub fn move_at_newest_key(&self) -> Vec<Item> {
        match self.keys.back() {
            Some(&k) => self.starting_at(self.index_of(k)),
            None => Vec::new(),
        }
    }

    /// The metadata and sequence headers (stamped with item `start`'s
    /// time), then the items from `start` on, each video track from its
    /// first keyframe.
    fn starting_at(&self, start: usize) -> Vec<Item> {
        let mut out = Vec::new();
        let at = self.items[start].timestamp;
        for c in self.meta.iter().chain(&self.configs) {
            let mut c = c.clone();
            c.timestamp = if c.kind == tag_type::SCRIPT { 0 } else { at };
            out.push(c);
        }
        let mut tracks = TrackSet::default();
        out.extend(
            self.items
                .iter()
                .skip(start)
                .filter(|i| tracks.admits(i.video))
                .cloned(),
        );
        out
    }

    /// The last message pushed is a point a new connection may start at
    /// (a keyframe; any audio frame in a stream without video).
    pub fn newest_is_key(&self) -> bool {
        self.newest_key
    }

    /// The last message pushed (headers are kept apart, not here).
    pub fn newest(&self) -> Option<&Item> {
        self.items.back()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn bytes(&self) -> usize {
        self.items.iter().map(|i| i.body.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy H.264 tag body, in two pieces as the muxer gives them.
    fn video(key: bool) -> Body {
        let head = Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
        Body::new(vec![head, Bytes::from_static(&[9])])
    }

    fn one(b: &'static [u8]) -> Body {
        Body::new(vec![Bytes::from_static(b)])
    }

    #[test]
    fn keeps_whole_gops_and_replays_from_the_unconfirmed_keyframe() {
        let mut b = Backlog::new(2000);
        b.push(tag_type::VIDEO, 0, one(&[0x17, 0, 0, 0, 0, 1]));
        b.push(tag_type::SCRIPT, 0, one(b"\x02\x00\x0aonMetaData\x08"));
        // 1 s GOPs at 10 fps for 5 s.
        for n in 0..50u32 {
            assert_eq!(b.push(tag_type::VIDEO, n * 100, video(n % 10 == 0)), 0);
            b.written(u64::from(n + 1) * 1000);
        }
        // Kept: from the keyframe at or before 4900 - 2000 = 2900 -> 2000.
        assert_eq!(b.len(), 30);
        // The server confirmed up to message 44 (45000 bytes): replay from
        // the keyframe at 4000, after the headers.
        let r = b.replay(Some(45_000));
        assert_eq!(r[0].kind, tag_type::SCRIPT);
        assert_eq!(r[0].timestamp, 0);
        assert_eq!((r[1].kind, r[1].timestamp), (tag_type::VIDEO, 4000));
        assert_eq!(r[1].body.head().0[1], 0, "the sequence header comes first");
        assert_eq!(r[2].timestamp, 4000);
        assert_eq!(r.len(), 2 + 10);
        // No acknowledgement at all: from the first keyframe held.
        assert_eq!(b.replay(None)[2].timestamp, 2000);
        // While disconnected, what falls out unwritten is counted.
        for n in 50..90u32 {
            b.push(tag_type::VIDEO, n * 100, video(n % 10 == 0));
        }
        assert_eq!(b.dropped, 10, "the GOP at 5000 was never written");
    }

    /// A one-track Multitrack H.265 tag of `track`.
    fn track_video(track: u8, packet: u8, key: bool) -> Body {
        let first = if key { 0x96 } else { 0xA6 };
        let head = Bytes::from([&[first, packet][..], b"hvc1", &[track, 0, 0, 0]].concat());
        Body::new(vec![head, Bytes::from_static(&[7])])
    }

    #[test]
    fn multitrack_keeps_each_tracks_header_and_replays_each_track_from_its_keyframe() {
        let mut b = Backlog::new(10_000);
        b.push(tag_type::VIDEO, 0, one(&[0x17, 0, 0, 0, 0, 1]));
        b.push(tag_type::VIDEO, 0, track_video(1, 0, true));
        b.push(tag_type::AUDIO, 0, one(&[0xAF, 0, 0x12, 0x10]));
        // Track 1's sequence start does not replace track 0's.
        b.push(tag_type::VIDEO, 0, track_video(1, 0, true));
        // Track 1 keyframes every 300 ms from 200, track 0 every 500 ms.
        for n in 0..10u32 {
            b.push(tag_type::VIDEO, n * 100, video(n % 5 == 0));
            b.push(tag_type::VIDEO, n * 100, track_video(1, 1, n % 3 == 2));
        }
        let r = b.replay(None);
        let headers: Vec<u8> = r[..3].iter().map(|i| i.track).collect();
        assert_eq!(headers, [0, 1, 0], "both video headers and the audio one");
        assert_eq!(r[1].body.head().0[1] & 0x0F, 0, "track 1's sequence start");
        // From track 0's keyframe at 0; track 1 from its keyframe at 200.
        let media: Vec<(u32, u8)> = r[3..].iter().map(|i| (i.timestamp, i.track)).collect();
        assert_eq!(media[0], (0, 0));
        let first_t1 = media.iter().find(|(_, t)| *t == 1).unwrap();
        assert_eq!(*first_t1, (200, 1));
        assert_eq!(media.len(), 10 + 8);
        // Only track 0's keyframes are start points.
        b.push(tag_type::VIDEO, 1100, track_video(1, 1, true));
        assert!(!b.newest_is_key());
        b.push(tag_type::VIDEO, 1000, video(true));
        assert!(b.newest_is_key());
    }

    #[test]
    fn what_the_server_confirmed_goes_from_the_keyframe_before_the_rest() {
        let mut b = Backlog::new(10_000);
        b.push(tag_type::VIDEO, 0, one(&[0x17, 0, 0, 0, 0, 1]));
        // 1 s GOPs at 10 fps for 3 s, 1000 bytes each, all written.
        for n in 0..30u32 {
            b.push(tag_type::VIDEO, n * 100, video(n % 10 == 0));
            b.written(u64::from(n + 1) * 1000);
        }
        // Confirmed up to message 14 (15000 bytes): the first GOP goes,
        // message 15 is in the GOP from 1000.
        b.confirmed(15_000);
        assert_eq!(b.len(), 20);
        let r = b.replay(Some(15_000));
        assert_eq!(
            r[0].body.head().0[1],
            0,
            "the sequence header is kept apart"
        );
        assert_eq!(r[1].timestamp, 1000);
        // Everything confirmed: the GOP in progress stays, a new
        // connection's starting point.
        b.confirmed(30_000);
        assert_eq!(b.len(), 10);
        assert_eq!(b.replay(None)[1].timestamp, 2000);
        // A keyframe not yet written: a replay would start there, all
        // before it is confirmed.
        b.push(tag_type::VIDEO, 3000, video(true));
        b.push(tag_type::VIDEO, 3100, video(false));
        b.confirmed(30_000);
        assert_eq!(b.len(), 2);
        assert_eq!(b.replay(Some(30_000))[1].timestamp, 3000);
        assert_eq!(b.dropped, 0, "confirmed is not dropped");
    }

    #[test]
    fn a_backlog_of_zero_keeps_the_gop_in_progress() {
        let mut b = Backlog::new(0);
        b.push(tag_type::VIDEO, 0, one(&[0x17, 0, 0, 0, 0, 1]));
        for n in 0..25u32 {
            b.push(tag_type::VIDEO, n * 100, video(n % 10 == 0));
        }
        assert_eq!(b.len(), 5, "from the keyframe at 2000");
        let r = b.replay(None);
        assert_eq!(r[0].body.head().0[1], 0, "the sequence header first");
        let times: Vec<u32> = r[1..].iter().map(|i| i.timestamp).collect();
        assert_eq!(times, [2000, 2100, 2200, 2300, 2400]);
        // A keyframe alone is kept alone.
        b.push(tag_type::VIDEO, 2500, video(true));
        assert_eq!(b.len(), 1);
        let mut a = Backlog::new(0);
        for n in 0..10u32 {
            a.push(tag_type::AUDIO, n * 23, one(&[0xAF, 1, 2]));
        }
        assert_eq!(a.len(), 1, "audio alone: the newest frame");
    }

    /// 13 minutes of irregular GOPs, written and confirmed at odd moments: every
    /// replay starts at the keyframe before the first unconfirmed message,
    /// a move at the newest keyframe, and the backlog stays bounded.
    #[test]
    fn start_points_stay_right_through_a_long_irregular_stream() {
        let mut b = Backlog::new(3000);
        b.push(tag_type::VIDEO, 0, one(&[0x17, 0, 0, 0, 0, 1]));
        let mut rng = 0x2545_f491_u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let (mut bytes, mut acked, mut last_key) = (0u64, 0u64, 0u32);
        // (time, bytes once written) of every frame, to find the first
        // one the server has not confirmed.
        let mut sent: Vec<(u32, u64)> = Vec::new();
        let mut unwritten = Vec::new();
        for n in 0..20_000u32 {
            let t = n * 40;
            let key = n == 0 || next() % 60 == 0;
            if key {
                last_key = t;
            }
            b.push(tag_type::VIDEO, t, video(key));
            b.push(tag_type::AUDIO, t, one(&[0xAF, 1, 2]));
            unwritten.push(t);
            if next() % 4 != 0 {
                bytes += 2000;
                b.written(bytes);
                sent.extend(unwritten.drain(..).map(|t| (t, bytes)));
            }
            if next() % 50 == 0 {
                acked = bytes.saturating_sub(u64::from(next() % 3) * 2000);
                b.confirmed(acked);
            }
            assert!(
                b.len() < 2 * (3000 / 40 + 60 * 10) * 2,
                "{n}: {} held",
                b.len()
            );
            if n % 97 == 0 {
                let first_unconfirmed = sent
                    .iter()
                    .find(|(_, w)| *w > acked)
                    .map(|(t, _)| *t)
                    .or(unwritten.first().copied());
                let r = b.replay(Some(acked));
                let start = &r[1];
                assert_eq!(
                    start.body.head().0[0],
                    0x17,
                    "{n}: a replay starts at a keyframe"
                );
                // Unless what was never confirmed is older than the backlog
                // keeps: then from the first keyframe held.
                match first_unconfirmed {
                    Some(u) if t - u < 3000 => {
                        assert!(start.timestamp <= u, "{n}: {} after {u}", start.timestamp)
                    }
                    _ => assert_eq!(start.timestamp, b.replay(None)[1].timestamp, "{n}"),
                }
                let m = b.move_at_newest_key();
                assert_eq!(
                    m[1].timestamp, last_key,
                    "{n}: a move starts at the newest keyframe"
                );
            }
        }
    }

    #[test]
    fn audio_only_starts_anywhere() {
        let mut b = Backlog::new(1000);
        for n in 0..100u32 {
            b.push(tag_type::AUDIO, n * 23, one(&[0xAF, 1, 2]));
        }
        let r = b.replay(None);
        assert!(r.len() <= 45 && r.len() >= 43, "{}", r.len());
    }
}
