//! Staying live: rtmpsink reconnects when the server goes away, keeps a
//! backlog meanwhile, and re-sends from a keyframe. The faults are real:
//! nginx-rtmp is stopped and started again mid-stream. What arrived is read
//! from nginx's recordings and compared, frame by frame, with what the
//! publisher's parsers gave.

mod common;

use std::time::{Duration, Instant};

use common::player::*;
use common::*;
use gst::prelude::*;

const LIVE: &str = "videotestsrc is-live=true num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video audiotestsrc is-live=true num-buffers=430 ! avenc_aac ! aacparse ! s.audio";

#[test]
fn reconnects_after_a_server_restart_and_loses_nothing_in_the_backlog() {
    init();
    let mut nginx = Nginx::start("record all; record_path RECDIR; record_unique on;");
    let p = gst::parse::launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=500 location={}",
        nginx.url("re")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sent = probe_parsers(&p);
    let log = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nginx.stop();
    std::thread::sleep(Duration::from_secs(2));
    nginx.start_again();
    let back = Instant::now();
    play_to_eos(&p, Duration::from_secs(30));

    let log = log.lock().unwrap().clone();
    let reconnecting: Vec<_> = log
        .iter()
        .filter(|(_, s)| s.get::<&str>("state") == Ok("reconnecting"))
        .collect();
    assert!(!reconnecting.is_empty(), "{log:?}");
    let reason = reconnecting[0].1.get::<String>("reason").unwrap();
    assert!(
        reason.contains("closed") || reason.contains("reset"),
        "{log:?}"
    );
    let (connected_at, _) = log
        .iter()
        .find(|(_, s)| s.get::<&str>("state") == Ok("connected"))
        .unwrap_or_else(|| panic!("never reconnected: {log:?}"));
    // Resumed within one backoff step of the server coming back: the
    // attempt waiting when it came back had at most the last delay to go.
    let last_delay = reconnecting
        .iter()
        .filter(|(t, _)| *t <= back)
        .map(|(_, s)| s.get::<u64>("delay-ms").unwrap())
        .max()
        .unwrap();
    let resumed = connected_at.saturating_duration_since(back);
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

#[test]
fn gives_up_after_the_attempts_and_says_so() {
    init();
    let mut nginx = Nginx::start("");
    let p = gst::parse::launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=200 reconnect-attempts=2 location={}",
        nginx.url("gone")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
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
    init();
    let mut nginx = Nginx::start("wait_key on;");
    let url = nginx.url("both");
    let (player_p, got, _) = player(&url, "reconnect-attempts=-1 reconnect-delay=500");
    let player_states = connection_states(&player_p);
    player_p.set_state(gst::State::Playing).unwrap();
    // The player is on nginx before the publisher starts.
    let end = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("play: name='both'") {
        assert!(Instant::now() < end, "rtmpsrc never started playing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = gst::parse::launch(&format!(
        "{LIVE} rtmpsink name=s reconnect-delay=500 location={url}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
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
    let got = got.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    for video in [true, false] {
        let g: Vec<&Out> = got.iter().filter(|o| o.video == video).collect();
        let s: Vec<&Out> = sent.iter().filter(|o| o.video == video).collect();
        // Output time never goes back, across the outage too.
        for w in g.windows(2) {
            assert!(w[1].dts >= w[0].dts, "time went back: {:?}", &w);
        }
        let resume = g
            .iter()
            .skip(1)
            .position(|o| o.discont)
            .map(|i| i + 1)
            .expect("a DISCONT where playback resumed");
        // Before the outage: a run of what was sent, nothing missing.
        let before: Vec<u32> = g[..resume].iter().map(|o| o.crc).collect();
        let first = s
            .iter()
            .position(|o| o.crc == before[0])
            .expect("started on a frame that was sent");
        let want: Vec<u32> = s[first..first + before.len()]
            .iter()
            .map(|o| o.crc)
            .collect();
        assert_eq!(before, want, "video={video}: before the outage");
        // After it: a run of what was sent, to the end, nothing missing.
        let after: Vec<u32> = g[resume..].iter().map(|o| o.crc).collect();
        let start = s
            .iter()
            .position(|o| o.crc == after[0])
            .expect("resumed on a frame that was sent");
        let want: Vec<u32> = s[start..].iter().map(|o| o.crc).collect();
        assert_eq!(after, want, "video={video}: after resuming");
        if video {
            assert!(g[resume].key, "resumed on a non-keyframe");
        }
    }
}
