// SPDX-License-Identifier: MPL-2.0
//! Serving players (rtmpsink mode=server): each message is chunked once and
//! the same bytes go to every player; a new player gets the metadata and
//! sequence headers, then the cached GOP from its keyframe on; a player that
//! falls behind skips to the next keyframe, and one that keeps falling
//! behind is cut off. Enhanced RTMP multitrack streams keep a sequence
//! header per track; players start at keyframes of the lowest video track,
//! and get each other video track from its own next keyframe.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::Token;

use super::{Out, Peer, PeerKind};
use crate::net::TrackSet;
use crate::rtmp::chunk::{TimestampUnwrapper, encode_standalone};
use crate::rtmp::error::{Error, Result};
use crate::rtmp::flv::{RelayRole, audio_relay_role, relay_track, video_relay_role};
use crate::rtmp::idmap::IdMap;
use crate::rtmp::message::type_id;
use crate::rtmp::session::{ServerEvent, csid};

/// Bytes the element may hand over before the loop has taken them.
pub(super) const MAX_INBOX_BYTES: usize = 64 << 20;
/// Bytes the cached GOP may hold; a longer GOP is not cached (players then
/// start at the next keyframe).
const MAX_GOP_BYTES: usize = 64 << 20;
/// A player that falls behind this often within OVERFLOW_WINDOW is cut off.
const OVERFLOWS_TO_CLOSE: usize = 3;
const OVERFLOW_WINDOW: Duration = Duration::from_secs(60);
/// How long the end of the stream waits after a player's last media went
/// out: rtmp2src (1.22) drops the last message when StreamEOF comes in the
/// same read.
const END_GRACE: Duration = Duration::from_millis(200);
/// The message stream id relayed messages are encoded for: the one every
/// known player gets from its first createStream. Others are patched.
const COMMON_STREAM_ID: u32 = 1;

#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// How far (in stream time) a player's queue may reach behind the newest
    /// message before the player skips to the next keyframe.
    pub queue_time: Duration,
    /// How many bytes a player's queue may hold before it skips.
    pub queue_bytes: usize,
    /// Start new players at the last keyframe rather than the next one.
    pub gop_cache: bool,
    /// Players that announced no Enhanced RTMP codecs in connect get the
    /// legacy FLV tracks only (Enhanced RTMP tags would be garbage to them).
    pub legacy_players_get_legacy_only: bool,
    /// The most kbit/s each player's socket sends at (Linux TCP pacing:
    /// a joining player's burst of cached frames, or a stream pushed
    /// faster than real time, goes no faster); 0: no cap.
    /// `Server::set_pacing` changes it while serving.
    pub pacing_kbps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Meta,
    Data,
}

/// One message for the players, chunked once.
pub(crate) struct Relay {
    kind: Kind,
    role: RelayRole,
    type_id: u8,
    timestamp: u32,
    chunk_size: u32,
    /// The message chunked for COMMON_STREAM_ID, with a full header.
    encoded: Bytes,
    /// Metadata and sequence headers keep their payload: a new player gets
    /// them re-sent at its own start time.
    payload: Option<Bytes>,
    /// An Enhanced RTMP audio or video tag (a legacy player cannot read it).
    enhanced: bool,
    /// Its Enhanced RTMP track (0 unless multitrack).
    track: u8,
}

/// Whether an audio or video tag body, from its first byte, is Enhanced
/// RTMP (the video ExHeader bit, or SoundFormat 9).
fn is_enhanced(kind: Kind, first: u8) -> bool {
    match kind {
        Kind::Video => first & 0x80 != 0,
        Kind::Audio => first >> 4 == 9,
        _ => false,
    }
}

const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

fn chunk_stream(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => csid::AUDIO,
        Kind::Video => csid::VIDEO,
        Kind::Meta | Kind::Data => csid::DATA,
    }
}

impl Relay {
    pub fn new(type_id: u8, timestamp: u32, parts: &[&[u8]], chunk_size: u32) -> Result<Relay> {
        let mut head = [0u8; ON_METADATA.len()];
        let mut filled = 0;
        for p in parts {
            let n = p.len().min(head.len() - filled);
            head[filled..filled + n].copy_from_slice(&p[..n]);
            filled += n;
        }
        let head = &head[..filled];
        let (kind, role) = match type_id {
            type_id::AUDIO => (Kind::Audio, audio_relay_role(head)),
            type_id::VIDEO => (Kind::Video, video_relay_role(head)),
            type_id::DATA_AMF0 if head == ON_METADATA => (Kind::Meta, RelayRole::Config),
            type_id::DATA_AMF0 => (Kind::Data, RelayRole::Frame),
            other => {
                return Err(Error::unsupported(format!(
                    "message type {other} cannot be relayed to players"
                )));
            }
        };
        // Metadata goes at time 0, as nginx-rtmp sends it: FFmpeg takes a
        // script message stamped later for a packet of a data stream.
        let timestamp = if kind == Kind::Meta { 0 } else { timestamp };
        let encoded = encode_standalone(
            chunk_stream(kind),
            timestamp,
            type_id,
            COMMON_STREAM_ID,
            chunk_size,
            parts,
        )?;
        let payload = (role == RelayRole::Config).then(|| Bytes::from(parts.concat()));
        Ok(Relay {
            kind,
            role,
            type_id,
            timestamp,
            chunk_size,
            encoded,
            payload,
            enhanced: head.first().is_some_and(|&b| is_enhanced(kind, b)),
            track: match kind {
                Kind::Audio | Kind::Video => relay_track(kind == Kind::Video, head),
                _ => 0,
            },
        })
    }

    /// For a video frame: its track and whether it is a keyframe.
    fn video_frame(&self) -> Option<(u8, bool)> {
        (self.kind == Kind::Video && self.role != RelayRole::Config)
            .then_some((self.track, self.role == RelayRole::Key))
    }

    /// A keyframe of video track `track`.
    fn is_key_of(&self, track: u8) -> bool {
        self.kind == Kind::Video && self.role == RelayRole::Key && self.track == track
    }

    pub fn size(&self) -> usize {
        self.encoded.len() + self.payload.as_ref().map_or(0, Bytes::len)
    }

    /// Encoded again at another time, for a player's start.
    fn encoded_at(&self, timestamp: u32, stream_id: u32) -> Bytes {
        let timestamp = if self.kind == Kind::Meta {
            0
        } else {
            timestamp
        };
        match &self.payload {
            Some(p) => encode_standalone(
                chunk_stream(self.kind),
                timestamp,
                self.type_id,
                stream_id,
                self.chunk_size,
                &[p],
            )
            .unwrap_or_else(|_| for_stream(&self.encoded, stream_id)),
            None => for_stream(&self.encoded, stream_id),
        }
    }
}

/// The encoded message for another message stream id: the id sits at bytes
/// 8..12 of a type-0 header behind a one-byte basic header (chunk stream
/// ids 4 to 6), and continuation chunks do not repeat it.
fn for_stream(encoded: &Bytes, stream_id: u32) -> Bytes {
    if stream_id == COMMON_STREAM_ID || encoded.len() < 12 {
        return encoded.clone();
    }
    let mut b = BytesMut::from(&encoded[..]);
    b[8..12].copy_from_slice(&stream_id.to_le_bytes());
    b.freeze()
}

struct Cached {
    encoded: Bytes,
    timestamp: u32,
    ts: i64,
    enhanced: bool,
    /// A video frame: its track and whether it is a keyframe.
    video: Option<(u8, bool)>,
}

/// Per player: where it is in the stream.
#[derive(Debug, Default)]
pub(super) struct PlayerState {
    /// The player asked for a Play.Reset.
    pub reset: bool,
    /// Receiving frames; false while waiting for a point to start at.
    live: bool,
    /// Waiting because it fell behind: what it misses counts as dropped.
    skipping: bool,
    /// The metadata and sequence headers it has, by generation.
    config_gen: u64,
    pub dropped: u64,
    /// The cached GOP it started with may lag this much more (ms).
    allowance_ms: i64,
    overflows: VecDeque<Instant>,
    newest_ts: i64,
    /// The stream is over: since when everything queued has been written.
    drained_since: Option<Instant>,
    /// Announced no Enhanced RTMP codecs in connect: gets legacy tags only.
    legacy: bool,
    /// The video tracks it has had a keyframe of since it started.
    tracks: TrackSet,
}

impl PlayerState {
    pub fn lag_ms(&self, p: &Peer) -> u64 {
        p.oldest_media_ts()
            .map_or(0, |o| (self.newest_ts - o).max(0) as u64)
    }
}

pub(super) struct PlayRole {
    options: PlayOptions,
    unwrap: TimestampUnwrapper,
    meta: Option<Relay>,
    /// The latest sequence header of each audio and video track.
    configs: Vec<Relay>,
    config_gen: u64,
    gop: Vec<Cached>,
    gop_bytes: usize,
    /// False after the GOP outgrew MAX_GOP_BYTES, until the next keyframe.
    gop_valid: bool,
    has_video: bool,
    /// The lowest video track seen: its keyframes are where players start.
    main_track: u8,
    /// The newest tag of the main video track was Enhanced RTMP: legacy
    /// players start at audio frames.
    video_enhanced: bool,
    pub finishing: bool,
}

impl PlayRole {
    /// The players' pacing cap (kbit/s, 0: none).
    pub(super) fn pacing_kbps(&self) -> u32 {
        self.options.pacing_kbps
    }

    pub(super) fn set_pacing_kbps(&mut self, kbps: u32) {
        self.options.pacing_kbps = kbps;
    }

    pub fn new(options: PlayOptions) -> Self {
        PlayRole {
            options,
            unwrap: TimestampUnwrapper::new(),
            meta: None,
            configs: Vec::new(),
            config_gen: 1,
            gop: Vec::new(),
            gop_bytes: 0,
            gop_valid: false,
            has_video: false,
            main_track: 0,
            video_enhanced: false,
            finishing: false,
        }
    }

    pub fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }

    /// Metadata and sequence headers, encoded at `timestamp` for a player
    /// starting there.
    fn queue_prefix(&self, p: &mut Peer, timestamp: u32, ts: i64) {
        let legacy = p.player.legacy;
        for r in self
            .meta
            .iter()
            .chain(&self.configs)
            .filter(|r| !(legacy && r.enhanced))
        {
            p.queue_media(r.encoded_at(timestamp, p.stream_id), ts);
        }
        p.player.config_gen = self.config_gen;
    }

    /// Keeps `r`, a track's sequence header, in place of that track's
    /// last. They are kept in track order (track 0 first, video before
    /// audio), however they came: a player that joins gets them so, and
    /// makes its pads in that order, which is how players choose the
    /// track they play by default (playbin's first audio pad, decodebin3's
    /// first stream of each type), so they play track 0, not whichever
    /// track's encoder was quickest to start.
    fn keep_config(&mut self, r: Relay) {
        let order = |c: &Relay| (c.track, c.kind == Kind::Audio);
        match self.configs.iter_mut().find(|c| order(c) == order(&r)) {
            Some(c) => *c = r,
            None => {
                let at = self
                    .configs
                    .iter()
                    .position(|c| order(c) > order(&r))
                    .unwrap_or(self.configs.len());
                self.configs.insert(at, r);
            }
        }
    }

    fn cache(&mut self, r: &Relay, ts: i64) {
        if !self.options.gop_cache {
            return;
        }
        if r.is_key_of(self.main_track) {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
        }
        if !self.gop_valid {
            return;
        }
        self.gop_bytes += r.encoded.len();
        self.gop.push(Cached {
            encoded: r.encoded.clone(),
            timestamp: r.timestamp,
            ts,
            enhanced: r.enhanced,
            video: r.video_frame(),
        });
        if self.gop_bytes > MAX_GOP_BYTES {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = false;
        }
    }

    /// One message from the element to every player.
    pub fn relay(&mut self, r: Relay, peers: &mut IdMap<Token, Peer>) {
        let ts = self.unwrap.unwrap(r.timestamp);
        let config = r.role == RelayRole::Config;
        if r.kind == Kind::Video {
            if !self.has_video || r.track < self.main_track {
                self.main_track = r.track;
            }
            self.has_video = true;
            if r.track == self.main_track {
                self.video_enhanced = r.enhanced;
            }
        }
        if !config {
            self.cache(&r, ts);
        }
        let video = r.video_frame();
        let start_point =
            r.is_key_of(self.main_track) || (r.kind == Kind::Audio && !self.has_video);
        // A legacy player cannot start at an Enhanced RTMP keyframe: with
        // such video it starts at an audio frame.
        let legacy_start_point = (start_point && !r.enhanced)
            || (r.kind == Kind::Audio && !r.enhanced && self.video_enhanced);
        let media = matches!(r.kind, Kind::Audio | Kind::Video);
        for p in peers.values_mut() {
            if p.kind != PeerKind::Player || p.closing.is_some() {
                continue;
            }
            if p.player.legacy && r.enhanced {
                continue;
            }
            let start_point = if p.player.legacy {
                legacy_start_point
            } else {
                start_point
            };
            if !p.player.live {
                if start_point && !config {
                    if p.player.config_gen != self.config_gen {
                        self.queue_prefix(p, r.timestamp, ts);
                    }
                    p.player.live = true;
                    p.player.skipping = false;
                    p.player.tracks = TrackSet::default();
                } else {
                    if p.player.skipping && media {
                        p.player.dropped += 1;
                    }
                    continue;
                }
            } else if config {
                p.player.config_gen = self.config_gen + 1;
            }
            if !p.player.tracks.admits(video) {
                // A track it has had no keyframe of yet.
                continue;
            }
            if p.out.is_empty() {
                // Caught up: the GOP it started with is behind it.
                p.player.allowance_ms = 0;
            }
            p.queue_media(for_stream(&r.encoded, p.stream_id), ts);
            p.player.newest_ts = ts;
        }
        if config {
            self.config_gen += 1;
            match r.kind {
                Kind::Meta => self.meta = Some(r),
                Kind::Video | Kind::Audio => self.keep_config(r),
                Kind::Data => {}
            }
        }
    }

    /// After the sockets took what they could: a player whose queue still
    /// reaches too far back (or holds too many bytes) drops what it has not
    /// started writing and waits for a keyframe.
    pub fn check_overflows(&self, peers: &mut IdMap<Token, Peer>, now: Instant) {
        for p in peers.values_mut() {
            if p.kind == PeerKind::Player && p.closing.is_none() && p.player.live {
                self.check_overflow(p, now);
            }
        }
    }

    fn check_overflow(&self, p: &mut Peer, now: Instant) {
        let lag = p.player.lag_ms(p) as i64;
        let limit = self.options.queue_time.as_millis() as i64 + p.player.allowance_ms;
        if lag <= limit && p.out_bytes <= self.options.queue_bytes {
            return;
        }
        // The message being written stays whole; session messages
        // (commands, control) are never dropped.
        let keep_front = p.out_off > 0;
        let mut kept = VecDeque::with_capacity(p.out.len());
        let mut dropped = 0u64;
        for (i, o) in p.out.drain(..).enumerate() {
            if o.media_ts.is_none() || (i == 0 && keep_front) {
                kept.push_back(o);
            } else {
                dropped += 1;
            }
        }
        let front_written = if keep_front { p.out_off } else { 0 };
        p.out = kept;
        p.out_bytes = p.out.iter().map(|o: &Out| o.bytes.len()).sum::<usize>() - front_written;
        p.player.dropped += dropped;
        p.player.live = false;
        p.player.skipping = true;
        p.player.allowance_ms = 0;
        // Dropped sequence headers must come again when it resumes.
        p.player.config_gen = 0;
        let o = &mut p.player.overflows;
        o.push_back(now);
        while o
            .front()
            .is_some_and(|t| now.duration_since(*t) > OVERFLOW_WINDOW)
        {
            o.pop_front();
        }
        if o.len() >= OVERFLOWS_TO_CLOSE {
            p.close_with(
                format!(
                    "the player cannot keep up: it fell {OVERFLOWS_TO_CLOSE} times more than {} ms behind within {} s",
                    self.options.queue_time.as_millis(),
                    OVERFLOW_WINDOW.as_secs()
                ),
                now,
            );
        }
    }

    /// A player has been accepted: it starts at the cached GOP if there is
    /// one, else at the next keyframe (or audio frame, without video).
    pub fn start_player(
        &mut self,
        token: Token,
        stream_id: u32,
        peers: &mut IdMap<Token, Peer>,
        _now: Instant,
    ) -> std::result::Result<(), String> {
        let Some(p) = peers.get_mut(&token) else {
            return Err("gone".into());
        };
        if self.finishing {
            p.session
                .reject_stream(
                    stream_id,
                    "NetStream.Play.StreamNotFound",
                    "the stream has ended",
                )
                .ok();
            return Err("play refused: the stream has ended".into());
        }
        let reset = p.player.reset;
        p.session
            .accept_play(stream_id, reset)
            .map_err(|e| format!("protocol error: {e}"))?;
        // The session's answers (Play.Start) go before any media.
        p.queue_session_output();
        p.stream_id = stream_id;
        let announced = p
            .session
            .connect_params()
            .is_some_and(|c| !c.fourcc_list.is_empty() || !c.video_fourcc_info_map.is_empty());
        p.player = PlayerState {
            reset,
            legacy: self.options.legacy_players_get_legacy_only && !announced,
            ..Default::default()
        };
        let legacy = p.player.legacy;
        // A legacy player starts at the cached GOP only if its keyframe is
        // one it can read.
        let usable = !(legacy && self.gop.first().is_some_and(|c| c.enhanced));
        if let (Some(first), Some(last), true) = (self.gop.first(), self.gop.last(), usable) {
            self.queue_prefix(p, first.timestamp, first.ts);
            for c in self.gop.iter().filter(|c| !(legacy && c.enhanced)) {
                if p.player.tracks.admits(c.video) {
                    p.queue_media(for_stream(&c.encoded, stream_id), c.ts);
                }
            }
            p.player.live = true;
            p.player.newest_ts = last.ts;
            p.player.allowance_ms = last.ts - first.ts;
        }
        Ok(())
    }

    /// What a player said once playing.
    pub fn on_event(
        &mut self,
        token: Token,
        ev: ServerEvent,
        peers: &mut IdMap<Token, Peer>,
        now: Instant,
    ) {
        let Some(p) = peers.get_mut(&token) else {
            return;
        };
        match ev {
            ServerEvent::StreamDeleted { stream_id } if stream_id == p.stream_id => {
                p.close_with("the player stopped", now);
            }
            _ => {}
        }
    }

    /// The end of the stream: connections not yet playing are closed;
    /// players get what is queued first (see `end_drained_players`).
    pub fn finish(&mut self, peers: &mut IdMap<Token, Peer>, now: Instant) {
        self.finishing = true;
        for p in peers.values_mut() {
            if p.closing.is_none() && p.kind != PeerKind::Player {
                p.close_with("the stream has ended", now);
            }
        }
    }

    /// Once the stream is over: each player whose queue is written out gets
    /// the end (StreamEOF, onStatus) a moment later, then is closed.
    pub fn end_drained_players(&self, peers: &mut IdMap<Token, Peer>, now: Instant) {
        if !self.finishing {
            return;
        }
        for p in peers.values_mut() {
            if p.kind != PeerKind::Player || p.closing.is_some() || p.has_output() {
                continue;
            }
            let since = *p.player.drained_since.get_or_insert(now);
            if now.duration_since(since) >= END_GRACE {
                p.session.end_play(p.stream_id, true).ok();
                p.queue_session_output();
                p.close_with("end of stream", now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkDecoder;
    use crate::rtmp::limits::Limits;

    #[test]
    fn relayed_messages_decode_after_anything_and_for_any_stream_id() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let key = [&[0x17u8, 1, 0, 0, 0][..], &payload].concat();
        let r = Relay::new(type_id::VIDEO, 0x0100_0000, &[&key[..3], &key[3..]], 4096).unwrap();
        assert_eq!(r.role, RelayRole::Key);
        assert!(r.payload.is_none());
        let mut d = ChunkDecoder::new(Limits::default());
        let size = encode_standalone(
            2,
            0,
            type_id::SET_CHUNK_SIZE,
            0,
            128,
            &[&4096u32.to_be_bytes()],
        );
        d.feed(&size.unwrap());
        assert_eq!(
            d.poll_message().unwrap().unwrap().type_id,
            type_id::SET_CHUNK_SIZE
        );
        // Some other message on the same chunk stream first.
        let other = encode_standalone(csid::VIDEO, 5, type_id::VIDEO, 1, 4096, &[b"xyz"]).unwrap();
        d.feed(&other);
        d.feed(&for_stream(&r.encoded, 7));
        let first = d.poll_message().unwrap().unwrap();
        assert_eq!(&first.payload[..], b"xyz");
        let m = d.poll_message().unwrap().unwrap();
        assert_eq!(m.stream_id, 7);
        assert_eq!(m.timestamp, 0x0100_0000);
        assert_eq!(&m.payload[..], &key[..]);
        // Sequence headers keep their payload and re-encode at a new time.
        let seq = Relay::new(type_id::VIDEO, 0, &[&[0x17, 0, 0, 0, 0, 1, 2]], 4096).unwrap();
        assert_eq!(seq.role, RelayRole::Config);
        d.feed(&seq.encoded_at(1234, 1));
        let m = d.poll_message().unwrap().unwrap();
        assert_eq!((m.timestamp, m.stream_id), (1234, 1));
        assert_eq!(&m.payload[..], &[0x17, 0, 0, 0, 0, 1, 2]);
        let meta = Relay::new(type_id::DATA_AMF0, 0, &[ON_METADATA, b"\x08"], 4096).unwrap();
        assert_eq!((meta.kind, meta.role), (Kind::Meta, RelayRole::Config));
    }

    /// Sequence headers are kept one per track, in track order (video
    /// before audio), whatever order they came in: a joining player makes
    /// its pads, and picks its default tracks, in that order.
    #[test]
    fn sequence_headers_are_kept_in_track_order() {
        let header = |video: bool, track: u8, byte: u8| {
            let mut r = Relay::new(
                if video {
                    type_id::VIDEO
                } else {
                    type_id::AUDIO
                },
                0,
                &[&[if video { 0x17 } else { 0xAF }, 0, byte]],
                4096,
            )
            .unwrap();
            assert_eq!(r.role, RelayRole::Config);
            r.track = track;
            r
        };
        let mut role = PlayRole::new(PlayOptions {
            queue_time: Duration::from_secs(5),
            queue_bytes: 1 << 20,
            gop_cache: true,
            legacy_players_get_legacy_only: false,
            pacing_kbps: 0,
        });
        for (video, track, byte) in [
            (false, 2, 1),
            (true, 1, 2),
            (false, 0, 3),
            (true, 0, 4),
            (false, 2, 5),
        ] {
            role.keep_config(header(video, track, byte));
        }
        let kept: Vec<(bool, u8, u8)> = role
            .configs
            .iter()
            .map(|c| {
                let p = c.payload.as_ref().unwrap();
                (c.kind == Kind::Video, c.track, p[2])
            })
            .collect();
        assert_eq!(
            kept,
            [(true, 0, 4), (false, 0, 3), (true, 1, 2), (false, 2, 5)]
        );
    }
}
