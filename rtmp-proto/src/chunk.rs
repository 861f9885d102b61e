// SPDX-License-Identifier: MPL-2.0
//! The RTMP chunk stream: messages cut into chunks with compressed headers,
//! interleaved over chunk stream ids (RTMP spec 5.3).
//!
//! [`ChunkDecoder`] takes bytes and gives whole messages. It applies Set
//! Chunk Size and Abort itself, the moment they complete, because they change
//! how the very next chunk is read. Memory is bounded before it is reserved:
//! message size, chunk streams with a partial message, and the bytes all
//! partial messages may hold together ([`Limits`]). The buffers it
//! reassembles video frames in come back to it for reuse when the last
//! reference to them goes, on whatever thread (see `Recycler`).
//!
//! [`ChunkEncoder`] cuts messages into chunks with the smallest header that
//! says the same thing, and never lets a chunk stream's timestamp go back.
//! It copies payloads into its send buffer, or, given them as shared
//! `Bytes` ([`ChunkEncoder::write_message_shared`]), puts references to
//! their big pieces between the chunk headers, for a vectored write.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Buf, Bytes, BytesMut};

use super::error::{Error, ErrorKind, Result};
use super::limits::Limits;
use super::message::type_id;

/// The chunk size both ends start with, until Set Chunk Size.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size the wire allows (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// The lowest chunk stream id (0 and 1 prefix the 2- and 3-byte forms).
pub const MIN_CSID: u32 = 2;
/// The highest chunk stream id the 3-byte form can carry.
pub const MAX_CSID: u32 = 65_599;
/// The most the decoder sets aside for an unfinished chunk before its
/// bytes have come.
const HOLD_AHEAD_MAX: usize = 1 << 20;
/// The 24-bit timestamp value that says "look in the extended field".
const EXTENDED: u32 = 0xFF_FFFF;
/// Single-chunk messages at least this big are handed on without a copy;
/// smaller ones are copied so that they do not pin a large input block.
const ZERO_COPY_MIN: usize = 4096;

/// Per-chunk-stream state: ids below 64 (one-byte headers, what peers use
/// in practice) index an array, others go to a map. This keeps hashing off
/// the per-chunk path.
#[derive(Debug)]
struct CsidTable<T> {
    low: Vec<Option<T>>,
    high: HashMap<u32, T>,
}

impl<T: Default> CsidTable<T> {
    fn new() -> Self {
        CsidTable {
            low: (0..64).map(|_| None).collect(),
            high: HashMap::new(),
        }
    }

    fn get(&self, csid: u32) -> Option<&T> {
        match self.low.get(csid as usize) {
            Some(slot) => slot.as_ref(),
            None => self.high.get(&csid),
        }
    }

    fn get_mut(&mut self, csid: u32) -> Option<&mut T> {
        match self.low.get_mut(csid as usize) {
            Some(slot) => slot.as_mut(),
            None => self.high.get_mut(&csid),
        }
    }

    fn get_or_default(&mut self, csid: u32) -> &mut T {
        match self.low.get_mut(csid as usize) {
            Some(slot) => slot.get_or_insert_with(T::default),
            None => self.high.entry(csid).or_default(),
        }
    }
}

/// A whole message as the chunk stream carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The chunk stream it came on.
    pub csid: u32,
    /// Milliseconds, modulo 2^32; see [`TimestampUnwrapper`].
    pub timestamp: u32,
    /// The message type (see [`type_id`]).
    pub type_id: u8,
    /// The message stream (0: the connection's own).
    pub stream_id: u32,
    /// The message, whole (no copy when it came in one chunk).
    pub payload: Bytes,
}

#[derive(Debug, Default)]
struct InStream {
    timestamp: u32,
    /// The delta a type-3 header that starts a message adds.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The raw extended timestamp field of the last type 0/1/2 header, if
    /// it had one: type-3 chunks then repeat it (or, from some peers, omit
    /// it, which is why it is peeked and compared rather than assumed).
    ext_field: Option<u32>,
    partial: Option<Vec<u8>>,
}

/// Counters a caller may show in stats or logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecoderStats {
    /// Bytes fed.
    pub bytes: u64,
    /// Chunks decoded.
    pub chunks: u64,
    /// Whole messages given out.
    pub messages: u64,
    /// Partial messages dropped by Abort or by a new header mid-message.
    pub aborted: u64,
    /// Type-3 chunks whose extended timestamp the peer left out.
    pub omitted_extended_timestamps: u64,
}

/// Turns a chunk stream back into whole messages: bounded in chunk
/// streams, per-message size and reassembly memory (see [`Limits`]).
#[derive(Debug)]
pub struct ChunkDecoder {
    /// The start of a chunk the bytes fed so far did not finish (whole
    /// chunks are decoded straight from what is fed, never copied here).
    buf: BytesMut,
    /// Messages decoded, not yet taken.
    ready: VecDeque<RawMessage>,
    /// What stopped the decoding, once the messages before it are taken.
    failed: Option<Error>,
    chunk_size: u32,
    streams: CsidTable<InStream>,
    /// Chunk streams opened so far (bounded, see `admit`).
    opened: usize,
    parts: Reassembly,
    limits: Limits,
    stats: DecoderStats,
}

impl ChunkDecoder {
    /// A decoder at the default chunk size, within `limits`.
    pub fn new(limits: Limits) -> Self {
        ChunkDecoder {
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            failed: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: CsidTable::new(),
            opened: 0,
            parts: Reassembly::default(),
            limits,
            stats: DecoderStats::default(),
        }
    }

    /// The peer's chunk size (from its Set Chunk Size).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes fed and not yet decoded: the start of an unfinished chunk.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held by partly received messages.
    pub fn reassembly_bytes(&self) -> u64 {
        self.parts.reserved
    }

    /// Decodes received bytes; [`poll_message`](Self::poll_message) gives
    /// the messages they finished. The chunks are read where `data` is: of
    /// its bytes, only a chunk it leaves unfinished is copied (to be
    /// finished by the next feed), and the payloads once, into the
    /// messages. After an error, nothing more is decoded.
    pub fn feed(&mut self, data: &[u8]) {
        let mut input = data;
        // First the chunk an earlier feed began, with just the bytes it
        // still needs.
        while !self.buf.is_empty() && self.failed.is_none() {
            let mut held = std::mem::take(&mut self.buf);
            let step = self.next_chunk(&mut held);
            self.buf = held;
            match step {
                Ok(Chunk::NeedMore(need)) => {
                    if input.is_empty() {
                        return;
                    }
                    let take = need.saturating_sub(self.buf.len()).clamp(1, input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
                step => self.accept(step),
            }
        }
        while self.failed.is_none() {
            match self.next_chunk(&mut input) {
                Ok(Chunk::NeedMore(need)) => {
                    // Room for all of the chunk known so far at once (up
                    // to a point: a header alone does not get 16 MiB).
                    self.buf.reserve(need.min(HOLD_AHEAD_MAX).max(input.len()));
                    self.buf.extend_from_slice(input);
                    return;
                }
                step => self.accept(step),
            }
        }
    }

    fn accept(&mut self, step: Result<Chunk>) {
        match step {
            Ok(Chunk::Message(m)) => {
                self.stats.messages += 1;
                match self.apply_control(&m) {
                    Ok(()) => self.ready.push_back(m),
                    Err(e) => self.failed = Some(e),
                }
            }
            Ok(Chunk::Partial | Chunk::NeedMore(_)) => {}
            Err(e) => self.failed = Some(e),
        }
    }

    /// Gives the next whole message, `Ok(None)` when more bytes are needed.
    /// After an error the connection cannot go on: the stream is out of
    /// step (the messages before it come first).
    pub fn poll_message(&mut self) -> Result<Option<RawMessage>> {
        if let Some(m) = self.ready.pop_front() {
            return Ok(Some(m));
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(None),
        }
    }

    fn apply_control(&mut self, m: &RawMessage) -> Result<()> {
        match m.type_id {
            type_id::SET_CHUNK_SIZE => {
                let v = read_u32(&m.payload, "Set Chunk Size")?;
                // The top bit must be zero; peers that set it mean the rest.
                let size = v & MAX_CHUNK_SIZE;
                if size == 0 {
                    return Err(Error::protocol("peer set a chunk size of 0"));
                }
                self.chunk_size = size;
            }
            type_id::ABORT => {
                let csid = read_u32(&m.payload, "Abort")?;
                if let Some(s) = self.streams.get_mut(csid)
                    && let Some(p) = s.partial.take()
                {
                    self.parts.abandon(p, s.length);
                    self.stats.aborted += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes the chunk at the start of `src`, or says how many bytes it
    /// needs to (at least: the count grows as its header is read). Nothing
    /// is committed until the whole chunk is there.
    fn next_chunk(&mut self, src: &mut impl Input) -> Result<Chunk> {
        let buf = src.peek();
        let h = match ChunkHeader::read(buf) {
            Ok(h) => h,
            Err(need) => return Ok(Chunk::NeedMore(need)),
        };
        self.admit(&h)?;
        let stream = self.streams.get_or_default(h.csid);
        let continuing = stream.partial.is_some();
        let starts_message = h.fmt != 3 || !continuing;
        let ext = match h.extended_timestamp(buf, stream, continuing) {
            Ok(ext) => ext,
            Err(need) => return Ok(Chunk::NeedMore(need)),
        };

        // The message this chunk belongs to, and how much of it is here.
        let remaining = if starts_message {
            let (length, type_id) = h.length_type().unwrap_or((stream.length, stream.type_id));
            check_message_size(&self.limits, length, type_id)?;
            length
        } else {
            let got = stream.partial.as_ref().map_or(0, |p| p.len()) as u32;
            stream.length - got
        };
        let n = remaining.min(self.chunk_size) as usize;
        let pos = ext.end;
        if buf.len() < pos + n {
            return Ok(Chunk::NeedMore(pos + n));
        }

        // Commit the header.
        self.stats.chunks += 1;
        self.stats.bytes += (pos + n) as u64;
        if ext.omitted {
            self.stats.omitted_extended_timestamps += 1;
        }
        if starts_message {
            if let Some(p) = stream.partial.take() {
                // A new header mid-message: the old message is abandoned.
                self.parts.abandon(p, stream.length);
                self.stats.aborted += 1;
            }
            stream.start_message(&h, ext.value);
        }
        src.skip(pos);

        if starts_message && n == stream.length as usize {
            let media = matches!(stream.type_id, type_id::AUDIO | type_id::VIDEO);
            let payload = src.payload(n, media, &mut self.parts.recycler);
            return Ok(Chunk::Message(stream.message(h.csid, payload)));
        }
        let partial = match stream.partial.as_mut() {
            Some(p) => p,
            None => stream
                .partial
                .insert(self.parts.begin(&self.limits, stream.length)?),
        };
        partial.extend_from_slice(&src.peek()[..n]);
        src.skip(n);
        if partial.len() < stream.length as usize {
            return Ok(Chunk::Partial);
        }
        let done = stream.partial.take().unwrap_or_default();
        self.parts.end(stream.length);
        let payload = self.parts.recycler.share(done);
        Ok(Chunk::Message(stream.message(h.csid, payload)))
    }

    /// Refuses a chunk that opens a chunk stream with anything but a
    /// type-0 header, or one stream too many; counts the streams opened.
    #[inline(always)]
    fn admit(&mut self, h: &ChunkHeader) -> Result<()> {
        if self.streams.get(h.csid).is_some() {
            return Ok(());
        }
        if h.fmt != 0 {
            return Err(Error::protocol(format!(
                "chunk stream {} starts with a type {} header instead of type 0",
                h.csid, h.fmt
            )));
        }
        // Idle chunk stream states are small, but not free.
        if self.opened >= 4 * self.limits.max_chunk_streams as usize + 16 {
            return Err(Error::limit(format!(
                "peer opened more than {} chunk streams",
                self.opened
            )));
        }
        self.opened += 1;
        Ok(())
    }
}

/// A message's size and type, checked at its first chunk's header, before
/// any of its bytes are held: commands and data have a lower bound.
#[inline(always)]
fn check_message_size(limits: &Limits, length: u32, type_id: u8) -> Result<()> {
    if length > limits.max_message_size {
        return Err(Error::limit(format!(
            "peer sent a message of {length} bytes; the limit is {}",
            limits.max_message_size
        )));
    }
    if is_amf_message(type_id) && length > limits.max_command_size {
        return Err(Error::limit(format!(
            "peer sent a command or data message of {length} bytes; the limit is {}",
            limits.max_command_size
        )));
    }
    Ok(())
}

/// A chunk's basic and message headers (RTMP spec 5.3.1.1-2), read but
/// not yet applied to its chunk stream. Small (it is read for every
/// chunk): the fields a header type lacks are 0. Its steps, like the
/// decoder's others, are inlined into `next_chunk`: out of line, or with
/// `Option` fields, they cost the decoder some 5% more instructions (as
/// did the extended timestamp's check written as two matches on `fmt`).
struct ChunkHeader {
    /// 0 to 3: how much of the message header is there.
    fmt: u8,
    /// Its size on the wire, without an extended timestamp.
    size: u8,
    /// Types 0 and 1: the message's type id.
    type_id: u8,
    csid: u32,
    /// Types 0-2: the timestamp (type 0) or delta, or `EXTENDED`.
    ts_field: u32,
    /// Types 0 and 1: the message's length.
    length: u32,
    /// Type 0: the message stream id.
    msg_stream: u32,
}

/// A chunk's extended timestamp, as found after its header.
struct ExtendedTimestamp {
    /// The field's value, for a type 0-2 header that has one.
    value: Option<u32>,
    /// Where the chunk's payload starts.
    end: usize,
    /// A type-3 chunk left out the field its stream's headers carry.
    omitted: bool,
}

impl ChunkHeader {
    /// The header at the start of `buf`, or how many bytes it needs.
    #[inline(always)]
    fn read(buf: &[u8]) -> std::result::Result<ChunkHeader, usize> {
        let Some(&b0) = buf.first() else {
            return Err(1);
        };
        let fmt = b0 >> 6;
        let (csid, basic) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b) => (u32::from(b) + 64, 2),
                None => return Err(2),
            },
            1 => match buf.get(1..3) {
                Some(b) => (u32::from(b[0]) + (u32::from(b[1]) << 8) + 64, 3),
                None => return Err(3),
            },
            c => (u32::from(c), 1),
        };
        let size = basic + [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = buf.get(basic..size) else {
            return Err(size);
        };
        let mut header = ChunkHeader {
            fmt,
            size: size as u8,
            type_id: 0,
            csid,
            ts_field: 0,
            length: 0,
            msg_stream: 0,
        };
        if let [t0, t1, t2, rest @ ..] = h {
            header.ts_field = u32::from_be_bytes([0, *t0, *t1, *t2]);
            if let [l0, l1, l2, type_id, rest @ ..] = rest {
                header.length = u32::from_be_bytes([0, *l0, *l1, *l2]);
                header.type_id = *type_id;
                if let [s0, s1, s2, s3] = rest {
                    header.msg_stream = u32::from_le_bytes([*s0, *s1, *s2, *s3]);
                }
            }
        }
        Ok(header)
    }

    /// Types 0 and 1: the message's length and type id.
    #[inline(always)]
    fn length_type(&self) -> Option<(u32, u8)> {
        (self.fmt <= 1).then_some((self.length, self.type_id))
    }

    /// The extended timestamp after this header in `buf`: a type 0-2
    /// header's when its field says so; a type-3 chunk's when its stream's
    /// last header had one, and then only if it holds the value expected
    /// (some peers leave it out there). Or how many bytes it needs.
    #[inline(always)]
    fn extended_timestamp(
        &self,
        buf: &[u8],
        stream: &InStream,
        continuing: bool,
    ) -> std::result::Result<ExtendedTimestamp, usize> {
        let at = usize::from(self.size);
        let mut ext = ExtendedTimestamp {
            value: None,
            end: at,
            omitted: false,
        };
        let expected = match self.fmt {
            0..=2 if self.ts_field == EXTENDED => None,
            0..=2 => return Ok(ext),
            _ => match stream.ext_field {
                Some(expected) => Some(expected),
                None => return Ok(ext),
            },
        };
        let Some(b) = buf.get(at..at + 4) else {
            return Err(at + 4);
        };
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match expected {
            None => (ext.value, ext.end) = (Some(v), at + 4),
            Some(expected) => {
                let abs = if continuing {
                    stream.timestamp
                } else {
                    stream.timestamp.wrapping_add(stream.delta)
                };
                if v == expected || v == abs {
                    ext.end = at + 4;
                } else {
                    ext.omitted = true;
                }
            }
        }
        Ok(ext)
    }
}

impl InStream {
    /// Applies the header of a chunk that starts a message (`ext`: its
    /// extended timestamp, for types 0-2).
    #[inline(always)]
    fn start_message(&mut self, h: &ChunkHeader, ext: Option<u32>) {
        let field = ext.unwrap_or(h.ts_field);
        match h.fmt {
            0 => {
                self.timestamp = field;
                // The spec: a type-3 header after type 0 repeats the
                // type-0 timestamp as its delta.
                self.delta = field;
            }
            1 | 2 => {
                self.delta = field;
                self.timestamp = self.timestamp.wrapping_add(field);
            }
            _ => self.timestamp = self.timestamp.wrapping_add(self.delta),
        }
        if h.fmt <= 2 {
            self.ext_field = ext;
        }
        if let Some((length, type_id)) = h.length_type() {
            self.length = length;
            self.type_id = type_id;
        }
        if h.fmt == 0 {
            self.stream_id = h.msg_stream;
        }
    }

    /// The message now whole, with its payload.
    #[inline(always)]
    fn message(&self, csid: u32, payload: Bytes) -> RawMessage {
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}

/// The messages being reassembled from several chunks: how many, the
/// bytes they will hold together, and the buffers they are made in.
#[derive(Debug, Default)]
struct Reassembly {
    in_flight: u32,
    reserved: u64,
    recycler: Recycler,
}

impl Reassembly {
    /// A buffer for a message of `length` bytes, within `limits`.
    #[inline]
    fn begin(&mut self, limits: &Limits, length: u32) -> Result<Vec<u8>> {
        if self.in_flight >= limits.max_chunk_streams {
            return Err(Error::limit(format!(
                "peer has more than {} messages in progress at once",
                limits.max_chunk_streams
            )));
        }
        let len = u64::from(length);
        if self.reserved + len > limits.max_reassembly_bytes {
            return Err(Error::limit(format!(
                "partial messages would hold more than {} bytes",
                limits.max_reassembly_bytes
            )));
        }
        self.in_flight += 1;
        self.reserved += len;
        Ok(self.recycler.take(length as usize))
    }

    /// A message of `length` bytes is whole.
    #[inline]
    fn end(&mut self, length: u32) {
        self.in_flight -= 1;
        self.reserved -= u64::from(length);
    }

    /// A message of `length` bytes will not be finished: its buffer back.
    #[inline]
    fn abandon(&mut self, partial: Vec<u8>, length: u32) {
        self.end(length);
        self.recycler.keep(partial);
    }
}

/// The buffers the decoder reassembles big messages in (video frames),
/// back for reuse once the last reference to the message goes, on
/// whatever thread that is.
///
/// A player's frames are read on one thread and let go on others (a pad's
/// thread, a sink's): freeing memory on another thread than the one that
/// allocated it takes the allocator's lock for that thread's memory
/// (glibc's arenas), against the reader's next allocation; recycled, a
/// stream of frames takes neither. Small messages (audio, commands) are
/// not worth it: an allocation of their size is cheaper than the
/// recycler's bookkeeping. Kept: up to `KEEP` buffers, none over
/// `KEEP_MAX`; a buffer is reused only for a message of at least half its
/// size, so that a keyframe's buffer is not tied up by a small frame.
///
/// Small audio and video messages that came whole in a chunk (audio
/// frames, mostly) are copied one after the other into a shared block
/// instead, `SMALL_BLOCK` at a time: no allocation of their own, and none
/// when they are sliced or shared later (a lone small buffer would be, on
/// its first slice); a block is freed when the last of its messages goes.
/// Commands are copied as they are: a connection that only ever sends a
/// few (a player) holds no block.
#[derive(Debug, Default)]
struct Recycler {
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
    small: BytesMut,
}

/// The block small messages are copied into.
const SMALL_BLOCK: usize = 16 * 1024;

/// Messages up to this size are not recycled.
const RECYCLE_MIN: usize = 4096;
/// Buffers kept for reuse, per decoder.
const KEEP: usize = 4;
/// The largest buffer kept.
const KEEP_MAX: usize = 256 * 1024;

impl Recycler {
    /// An empty buffer with room for `len` bytes.
    fn take(&self, len: usize) -> Vec<u8> {
        // Never wait: whoever holds the lock is a moment away from letting
        // go, and an allocation costs no more than that.
        if len > RECYCLE_MIN
            && let Ok(mut kept) = self.kept.try_lock()
            && let Some(i) = kept
                .iter()
                .position(|b| b.capacity() >= len && b.capacity() / 2 <= len)
        {
            return kept.swap_remove(i);
        }
        Vec::with_capacity(len)
    }

    /// A copy of `bytes`, at most `RECYCLE_MIN` of them: in the shared
    /// block if they are `media`.
    fn copy_small(&mut self, bytes: &[u8], media: bool) -> Bytes {
        if !media {
            return Bytes::copy_from_slice(bytes);
        }
        if self.small.capacity() < bytes.len() {
            self.small = BytesMut::with_capacity(SMALL_BLOCK);
        }
        self.small.extend_from_slice(bytes);
        self.small.split().freeze()
    }

    /// Keeps `buf` for reuse, if it is worth it and there is room.
    fn keep(&self, buf: Vec<u8>) {
        put_back(&self.kept, buf);
    }

    /// `buf` as a message's payload, coming back here when let go if it
    /// is worth it.
    fn share(&self, buf: Vec<u8>) -> Bytes {
        if !worth_keeping(&buf) {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Recycled {
            buf,
            home: Arc::downgrade(&self.kept),
        })
    }
}

fn worth_keeping(buf: &Vec<u8>) -> bool {
    (RECYCLE_MIN + 1..=KEEP_MAX).contains(&buf.capacity())
}

fn put_back(kept: &Mutex<Vec<Vec<u8>>>, mut buf: Vec<u8>) {
    if !worth_keeping(&buf) {
        return;
    }
    // A buffer not kept is freed as any other.
    if let Ok(mut kept) = kept.try_lock()
        && kept.len() < KEEP
    {
        buf.clear();
        kept.push(buf);
    }
}

/// A message's buffer, on its way back to its decoder (freed instead if
/// the decoder has gone).
struct Recycled {
    buf: Vec<u8>,
    home: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(kept) = self.home.upgrade() {
            put_back(&kept, std::mem::take(&mut self.buf));
        }
    }
}

/// Where the decoder reads a chunk from: what is being fed, or its own
/// buffer (a chunk an earlier feed began).
trait Input {
    fn peek(&self) -> &[u8];
    fn skip(&mut self, n: usize);
    /// The next `n` bytes, as a message's payload (`media`: audio or
    /// video).
    fn payload(&mut self, n: usize, media: bool, recycler: &mut Recycler) -> Bytes;
}

impl Input for &[u8] {
    fn peek(&self) -> &[u8] {
        self
    }

    fn skip(&mut self, n: usize) {
        *self = &self[n..];
    }

    fn payload(&mut self, n: usize, media: bool, recycler: &mut Recycler) -> Bytes {
        let p = if n <= RECYCLE_MIN {
            recycler.copy_small(&self[..n], media)
        } else {
            let mut p = recycler.take(n);
            p.extend_from_slice(&self[..n]);
            recycler.share(p)
        };
        *self = &self[n..];
        p
    }
}

impl Input for BytesMut {
    fn peek(&self) -> &[u8] {
        self
    }

    fn skip(&mut self, n: usize) {
        Buf::advance(self, n);
    }

    fn payload(&mut self, n: usize, media: bool, recycler: &mut Recycler) -> Bytes {
        // A big message that came in one chunk is handed on where it is;
        // a small one is copied, not to pin the whole block.
        if n >= ZERO_COPY_MIN {
            self.split_to(n).freeze()
        } else {
            let p = recycler.copy_small(&self[..n], media);
            Buf::advance(self, n);
            p
        }
    }
}

enum Chunk {
    /// At least this many bytes from the chunk's start are needed.
    NeedMore(usize),
    Partial,
    Message(RawMessage),
}

fn read_u32(p: &[u8], what: &str) -> Result<u32> {
    if p.len() < 4 {
        return Err(Error::malformed(format!(
            "{what} message has {} bytes, needs 4",
            p.len()
        )));
    }
    Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

#[derive(Debug, Default, Clone, Copy)]
struct OutStream {
    timestamp: u32,
    delta: u32,
    /// False right after a type-0 header: peers disagree on what delta a
    /// type-3 header adds then (the spec and FFmpeg say the timestamp,
    /// nginx says zero), so the next message never uses type 3.
    delta_known: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
}

/// Counters of the encoder.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncoderStats {
    /// Bytes written.
    pub bytes: u64,
    /// Messages written.
    pub messages: u64,
    /// Messages whose timestamp was raised to keep the stream monotonic.
    pub clamped_timestamps: u64,
}

/// Pieces of a shared payload at least this long go out by reference
/// ([`ChunkEncoder::write_message_shared`]); shorter ones are copied, as a
/// copy of a few hundred bytes costs less than another piece to write.
pub const SHARE_MIN: usize = 1024;

/// Cuts messages into chunks, choosing the shortest header each time.
///
/// The encoded bytes wait in order: first `done` (pieces already cut off,
/// some of them payloads referenced rather than copied), then `out`.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: CsidTable<OutStream>,
    done: VecDeque<Bytes>,
    done_len: usize,
    out: BytesMut,
    stats: EncoderStats,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: CsidTable::new(),
            done: VecDeque::new(),
            done_len: 0,
            out: BytesMut::with_capacity(64 * 1024),
            stats: EncoderStats::default(),
        }
    }

    /// The size chunks are cut to now.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the size of the chunks written from now on. The caller sends
    /// the Set Chunk Size message first (see `Connection::set_chunk_size`).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("chunk size {size} is outside 1..=2147483647"),
            ));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The counters so far.
    pub fn stats(&self) -> EncoderStats {
        self.stats
    }

    /// The next bytes to send: all of them, unless
    /// [`write_message_shared`](Self::write_message_shared) left them in
    /// pieces, then the first piece (send it, `advance`, and ask again).
    pub fn send_buf(&self) -> &[u8] {
        match self.done.front() {
            Some(b) => b,
            None => &self.out,
        }
    }

    /// Marks `n` bytes of [`send_buf`](Self::send_buf) as sent.
    pub fn advance(&mut self, n: usize) {
        match self.done.front_mut() {
            Some(b) => {
                let n = n.min(b.len());
                b.advance(n);
                self.done_len -= n;
                if b.is_empty() {
                    self.done.pop_front();
                }
            }
            None => self.out.advance(n.min(self.out.len())),
        }
    }

    /// Takes all pending bytes at once, as one buffer (for drivers that
    /// queue `Bytes`). Pieces left by `write_message_shared` are joined,
    /// a copy: such drivers take [`take_send_pieces`](Self::take_send_pieces).
    pub fn take_send_buf(&mut self) -> Bytes {
        if self.done.is_empty() {
            return self.out.split().freeze();
        }
        let mut all = BytesMut::with_capacity(self.pending());
        for b in self.done.drain(..) {
            all.extend_from_slice(&b);
        }
        self.done_len = 0;
        all.extend_from_slice(&self.out);
        self.out.clear();
        all.freeze()
    }

    /// Takes all pending bytes, in the pieces they are in (for a vectored
    /// write); returns how many bytes that was.
    pub fn take_send_pieces(&mut self, into: &mut impl Extend<Bytes>) -> usize {
        let n = self.pending();
        into.extend(self.done.drain(..));
        self.done_len = 0;
        if !self.out.is_empty() {
            into.extend(std::iter::once(self.out.split().freeze()));
        }
        n
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.done_len + self.out.len()
    }

    /// Ends the piece `out` is writing, so that a referenced payload can
    /// follow it.
    fn cut(&mut self) {
        if !self.out.is_empty() {
            let b = self.out.split().freeze();
            self.done_len += b.len();
            self.done.push_back(b);
        }
    }

    /// The timestamp last written on a chunk stream.
    pub fn last_timestamp(&self, csid: u32) -> Option<u32> {
        self.streams.get(csid).map(|s| s.timestamp)
    }

    /// Appends `payload` as one message, cut into chunks.
    pub fn write_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<()> {
        self.write_message_parts(csid, timestamp, type_id, stream_id, &[payload])
    }

    /// Appends one message whose payload is the concatenation of `parts`
    /// (for instance the memories of a GStreamer buffer), without joining
    /// them first.
    pub fn write_message_parts(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        parts: &[&[u8]],
    ) -> Result<()> {
        self.write_pieces(csid, timestamp, type_id, stream_id, parts)
    }

    /// Like [`write_message_parts`](Self::write_message_parts), but the
    /// pieces of at least [`SHARE_MIN`] bytes are not copied: the chunks
    /// refer to them, and [`take_send_pieces`](Self::take_send_pieces)
    /// hands them on with the headers between them, for a vectored write.
    pub fn write_message_shared(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        parts: &[Bytes],
    ) -> Result<()> {
        self.write_pieces(csid, timestamp, type_id, stream_id, parts)
    }

    /// Writes the headers and the payload, referencing the pieces that
    /// can be and are big enough.
    fn write_pieces<P: Piece>(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        parts: &[P],
    ) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.bytes().len()).sum();
        if !(MIN_CSID..=MAX_CSID).contains(&csid) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("chunk stream id {csid} is outside 2..=65599"),
            ));
        }
        if total > 0xFF_FFFF {
            return Err(Error::limit(format!(
                "a message of {total} bytes does not fit the 24-bit length field"
            )));
        }
        let (fmt, st) = self.next_header(csid, timestamp, type_id, stream_id, total as u32);
        *self.streams.get_or_default(csid) = st;

        let chunks = total.div_ceil(self.chunk_size as usize).max(1);
        let ext_len = if st.extended { 4 } else { 0 };
        let referenced: usize = parts
            .iter()
            .filter_map(|p| p.shared())
            .map(Bytes::len)
            .sum();
        self.out
            .reserve(total - referenced + 18 + (chunks - 1) * (3 + ext_len));
        let start = self.pending();
        self.put_first_header(fmt, csid, &st);
        self.put_payload(csid, &st, parts);
        self.stats.bytes += (self.pending() - start) as u64;
        self.stats.messages += 1;
        Ok(())
    }

    /// The header type (0 to 3) a message needs on chunk stream `csid`,
    /// which says only what changed since the stream's last message, and
    /// what the stream holds after it.
    #[inline(always)]
    fn next_header(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        length: u32,
    ) -> (u8, OutStream) {
        let prev = self.streams.get(csid).copied();
        // `field` is what the header's timestamp says: the delta, or the
        // timestamp itself in a type-0 header.
        let (fmt, timestamp, field) = match prev {
            Some(p) if p.stream_id == stream_id => {
                // Serial comparison: a timestamp "before" the last one (as
                // 32-bit arithmetic sees it) is raised to the last one.
                let mut delta = timestamp.wrapping_sub(p.timestamp);
                let mut ts = timestamp;
                if delta as i32 <= -1 {
                    delta = 0;
                    ts = p.timestamp;
                    self.stats.clamped_timestamps += 1;
                }
                let fmt = if p.length != length || p.type_id != type_id {
                    1
                } else if !p.delta_known || p.delta != delta {
                    2
                } else {
                    3
                };
                (fmt, ts, delta)
            }
            _ => (0, timestamp, timestamp),
        };
        let extended = if fmt == 3 {
            prev.is_some_and(|p| p.extended)
        } else {
            field >= EXTENDED
        };
        let st = OutStream {
            timestamp,
            delta: field,
            delta_known: fmt != 0,
            length,
            type_id,
            stream_id,
            extended,
        };
        (fmt, st)
    }

    /// The message's first chunk header, of type `fmt`.
    #[inline(always)]
    fn put_first_header(&mut self, fmt: u8, csid: u32, st: &OutStream) {
        put_basic_header(&mut self.out, fmt, csid);
        let ts24 = if st.extended { EXTENDED } else { st.delta };
        if fmt <= 2 {
            self.out.extend_from_slice(&ts24.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            self.out.extend_from_slice(&st.length.to_be_bytes()[1..]);
            self.out.extend_from_slice(&[st.type_id]);
        }
        if fmt == 0 {
            self.out.extend_from_slice(&st.stream_id.to_le_bytes());
        }
        if st.extended {
            self.out.extend_from_slice(&st.delta.to_be_bytes());
        }
    }

    /// The parts, a type-3 chunk header every `chunk_size` bytes; shared
    /// parts are referenced, the others copied.
    #[inline(always)]
    fn put_payload<P: Piece>(&mut self, csid: u32, st: &OutStream, parts: &[P]) {
        let chunk = self.chunk_size as usize;
        let mut room = chunk;
        for piece in parts {
            let part = piece.bytes();
            let by_ref = piece.shared();
            let mut at = 0;
            while at < part.len() {
                if room == 0 {
                    put_basic_header(&mut self.out, 3, csid);
                    if st.extended {
                        self.out.extend_from_slice(&st.delta.to_be_bytes());
                    }
                    room = chunk;
                }
                let n = (part.len() - at).min(room);
                match by_ref {
                    Some(b) => {
                        self.cut();
                        self.done_len += n;
                        self.done.push_back(b.slice(at..at + n));
                    }
                    None => self.out.extend_from_slice(&part[at..at + n]),
                }
                at += n;
                room -= n;
            }
        }
    }
}

/// A piece of a message's payload: borrowed (always copied), or shared
/// (referenced when at least [`SHARE_MIN`] long).
trait Piece {
    fn bytes(&self) -> &[u8];
    /// The piece to reference instead of copying it, if it is to be.
    fn shared(&self) -> Option<&Bytes>;
}

impl Piece for &[u8] {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn shared(&self) -> Option<&Bytes> {
        None
    }
}

impl Piece for Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn shared(&self) -> Option<&Bytes> {
        (self.len() >= SHARE_MIN).then_some(self)
    }
}

/// One message with a full (type 0) header and no history behind it, so
/// that it may follow anything on its chunk stream: a server encodes each
/// media message once and hands the same bytes to every player whose
/// connection uses this chunk size and message stream id.
pub fn encode_standalone(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    chunk_size: u32,
    parts: &[&[u8]],
) -> Result<Bytes> {
    let mut e = ChunkEncoder {
        chunk_size: DEFAULT_CHUNK_SIZE,
        streams: CsidTable::new(),
        done: VecDeque::new(),
        done_len: 0,
        out: BytesMut::new(),
        stats: EncoderStats::default(),
    };
    e.set_chunk_size(chunk_size)?;
    e.write_message_parts(csid, timestamp, type_id, stream_id, parts)?;
    Ok(e.take_send_buf())
}

/// Command, data and shared object messages: AMF, bounded by
/// `Limits::max_command_size`.
fn is_amf_message(t: u8) -> bool {
    use crate::message::type_id::*;
    matches!(
        t,
        DATA_AMF3
            | SHARED_OBJECT_AMF3
            | COMMAND_AMF3
            | DATA_AMF0
            | SHARED_OBJECT_AMF0
            | COMMAND_AMF0
    )
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let f = fmt << 6;
    if csid < 64 {
        out.extend_from_slice(&[f | csid as u8]);
    } else if csid < 320 {
        out.extend_from_slice(&[f, (csid - 64) as u8]);
    } else {
        let v = csid - 64;
        out.extend_from_slice(&[f | 1, v as u8, (v >> 8) as u8]);
    }
}

/// Extends 32-bit RTMP timestamps to a 64-bit timeline with serial
/// arithmetic: a step of less than 2^31 forward or back is taken as such,
/// so a stream that runs past 49.7 days, or starts near 2^32, keeps going.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimestampUnwrapper {
    last: Option<(u32, i64)>,
}

impl TimestampUnwrapper {
    /// An unwrapper with no timestamp seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ts` on the 64-bit timeline (the first one as it is).
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let v = match self.last {
            None => i64::from(ts),
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
        };
        self.last = Some((ts, v));
        v
    }

    /// Forgets the timeline (a new stream starts at its first timestamp).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Vec<RawMessage> {
        dec.feed(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.poll_message().unwrap() {
            out.push(m);
        }
        out
    }

    fn msg(csid: u32, ts: u32, t: u8, sid: u32, len: usize) -> RawMessage {
        RawMessage {
            csid,
            timestamp: ts,
            type_id: t,
            stream_id: sid,
            payload: (0..len)
                .map(|i| (i * 7 + len) as u8)
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn encode(enc: &mut ChunkEncoder, msgs: &[RawMessage]) -> Vec<u8> {
        for m in msgs {
            enc.write_message(m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload)
                .unwrap();
        }
        let out = enc.send_buf().to_vec();
        enc.advance(out.len());
        out
    }

    /// Fed bytes are decoded where they are: what the decoder holds on to
    /// is only the start of a chunk they leave unfinished, however they
    /// are cut; and a message is the same whichever way it came.
    #[test]
    fn only_an_unfinished_chunk_is_held() {
        let mut enc = ChunkEncoder::new();
        let msgs: Vec<RawMessage> = (0..6).map(|i| msg(6, i * 40, 9, 1, 1000)).collect();
        let bytes = encode(&mut enc, &msgs);
        for cut in [1, 5, 12, 100, 140, bytes.len() - 1] {
            let mut dec = ChunkDecoder::new(Limits::default());
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                dec.feed(piece);
                // A chunk is at most a 12-byte header and 128 bytes.
                assert!(dec.buffered() < 12 + 128, "cut {cut}: {}", dec.buffered());
                while let Some(m) = dec.poll_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, msgs, "cut {cut}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    /// An error in the middle of what was fed comes after the messages
    /// before it, and stays.
    #[test]
    fn an_error_comes_after_the_messages_before_it() {
        let mut enc = ChunkEncoder::new();
        let mut bytes = encode(&mut enc, &[msg(6, 0, 9, 1, 300), msg(4, 0, 8, 1, 20)]);
        // A type-1 header on a chunk stream never opened.
        bytes.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 1, 9, 0]);
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.feed(&bytes);
        assert_eq!(dec.poll_message().unwrap().unwrap().payload.len(), 300);
        assert_eq!(dec.poll_message().unwrap().unwrap().payload.len(), 20);
        assert_eq!(dec.poll_message().unwrap_err().kind(), ErrorKind::Protocol);
        dec.feed(&encode(&mut enc, &[msg(6, 40, 9, 1, 10)]));
        assert_eq!(dec.poll_message().unwrap_err().kind(), ErrorKind::Protocol);
    }

    /// A message's buffer is reused for a later one of about its size once
    /// the message is let go, never while it is held, and a message may
    /// outlive its decoder.
    #[test]
    fn message_buffers_come_back_once_let_go() {
        let mut enc = ChunkEncoder::new();
        let mut dec = ChunkDecoder::new(Limits::default());
        let mut next = |dec: &mut ChunkDecoder, len: usize| {
            dec.feed(&encode(&mut enc, &[msg(6, 0, 9, 1, len)]));
            let m = dec.poll_message().unwrap().unwrap();
            assert_eq!(m.payload, msg(6, 0, 9, 1, len).payload);
            m.payload
        };
        // Video frames, reassembled from chunks; small messages are not
        // recycled.
        for len in [20_000, 9_000] {
            let a = next(&mut dec, len);
            let held = a.as_ptr();
            let b = next(&mut dec, len);
            assert_ne!(b.as_ptr(), held, "a held buffer was reused");
            let freed = b.as_ptr();
            drop(b);
            let c = next(&mut dec, len - 10);
            assert_eq!(c.as_ptr(), freed, "a let-go buffer was not reused");
            // Much smaller: a fresh buffer, not the big one.
            drop(c);
            let d = next(&mut dec, len / 4);
            assert_ne!(d.as_ptr(), freed);
            drop((a, d));
        }
        // Bounded: however many are let go at once, a few are kept.
        let many: Vec<Bytes> = (0..64).map(|_| next(&mut dec, 20_000)).collect();
        drop(many);
        assert_eq!(dec.parts.recycler.kept.lock().unwrap().len(), KEEP);
        let small: Vec<Bytes> = (0..64).map(|_| next(&mut dec, 100)).collect();
        // Small ones, whole in a chunk, one after the other in a block.
        for w in small.windows(2).take(40) {
            assert_eq!(w[1].as_ptr(), w[0].as_ptr().wrapping_add(100));
        }
        drop(small);
        assert_eq!(dec.parts.recycler.kept.lock().unwrap().len(), KEEP);
        // Outliving the decoder.
        let last = next(&mut dec, 20_000);
        drop(dec);
        assert_eq!(last, msg(6, 0, 9, 1, 20_000).payload);
    }

    #[test]
    fn basic_header_sizes() {
        for (csid, len) in [(2, 1), (63, 1), (64, 2), (319, 2), (320, 3), (65_599, 3)] {
            let mut b = BytesMut::new();
            put_basic_header(&mut b, 0, csid);
            assert_eq!(b.len(), len, "csid {csid}");
            let mut enc = ChunkEncoder::new();
            let m = msg(csid, 5, 9, 1, 10);
            let bytes = encode(&mut enc, std::slice::from_ref(&m));
            let mut dec = ChunkDecoder::new(Limits::default());
            assert_eq!(decode_all(&mut dec, &bytes), vec![m]);
        }
    }

    #[test]
    fn smallest_headers_are_chosen() {
        let mut enc = ChunkEncoder::new();
        let sizes: Vec<usize> = [
            msg(4, 0, 8, 1, 10),
            msg(4, 20, 8, 1, 10), // delta 20: type 2 (never 3 right after type 0)
            msg(4, 40, 8, 1, 10), // same delta: type 3
            msg(4, 60, 8, 1, 11), // length changes: type 1
            msg(4, 80, 8, 2, 11), // stream changes: type 0
        ]
        .iter()
        .map(|m| encode(&mut enc, std::slice::from_ref(m)).len() - m.payload.len())
        .collect();
        assert_eq!(sizes, vec![12, 4, 1, 8, 12]);
    }

    #[test]
    fn timestamps_never_go_back_on_the_wire() {
        let mut enc = ChunkEncoder::new();
        let bytes = encode(
            &mut enc,
            &[
                msg(6, 1000, 9, 1, 4),
                msg(6, 900, 9, 1, 4),
                msg(6, 1100, 9, 1, 4),
            ],
        );
        let mut dec = ChunkDecoder::new(Limits::default());
        let ts: Vec<u32> = decode_all(&mut dec, &bytes)
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, vec![1000, 1000, 1100]);
        assert_eq!(enc.stats().clamped_timestamps, 1);
    }

    #[test]
    fn extended_timestamps_on_continuations_with_and_without_the_field() {
        let m = msg(5, 0x0100_0000, 9, 1, 300);
        let mut enc = ChunkEncoder::new();
        let with = encode(&mut enc, std::slice::from_ref(&m));
        // 12-byte header + 4 ext, 2 continuation headers of 1+4.
        assert_eq!(with.len(), 300 + 16 + 2 * 5);
        let mut dec = ChunkDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &with), vec![m.clone()]);

        // The same message from a peer that omits the field on type 3.
        let mut without = with[..16 + 128].to_vec();
        without.push(0xC5);
        without.extend_from_slice(&m.payload[128..256]);
        without.push(0xC5);
        without.extend_from_slice(&m.payload[256..]);
        let mut dec = ChunkDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &without), vec![m.clone()]);
        assert_eq!(dec.stats().omitted_extended_timestamps, 2);
        // Fed a byte at a time: each chunk counted once, not at every
        // look at its unfinished bytes.
        let mut dec = ChunkDecoder::new(Limits::default());
        let mut got = Vec::new();
        for b in &without {
            dec.feed(std::slice::from_ref(b));
            while let Some(msg) = dec.poll_message().unwrap() {
                got.push(msg);
            }
        }
        assert_eq!(got, vec![m]);
        assert_eq!(dec.stats().omitted_extended_timestamps, 2);
    }

    #[test]
    fn type3_after_type0_adds_the_type0_timestamp() {
        // Spec example: type 0 at 1000, then type 3 for a new message.
        let mut b = vec![0x04, 0x00, 0x03, 0xE8, 0, 0, 2, 8, 1, 0, 0, 0, 0xAA, 0xBB];
        b.extend_from_slice(&[0xC4, 0xCC, 0xDD]);
        let mut dec = ChunkDecoder::new(Limits::default());
        let ms = decode_all(&mut dec, &b);
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].timestamp, 2000);
        assert_eq!(&ms[1].payload[..], &[0xCC, 0xDD]);
    }

    #[test]
    fn set_chunk_size_and_abort_apply_at_once() {
        let mut enc = ChunkEncoder::new();
        let mut bytes = encode(
            &mut enc,
            &[RawMessage {
                csid: 2,
                timestamp: 0,
                type_id: type_id::SET_CHUNK_SIZE,
                stream_id: 0,
                payload: Bytes::from_static(&[0, 0, 0x10, 0]),
            }],
        );
        enc.set_chunk_size(4096).unwrap();
        let big = msg(6, 0, 9, 1, 10_000);
        bytes.extend(encode(&mut enc, std::slice::from_ref(&big)));
        let mut dec = ChunkDecoder::new(Limits::default());
        let out = decode_all(&mut dec, &bytes);
        assert_eq!(out[1], big);
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(dec.stats().chunks, 1 + 3);

        // Abort a half-sent message, then send another on the same stream.
        let mut enc = ChunkEncoder::new();
        let part = encode(&mut enc, &[msg(7, 0, 9, 1, 200)]);
        let mut bytes = part[..12 + 128].to_vec();
        bytes.extend(encode(
            &mut enc,
            &[RawMessage {
                csid: 2,
                timestamp: 0,
                type_id: type_id::ABORT,
                stream_id: 0,
                payload: Bytes::from_static(&[0, 0, 0, 7]),
            }],
        ));
        let mut dec = ChunkDecoder::new(Limits::default());
        let out = decode_all(&mut dec, &bytes);
        assert_eq!(out.len(), 1);
        assert_eq!(dec.reassembly_bytes(), 0);
        assert_eq!(dec.stats().aborted, 1);
    }

    #[test]
    fn parts_chunk_like_one_payload() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for split in [
            &[0usize, 1000][..],
            &[0, 1, 127, 128, 129, 999, 1000],
            &[0, 300, 300, 700, 1000],
        ] {
            let parts: Vec<&[u8]> = split.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
            let mut a = ChunkEncoder::new();
            let mut b = ChunkEncoder::new();
            a.write_message(4, 0x0100_0000, 8, 1, &payload).unwrap();
            b.write_message_parts(4, 0x0100_0000, 8, 1, &parts).unwrap();
            assert_eq!(a.send_buf(), b.send_buf(), "{split:?}");
        }
    }

    #[test]
    fn shared_pieces_chunk_like_copied_ones_and_are_not_copied() {
        let payload = Bytes::from((0..20_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        let within = |b: &Bytes| {
            let p = payload.as_ptr() as usize;
            (p..p + payload.len()).contains(&(b.as_ptr() as usize))
        };
        for chunk_size in [128u32, 4096, 65_536] {
            for split in [
                &[0usize, 20_000][..],
                &[0, 5, 1029, 1030, 2053, 20_000],
                &[0, 1023, 2047, 20_000],
                &[0, 0, 4096, 4096, 8192, 20_000],
            ] {
                let parts: Vec<Bytes> = split
                    .windows(2)
                    .map(|w| payload.slice(w[0]..w[1]))
                    .collect();
                let slices: Vec<&[u8]> = parts.iter().map(|b| &b[..]).collect();
                let mut a = ChunkEncoder::new();
                let mut b = ChunkEncoder::new();
                let mut c = ChunkEncoder::new();
                for e in [&mut a, &mut b, &mut c] {
                    e.set_chunk_size(chunk_size).unwrap();
                    // Something before and after, in the same buffers.
                    e.write_message(3, 0, 20, 0, b"before").unwrap();
                }
                a.write_message_parts(6, 0x0100_0000, 9, 1, &slices)
                    .unwrap();
                b.write_message_shared(6, 0x0100_0000, 9, 1, &parts)
                    .unwrap();
                c.write_message_shared(6, 0x0100_0000, 9, 1, &parts)
                    .unwrap();
                for e in [&mut a, &mut b, &mut c] {
                    e.write_message(3, 40, 20, 0, b"after").unwrap();
                }
                assert_eq!(a.stats(), b.stats());
                let want = a.send_buf().to_vec();
                assert_eq!(b.pending(), want.len());

                let mut pieces = VecDeque::new();
                assert_eq!(b.take_send_pieces(&mut pieces), want.len());
                assert_eq!(b.pending(), 0);
                let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                assert_eq!(joined, want, "{chunk_size} {split:?}");
                let big: usize = parts
                    .iter()
                    .map(Bytes::len)
                    .filter(|n| *n >= SHARE_MIN)
                    .sum();
                let by_ref: usize = pieces.iter().filter(|p| within(p)).map(Bytes::len).sum();
                assert_eq!(by_ref, big, "{chunk_size} {split:?}");

                // The same through send_buf and advance, a few bytes at a time.
                let mut got = Vec::new();
                while c.pending() > 0 {
                    let n = c.send_buf().len().min(1000);
                    assert!(n > 0);
                    got.extend_from_slice(&c.send_buf()[..n]);
                    c.advance(n);
                }
                assert_eq!(got, want, "{chunk_size} {split:?}");
            }
        }
        // Joined back into one buffer for a driver that wants that.
        let mut d = ChunkEncoder::new();
        d.write_message_shared(6, 0, 9, 1, std::slice::from_ref(&payload))
            .unwrap();
        let mut e = ChunkEncoder::new();
        e.write_message(6, 0, 9, 1, &payload).unwrap();
        assert_eq!(d.take_send_buf(), e.take_send_buf());
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn zero_length_message() {
        let mut enc = ChunkEncoder::new();
        let m = msg(3, 7, 20, 0, 0);
        let bytes = encode(&mut enc, std::slice::from_ref(&m));
        assert_eq!(bytes.len(), 12);
        let mut dec = ChunkDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &bytes), vec![m]);
    }

    #[test]
    fn limits_hold_against_a_hostile_peer() {
        let limits = Limits {
            max_message_size: 1000,
            max_chunk_streams: 4,
            max_reassembly_bytes: 2500,
            ..Limits::default()
        };
        // Too large a message: refused from its header alone.
        let mut dec = ChunkDecoder::new(limits);
        dec.feed(&[0x04, 0, 0, 0, 0, 0x03, 0xE9, 9, 1, 0, 0, 0]);
        assert_eq!(
            dec.poll_message().unwrap_err().kind(),
            ErrorKind::LimitExceeded
        );
        // Many chunk streams each opening a message and never finishing.
        let mut dec = ChunkDecoder::new(limits);
        let mut enc = ChunkEncoder::new();
        let mut err = None;
        for csid in 3..20 {
            let b = encode(&mut enc, &[msg(csid, 0, 9, 1, 900)]);
            dec.feed(&b[..12 + 128]);
            if let Err(e) = dec.poll_message() {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err.unwrap().kind(), ErrorKind::LimitExceeded);
        assert!(dec.reassembly_bytes() <= 2500);
        // A type-1 header on a chunk stream never opened.
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.feed(&[0x45, 0, 0, 0, 0, 0, 1, 9, 0]);
        assert_eq!(dec.poll_message().unwrap_err().kind(), ErrorKind::Protocol);
        // A chunk size of zero.
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.feed(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(dec.poll_message().is_err());
    }

    #[test]
    fn timestamp_wrap() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(0xFFFF_FF00), 0xFFFF_FF00);
        assert_eq!(u.unwrap(0x0000_0010), 0x1_0000_0010);
        assert_eq!(u.unwrap(0xFFFF_FFF0), 0xFFFF_FFF0);
        // Wrapping through the encoder and decoder keeps deltas small.
        let mut enc = ChunkEncoder::new();
        let ms = [msg(4, 0xFFFF_FFF0, 9, 1, 5), msg(4, 0x10, 9, 1, 5)];
        let bytes = encode(&mut enc, &ms);
        let mut dec = ChunkDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &bytes), ms.to_vec());
    }

    fn boundary_ts() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0u32),
            Just(0xFF_FFFE),
            Just(0xFF_FFFF),
            Just(0x100_0000),
            Just(0xFFFF_FFFF),
            Just(0x7FFF_FFFF),
            0u32..100_000,
            0xFFFF_0000u32..=0xFFFF_FFFF,
        ]
    }

    fn boundary_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(0usize),
            Just(1),
            Just(127),
            Just(128),
            Just(129),
            Just(4095),
            Just(4096),
            Just(4097),
            Just(65_535),
            Just(65_536),
            Just(65_537),
            0usize..9000,
        ]
    }

    fn boundary_csid() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(2u32),
            Just(63),
            Just(64),
            Just(319),
            Just(320),
            Just(65_599),
            3u32..10
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn round_trip(
            chunk_size in prop_oneof![Just(1u32), Just(128), Just(4096), Just(65_536)],
            specs in prop::collection::vec((boundary_csid(), boundary_ts(), boundary_len(), 0u32..3, prop_oneof![Just(8u8), Just(9), Just(18)]), 1..12),
            split in 1usize..5000,
        ) {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk_size).unwrap();
            let mut expect = Vec::new();
            let mut last: HashMap<u32, (u32, u32)> = HashMap::new();
            for (csid, ts, len, sid, t) in specs {
                let m = msg(csid, ts, t, sid, len);
                enc.write_message(m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload).unwrap();
                // What the encoder promises: per chunk stream, the timestamp
                // never goes back (unless the message stream changes).
                let mut want = m.clone();
                if let Some(&(pts, psid)) = last.get(&csid)
                    && psid == sid && (ts.wrapping_sub(pts) as i32) < 0
                {
                    want.timestamp = pts;
                }
                last.insert(csid, (want.timestamp, sid));
                expect.push(want);
            }
            let bytes = enc.send_buf().to_vec();
            let mut dec = ChunkDecoder::new(Limits::default());
            // The decoder must be told the chunk size like a peer would be.
            dec.chunk_size = chunk_size;
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                dec.feed(piece);
                while let Some(m) = dec.poll_message().unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got, expect);
            prop_assert_eq!(dec.buffered(), 0);
            prop_assert_eq!(dec.reassembly_bytes(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let mut dec = ChunkDecoder::new(Limits::default());
            dec.feed(&bytes);
            while let Ok(Some(_)) = dec.poll_message() {}
        }
    }

    #[test]
    fn sixteen_mib_message() {
        let m = msg(6, 1, 9, 1, 0xFF_FFFF);
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(65_536).unwrap();
        let bytes = encode(&mut enc, std::slice::from_ref(&m));
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.chunk_size = 65_536;
        assert_eq!(decode_all(&mut dec, &bytes), vec![m]);
        assert!(enc.write_message(6, 1, 9, 1, &vec![0; 0x100_0000]).is_err());
    }
}
