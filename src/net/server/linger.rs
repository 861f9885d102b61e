// SPDX-License-Identifier: MPL-2.0
//! Connections that were ending politely when their server stopped.
//!
//! A connection that ends (a publisher that stopped publishing, a player
//! sent the whole stream) is shut on our side and kept a little while the
//! peer says its last words: FFmpeg sends `deleteStream` after
//! `FCUnpublish`, in several writes. Closing a socket that still gets data
//! answers with a reset, and the peer's next write fails ("Broken pipe").
//! While the server runs, its loop does the waiting (`Loop::reap`); when
//! the server stops first (an ingest pipeline stops at the EOS that
//! `FCUnpublish` brought), those connections are handed here: a thread
//! reads and drops what their peers still send until they close, or their
//! time is up, so that stopping never waits for a peer.

use std::collections::HashMap;
use std::io::{ErrorKind as IoKind, Read};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Keeps reading `socks` (our side already shut) on a thread of their own
/// until each peer closes or its deadline passes. Without a thread, they
/// close at once, as any other connection of a stopping server.
pub fn hand_off(socks: Vec<(TcpStream, Instant)>) {
    if socks.is_empty() {
        return;
    }
    std::thread::Builder::new()
        .name("rtmp-linger".into())
        .spawn(move || run(socks))
        .ok();
}

fn run(socks: Vec<(TcpStream, Instant)>) {
    let Ok(mut poll) = Poll::new() else { return };
    let mut scratch = vec![0u8; 16 * 1024];
    let mut open = HashMap::new();
    for (i, (mut sock, until)) in socks.into_iter().enumerate() {
        let token = Token(i);
        if !drain(&mut sock, &mut scratch)
            && poll
                .registry()
                .register(&mut sock, token, Interest::READABLE)
                .is_ok()
        {
            open.insert(token, (sock, until));
        }
    }
    let mut events = Events::with_capacity(64);
    while !open.is_empty() {
        let now = Instant::now();
        open.retain(|_, (_, until)| *until > now);
        let Some(next) = open.values().map(|(_, until)| *until).min() else {
            break;
        };
        match poll.poll(&mut events, Some(next - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(_) => break,
        }
        for ev in events.iter() {
            let t = ev.token();
            if open
                .get_mut(&t)
                .is_some_and(|(sock, _)| drain(sock, &mut scratch))
            {
                open.remove(&t);
            }
        }
    }
}

/// Reads and drops what is there: true once the peer has closed (or the
/// socket failed), false when it has nothing more for now.
fn drain(sock: &mut TcpStream, scratch: &mut [u8]) -> bool {
    loop {
        match sock.read(scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == IoKind::WouldBlock => return false,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};
    use std::time::Duration;

    /// A pair of connected sockets: ours (mio, non-blocking) and the peer's.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours), peer)
    }

    #[test]
    fn the_peer_writes_on_until_it_closes_and_sees_no_reset() {
        let (ours, mut peer) = pair();
        ours.shutdown(Shutdown::Write).unwrap();
        hand_off(vec![(ours, Instant::now() + Duration::from_secs(10))]);
        // Several writes some time apart: the second of two writes into a
        // closed socket fails.
        for _ in 0..5 {
            peer.write_all(&[7u8; 1000]).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        peer.shutdown(Shutdown::Write).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        assert_eq!(
            peer.read(&mut b).unwrap(),
            0,
            "our side ends with a FIN, not a reset"
        );
    }

    #[test]
    fn a_peer_that_never_closes_is_let_go_at_its_deadline() {
        let (ours, mut peer) = pair();
        ours.shutdown(Shutdown::Write).unwrap();
        let t0 = Instant::now();
        hand_off(vec![(ours, t0 + Duration::from_millis(300))]);
        peer.write_all(b"still here").unwrap();
        // After the deadline the socket is gone: writing into it is reset.
        let failed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(&[1u8; 100]).is_err()
        });
        assert!(failed, "the socket was kept past its deadline");
    }
}
