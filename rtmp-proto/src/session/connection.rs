// SPDX-License-Identifier: MPL-2.0
//! What client and server sessions share: the handshake, the chunk codec,
//! acknowledgements, pings and protocol control messages.

use bytes::Bytes;

use crate::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use crate::error::{Error, Result};
use crate::handshake::{Handshake, RANDOM_SIZE};
use crate::limits::Limits;
use crate::message::{self, BandwidthLimit, Command, DataMessage, Message, UserControl, type_id};

use super::csid;

/// Counters for stats and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Bytes received, handshake included.
    pub bytes_in: u64,
    /// Bytes sent, handshake included.
    pub bytes_out: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Whole messages sent.
    pub messages_out: u64,
    /// Acknowledgements we sent.
    pub acks_sent: u64,
    /// The last acknowledgement the peer sent (bytes it received, mod 2^32).
    pub peer_acked: u32,
    /// The peer's chunk size (what we decode with).
    pub in_chunk_size: u32,
    /// Our chunk size (what we encode with).
    pub out_chunk_size: u32,
    /// The window the peer asked us to acknowledge at (0: none yet).
    pub in_window_ack_size: u32,
    /// The window we asked the peer to acknowledge at (0: none yet).
    pub out_window_ack_size: u32,
    /// Bytes received by our last acknowledgement.
    pub in_bytes_acked: u64,
}

/// The most bytes we ask a peer to receive from us before it acknowledges
/// them. Servers' own windows are several megabytes (nginx-rtmp: 5 MB); a
/// sender that keeps what is not yet confirmed, to send it again on a new
/// connection, can let go of it sooner when told every megabyte. An
/// acknowledgement is a 4-byte message: at 8 Mbit/s, one a second.
pub const MAX_ACK_WINDOW: u32 = 1 << 20;

impl ConnectionStats {
    /// The peer's last acknowledgement as a count of all the bytes sent
    /// (it is sent mod 2^32; taken as the nearest count at or below
    /// `bytes_out`), or `None` before the first one.
    pub fn peer_acked_total(&self) -> Option<u64> {
        (self.peer_acked > 0).then(|| {
            self.bytes_out - u64::from((self.bytes_out as u32).wrapping_sub(self.peer_acked))
        })
    }
}

/// What a client and a server session share: the handshake, the chunk
/// stream both ways, acknowledgements, pings and the peer's bandwidth.
#[derive(Debug)]
pub struct Connection {
    handshake: Handshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    limits: Limits,
    /// The window the peer asked us to acknowledge at.
    ack_window: Option<u32>,
    /// The output window from the peer's Set Peer Bandwidth, and whether
    /// the last limit was hard (a Dynamic limit then counts as hard).
    peer_bandwidth: Option<(u32, BandwidthLimit)>,
    acked_at: u64,
    stats: ConnectionStats,
    /// Messages unpacked from an aggregate, given out before new ones.
    unpacked: std::collections::VecDeque<RawMessage>,
}

impl Connection {
    /// A connection that starts with `handshake` and decodes within `limits`.
    pub fn new(handshake: Handshake, limits: Limits) -> Self {
        Connection {
            handshake,
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            limits,
            ack_window: None,
            peer_bandwidth: None,
            acked_at: 0,
            stats: ConnectionStats::default(),
            unpacked: Default::default(),
        }
    }

    /// A client's connection: its handshake sends C0+C1 at once.
    pub fn client(epoch: u32, random: &[u8; RANDOM_SIZE], limits: Limits) -> Self {
        Self::new(Handshake::client(epoch, random), limits)
    }

    /// A server's connection: it waits for C0+C1.
    pub fn server(epoch: u32, random: &[u8; RANDOM_SIZE], limits: Limits) -> Self {
        Self::new(Handshake::server(epoch, random), limits)
    }

    /// The bounds this connection decodes within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_done()
    }

    /// The counters so far, and the chunk sizes and windows in force.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            in_chunk_size: self.decoder.chunk_size(),
            out_chunk_size: self.encoder.chunk_size(),
            in_window_ack_size: self.ack_window.unwrap_or(0),
            in_bytes_acked: self.acked_at,
            ..self.stats
        }
    }

    /// The chunk decoder (for its reassembly figures).
    pub fn decoder(&self) -> &ChunkDecoder {
        &self.decoder
    }

    /// The chunk encoder (for its chunk size).
    pub fn encoder(&self) -> &ChunkEncoder {
        &self.encoder
    }

    /// Bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.stats.bytes_in += data.len() as u64;
        let rest = if self.handshake.is_done() {
            data
        } else {
            let used = self
                .handshake
                .feed(data)
                .map_err(|e| e.context("handshake failed"))?;
            &data[used..]
        };
        if !rest.is_empty() {
            self.decoder.feed(rest);
        }
        Ok(())
    }

    /// The next message, with protocol control messages already acted on
    /// (they are still returned, for logs and for the session's own use).
    pub fn poll_message(&mut self) -> Result<Option<(RawMessage, Message)>> {
        let raw = match self.unpacked.pop_front() {
            Some(r) => r,
            None => match self.decoder.poll_message()? {
                Some(r) => r,
                None => {
                    self.maybe_ack();
                    return Ok(None);
                }
            },
        };
        self.stats.messages_in += 1;
        if raw.type_id == type_id::AGGREGATE {
            self.unpacked.extend(message::unpack_aggregate(&raw)?);
            return self.poll_message();
        }
        let msg = Message::decode(&raw, &self.limits)?;
        match &msg {
            Message::WindowAckSize(w) => self.ack_window = (*w > 0).then_some(*w),
            Message::Acknowledgement(n) => self.stats.peer_acked = *n,
            Message::SetPeerBandwidth { size, limit } => self.on_peer_bandwidth(*size, *limit)?,
            Message::UserControl(UserControl::PingRequest(t)) => {
                self.send_message(
                    csid::CONTROL,
                    0,
                    0,
                    &Message::UserControl(UserControl::PingResponse(*t)),
                )?;
            }
            _ => {}
        }
        self.maybe_ack();
        Ok(Some((raw, msg)))
    }

    /// Applies Set Peer Bandwidth (RTMP spec 5.4.5) and, when the window
    /// changes, tells the peer with Window Acknowledgement Size how often to
    /// acknowledge: as often as that window, or every [`MAX_ACK_WINDOW`]
    /// bytes if that is sooner.
    fn on_peer_bandwidth(&mut self, size: u32, limit: BandwidthLimit) -> Result<()> {
        let current = self.peer_bandwidth;
        let new = match (limit, current) {
            (BandwidthLimit::Hard, _) | (_, None) => Some((size, limit)),
            (BandwidthLimit::Soft, Some((cur, _))) => {
                (size < cur).then_some((size, BandwidthLimit::Soft))
            }
            (BandwidthLimit::Dynamic, Some((_, BandwidthLimit::Hard))) => {
                Some((size, BandwidthLimit::Hard))
            }
            (BandwidthLimit::Dynamic, Some(_)) => None,
        };
        if let Some((w, l)) = new {
            let changed = current.map(|(c, _)| c) != Some(w);
            self.peer_bandwidth = Some((w, l));
            if changed {
                let ack_every = w.min(MAX_ACK_WINDOW);
                self.send_message(csid::CONTROL, 0, 0, &Message::WindowAckSize(ack_every))?;
            }
        }
        Ok(())
    }

    /// The window set by the peer's Set Peer Bandwidth, if any.
    pub fn peer_bandwidth(&self) -> Option<u32> {
        self.peer_bandwidth.map(|(w, _)| w)
    }

    fn maybe_ack(&mut self) {
        if let Some(w) = self.ack_window {
            let received = self.stats.bytes_in;
            if received - self.acked_at >= u64::from(w) {
                self.acked_at = received;
                // The sequence number wraps at 2^32 by the spec.
                let seq = received as u32;
                if self
                    .send_message(csid::CONTROL, 0, 0, &Message::Acknowledgement(seq))
                    .is_ok()
                {
                    self.stats.acks_sent += 1;
                }
            }
        }
    }

    /// Chunks one message of `type_id` with `payload` onto chunk stream `csid`.
    pub fn send_raw(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<()> {
        self.encoder
            .write_message(csid, timestamp, type_id, stream_id, payload)?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Like [`send_raw`](Self::send_raw), the payload in pieces (no copy to join them).
    pub fn send_raw_parts(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        parts: &[&[u8]],
    ) -> Result<()> {
        self.encoder
            .write_message_parts(csid, timestamp, type_id, stream_id, parts)?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Like [`send_raw_parts`](Self::send_raw_parts), the big pieces
    /// referenced rather than copied (see
    /// [`ChunkEncoder::write_message_shared`](crate::chunk::ChunkEncoder::write_message_shared)).
    pub fn send_raw_shared(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        parts: &[Bytes],
    ) -> Result<()> {
        self.encoder
            .write_message_shared(csid, timestamp, type_id, stream_id, parts)?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Takes every byte waiting to be sent, in the pieces they are in, for
    /// drivers that write them vectored; returns how many bytes that was.
    pub fn take_send_pieces(&mut self, into: &mut impl Extend<Bytes>) -> usize {
        let hs = self.handshake.send_buf();
        let mut n = 0;
        if !hs.is_empty() {
            let b = Bytes::copy_from_slice(hs);
            n = b.len();
            self.handshake.advance(n);
            into.extend(std::iter::once(b));
        }
        let m = self.encoder.take_send_pieces(into);
        self.stats.bytes_out += (n + m) as u64;
        n + m
    }

    /// Takes every byte waiting to be sent, for drivers that queue them.
    pub fn take_send_buf(&mut self) -> Bytes {
        let hs = self.handshake.send_buf();
        if !hs.is_empty() {
            let b = Bytes::copy_from_slice(hs);
            self.advance(b.len());
            return b;
        }
        let b = self.encoder.take_send_buf();
        self.stats.bytes_out += b.len() as u64;
        b
    }

    /// Encodes and chunks a typed message.
    pub fn send_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        stream_id: u32,
        m: &Message,
    ) -> Result<()> {
        if let Message::WindowAckSize(w) = m {
            self.stats.out_window_ack_size = *w;
        }
        let payload: Bytes = m.encode_payload();
        self.send_raw(csid, timestamp, m.type_id(), stream_id, &payload)
    }

    /// Sends a command (AMF0) at time 0.
    pub fn send_command(&mut self, csid: u32, stream_id: u32, c: Command) -> Result<()> {
        self.send_message(
            csid,
            0,
            stream_id,
            &Message::Command {
                amf3: false,
                command: c,
            },
        )
    }

    /// Sends a data message (AMF0: `@setDataFrame`, `onMetaData`...).
    pub fn send_data(
        &mut self,
        csid: u32,
        timestamp: u32,
        stream_id: u32,
        d: &DataMessage,
    ) -> Result<()> {
        self.send_raw(csid, timestamp, type_id::DATA_AMF0, stream_id, &d.encode())
    }

    /// Tells the peer our new chunk size, then uses it.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        if !(1..=crate::chunk::MAX_CHUNK_SIZE).contains(&size) {
            return Err(Error::unsupported(format!(
                "chunk size {size} is outside 1..=2147483647"
            )));
        }
        self.send_message(csid::CONTROL, 0, 0, &Message::SetChunkSize(size))?;
        self.encoder.set_chunk_size(size)
    }

    /// Bytes to send now: the handshake's, then the chunk stream's.
    pub fn send_buf(&self) -> &[u8] {
        let hs = self.handshake.send_buf();
        if !hs.is_empty() {
            hs
        } else {
            self.encoder.send_buf()
        }
    }

    /// Marks `n` bytes of [`send_buf`](Self::send_buf) as sent.
    pub fn advance(&mut self, n: usize) {
        self.stats.bytes_out += n as u64;
        if !self.handshake.send_buf().is_empty() {
            self.handshake.advance(n);
        } else {
            self.encoder.advance(n);
        }
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.handshake.send_buf().len() + self.encoder.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_bandwidth_limit_types() {
        let mut c = Connection::client(0, &[0; RANDOM_SIZE], Limits::default());
        let steps = [
            (1000, BandwidthLimit::Hard, 1000),
            (2000, BandwidthLimit::Soft, 1000), // soft: only ever lowers
            (500, BandwidthLimit::Soft, 500),
            (800, BandwidthLimit::Dynamic, 500), // dynamic after soft: ignored
            (700, BandwidthLimit::Hard, 700),
            (900, BandwidthLimit::Dynamic, 900), // dynamic after hard: hard
        ];
        for (size, limit, want) in steps {
            c.on_peer_bandwidth(size, limit).unwrap();
            assert_eq!(c.peer_bandwidth(), Some(want), "after {size} {limit:?}");
        }
        // One Window Acknowledgement Size per change: 1000, 500, 700, 900.
        assert_eq!(c.stats().messages_out, 4);
    }
}
