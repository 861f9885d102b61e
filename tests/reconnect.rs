// SPDX-License-Identifier: MPL-2.0
//! Staying live: rtmpsink reconnects when the server goes away, keeps a
//! backlog meanwhile, and re-sends from a keyframe. The faults are real:
//! nginx-rtmp is stopped and started again mid-stream. What arrived is read
//! from nginx's recordings and compared, frame by frame, with what the
//! publisher's parsers gave.

mod common;

use std::time::{Duration, Instant};

use common::pki::Pki;
use common::player::*;
use common::*;
use gst::prelude::*;

const LIVE: &str = "videotestsrc is-live=true num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video audiotestsrc is-live=true num-buffers=430 ! avenc_aac ! aacparse ! s.audio";

/// nginx (with a TLS front for `tls`), and the location and the TLS
/// settings our elements reach it with.
fn nginx_for(tls: Option<&Pki>, app_conf: &str, stream: &str) -> (Nginx, String, String) {
    match tls {
        None => {
            let nginx = Nginx::start(app_conf);
            let url = nginx.url(stream);
            (nginx, url, String::new())
        }
        Some(pki) => {
            let nginx = Nginx::start_tls(
                app_conf,
                &[TlsFront {
                    cert: &pki.server,
                    client_ca: None,
                }],
            );
            let url = nginx.rtmps_url(0, stream);
            (nginx, url, format!("tls-ca-file={}", pki.ca.display()))
        }
    }
}

#[test]
fn reconnects_after_a_server_restart_and_loses_nothing_in_the_backlog() {
    needs!("nginx", "ffmpeg");
    restart(None);
}

/// The same over rtmps://: a new TLS session each time.
#[test]
fn reconnects_over_rtmps_after_a_server_restart() {
    needs!("nginx", "ffmpeg");
    restart(Some(&Pki::new()));
}

fn restart(tls: Option<&Pki>) {
    init();
    let (mut nginx, location, settings) = nginx_for(
        tls,
        "record all; record_path RECDIR; record_unique on;",
        "re",
    );
    let p = launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=500 location={location} {settings}"
    ));
    let sent = probe_parsers(&p);
    let log = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nginx.stop();
    std::thread::sleep(Duration::from_secs(2));
    nginx.start_again();
    let back = Instant::now();
    play_to_eos(&p, Duration::from_secs(30));

    let (reason, resumed, last_delay) = resumption(&log, back);
    assert!(
        reason.contains("closed") || reason.contains("reset"),
        "{reason}"
    );
    // Resumed within one backoff step of the server coming back: the
    // attempt waiting when it came back had at most the last delay to go.
    assert!(
        resumed <= Duration::from_millis(last_delay + 1000),
        "resumed {resumed:?} after the server came back (backoff {last_delay} ms)"
    );
    eprintln!("server back -> reconnected in {resumed:?} (backoff step {last_delay} ms)");

    // Every frame the parsers gave reached nginx, in one recording or the
    // other (the keyframe before the loss is re-sent, so some twice).
    let recs = nginx.recordings();
    assert!(recs.len() >= 2, "recordings: {recs:?}");
    assert_all_recorded(&recs, &sent.lock().unwrap());
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    assert_eq!(stats.get::<u64>("reconnects").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<u64>("backlog-dropped").unwrap(), 0, "{stats}");
}

/// While nginx acknowledges (every megabyte, as rtmpsink asks), the backlog
/// lets go of what it confirmed: it holds the unconfirmed tail and the GOP
/// it starts in, not 10 s of stream; a restart still loses nothing.
#[test]
fn the_backlog_lets_go_of_what_the_server_confirmed() {
    needs!("nginx", "ffmpeg");
    init();
    let mut nginx = Nginx::start("record all; record_path RECDIR; record_unique on;");
    // Snow at 4 Mbit/s: some 0.5 MB a second, 1 s GOPs.
    let p = launch(&format!(
        "videotestsrc is-live=true pattern=snow num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=4000 ! h264parse ! s.video \
         audiotestsrc is-live=true num-buffers=430 ! avenc_aac ! aacparse ! s.audio \
         rtmpsink name=s reconnect-delay=500 location={}",
        nginx.url("acked")
    ));
    let sent = probe_parsers(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    let out = stats.get::<u64>("bytes-out").unwrap();
    let held = stats.get::<u64>("backlog-bytes").unwrap();
    assert!(
        stats.get::<u64>("peer-acknowledged").unwrap() > 0,
        "{stats}"
    );
    assert!(out > 1_500_000, "{stats}");
    // At most the 1 MB window, what was sent since, and a GOP (~0.5 MB).
    assert!(held < 1_800_000 && held < out * 3 / 4, "{stats}");
    nginx.stop();
    std::thread::sleep(Duration::from_secs(2));
    nginx.start_again();
    play_to_eos(&p, Duration::from_secs(30));
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    assert_eq!(stats.get::<u64>("reconnects").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<u64>("backlog-dropped").unwrap(), 0, "{stats}");
    let recs = nginx.recordings();
    assert!(recs.len() >= 2, "recordings: {recs:?}");
    assert_all_recorded(&recs, &sent.lock().unwrap());
}

/// `backlog=0` keeps only the GOP in progress: what the outage cost is
/// lost (and counted), and the new connection starts cleanly, with the
/// headers and a keyframe, and then has everything.
#[test]
fn with_a_backlog_of_zero_resumes_at_a_keyframe() {
    needs!("nginx", "ffmpeg");
    init();
    let mut nginx = Nginx::start("record all; record_path RECDIR; record_unique on;");
    let p = launch(&format!(
        "{LIVE} rtmpsink name=s backlog=0 reconnect-delay=500 location={}",
        nginx.url("zero")
    ));
    let sent = probe_parsers(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nginx.stop();
    std::thread::sleep(Duration::from_secs(2));
    nginx.start_again();
    play_to_eos(&p, Duration::from_secs(30));

    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    assert_eq!(stats.get::<u64>("reconnects").unwrap(), 1, "{stats}");
    assert!(stats.get::<u64>("backlog-dropped").unwrap() > 0, "{stats}");
    let recs = nginx.recordings();
    assert_eq!(recs.len(), 2, "recordings: {recs:?}");
    let after = ffprobe_frames(recs[1].to_str().unwrap());
    let first = after
        .iter()
        .find(|f| f.video)
        .expect("video after the outage");
    assert!(first.key, "the new connection starts on a keyframe");
    // From that keyframe on, every frame sent is there.
    let sent = sent.lock().unwrap();
    let from = sent
        .iter()
        .position(|o| o.video && o.crc == first.crc)
        .expect("the first frame after the outage was sent");
    let got: std::collections::HashSet<_> = after.iter().map(|f| (f.video, f.crc)).collect();
    let tail: Vec<_> = sent[from..].iter().filter(|o| o.video).collect();
    assert!(
        tail.len() > 60,
        "{} video frames after the outage",
        tail.len()
    );
    let missing = tail
        .iter()
        .filter(|o| !got.contains(&(true, o.crc)))
        .count();
    assert_eq!(
        missing,
        0,
        "of {} video frames after the outage",
        tail.len()
    );
}

#[test]
fn gives_up_after_the_attempts_and_says_so() {
    needs!("nginx");
    init();
    let mut nginx = Nginx::start("");
    let p = launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=200 reconnect-attempts=2 location={}",
        nginx.url("gone")
    ));
    let log = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    nginx.stop();
    let (text, _) = expect_error(&p, Duration::from_secs(10));
    assert!(text.contains("2 reconnection attempts failed"), "{text}");
    assert_eq!(
        state_names(&log),
        ["reconnecting", "reconnecting", "given-up"]
    );
}

#[test]
fn rtmpsrc_reconnects_and_resumes_with_discont() {
    needs!("nginx");
    both_reconnect(None);
}

/// Both over rtmps://, each reconnection a new TLS session.
#[test]
fn rtmpsrc_and_rtmpsink_reconnect_over_rtmps() {
    needs!("nginx");
    both_reconnect(Some(&Pki::new()));
}

fn both_reconnect(tls: Option<&Pki>) {
    init();
    let (mut nginx, url, settings) = nginx_for(tls, "wait_key on;", "both");
    let (player_p, got, caps) = player(
        &url,
        &format!("reconnect-attempts=-1 reconnect-delay=500 {settings}"),
    );
    let player_states = connection_states(&player_p);
    player_p.set_state(gst::State::Playing).unwrap();
    // The player is on nginx before the publisher starts.
    let end = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("play: name='both'") {
        assert!(Instant::now() < end, "rtmpsrc never started playing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=500 location={url} {settings}"
    ));
    let sent = probe_parsers(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nginx.stop();
    std::thread::sleep(Duration::from_secs(2));
    nginx.start_again();
    play_to_eos(&p, Duration::from_secs(30));
    play_to_eos(&player_p, Duration::from_secs(10));

    let states = state_names(&player_states);
    assert!(states.contains(&"connected".to_owned()), "{states:?}");
    assert_resumed(
        &sent.lock().unwrap(),
        &got.lock().unwrap(),
        &caps.lock().unwrap(),
    );
}

/// The avcC of a real 320x240 H.264 stream, for synthetic frames that
/// players and ffprobe accept.
fn real_codec_data() -> gst::Buffer {
    let p = launch(
        "videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240 ! x264enc ! h264parse \
         ! video/x-h264,stream-format=avc ! fakesink name=f",
    );
    p.set_state(gst::State::Paused).unwrap();
    p.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    let caps = p
        .by_name("f")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    p.set_state(gst::State::Null).unwrap();
    caps.structure(0)
        .unwrap()
        .get::<gst::Buffer>("codec_data")
        .unwrap()
}

#[test]
fn a_server_that_stops_reading_is_left_and_rejoined_once_it_reads_again() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start("record all; record_path RECDIR; record_unique on;");
    // 100 kB frames at 30 fps (24 Mbit/s): the kernel buffers between us
    // and a server that stopped reading fill in a few seconds.
    const FRAME: usize = 100_000;
    const FRAMES: u64 = 420;
    let p = launch(&format!(
        "appsrc name=src is-live=true format=time ! s.video \
         rtmpsink name=s timeout=2 reconnect-delay=500 location={}",
        nginx.url("stall")
    ));
    let src = p
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(
        &gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("codec_data", real_codec_data())
            .build(),
    ));
    let log = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    // Noise, so that nothing on the way compresses it.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let pool: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let pusher = std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = Vec::new();
        for n in 0..FRAMES {
            let key = n % 30 == 0;
            let mut data = Vec::with_capacity(FRAME + 4);
            data.extend_from_slice(&(FRAME as u32).to_be_bytes());
            data.push(if key { 0x65 } else { 0x41 });
            data.extend_from_slice(&n.to_be_bytes());
            let at = (n as usize * 7919) % (pool.len() - FRAME);
            data.extend_from_slice(&pool[at..at + FRAME - 9]);
            let t = gst::ClockTime::from_nseconds(n * 1_000_000_000 / 30);
            sent.push(Out {
                video: true,
                track: 0,
                dts: t.nseconds() as i64,
                pts: t.nseconds() as i64,
                key,
                discont: false,
                size: data.len(),
                crc: crc32(&data),
            });
            let mut b = gst::Buffer::from_mut_slice(data);
            {
                let b = b.get_mut().unwrap();
                b.set_pts(t);
                b.set_dts(t);
                if !key {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
            }
            if src.push_buffer(b).is_err() {
                break;
            }
            let due = start + Duration::from_millis((n + 1) * 1000 / 30);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        src.end_of_stream().ok();
        sent
    });
    std::thread::sleep(Duration::from_secs(2));
    nginx.signal_workers("STOP");
    let stopped = Instant::now();
    let noticed = loop {
        if let Some((t, _)) = log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| s.get::<&str>("state") == Ok("reconnecting"))
        {
            break *t;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(12),
            "a server that stopped reading went unnoticed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "server stopped reading -> connection given up after {:?} (timeout 2 s)",
        noticed - stopped
    );
    std::thread::sleep(Duration::from_secs(2));
    nginx.signal_workers("CONT");
    let back = Instant::now();
    play_to_eos(&p, Duration::from_secs(60));
    let sent = pusher.join().unwrap();
    assert_eq!(sent.len() as u64, FRAMES);

    let (reason, resumed, _) = resumption(&log, back);
    assert!(
        reason.contains("stopped reading") || reason.contains("timed out"),
        "{reason}"
    );
    // Attempts while the server is stopped wait for a handshake answer
    // (the timeout, 2 s); the one under way when it reads again finishes.
    eprintln!("server reading again -> publishing again in {resumed:?}");
    assert!(resumed < Duration::from_secs(5), "{resumed:?}");
    let recs = nginx.recordings();
    assert!(recs.len() >= 2, "recordings: {recs:?}");
    assert_all_recorded(&recs, &sent);
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    assert_eq!(stats.get::<u64>("backlog-dropped").unwrap(), 0, "{stats}");
}

/// A recorded stream (nginx-rtmp's `play` of an MP4 file) whose server
/// goes away and comes back goes on where it was, not from its start:
/// rtmpsrc plays it again from there, and the stream time of what follows
/// is the file's.
#[test]
fn rtmpsrc_resumes_a_recorded_stream_where_it_was() {
    needs!("nginx", "ffmpeg");
    init();
    let mut nginx = Nginx::start("play RECDIR;");
    let dir = TempDir::new("vod-resume");
    let media = make_flv(&dir, "movie.flv", 8, Tracks::AudioVideo);
    nginx.serve_file(&media, "movie.mp4", &[]);
    let file = frames_of(&av_of_tags(&read_flv_tags(&media)));
    let fv: Vec<&Frame> = file.iter().filter(|f| f.video).collect();

    let (p, log, _) = seek_player(&nginx.url("mp4:movie.mp4"), "reconnect-delay=300");
    p.set_state(gst::State::Playing).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            log.lock().unwrap().iter().filter(|f| f.video).count() >= 50
        }),
        "no video before the outage"
    );
    nginx.stop();
    std::thread::sleep(Duration::from_millis(500));
    nginx.start_again();
    play_to_eos(&p, Duration::from_secs(30));

    let got: Vec<AfterSeek> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.video)
        .cloned()
        .collect();
    // Up to the outage (DISCONT), the file from its start.
    let d = (1..got.len())
        .find(|&i| got[i].discont)
        .expect("no DISCONT: the stream never resumed");
    for (i, (g, w)) in got[..d].iter().zip(&fv).enumerate() {
        assert_eq!(g.crc, w.crc, "video frame {i} before the outage");
    }
    // After it, the file again from the last key frame that came, to its
    // end; what was given before the outage falls before the segment (the
    // decoder needs it again, a sink does not show it again), the rest
    // has the file's times.
    let k = (0..d).rev().find(|&i| fv[i].key).unwrap();
    assert!(
        d - k >= 2,
        "the outage came right after a key frame: nothing to check"
    );
    assert_eq!(
        got[d].crc, fv[k].crc,
        "resumed elsewhere than at the last key frame, {} ms",
        fv[k].dts
    );
    assert_eq!(got.len() - d, fv.len() - k, "video frames after the outage");
    for (i, (g, w)) in got[d..].iter().zip(&fv[k..]).enumerate() {
        assert_eq!(g.crc, w.crc, "video frame at {} ms after the outage", w.dts);
        // The last frame before the outage may be either: the audio that
        // came after it says where the stream was.
        let ok = if k + i < d - 1 {
            g.dts_ms == -1
        } else if k + i >= d {
            (g.dts_ms - w.dts).abs() <= 1
        } else {
            true
        };
        assert!(
            ok,
            "video frame at {} ms came again at stream time {} ms (-1: before the segment)",
            w.dts, g.dts_ms
        );
    }
}
