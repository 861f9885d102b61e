// SPDX-License-Identifier: MPL-2.0
//! A load tool on top of the core: opens N player connections to one RTMP
//! stream from a single thread (mio, non-blocking) and counts what each
//! receives: frames, bytes, and frames lost (gaps in the video timestamps
//! after the player's first keyframe, and a stream that stops early).
//!
//! ```sh
//! cargo run --release --example rtmp_load -- rtmp://127.0.0.1:1935/live/key 200 30
//! ```
//!
//! Arguments: URL, number of players, seconds to run at most. Prints one
//! JSON line; the benchmark scripts read it.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use gstrtmp::rtmp::session::{ClientConfig, ClientEvent, ClientMode, ClientSession};
use gstrtmp::rtmp::url::RtmpUrl;

/// What one player saw.
#[derive(Default)]
struct Count {
    video: u64,
    audio: u64,
    bytes: u64,
    /// Video timestamps since the first keyframe.
    started: bool,
    last_video_ts: Option<u32>,
    gaps_ms: Vec<u32>,
    deltas: Vec<u32>,
    first_frame_after: Option<Duration>,
    ended: bool,
    failed: Option<String>,
}

struct Player {
    sock: TcpStream,
    session: ClientSession,
    opened: Instant,
    count: Count,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rtmp_load URL PLAYERS [SECONDS]");
        std::process::exit(2);
    }
    let url = RtmpUrl::parse(&args[1]).unwrap_or_else(|e| {
        eprintln!("rtmp_load: {e}");
        std::process::exit(2)
    });
    let n: usize = args[2].parse().expect("a number of players");
    let limit = Duration::from_secs(args.get(3).map_or(60, |s| s.parse().expect("seconds")));
    let addr = url
        .host_port()
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address");

    let mut poll = Poll::new().expect("poll");
    let mut players: HashMap<Token, Player> = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        let mut sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rtmp_load: player {i}: {e}");
                continue;
            }
        };
        sock.set_nodelay(true).ok();
        let t = Token(i);
        poll.registry()
            .register(&mut sock, t, Interest::READABLE | Interest::WRITABLE)
            .expect("register");
        let mut config = ClientConfig::new(ClientMode::Play, &url);
        config.response_timeout = Duration::from_secs(30);
        let session = ClientSession::new(config, Instant::now(), &gstrtmp::net::handshake_random());
        players.insert(
            t,
            Player {
                sock,
                session,
                opened: Instant::now(),
                count: Count::default(),
            },
        );
    }
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0usize;
    while start.elapsed() < limit && done < players.len() {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for ev in events.iter() {
            let Some(p) = players.get_mut(&ev.token()) else {
                continue;
            };
            if p.count.ended || p.count.failed.is_some() {
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match p.sock.read(&mut buf) {
                        Ok(0) => {
                            p.count.ended = true;
                            done += 1;
                            break;
                        }
                        Ok(k) => {
                            p.count.bytes += k as u64;
                            if let Err(e) = p.session.feed(&buf[..k], Instant::now()) {
                                p.count.failed = Some(e.to_string());
                                done += 1;
                                break;
                            }
                            while let Some(e) = p.session.poll_event() {
                                on_event(p, e);
                            }
                            if p.count.ended {
                                done += 1;
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            p.count.failed = Some(e.to_string());
                            done += 1;
                            break;
                        }
                    }
                }
            }
            // Handshake, commands and acknowledgements.
            while !p.session.send_buf().is_empty() {
                match p.sock.write(p.session.send_buf()) {
                    Ok(k) => p.session.advance(k),
                    Err(_) => break,
                }
            }
        }
    }
    report(&players, start.elapsed());
}

fn on_event(p: &mut Player, e: ClientEvent) {
    let c = &mut p.count;
    match e {
        ClientEvent::Video { timestamp, payload } => {
            let key = payload.first().is_some_and(|b| (b >> 4) & 7 == 1);
            let config =
                payload.get(1) == Some(&0) && payload.first().is_some_and(|b| b & 0x0F == 7);
            if config {
                return;
            }
            if !c.started {
                if !key {
                    return;
                }
                c.started = true;
                c.first_frame_after = Some(p.opened.elapsed());
            }
            c.video += 1;
            if let Some(last) = c.last_video_ts {
                let d = timestamp.wrapping_sub(last);
                c.deltas.push(d);
                c.gaps_ms.push(d);
            }
            c.last_video_ts = Some(timestamp);
        }
        ClientEvent::Audio { .. } if c.started => c.audio += 1,
        ClientEvent::StreamEnded { .. } => c.ended = true,
        _ => {}
    }
}

fn report(players: &HashMap<Token, Player>, elapsed: Duration) {
    // The frame interval: the most common delta between video frames.
    let mut hist: HashMap<u32, u64> = HashMap::new();
    for p in players.values() {
        for d in &p.count.deltas {
            *hist.entry(*d).or_default() += 1;
        }
    }
    let interval = hist
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(33, |(d, _)| (*d).max(1));
    let last_ts = players
        .values()
        .filter_map(|p| p.count.last_video_ts)
        .max()
        .unwrap_or(0);
    let (mut lost, mut lossy, mut bytes, mut video, mut audio, mut started, mut ended, mut failed) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first: Vec<f64> = Vec::new();
    for p in players.values() {
        let c = &p.count;
        bytes += c.bytes;
        video += c.video;
        audio += c.audio;
        started += u64::from(c.started);
        ended += u64::from(c.ended);
        failed += u64::from(c.failed.is_some());
        let mut l: u64 = c
            .gaps_ms
            .iter()
            // A gap of more than 1.5 frame intervals hides frames.
            .filter(|g| **g * 2 > interval * 3)
            .map(|g| u64::from((g + interval / 2) / interval - 1))
            .sum();
        // Stopped before the others' last frame: the rest was lost too.
        if let Some(t) = c.last_video_ts {
            l += u64::from(last_ts.saturating_sub(t) / interval);
        }
        lost += l;
        lossy += u64::from(l > 0);
        if let Some(f) = c.first_frame_after {
            first.push(f.as_secs_f64() * 1000.0);
        }
    }
    first.sort_by(|a, b| a.total_cmp(b));
    let median_first = first.get(first.len() / 2).copied().unwrap_or(0.0);
    let p99_first = first
        .get((first.len() * 99 / 100).min(first.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    println!(
        "{{\"players\": {}, \"started\": {started}, \"ended\": {ended}, \"failed\": {failed}, \"bytes\": {bytes}, \"video_frames\": {video}, \"audio_frames\": {audio}, \"frames_lost\": {lost}, \"players_with_loss\": {lossy}, \"frame_interval_ms\": {interval}, \"first_frame_ms_median\": {median_first:.1}, \"first_frame_ms_p99\": {p99_first:.1}, \"seconds\": {:.3}}}",
        players.len(),
        elapsed.as_secs_f64()
    );
}
