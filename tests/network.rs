// SPDX-License-Identifier: MPL-2.0
//! Bad networks, made real: nginx-rtmp runs on a test host in its own
//! network namespace, behind a link that loses, delays or drops everything
//! (see `common::netlab`). What arrived is read from nginx's recordings
//! and compared, frame by frame, with what the publisher's parsers gave.
//! Without permission for network namespaces each test says so and skips.

mod common;

use std::time::{Duration, Instant};

use common::netlab::NetLab;
use common::player::*;
use common::*;
use gst::prelude::*;

fn live(secs: u32) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={} ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video \
         audiotestsrc is-live=true num-buffers={} ! avenc_aac ! aacparse ! s.audio",
        secs * 30,
        secs * 44100 / 1024
    )
}

fn publisher(desc: &str) -> (gst::Pipeline, OutLog, States) {
    let p = launch(desc);
    let sent = probe_parsers(&p);
    let log = connection_states(&p);
    (p, sent, log)
}

fn stat(p: &gst::Pipeline, field: &str) -> u64 {
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    stats.get::<u64>(field).unwrap()
}

#[test]
fn a_lossy_slow_link_delivers_every_frame_with_its_time() {
    needs!("nginx", "ffmpeg");
    init();
    let Some(mut lab) = NetLab::new() else { return };
    lab.delay_ms(50);
    lab.loss_percent(1.0);
    let nginx = Nginx::start_on("record all; record_path RECDIR;", Some(&lab));
    let (p, sent, log) = publisher(&format!(
        "{} rtmpsink name=s location={}",
        live(8),
        nginx.url("lossy")
    ));
    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(40));
    let (crossed, dropped) = lab.frames();
    eprintln!("the link dropped {dropped} of {crossed} frames");
    assert!(
        dropped > 0,
        "the link lost nothing: {crossed} frames crossed"
    );

    assert!(
        state_names(&log).is_empty(),
        "TCP repairs 1% loss; no reconnection: {:?}",
        state_names(&log)
    );
    let recs = nginx.recordings();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let sent = sent.lock().unwrap().clone();
    let n = assert_all_recorded(&recs, &sent);
    assert_eq!(n, sent.len(), "frames recorded, frames sent");
    // The times too: the recording (whole milliseconds) against what was
    // sent, frame by frame.
    let got = normalized(ffprobe_frames(recs[0].to_str().unwrap()));
    let want = normalized(frames(&sent));
    let (gv, ga) = split(&got);
    let (wv, wa) = split(&want);
    for (g, w) in [(gv, wv), (ga, wa)] {
        assert_eq!(g.len(), w.len());
        for (g, w) in g.iter().zip(&w) {
            assert_eq!((g.crc, g.key), (w.crc, w.key));
            assert!(
                (g.dts - w.dts).abs() <= 1 && (g.pts - w.pts).abs() <= 1,
                "time moved: got {g:?}, sent {w:?}"
            );
        }
    }
}

#[test]
fn a_blackout_longer_than_the_timeout_reconnects_and_loses_nothing() {
    needs!("nginx", "ffmpeg");
    init();
    let Some(mut lab) = NetLab::new() else { return };
    // nginx holds a stream name until it notices its publisher is gone;
    // with the route cut it never hears of it, so this lets it go.
    let nginx = Nginx::start_on(
        "drop_idle_publisher 2s; record all; record_path RECDIR; record_unique on;",
        Some(&lab),
    );
    let (p, sent, log) = publisher(&format!(
        "{} rtmpsink name=s timeout=3 reconnect-delay=500 location={}",
        live(16),
        nginx.url("dark")
    ));
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.blackout(true);
    std::thread::sleep(Duration::from_secs(6));
    lab.blackout(false);
    let back = Instant::now();
    play_to_eos(&p, Duration::from_secs(60));

    let (reason, resumed, step) = resumption(&log, back);
    assert!(reason.contains("timed out"), "{reason}");
    // The attempt waiting when the route came back had at most one backoff
    // step to go, plus its connect (up to the timeout, 3 s, when its SYN
    // went out into the dark).
    assert!(
        resumed <= Duration::from_millis(step + 3000 + 1000),
        "resumed {resumed:?} after the route came back (backoff step {step} ms)"
    );
    eprintln!("route back -> publishing again in {resumed:?} (backoff step {step} ms)");
    let recs = nginx.recordings();
    assert!(recs.len() >= 2, "recordings: {recs:?}");
    assert_all_recorded(&recs, &sent.lock().unwrap());
    assert_eq!(stat(&p, "backlog-dropped"), 0);
    assert!(stat(&p, "reconnects") >= 1);
}

#[test]
fn rtmpsrc_rides_out_a_blackout_and_resumes_on_a_keyframe() {
    needs!("nginx");
    init();
    let Some(mut lab) = NetLab::new() else { return };
    let nginx = Nginx::start_on("wait_key on; drop_idle_publisher 2s;", Some(&lab));
    let url = nginx.url("both");
    let (player_p, got, caps) = player(&url, "timeout=3 reconnect-attempts=-1 reconnect-delay=500");
    let player_log = connection_states(&player_p);
    player_p.set_state(gst::State::Playing).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("play: name='both'") {
        assert!(Instant::now() < end, "rtmpsrc never started playing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (p, sent, _) = publisher(&format!(
        "{} rtmpsink name=s timeout=3 reconnect-delay=500 location={url}",
        live(16)
    ));
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.blackout(true);
    std::thread::sleep(Duration::from_secs(6));
    lab.blackout(false);
    let back = Instant::now();
    play_to_eos(&p, Duration::from_secs(60));
    play_to_eos(&player_p, Duration::from_secs(20));

    let log = player_log.lock().unwrap().clone();
    let (connected_at, _) = log
        .iter()
        .find(|(_, s)| s.get::<&str>("state") == Ok("connected"))
        .unwrap_or_else(|| panic!("the player never reconnected: {log:?}"));
    eprintln!(
        "route back -> player connected again in {:?}",
        connected_at.saturating_duration_since(back)
    );
    assert_resumed(
        &sent.lock().unwrap(),
        &got.lock().unwrap(),
        &caps.lock().unwrap(),
    );
}
