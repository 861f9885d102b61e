// SPDX-License-Identifier: MPL-2.0
//! Past one machine, with a widely deployed server: nginx-rtmp edges that
//! `pull` from rtmpsink mode=server (the origin) and serve players
//! themselves, and nginx-rtmp relaying (`push`) a stream into rtmpsrc
//! mode=server. Every frame is checked (checksums, times, key flags).

mod common;

use std::time::Duration;

use common::player::*;
use common::server::{LIVE, paused_sink_server, wait_notice};
use common::*;
use gst::prelude::*;

/// The nginx configuration of an edge that pulls its streams from `origin`
/// (`rtmp://host:port/app`) when a player asks for them.
fn edge_conf(origin: &str) -> String {
    format!("pull {origin};")
}

/// `got` is the end of what was `sent`, from a keyframe on, with no frame
/// missing, changed or out of order, for each kind; at least `min` video
/// frames of it.
fn assert_tail(what: &str, sent: &[Out], got: &[Out], min: usize) {
    for video in [true, false] {
        let crcs = |v: &[Out]| -> Vec<u32> {
            v.iter()
                .filter(|o| o.video == video)
                .map(|o| o.crc)
                .collect()
        };
        let (s, g) = (crcs(sent), crcs(got));
        assert!(g.len() <= s.len(), "{what}: more frames than sent");
        assert_eq!(
            g,
            s[s.len() - g.len()..],
            "{what}: video {video}: the end of what was sent"
        );
    }
    let video: Vec<&Out> = got.iter().filter(|o| o.video).collect();
    assert!(video.len() >= min, "{what}: {} video frames", video.len());
    assert!(video[0].key, "{what}: starts at a keyframe");
}

/// rtmpsink mode=server as the origin, two nginx-rtmp edges pulling from
/// it, a player (rtmpsrc) on each edge: both players get every frame the
/// origin sent, as sent.
#[test]
fn nginx_edges_pull_from_an_rtmpsink_origin() {
    needs!("nginx");
    init();
    let (origin, sent, notes, url) = paused_sink_server(LIVE, "");
    let origin_app = url.trim_end_matches("/key").to_owned();
    let edges = [
        Nginx::start(&edge_conf(&origin_app)),
        Nginx::start(&edge_conf(&origin_app)),
    ];
    let players: Vec<_> = edges
        .iter()
        .map(|e| {
            let (p, log, _) = player(&e.url("key"), "");
            p.set_state(gst::State::Playing).unwrap();
            (p, log)
        })
        .collect();
    // Each edge's pull is a player of the origin.
    wait_notice(&notes, "rtmp-client-connected", 2, Duration::from_secs(15));
    origin.set_state(gst::State::Playing).unwrap();
    play_to_eos(&origin, Duration::from_secs(30));
    let sent = sent.lock().unwrap().clone();
    assert!(sent.len() > 200, "{} frames sent", sent.len());
    for (i, (p, log)) in players.iter().enumerate() {
        play_to_eos(p, Duration::from_secs(20));
        same_frames(
            &format!("origin -> nginx edge {i} -> rtmpsrc"),
            &sent,
            &log.lock().unwrap(),
            true,
        );
    }
}

/// The origin goes away while players watch through an nginx edge, and a
/// new one comes up on the same address a second later: nginx closes its
/// players when its pull fails, and the players (rtmpsrc, which reconnects
/// by itself) carry on with the new origin's stream, its frames whole from
/// a keyframe on to its end. (When an origin ends, nginx closes the edge's
/// players rather than ending their stream: they keep trying, as a player
/// of a live stream should.)
#[test]
fn edge_players_resume_when_the_origin_restarts() {
    needs!("nginx");
    init();
    let (first, sent_first, notes, url) = paused_sink_server(LIVE, "");
    let port = url
        .trim_start_matches("rtmp://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let edge = Nginx::start(&edge_conf(&format!("rtmp://127.0.0.1:{port}/live")));
    let (player, log, _) = player(&edge.url("key"), "");
    player.set_state(gst::State::Playing).unwrap();
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(15));
    first.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Gone without a goodbye, as a crashed or restarted origin.
    first.set_state(gst::State::Null).unwrap();
    let got_before = log.lock().unwrap().len();
    assert!(got_before > 30, "{got_before} frames before the restart");
    std::thread::sleep(Duration::from_secs(1));

    let second = launch(&format!(
        "{LIVE} rtmpsink name=s mode=server sync=false location=rtmp://127.0.0.1:{port}/live/key"
    ));
    let sent_second = probe_parsers(&second);
    second.set_state(gst::State::Playing).unwrap();
    play_to_eos(&second, Duration::from_secs(30));
    // What is in flight through nginx arrives.
    std::thread::sleep(Duration::from_millis(500));
    player.set_state(gst::State::Null).unwrap();

    let got = log.lock().unwrap().clone();
    let sent_first = sent_first.lock().unwrap().clone();
    let sent_second = sent_second.lock().unwrap().clone();
    // Before the restart: the first origin's frames from the start, in
    // order, none missing.
    let (before, after) = got.split_at(got_before);
    let crcs = |v: &[Out], video: bool| -> Vec<u32> {
        v.iter()
            .filter(|o| o.video == video)
            .map(|o| o.crc)
            .collect()
    };
    for video in [true, false] {
        let b = crcs(before, video);
        assert_eq!(
            b,
            crcs(&sent_first, video)[..b.len()],
            "video {video}: before"
        );
    }
    // After: the second origin's frames, a whole run to its end, starting
    // at a keyframe (frames still in flight from the first may come first).
    let second_video = crcs(&sent_second, true);
    let after_video: Vec<&Out> = after.iter().filter(|o| o.video).collect();
    let start = after_video
        .iter()
        .position(|o| second_video.contains(&o.crc))
        .expect("frames of the second origin");
    assert!(after_video[start].key, "resumes at a keyframe");
    assert!(after_video[start].discont, "with DISCONT");
    let first_second = after
        .iter()
        .position(|o| std::ptr::eq(o, after_video[start]))
        .unwrap();
    assert_tail(
        "after the origin restarted",
        &sent_second,
        &after[first_second..],
        30,
    );
}

/// nginx-rtmp relaying (`push`) what is published to it into rtmpsrc
/// mode=server: every frame arrives as rtmpsink sent it to nginx.
#[test]
fn nginx_pushes_into_rtmpsrc_server() {
    needs!("nginx");
    init();
    let (server, log, _, _, port) = common::server::src_server("eos-on-unpublish=true");
    let nginx = Nginx::start(&format!("push rtmp://127.0.0.1:{port}/live;"));
    let sent = publish_to_eos(&format!(
        "{LIVE} rtmpsink name=s location={}",
        nginx.url("key")
    ));
    play_to_eos(&server, Duration::from_secs(30));
    // nginx connects its push once the publish has begun, and starts it at
    // a keyframe: the first GOP or two go by before it, the rest must all
    // arrive.
    assert_tail(
        "rtmpsink -> nginx push -> rtmpsrc mode=server",
        &sent,
        &log.lock().unwrap(),
        30,
    );
}
