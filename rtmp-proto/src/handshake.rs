// SPDX-License-Identifier: MPL-2.0
//! The RTMP handshake (C0/C1/C2, S0/S1/S2), client and server roles.
//!
//! Only the plain handshake is spoken. As a server we accept a Flash-style
//! C1 (a non-zero version field and an embedded digest) without checking
//! the digest, and answer with an S1 whose version field is zero: FFmpeg and
//! librtmp players take that as "no digest scheme" and skip validating S1/S2,
//! while a plain S2 that echoes C1 satisfies every client. As a client we do
//! not insist that S2 echoes C1, because several servers do not.

use super::error::{Error, ErrorKind, Result};

/// The RTMP version byte (C0/S0): 3, plain RTMP.
pub const VERSION: u8 = 3;
/// Size of C1/S1/C2/S2.
pub const PACKET_SIZE: usize = 1536;
/// The random part of C1/S1 (the packet less its time and zero fields).
pub const RANDOM_SIZE: usize = PACKET_SIZE - 8;

/// Which end of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends C0+C1, answers S1 with C2.
    Client,
    /// Answers C0+C1 with S0+S1+S2.
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Client: waiting for S0+S1 (and then S2). Server: waiting for C0+C1.
    AwaitVersionAndPacket,
    /// Client: waiting for S2. Server: waiting for C2.
    AwaitEcho,
    Done,
}

/// A sans-IO handshake: feed it bytes, send what `send_buf` holds.
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    stage: Stage,
    epoch: u32,
    own_packet: Box<[u8; PACKET_SIZE]>,
    out: Vec<u8>,
    /// Whether the peer's echo matched our packet (informational).
    echo_matched: Option<bool>,
    peer_epoch: u32,
    inbuf: Vec<u8>,
}

impl Handshake {
    /// A client handshake; C0 and C1 are queued at once. `epoch` is our
    /// timestamp (milliseconds), `random` fills C1 past its first 8 bytes.
    pub fn client(epoch: u32, random: &[u8; RANDOM_SIZE]) -> Self {
        let mut h = Self::new(Role::Client, epoch, random);
        h.out.push(VERSION);
        h.out.extend_from_slice(&h.own_packet[..]);
        h
    }

    /// A server handshake; nothing is sent until C0+C1 arrive.
    pub fn server(epoch: u32, random: &[u8; RANDOM_SIZE]) -> Self {
        Self::new(Role::Server, epoch, random)
    }

    fn new(role: Role, epoch: u32, random: &[u8; RANDOM_SIZE]) -> Self {
        let mut p = Box::new([0u8; PACKET_SIZE]);
        p[0..4].copy_from_slice(&epoch.to_be_bytes());
        // Bytes 4..8 stay zero: the plain (digest-less) scheme.
        p[8..].copy_from_slice(random);
        Handshake {
            role,
            stage: Stage::AwaitVersionAndPacket,
            epoch,
            own_packet: p,
            out: Vec::with_capacity(1 + 2 * PACKET_SIZE),
            echo_matched: None,
            peer_epoch: 0,
            inbuf: Vec::new(),
        }
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake is over (the rest of the input is chunk stream).
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Whether the peer echoed our C1/S1 byte for byte, once known.
    pub fn echo_matched(&self) -> Option<bool> {
        self.echo_matched
    }

    /// The time field of the peer's C1/S1.
    pub fn peer_epoch(&self) -> u32 {
        self.peer_epoch
    }

    /// Bytes to send now (C0+C1, S0+S1+S2 or C2).
    pub fn send_buf(&self) -> &[u8] {
        &self.out
    }

    /// Marks `n` bytes of [`send_buf`](Self::send_buf) as sent.
    pub fn advance(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Consumes bytes of `data` up to the end of the handshake and returns
    /// how many it took; any split of the input works. Bytes past the end
    /// of the handshake are left for the chunk stream.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize> {
        let mut used = 0;
        while self.stage != Stage::Done && used < data.len() {
            let need = match self.stage {
                Stage::AwaitVersionAndPacket => 1 + PACKET_SIZE,
                _ => PACKET_SIZE,
            };
            let take = (need - self.inbuf.len()).min(data.len() - used);
            self.inbuf.extend_from_slice(&data[used..used + take]);
            used += take;
            if self.stage == Stage::AwaitVersionAndPacket {
                check_version(self.inbuf[0])?;
            }
            if self.inbuf.len() < need {
                break;
            }
            let inbuf = std::mem::take(&mut self.inbuf);
            match self.stage {
                Stage::AwaitVersionAndPacket => self.on_peer_packet(&inbuf[1..]),
                _ => {
                    self.echo_matched = Some(inbuf[8..] == self.own_packet[8..]);
                    self.stage = Stage::Done;
                }
            }
        }
        Ok(used)
    }

    fn on_peer_packet(&mut self, peer: &[u8]) {
        self.peer_epoch = u32::from_be_bytes([peer[0], peer[1], peer[2], peer[3]]);
        match self.role {
            Role::Client => {
                // C2 echoes S1 with our time in its second field.
                self.out.extend_from_slice(&peer[0..4]);
                self.out.extend_from_slice(&self.epoch.to_be_bytes());
                self.out.extend_from_slice(&peer[8..]);
            }
            Role::Server => {
                self.out.push(VERSION);
                self.out.extend_from_slice(&self.own_packet[..]);
                // S2 echoes C1 whole: clients that check compare its random
                // part, some also its time fields.
                self.out.extend_from_slice(peer);
            }
        }
        self.stage = Stage::AwaitEcho;
    }
}

fn check_version(v: u8) -> Result<()> {
    if v == VERSION {
        return Ok(());
    }
    let what = if v == 6 || v == 8 || v == 9 {
        format!("peer asked for encrypted RTMPE (version {v}), which is not supported")
    } else if v == b'G' || v == b'P' || v == 0x16 {
        "peer is not speaking RTMP (looks like HTTP or TLS)".to_owned()
    } else {
        format!("peer sent RTMP version {v}; only version 3 is spoken")
    };
    Err(Error::new(ErrorKind::Unsupported, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u8) -> [u8; RANDOM_SIZE] {
        let mut r = [0u8; RANDOM_SIZE];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        r
    }

    #[test]
    fn client_and_server_complete_byte_by_byte() {
        let mut c = Handshake::client(1, &random(1));
        let mut s = Handshake::server(2, &random(2));
        // Deliver one byte at a time in each direction.
        for _ in 0..10_000 {
            if c.is_done() && s.is_done() {
                break;
            }
            if let Some(&b) = c.send_buf().first() {
                assert_eq!(s.feed(&[b]).unwrap(), 1);
                c.advance(1);
            }
            if let Some(&b) = s.send_buf().first() {
                assert_eq!(c.feed(&[b]).unwrap(), 1);
                s.advance(1);
            }
        }
        assert!(c.is_done() && s.is_done());
        assert_eq!(c.echo_matched(), Some(true));
        assert_eq!(s.echo_matched(), Some(true));
        assert_eq!(c.peer_epoch(), 2);
        assert_eq!(s.peer_epoch(), 1);
        // Nothing more is taken once done.
        assert_eq!(c.feed(&[1, 2, 3]).unwrap(), 0);
    }

    #[test]
    fn whole_buffers_and_leftovers() {
        let mut c = Handshake::client(0, &random(3));
        let mut s = Handshake::server(0, &random(4));
        let c0c1 = c.send_buf().to_vec();
        c.advance(c0c1.len());
        assert_eq!(s.feed(&c0c1).unwrap(), 1 + PACKET_SIZE);
        let s012 = s.send_buf().to_vec();
        s.advance(s012.len());
        assert_eq!(s012.len(), 1 + 2 * PACKET_SIZE);
        // S0S1S2 plus the first bytes of the chunk stream.
        let mut with_extra = s012.clone();
        with_extra.extend_from_slice(&[0x02, 0x00]);
        assert_eq!(c.feed(&with_extra).unwrap(), s012.len());
        assert!(c.is_done());
        let c2 = c.send_buf().to_vec();
        assert_eq!(c2.len(), PACKET_SIZE);
        let mut c2_extra = c2.clone();
        c2_extra.push(0x03);
        assert_eq!(s.feed(&c2_extra).unwrap(), PACKET_SIZE);
        assert!(s.is_done());
        // Our S1 uses the plain scheme: zero version field.
        assert_eq!(&s012[5..9], &[0, 0, 0, 0]);
    }

    #[test]
    fn server_accepts_flash_digest_c1_and_client_tolerates_bad_s2() {
        // A C1 with a Flash version in bytes 4..8, as FFmpeg's client sends.
        let mut c1 = vec![VERSION];
        c1.extend_from_slice(&[0, 0, 0, 0, 9, 0, 124, 2]);
        c1.extend_from_slice(&random(5));
        let mut s = Handshake::server(0, &random(6));
        assert_eq!(s.feed(&c1).unwrap(), c1.len());
        // S2 echoes that C1.
        assert_eq!(&s.send_buf()[1 + PACKET_SIZE..], &c1[1..]);

        let mut c = Handshake::client(0, &random(7));
        let mut reply = vec![VERSION];
        reply.extend_from_slice(&[0u8; PACKET_SIZE]);
        reply.extend_from_slice(&[0xAAu8; PACKET_SIZE]);
        assert_eq!(c.feed(&reply).unwrap(), reply.len());
        assert!(c.is_done());
        assert_eq!(c.echo_matched(), Some(false));
    }

    #[test]
    fn wrong_versions_are_named() {
        for (v, words) in [
            (6u8, "RTMPE"),
            (b'G', "HTTP"),
            (0x16, "TLS"),
            (1, "version 1"),
        ] {
            let mut s = Handshake::server(0, &random(0));
            let e = s.feed(&[v]).unwrap_err();
            assert!(e.reason().contains(words), "{e}");
        }
    }
}
