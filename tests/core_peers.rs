// SPDX-License-Identifier: MPL-2.0
//! The protocol core, through the blocking driver, against real peers:
//! nginx-rtmp and FFmpeg, as servers and as clients.

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use gstrtmp::net::blocking::{BlockingClient, BlockingServerConnection};
use gstrtmp::rtmp::ErrorKind;
use gstrtmp::rtmp::amf0;
use gstrtmp::rtmp::flv;
use gstrtmp::rtmp::message::DataMessage;
use gstrtmp::rtmp::session::{ClientConfig, ClientMode, ServerConfig, ServerEvent};
use gstrtmp::rtmp::url::RtmpUrl;

/// Publishes a file's tags to nginx while our player plays the stream;
/// returns what the player got.
fn through_nginx(tracks: Tracks) -> (Vec<flv::FlvTag>, Received, Nginx, u64) {
    let dir = TempDir::new("nginx-av");
    let media = make_flv(&dir, "in.flv", 3, tracks);
    let tags = read_flv_tags(&media);
    let nginx = Nginx::start("");
    let url = nginx.url("core");
    let (tx, rx) = mpsc::channel();
    let player = {
        let url = url.clone();
        std::thread::spawn(move || play_until_end(&url, Duration::from_secs(10), Some(tx)))
    };
    rx.recv_timeout(Duration::from_secs(10))
        .expect("player started");
    let sent = publish_tags(&url, &tags).expect("publish to nginx");
    let got = player.join().unwrap().expect("play from nginx");
    (tags, got, nginx, sent)
}

fn check_nginx_roundtrip(tracks: Tracks) {
    let (tags, got, nginx, sent) = through_nginx(tracks);
    let media_frames = frames_of(&av_of_tags(&tags));
    let probe = {
        // ffprobe on the very file we published: an independent count.
        let dir = TempDir::new("probe");
        let p = dir.path("in.flv");
        let mut out = Vec::new();
        flv::FlvHeader {
            has_audio: true,
            has_video: true,
        }
        .write(&mut out);
        for t in &tags {
            t.write(&mut out);
        }
        std::fs::write(&p, out).unwrap();
        ffprobe_frames(p.to_str().unwrap())
    };
    assert_same_frames("our reading of the file vs ffprobe", &media_frames, &probe);
    assert!(
        probe.len() > 20,
        "too few frames in the test media: {}",
        probe.len()
    );
    assert_same_frames(
        "played from nginx vs published",
        &frames_of(&got.av),
        &probe,
    );
    assert!(got.ended.is_some(), "the player never saw the stream end");

    // Sequence headers arrive byte for byte.
    for t in tags
        .iter()
        .filter(|t| t.tag_type != flv::tag_type::SCRIPT)
        .take(2)
    {
        let video = t.tag_type == flv::tag_type::VIDEO;
        assert!(
            got.av.iter().any(|(v, _, p)| *v == video && *p == t.data),
            "sequence header ({}) did not arrive",
            if video { "video" } else { "audio" }
        );
    }
    // Metadata arrives as onMetaData.
    if tracks != Tracks::AudioOnly {
        let meta = got.data.iter().find_map(|d| match d {
            DataMessage::OnMetaData(v) => Some(v.clone()),
            _ => None,
        });
        let meta = meta.expect("onMetaData reached the player");
        assert_eq!(meta.get_f64("width"), Some(320.0), "{meta:?}");
        assert_eq!(meta.get_f64("height"), Some(240.0), "{meta:?}");
    }
    // nginx counted every byte we sent: its access log line for the publish
    // is written when the publisher leaves, which may be a moment later.
    // nginx does not count the handshake (C0, C1, C2).
    let sent = sent - (1 + 2 * gstrtmp::rtmp::handshake::PACKET_SIZE as u64);
    let want = format!("PUBLISH \"live\" \"core\" {sent} ");
    let log = nginx.access_log_with(&[&want], Duration::from_secs(5));
    assert!(
        log.contains(&want),
        "nginx did not receive all {sent} bytes we sent:\n{log}"
    );
}

#[test]
fn nginx_publish_and_play_audio_video() {
    needs!("nginx", "ffmpeg");
    check_nginx_roundtrip(Tracks::AudioVideo);
}

#[test]
fn nginx_publish_and_play_video_only() {
    needs!("nginx", "ffmpeg");
    check_nginx_roundtrip(Tracks::VideoOnly);
}

#[test]
fn nginx_publish_and_play_audio_only() {
    needs!("nginx", "ffmpeg");
    check_nginx_roundtrip(Tracks::AudioOnly);
}

#[test]
fn publish_to_ffmpeg_listen() {
    needs!("ffmpeg");
    let dir = TempDir::new("ff-listen-in");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let tags = read_flv_tags(&media);
    let out = dir.path("out.flv");
    let (mut ff, err, port) = ffmpeg_listen_recording(&out);
    publish_tags(&format!("rtmp://127.0.0.1:{port}/live/key"), &tags).expect("publish to ffmpeg");
    let st = wait_child(&mut ff, Duration::from_secs(20));
    let err = err.join().unwrap();
    assert!(st.success(), "ffmpeg failed: {err}");
    let want = ffprobe_frames(media.to_str().unwrap());
    assert_same_frames(
        "ffmpeg's recording vs the source",
        &ffprobe_frames(out.to_str().unwrap()),
        &want,
    );
}

#[test]
fn play_from_ffmpeg_listen() {
    needs!("ffmpeg");
    let dir = TempDir::new("ff-listen-out");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let (mut ff, err, port) = ffmpeg_listen(&media);
    let got = play_until_end(
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        Duration::from_secs(5),
        None,
    )
    .expect("play from ffmpeg");
    wait_child(&mut ff, Duration::from_secs(20));
    let err = err.join().unwrap();
    let want = ffprobe_frames(media.to_str().unwrap());
    assert_same_frames(
        &format!("played from ffmpeg vs the source (ffmpeg said: {err})"),
        &frames_of(&got.av),
        &want,
    );
}

/// Runs our server session for one connection until the client leaves,
/// answering yes to everything, and serving `serve` to a player.
fn serve_one(listener: &TcpListener, serve: &[flv::FlvTag]) -> Vec<(bool, u32, bytes::Bytes)> {
    let mut conn = BlockingServerConnection::accept(
        listener,
        ServerConfig::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut got = Vec::new();
    loop {
        let ev = match conn.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            // A publisher that closes with our acknowledgements still
            // unread makes its kernel send a reset instead of a FIN; what
            // it sent before is compared frame by frame afterwards.
            Err(e) if e.kind() == gstrtmp::rtmp::error::ErrorKind::Io && !got.is_empty() => break,
            Err(e) => panic!("server session: {e}"),
        };
        match ev {
            ServerEvent::ConnectRequest(p) => {
                assert_eq!(p.app, "live");
                conn.session().accept_connect().unwrap();
            }
            ServerEvent::PublishRequest {
                stream_id, name, ..
            } => {
                assert_eq!(name, "key");
                conn.session().accept_publish(stream_id).unwrap();
            }
            ServerEvent::PlayRequest {
                stream_id, name, ..
            } => {
                assert_eq!(name, "key");
                conn.session().accept_play(stream_id, true).unwrap();
                for t in serve {
                    let s = conn.session();
                    match t.tag_type {
                        flv::tag_type::AUDIO => {
                            s.send_audio(stream_id, t.timestamp, &t.data).unwrap()
                        }
                        flv::tag_type::VIDEO => {
                            s.send_video(stream_id, t.timestamp, &t.data).unwrap()
                        }
                        _ => {
                            let v = amf0::decode_all(&t.data, &Default::default()).unwrap();
                            if v.len() > 1 {
                                s.send_data(
                                    stream_id,
                                    t.timestamp,
                                    &DataMessage::OnMetaData(v[1].clone()),
                                )
                                .unwrap();
                            }
                        }
                    }
                    conn.flush().unwrap();
                }
                conn.session().end_play(stream_id, false).unwrap();
                conn.flush().unwrap();
            }
            ServerEvent::Audio {
                timestamp, payload, ..
            } => got.push((false, timestamp, payload)),
            ServerEvent::Video {
                timestamp, payload, ..
            } => got.push((true, timestamp, payload)),
            _ => {}
        }
    }
    conn.close();
    got
}

#[test]
fn our_server_session_takes_an_ffmpeg_publisher() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-pub");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut ff, err) = start(
        ffmpeg_command()
            .arg("-i")
            .arg(&media)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/key")),
    );
    let got = serve_one(&listener, &[]);
    let st = wait_child(&mut ff, Duration::from_secs(20));
    assert!(st.success(), "ffmpeg failed: {}", err.join().unwrap());
    let want = ffprobe_frames(media.to_str().unwrap());
    assert_same_frames(
        "received from ffmpeg vs the source",
        &frames_of(&got),
        &want,
    );
}

#[test]
fn our_server_session_serves_an_ffmpeg_player() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-play");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let tags = read_flv_tags(&media);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = dir.path("out.flv");
    // FFmpeg as a player sends a Flash-style C1; it must accept our answer.
    let (mut ff, err) = start(
        ffmpeg_command()
            .args(["-y", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(&out),
    );
    serve_one(&listener, &tags);
    let st = wait_child(&mut ff, Duration::from_secs(20));
    let err = err.join().unwrap();
    assert!(st.success(), "ffmpeg failed: {err}");
    let want = ffprobe_frames(media.to_str().unwrap());
    assert_same_frames(
        "ffmpeg's recording from our server vs the source",
        &ffprobe_frames(out.to_str().unwrap()),
        &want,
    );
}

#[test]
fn nothing_listening_is_a_clear_error() {
    let port = free_port();
    let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/key")).unwrap();
    let e = BlockingClient::open(&url, ClientConfig::new(ClientMode::Publish, &url))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.reason().contains("connection refused"), "{e}");
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/key")).unwrap();
    let mut cfg = ClientConfig::new(ClientMode::Publish, &url);
    cfg.response_timeout = Duration::from_millis(800);
    let start = Instant::now();
    let e = BlockingClient::open(&url, cfg).err().unwrap();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.reason().contains("handshake"), "{e}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    drop(listener);
}

#[test]
fn nginx_denying_publish_is_noticed() {
    needs!("nginx");
    // nginx answers publish with NetStream.Publish.Start and only then runs
    // its access rules, dropping the connection: the refusal shows as the
    // server closing right after, which the client must notice at once.
    let nginx = Nginx::start("deny publish all;");
    let url = RtmpUrl::parse(&nginx.url("key")).unwrap();
    let mut cfg = ClientConfig::new(ClientMode::Publish, &url);
    cfg.response_timeout = Duration::from_secs(5);
    let start = Instant::now();
    let outcome = match BlockingClient::open(&url, cfg) {
        Err(e) => Err(e),
        Ok(mut c) => loop {
            if let Err(e) = c.send_video(0, &[0x17, 1, 0, 0, 0]) {
                break Err(e);
            }
            match c.next_event_timeout(Duration::from_millis(100)) {
                Err(e) => break Err(e),
                Ok(None) if c.is_closed() => break Ok(()),
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the closed connection went unnoticed"
            );
        },
    };
    if let Err(e) = outcome {
        assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        nginx.error_log().contains("access forbidden by rule"),
        "{}",
        nginx.error_log()
    );
}
