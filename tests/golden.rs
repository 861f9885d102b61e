// SPDX-License-Identifier: MPL-2.0
//! Golden traffic: a relay between FFmpeg and nginx-rtmp records both
//! directions of a publish and of a play, and our core decodes every byte.
//! The recordings are made here, never shipped; with GOLDEN_DUMP_DIR set
//! they are also written out as fuzz seeds (scripts/fuzz.sh does that).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gstrtmp::rtmp::Limits;
use gstrtmp::rtmp::chunk::{ChunkDecoder, RawMessage};
use gstrtmp::rtmp::flv::{AudioTag, VideoTag};
use gstrtmp::rtmp::handshake::PACKET_SIZE;
use gstrtmp::rtmp::message::{self, Message, type_id};

/// Both directions of one relayed connection.
#[derive(Default, Clone)]
struct Recording {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

type Recordings = Arc<Mutex<Vec<Arc<Mutex<Recording>>>>>;

fn pipe(mut from: TcpStream, mut to: TcpStream, rec: Arc<Mutex<Recording>>, upstream: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut r = rec.lock().unwrap();
                    if upstream {
                        &mut r.to_server
                    } else {
                        &mut r.to_client
                    }
                    .extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    to.shutdown(Shutdown::Write).ok();
}

/// Accepts connections on `listener` and relays each to `target`.
fn relay(listener: TcpListener, target: u16) -> Recordings {
    let recs: Recordings = Arc::default();
    let out = recs.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(client) = c else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                break;
            };
            let rec = Arc::new(Mutex::new(Recording::default()));
            recs.lock().unwrap().push(rec.clone());
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let r2 = rec.clone();
            std::thread::spawn(move || pipe(client, server, rec, true));
            std::thread::spawn(move || pipe(s2, c2, r2, false));
        }
    });
    out
}

/// Decodes one direction past its handshake; every message must decode.
fn decode_direction(bytes: &[u8], what: &str) -> Vec<(RawMessage, Message)> {
    let hs = 1 + 2 * PACKET_SIZE;
    assert!(
        bytes.len() >= hs,
        "{what}: only {} bytes, no full handshake",
        bytes.len()
    );
    assert_eq!(bytes[0], 3, "{what}: RTMP version byte");
    let mut dec = ChunkDecoder::new(Limits::default());
    dec.feed(&bytes[hs..]);
    let mut out = Vec::new();
    while let Some(raw) = dec
        .poll_message()
        .unwrap_or_else(|e| panic!("{what}: chunk stream: {e}"))
    {
        let raws = if raw.type_id == type_id::AGGREGATE {
            message::unpack_aggregate(&raw).unwrap_or_else(|e| panic!("{what}: {e}"))
        } else {
            vec![raw]
        };
        for r in raws {
            let m = Message::decode(&r, &Limits::default()).unwrap_or_else(|e| {
                panic!("{what}: message type {} did not decode: {e}", r.type_id)
            });
            // Media bodies parse as FLV tags too.
            match &m {
                Message::Audio(p) if !p.is_empty() => {
                    AudioTag::parse(p).unwrap_or_else(|e| panic!("{what}: audio tag: {e}"));
                }
                Message::Video(p) if !p.is_empty() => {
                    VideoTag::parse(p).unwrap_or_else(|e| panic!("{what}: video tag: {e}"));
                }
                _ => {}
            }
            out.push((r, m));
        }
    }
    assert_eq!(
        dec.buffered(),
        0,
        "{what}: {} bytes left undecoded at the end",
        dec.buffered()
    );
    out
}

fn commands(msgs: &[(RawMessage, Message)]) -> Vec<String> {
    msgs.iter()
        .filter_map(|(_, m)| match m {
            Message::Command { command, .. } => Some(command.name.clone()),
            _ => None,
        })
        .collect()
}

fn media(msgs: &[(RawMessage, Message)]) -> Vec<(bool, u32, bytes::Bytes)> {
    msgs.iter()
        .filter_map(|(r, m)| match m {
            Message::Audio(p) => Some((false, r.timestamp, p.clone())),
            Message::Video(p) => Some((true, r.timestamp, p.clone())),
            _ => None,
        })
        .collect()
}

/// Writes seeds for the fuzz targets. Targets that take a selector byte
/// first (split pattern, mode) get one: 0x80 feeds in one piece, accepts
/// everything, and for the client picks publish (even) or play (odd).
fn dump_seeds(dir: &std::path::Path, name: &str, rec: &Recording, msgs: &[(RawMessage, Message)]) {
    let hs = 1 + 2 * PACKET_SIZE;
    let put = |target: &str, file: String, selector: Option<u8>, data: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        let mut seed = selector.map(|s| vec![s]).unwrap_or_default();
        seed.extend_from_slice(data);
        std::fs::write(d.join(file), seed).unwrap();
    };
    let play = u8::from(name.starts_with("play"));
    let up = &rec.to_server;
    let down = &rec.to_client;
    put("handshake", format!("{name}-c"), Some(0x80), &up[..hs]);
    put("handshake", format!("{name}-s"), Some(0x80), &down[..hs]);
    // Session seeds: what each side of a session receives, up to 64 KiB.
    put(
        "server_session",
        name.into(),
        Some(0x80),
        &up[..up.len().min(65536)],
    );
    put(
        "client_session",
        name.into(),
        Some(0x80 | play),
        &down[..down.len().min(65536)],
    );
    put(
        "chunk",
        format!("{name}-up"),
        Some(0x80),
        &up[hs..(hs + 65536).min(up.len())],
    );
    put(
        "chunk",
        format!("{name}-down"),
        Some(0x80),
        &down[hs..(hs + 65536).min(down.len())],
    );
    for (i, (r, m)) in msgs.iter().enumerate().take(400) {
        match m {
            Message::Command { .. } => {
                put("command", format!("{name}-{i}"), None, &r.payload);
                put("amf0", format!("{name}-{i}"), None, &r.payload);
            }
            Message::Data { .. } => put("amf0", format!("{name}-{i}"), None, &r.payload),
            Message::Audio(p) | Message::Video(p) if i % 20 == 0 || p.len() < 64 => {
                put(
                    "flv_tag",
                    format!("{name}-{i}"),
                    Some(r.type_id),
                    &p[..p.len().min(4096)],
                );
            }
            _ => {}
        }
    }
}

#[test]
fn ffmpeg_through_nginx_decodes_byte_for_byte() {
    needs!("nginx", "ffmpeg");
    let dir = TempDir::new("golden");
    let media_path = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let nginx = Nginx::start("");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let recs = relay(listener, nginx.port);
    let url = format!("rtmp://127.0.0.1:{port}/live/golden");

    let out = dir.path("played.flv");
    let mut player = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-rw_timeout",
            "1500000",
            "-i",
            &url,
        ])
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let player_err = collect_stderr(&mut player);
    // Wait for the player's play command to have gone through the relay.
    let end = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("play: name='golden'") {
        assert!(Instant::now() < end, "ffmpeg never started playing");
        std::thread::sleep(Duration::from_millis(20));
    }
    ffmpeg_publish(&media_path, &url);
    let pst = wait_child(&mut player, Duration::from_secs(20));
    assert!(
        pst.success(),
        "ffmpeg player failed: {}",
        player_err.join().unwrap()
    );
    std::thread::sleep(Duration::from_millis(200));

    let recs: Vec<Recording> = recs
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.lock().unwrap().clone())
        .collect();
    assert_eq!(
        recs.len(),
        2,
        "expected a player and a publisher connection"
    );
    let want = ffprobe_frames(media_path.to_str().unwrap());
    let mut seen = (false, false);
    for (i, rec) in recs.iter().enumerate() {
        let up = decode_direction(&rec.to_server, &format!("connection {i} client->server"));
        let down = decode_direction(&rec.to_client, &format!("connection {i} server->client"));
        let cmds = commands(&up);
        assert!(
            cmds.first().map(String::as_str) == Some("connect"),
            "{cmds:?}"
        );
        let (name, got) = if cmds.iter().any(|c| c == "publish") {
            seen.0 = true;
            ("publish", media(&up))
        } else {
            assert!(cmds.iter().any(|c| c == "play"), "{cmds:?}");
            seen.1 = true;
            ("play", media(&down))
        };
        assert_same_frames(
            &format!("ffmpeg {name} as our core decodes it"),
            &frames_of(&got),
            &want,
        );
        if let Some(d) = std::env::var_os("GOLDEN_DUMP_DIR") {
            dump_seeds(std::path::Path::new(&d), name, rec, &up);
            dump_seeds(
                std::path::Path::new(&d),
                &format!("{name}-down"),
                rec,
                &down,
            );
        }
    }
    assert_eq!(seen, (true, true));
    // The player's own recording agrees too.
    assert_same_frames(
        "ffmpeg player's file",
        &ffprobe_frames(out.to_str().unwrap()),
        &want,
    );
}
