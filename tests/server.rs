// SPDX-License-Identifier: MPL-2.0
//! Server modes against real peers: FFmpeg 5.1 and 9, rtmp2sink and our
//! rtmpsink publishing straight into `rtmpsrc mode=server`; FFmpeg, rtmp2src
//! and our rtmpsrc playing straight from `rtmpsink mode=server`. What
//! arrived is compared frame by frame (payload CRCs, PTS/DTS, key flags).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::player::*;
use common::server::*;
use common::*;
use gst::prelude::*;

fn publish_into_rtmpsrc_server(ffmpeg: &str, tracks: Tracks, name: &str) {
    let dir = TempDir::new(name);
    let media = make_flv(&dir, "in.flv", 3, tracks);
    let (p, log, caps, notes, port) = src_server("eos-on-unpublish=true");
    let (ok, err) = ffmpeg_push(
        ffmpeg,
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(ok, "{ffmpeg} could not publish: {err}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file(&format!("{ffmpeg} -> rtmpsrc mode=server"), &log, &media);
    let caps = caps.lock().unwrap();
    if tracks != Tracks::AudioOnly {
        assert!(
            caps.iter()
                .any(|c| c.structure(0).unwrap().name() == "video/x-h264"),
            "{caps:?}"
        );
    }
    let started = wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(1));
    assert_eq!(started[0].get::<&str>("kind").unwrap(), "publisher");
    assert_eq!(started[0].get::<&str>("stream").unwrap(), "ke***");
}

#[test]
fn ffmpeg5_publishes_into_rtmpsrc_server() {
    needs!("ffmpeg");
    publish_into_rtmpsrc_server("ffmpeg", Tracks::AudioVideo, "srv-ff5");
}

#[test]
fn ffmpeg9_publishes_into_rtmpsrc_server() {
    needs!("ffmpeg9");
    publish_into_rtmpsrc_server(&require_ffmpeg9(), Tracks::AudioVideo, "srv-ff9");
}

#[test]
fn ffmpeg_publishes_video_only_and_audio_only() {
    needs!("ffmpeg");
    publish_into_rtmpsrc_server("ffmpeg", Tracks::VideoOnly, "srv-ffv");
    publish_into_rtmpsrc_server("ffmpeg", Tracks::AudioOnly, "srv-ffa");
}

/// Publishes with a GStreamer pipeline into rtmpsrc mode=server; returns
/// what the publisher's parsers gave and what rtmpsrc gave.
/// `num-buffers`, as on rtmp2src's BaseSrc: the stream ends (EOS) after
/// that many buffers over both pads, the file's first frames, with and
/// without the pad queues and in a context.
#[test]
fn num_buffers_ends_the_stream_after_that_many_frames() {
    needs!("ffmpeg");
    let dir = TempDir::new("num-buffers");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let tags = read_flv_tags(&media);
    for extra in [
        "",
        "pad-queues=false",
        "context=num-buffers context-wait=20",
    ] {
        let (p, log, _caps, _notes, port) = src_server(&format!("num-buffers=50 {extra}"));
        let tags = tags.clone();
        // The publisher may be left waiting: the element stops reading.
        std::thread::spawn(move || {
            publish_tags(&format!("rtmp://127.0.0.1:{port}/live/key"), &tags).ok();
        });
        play_to_eos(&p, Duration::from_secs(20));
        let want = file_frames(&media);
        assert_same_frames(
            &format!("num-buffers=50 {extra}"),
            &frames(&log.lock().unwrap()),
            &want[..50],
        );
    }
}

fn gst_into_server(publish: &str) -> (Vec<Out>, Vec<Out>) {
    let (sent, got, _) = gst_into_server_with(publish, "");
    (sent, got)
}

/// Like `gst_into_server`, with more of rtmpsrc's properties; also the
/// threads that pushed on each pad.
fn gst_into_server_with(
    publish: &str,
    extra: &str,
) -> (Vec<Out>, Vec<Out>, BTreeMap<String, BTreeSet<String>>) {
    let (p, log, _, _, port) = src_server(&format!("eos-on-unpublish=true {extra}"));
    let threads = pushing_threads(&element(&p, "rtmpsrc"));
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let sent = publish_to_eos(&publish.replace("URL", &url));
    play_to_eos(&p, Duration::from_secs(20));
    // With pad queues, a thread of its own behind each pad (and the
    // streaming thread on both once a pad's downstream showed it takes
    // buffers at once: direct pushes); without, the streaming thread
    // (which runs the server's loop) pushes on both.
    let t = threads.lock().unwrap();
    let (v, a) = (&t["video"], &t["audio"]);
    match extra.contains("pad-queues=false") {
        true => assert!(v.len() == 1 && v == a, "one thread pushes both: {t:?}"),
        false => assert!(
            v.difference(a).count() == 1
                && a.difference(v).count() == 1
                && v.intersection(a).count() <= 1,
            "a thread per pad, and at most the streaming thread on both: {t:?}"
        ),
    }
    let threads = t.clone();
    drop(t);
    let got = log.lock().unwrap().clone();
    (sent, got, threads)
}

#[test]
fn rtmpsink_publishes_into_rtmpsrc_server() {
    let (sent, got) = gst_into_server(&format!(
        "{} rtmpsink name=s sync=false location=URL",
        AV.replace("SINK", "s")
    ));
    same_frames("rtmpsink -> rtmpsrc mode=server", &sent, &got, true);
}

/// With pad queues (the defaults) and downstreams that take buffers at
/// once, the streaming thread pushes a live publisher's frames itself
/// once each pad has shown that (direct pushes: no thread wake-up per
/// frame); each pad's own thread pushed the first ones. Same frames, times
/// and flags as without.
#[test]
fn rtmpsrc_server_pushes_directly_once_downstream_keeps_up() {
    let (sent, got, t) = gst_into_server_with(LIVE_AV, "");
    let (v, a) = (&t["video"], &t["audio"]);
    assert_eq!(
        v.intersection(a).count(),
        1,
        "the streaming thread on both pads: {t:?}"
    );
    same_frames("live rtmpsink -> rtmpsrc mode=server", &sent, &got, true);
}

/// A downstream that holds one pad until another has data (a muxer) while
/// the streaming thread pushes on that pad directly: the server's thread
/// takes the socket over and queues what it reads on the pads, so the
/// other pad gets its data and the held push ends; that pad goes back to
/// its queue. No frame lost, none out of order. (Without the rescue the
/// held push waits for audio nobody reads: the hold times out.)
#[test]
fn a_direct_push_held_for_another_pad_is_rescued() {
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true");
    let hold = hold_a_direct_video_push(&element(&p, "rtmpsrc"));
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    // Long enough for the video pad to earn direct pushes again, were
    // they given back after the hold.
    let sent = publish_to_eos(&live_av_for(10).replace("URL", &url));
    play_to_eos(&p, Duration::from_secs(30));
    hold.check();
    let got = log.lock().unwrap().clone();
    same_frames("a held direct push, rescued", &sent, &got, true);
}

/// The same in a context, with another member beside it: the context's
/// thread, held in the direct push, reads neither publisher; each
/// server's own thread takes its publisher over and queues on its pads,
/// so the held push ends and the other stream goes on. Every frame of
/// both arrives, in order.
#[test]
fn a_direct_push_held_in_a_context_is_rescued() {
    let extra = "eos-on-unpublish=true context=held";
    let held = src_server(extra);
    let other = src_server(extra);
    let hold = hold_a_direct_video_push(&element(&held.0, "rtmpsrc"));
    let publishers: Vec<_> = [held.4, other.4]
        .into_iter()
        .enumerate()
        .map(|(i, port)| {
            let url = format!("rtmp://127.0.0.1:{port}/live/key");
            let av = live_av_for(10)
                .replace("videotestsrc", &format!("videotestsrc pattern={}", i * 18))
                .replace("URL", &url);
            std::thread::spawn(move || publish_to_eos(&av))
        })
        .collect();
    let sent: Vec<_> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
    for (what, s, sent) in [("held", &held, &sent[0]), ("beside it", &other, &sent[1])] {
        play_to_eos(&s.0, Duration::from_secs(30));
        same_frames(
            &format!("a context with a held direct push: the stream {what}"),
            sent,
            &s.1.lock().unwrap(),
            true,
        );
    }
    hold.check();
}

/// A held direct push as above, with FFmpeg as the publisher, in real
/// time (`-re`: a frame at a time, in bursts, with its own chunking and
/// timestamps): the held push is rescued and every frame FFmpeg sent
/// arrives, as ffprobe counts them in the file, in order.
#[test]
fn a_direct_push_held_with_an_ffmpeg_publisher_is_rescued() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-held-ff");
    let media = make_flv(&dir, "in.flv", 10, Tracks::AudioVideo);
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true");
    let hold = hold_a_direct_video_push(&element(&p, "rtmpsrc"));
    let (ok, err) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        true,
    );
    assert!(ok, "ffmpeg could not publish: {err}");
    play_to_eos(&p, Duration::from_secs(30));
    hold.check();
    assert_delivered_file(
        "a held direct push, FFmpeg -re -> rtmpsrc mode=server",
        &log,
        &media,
    );
}

/// Waiting for a publisher, the streaming thread sleeps in the server's
/// loop with no deadline to wake it (no connection, nothing to check)
/// until its element unlocks, which wakes it. Pausing and resuming such
/// an idle element, again and again, completes each time, and the element
/// still takes the publisher that comes afterwards, every frame of it.
#[test]
fn an_idle_server_pauses_and_resumes_then_takes_its_publisher() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-idle-pause");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true");
    for (round, state) in [gst::State::Paused, gst::State::Playing]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        std::thread::sleep(Duration::from_millis(150));
        let pipeline = p.clone();
        let done = returns_within(
            &format!("change {round} to {state:?} of an idle rtmpsrc mode=server"),
            Duration::from_secs(20),
            move || {
                let r = pipeline.set_state(state);
                let (_, now, _) = pipeline.state(gst::ClockTime::from_seconds(10));
                (r, now)
            },
        );
        assert!(
            matches!(done, (Ok(_), now) if now == state),
            "change {round} to {state:?} of an idle rtmpsrc mode=server: {done:?}"
        );
    }
    let (ok, err) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(ok, "ffmpeg could not publish after the pauses: {err}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file(
        "FFmpeg -> an rtmpsrc mode=server paused and resumed while idle",
        &log,
        &media,
    );
}

/// rtmpsink mode=server with nothing to send and no player sleeps in its
/// loop until something happens (no 100 ms tick without a connection):
/// a player that connects then is taken at once and gets every frame of
/// the stream that follows; an element stopped while idle stops at once.
#[test]
fn an_idle_sink_server_takes_its_player_and_stops() {
    init();
    let (server, sent, notes, url) = paused_sink_server(LIVE, "");
    // Long enough for the loop to find itself with no connection.
    let idle = Duration::from_millis(400);
    std::thread::sleep(idle);
    let (p, log, _) = player(&url, "");
    p.set_state(gst::State::Playing).unwrap();
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    server.set_state(gst::State::Playing).unwrap();
    play_to_eos(&server, Duration::from_secs(30));
    play_to_eos(&p, Duration::from_secs(20));
    p.set_state(gst::State::Null).unwrap();
    server.set_state(gst::State::Null).unwrap();
    let sent = sent.lock().unwrap().clone();
    assert!(sent.len() > 200, "{} frames sent", sent.len());
    same_frames(
        "rtmpsink mode=server, idle until its player came",
        &sent,
        &log.lock().unwrap(),
        true,
    );

    // Never a player nor a frame: stopping wakes the sleeping loop.
    let (server, _, _, _) = paused_sink_server(LIVE, "");
    std::thread::sleep(idle);
    let stopped = returns_within(
        "stopping an idle rtmpsink mode=server",
        Duration::from_secs(10),
        move || server.set_state(gst::State::Null),
    );
    assert!(stopped.is_ok(), "{stopped:?}");
}

/// FFmpeg publishes an FLV of `secs` in real time (a frame at a time, in
/// bursts) into rtmpsrc mode=server, whose pads go through parsers, no
/// queue, into one `join` element (on its pads of `templates`, video's and
/// audio's, asked for before any data: a muxer writes its headers once it
/// has something on every pad), into a fakesink. The threads that pushed
/// on each of rtmpsrc's pads, after checking every frame went through.
fn publish_through_a_join(join: &str, templates: [&str; 2], secs: u32) -> PadThreads {
    init();
    let p = gst::Pipeline::new();
    let src = rtmpsrc(
        "rtmp://127.0.0.1:0/live/key",
        "mode=server eos-on-unpublish=true",
    );
    let join = gst::ElementFactory::make(join).build().unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    p.add_many([&src, &join, &sink]).unwrap();
    join.link(&sink).unwrap();
    for (parser, template) in ["h264parse", "aacparse"].into_iter().zip(templates) {
        let parser = gst::ElementFactory::make(parser)
            .name(parser)
            .build()
            .unwrap();
        p.add(&parser).unwrap();
        let joined = join.request_pad_simple(template).unwrap();
        parser.static_pad("src").unwrap().link(&joined).unwrap();
    }
    let log = OutLog::default();
    let threads = pushing_threads(&src);
    let (pw, log2) = (p.downgrade(), log.clone());
    src.connect_pad_added(move |_, pad| {
        let Some(p) = pw.upgrade() else { return };
        let parser = match pad.name().as_str() {
            "video" => "h264parse",
            _ => "aacparse",
        };
        let into = p.by_name(parser).unwrap().static_pad("sink").unwrap();
        pad.link(&into).unwrap();
        record(&into, log2.clone(), Arc::default());
    });
    p.set_state(gst::State::Playing).unwrap();
    let dir = TempDir::new("srv-join");
    let media = make_flv(&dir, "in.flv", secs, Tracks::AudioVideo);
    let url = format!("rtmp://127.0.0.1:{}/live/key", port_of(&src));
    let (ok, err) = ffmpeg_push("ffmpeg", &media, &url, true);
    assert!(ok, "ffmpeg could not publish: {err}");
    play_to_eos(&p, Duration::from_secs(30));
    p.set_state(gst::State::Null).unwrap();
    assert_delivered_file(
        &format!("ffmpeg -re -> rtmpsrc ! parsers ! {}", join.name()),
        &log,
        &media,
    );
    threads
}

/// Each of rtmpsrc's pads was pushed on by one thread, its own.
fn each_pad_by_its_own_thread(threads: &PadThreads) {
    let t = threads.lock().unwrap();
    assert!(
        t["video"].len() == 1 && t["audio"].len() == 1 && t["video"] != t["audio"],
        "each pad's own thread alone: {t:?}"
    );
}

/// A muxer that holds one pad until the other has data (matroskamux, on
/// collect pads) right behind rtmpsrc's pads: rtmpsrc sees that its pads
/// meet there before any would go directly, so each pad's own thread
/// pushes all of its frames (no direct push for the muxer to hold, and
/// none held for the connection's thread to rescue, which takes up to a
/// second), and every frame reaches the muxer as sent.
#[test]
fn pads_that_meet_at_a_collecting_muxer_keep_their_threads() {
    needs!("ffmpeg");
    let threads = publish_through_a_join("matroskamux", ["video_%u", "audio_%u"], 8);
    each_pad_by_its_own_thread(&threads);
}

/// Whether a muxer holds a pad's push long enough for that pad to stay on
/// its queue anyway depends on how the frames come; a funnel never holds
/// one, so each pad earns direct pushes for sure, and only seeing where
/// the pads meet keeps them on their queues. The same as for any element
/// (but an aggregator) that takes two of rtmpsrc's pads: rtmpsrc cannot
/// tell one that holds a pad for another from one that does not.
#[test]
fn pads_that_meet_at_any_element_but_an_aggregator_keep_their_threads() {
    needs!("ffmpeg");
    let threads = publish_through_a_join("funnel", ["sink_%u", "sink_%u"], 4);
    each_pad_by_its_own_thread(&threads);
}

/// Behind an aggregator (flvmux), which with a live source times out
/// rather than hold a pad for another, the pads go directly as usual.
#[test]
fn pads_that_meet_at_an_aggregator_go_directly() {
    needs!("ffmpeg");
    let threads = publish_through_a_join("flvmux", ["video", "audio"], 4);
    let t = threads.lock().unwrap();
    assert_eq!(
        t["video"].intersection(&t["audio"]).count(),
        1,
        "the streaming thread on both: {t:?}"
    );
}

/// Without the pad queues, the streaming thread that runs the server's
/// loop pushes on both pads itself: the same frames, times and flags.
#[test]
fn rtmpsrc_server_without_pad_queues_gives_the_same_frames() {
    let (sent, got, _) = gst_into_server_with(
        &format!(
            "{} rtmpsink name=s sync=false location=URL",
            AV.replace("SINK", "s")
        ),
        "pad-queues=false",
    );
    same_frames(
        "rtmpsink -> rtmpsrc mode=server pad-queues=false",
        &sent,
        &got,
        true,
    );
}

#[test]
fn rtmp2sink_publishes_into_rtmpsrc_server() {
    let desc = AV.replace("SINK", "m")
        + " flvmux name=m streamable=true ! rtmp2sink sync=false location=URL";
    let (sent, got) = gst_into_server(&desc);
    // flvmux rewrites B-frame times (see tests/rtmpsrc.rs): payloads and
    // key flags must match.
    same_frames(
        "flvmux ! rtmp2sink -> rtmpsrc mode=server",
        &sent,
        &got,
        false,
    );
}

#[test]
fn wrong_keys_and_second_publishers_are_refused_without_disturbing_the_stream() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-keys");
    let media = make_flv(&dir, "in.flv", 4, Tracks::AudioVideo);
    let (p, log, _, notes, port) = src_server("eos-on-unpublish=true stream-keys=<\"other\">");
    let url = |k: &str| format!("rtmp://127.0.0.1:{port}/live/{k}");
    // The real publisher, in real time, so the others arrive while it is live.
    let good = {
        let (media, url) = (media.clone(), url("key"));
        std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
    };
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    let (ok, err) = ffmpeg_push("ffmpeg", &media, &url("wrong"), false);
    assert!(!ok, "a wrong key was accepted");
    let (ok, _) = ffmpeg_push("ffmpeg", &media, &url("key"), false);
    assert!(!ok, "a second publisher was accepted");
    // A wrong application is refused at connect.
    let (ok, _) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/other/key"),
        false,
    );
    assert!(!ok, "a wrong application was accepted");
    let (ok, err2) = good.join().unwrap();
    assert!(ok, "the live publisher was disturbed: {err2}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file("the live stream while others were refused", &log, &media);
    let rejected = wait_notice(&notes, "rtmp-client-rejected", 3, Duration::from_secs(2));
    let reasons: Vec<String> = rejected
        .iter()
        .map(|s| s.get::<String>("reason").unwrap())
        .collect();
    assert!(
        reasons[0].contains("unknown stream name or key"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("already being published"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("unknown application"), "{reasons:?}");
    // Keys never appear in the clear.
    for r in &reasons {
        assert!(!r.contains("wrong"), "{r}");
    }
    // FFmpeg names the onStatus it got.
    assert!(
        err.contains("Unauthorized") || err.contains("error"),
        "{err}"
    );
}

#[test]
fn a_second_publisher_takes_over_when_allowed() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-takeover");
    let media = make_flv(&dir, "in.flv", 6, Tracks::AudioVideo);
    let (p, log, _, notes, port) = src_server("publisher-takeover=true publisher-timeout=2");
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let first = {
        let (media, url) = (media.clone(), url.clone());
        std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
    };
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let short = make_flv(&dir, "short.flv", 2, Tracks::AudioVideo);
    let (ok, err) = ffmpeg_push("ffmpeg", &short, &url, false);
    assert!(ok, "the second publisher was refused: {err}");
    let (first_ok, _) = first.join().unwrap();
    assert!(!first_ok, "the first publisher was not cut off");
    play_to_eos(&p, Duration::from_secs(20));
    let gone = wait_notice(
        &notes,
        "rtmp-client-disconnected",
        2,
        Duration::from_secs(5),
    );
    assert!(
        gone.iter().any(|g| g.get::<u64>("id") == Ok(1)
            && g.get::<String>("reason").unwrap().contains("took over")),
        "{gone:?}"
    );
    // The whole of the second stream arrived after part of the first,
    // with a DISCONT where it starts.
    let out = log.lock().unwrap().clone();
    let second = file_frames(&short);
    let mut after = Vec::new();
    for video in [true, false] {
        let kind: Vec<Out> = out.iter().filter(|o| o.video == video).cloned().collect();
        let restart = kind
            .iter()
            .rposition(|o| o.discont)
            .expect("a DISCONT at the takeover");
        assert!(restart > 0, "nothing of the first publisher arrived");
        after.extend_from_slice(&kind[restart..]);
    }
    assert_same_frames("the publisher that took over", &frames(&after), &second);
}

#[test]
fn publisher_reconnect_resumes_with_discont_and_caps() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-reconnect");
    let a = make_flv(&dir, "a.flv", 2, Tracks::AudioVideo);
    let (p, log, caps, notes, port) = src_server("publisher-timeout=2");
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    for round in 1..=2 {
        let (ok, err) = ffmpeg_push("ffmpeg", &a, &url, false);
        assert!(ok, "publish {round}: {err}");
        wait_notice(
            &notes,
            "rtmp-client-disconnected",
            round,
            Duration::from_secs(5),
        );
    }
    // No third publisher within publisher-timeout: EOS.
    play_to_eos(&p, Duration::from_secs(20));
    let out = log.lock().unwrap().clone();
    let want = file_frames(&a);
    let restart = (1..out.len())
        .find(|&i| out[i].discont && out[..i].len() >= want.len())
        .expect("a DISCONT where the second publisher starts");
    assert_same_frames("first publisher", &frames(&out[..restart]), &want);
    assert_same_frames("second publisher", &frames(&out[restart..]), &want);
    // Timestamps went on forward across the restart.
    let last_before = out[..restart].iter().map(|o| o.dts).max().unwrap();
    assert!(out[restart].dts >= last_before);
    // Caps came again with the second publisher's headers.
    let h264 = caps
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.structure(0).unwrap().name() == "video/x-h264")
        .count();
    assert!(h264 >= 2, "video caps sent {h264} times");
}

#[test]
fn accept_publisher_signal_decides_with_app_stream_address_and_query() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-signal");
    let media = make_flv(&dir, "in.flv", 1, Tracks::VideoOnly);
    init();
    let (p, log, _) = player(
        "rtmp://127.0.0.1:0/live",
        "mode=server eos-on-unpublish=true",
    );
    let src = element(&p, "rtmpsrc");
    let seen: Arc<Mutex<Vec<[String; 4]>>> = Arc::default();
    let s2 = seen.clone();
    src.connect("accept-publisher", false, move |args| {
        let a: [String; 4] = std::array::from_fn(|i| args[i + 1].get::<String>().unwrap());
        let ok = a[3] == "token=good";
        s2.lock().unwrap().push(a);
        Some(ok.to_value())
    });
    p.set_state(gst::State::Playing).unwrap();
    let port = port_of(&src);
    let (ok, _) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/anykey?token=bad"),
        false,
    );
    assert!(!ok, "the signal's refusal was ignored");
    let (ok, err) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/anykey?token=good"),
        false,
    );
    assert!(ok, "{err}");
    play_to_eos(&p, Duration::from_secs(20));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0][0], "live");
    assert_eq!(seen[0][1], "anykey");
    assert!(seen[0][2].starts_with("127.0.0.1:"), "{:?}", seen[0]);
    assert_eq!(seen[0][3], "token=bad");
    assert_eq!(
        frames(&log.lock().unwrap()).len(),
        ffprobe_frames(media.to_str().unwrap()).len()
    );
}

#[test]
fn no_publisher_within_the_timeout_is_an_error() {
    let (p, _, _, _, _) = src_server("publisher-timeout=1");
    let (e, _) = expect_error(&p, Duration::from_secs(10));
    assert!(e.contains("No publisher"), "{e}");
}

#[test]
fn listens_on_ipv6() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("srv-ipv6");
    let media = make_flv(&dir, "in.flv", 1, Tracks::AudioVideo);
    let (p, log, _) = player(
        "rtmp://[::1]:0/live/key",
        "mode=server eos-on-unpublish=true",
    );
    p.set_state(gst::State::Playing).unwrap();
    let port = port_of(&element(&p, "rtmpsrc"));
    let (ok, err) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://[::1]:{port}/live/key"),
        false,
    );
    if !ok && err.contains("Address family not supported") {
        eprintln!("skipped: no IPv6 on this machine");
        return;
    }
    assert!(ok, "{err}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file("over IPv6", &log, &media);
}

#[test]
fn bind_failure_is_a_clear_error() {
    init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (p, _, _) = player(&format!("rtmp://127.0.0.1:{port}/live/key"), "mode=server");
    assert!(p.set_state(gst::State::Playing).is_err());
    let (text, _) = expect_error(&p, Duration::from_secs(5));
    assert!(text.contains("already in use"), "{text}");
}

// ---- rtmpsink mode=server: players --------------------------------------

#[test]
fn ffmpeg5_ffmpeg9_rtmp2src_and_rtmpsrc_play_from_rtmpsink_server_at_once() {
    needs!("ffmpeg");
    players_at_once(None);
}

/// The same four over rtmps:// (FFmpeg 9 checks the certificate against
/// the test CA; rtmp2src, which takes no CA, checks nothing).
#[test]
fn ffmpeg5_ffmpeg9_rtmp2src_and_rtmpsrc_play_over_rtmps_from_rtmpsink_server() {
    needs!("ffmpeg", "ffmpeg9");
    players_at_once(Some(&common::pki::Pki::new()));
}

fn players_at_once(tls: Option<&common::pki::Pki>) {
    let dir = TempDir::new("sink-srv-players");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let (scheme, host, server_tls, ca) = match tls {
        None => ("rtmp", "127.0.0.1", String::new(), None),
        Some(pki) => (
            "rtmps",
            "localhost",
            format!(
                "tls-certificate-file={} tls-key-file={}",
                pki.server.cert.display(),
                pki.server.key.display()
            ),
            Some(pki.ca.display().to_string()),
        ),
    };
    let (p, notes, port) = sink_server_at(
        &file_source(&media, Tracks::AudioVideo),
        &format!("{scheme}://127.0.0.1:0/live/key"),
        &format!("sync=false {server_tls}"),
    );
    let url = format!("{scheme}://{host}:{port}/live/key");
    let ff9 = require_ffmpeg9();
    let probe5 = {
        let url = url.clone();
        std::thread::spawn(move || ffprobe_frames(&url))
    };
    let crc9 = {
        let (url, ff9) = (url.clone(), ff9.clone());
        let args: Vec<String> = ca
            .iter()
            .flat_map(|c| ["-ca_file".into(), c.clone()])
            .collect();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            framecrc_with(&ff9, &args, &url)
        })
    };
    let rtmp2_out = dir.path("rtmp2src.flv");
    let rtmp2 = launch(&format!(
        "rtmp2src location={scheme}://127.0.0.1:{port}/live/key {} ! filesink location={}",
        if tls.is_some() {
            "tls-validation-flags=0"
        } else {
            ""
        },
        rtmp2_out.display()
    ));
    rtmp2.set_state(gst::State::Playing).unwrap();
    let ca_setting = ca.map(|c| format!("tls-ca-file={c}")).unwrap_or_default();
    let (ours, ours_log, _) = player(&url, &ca_setting);
    ours.set_state(gst::State::Playing).unwrap();
    wait_notice(&notes, "rtmp-client-connected", 4, Duration::from_secs(15));
    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(30));

    let want = file_frames(&media);
    assert_same_frames(
        &format!("FFmpeg 5.1 (ffprobe) playing {scheme} from rtmpsink mode=server"),
        &normalized(probe5.join().unwrap()),
        &want,
    );
    assert_eq!(
        crc9.join().unwrap(),
        framecrc(&ff9, media.to_str().unwrap()),
        "FFmpeg 9 playing {scheme} from rtmpsink mode=server"
    );
    play_to_eos(&ours, Duration::from_secs(10));
    assert_same_frames(
        &format!("rtmpsrc playing {scheme} from rtmpsink mode=server"),
        &frames(&ours_log.lock().unwrap()),
        &want,
    );
    // rtmp2src ends at StreamEOF.
    play_to_eos(&rtmp2, Duration::from_secs(10));
    let got = file_frames(&rtmp2_out);
    assert_same_frames(
        &format!("rtmp2src playing {scheme} from rtmpsink mode=server"),
        &got,
        &want,
    );
    let gone = wait_notice(
        &notes,
        "rtmp-client-disconnected",
        4,
        Duration::from_secs(5),
    );
    for g in gone {
        assert_eq!(g.get::<u64>("dropped").unwrap(), 0, "{g:?}");
    }
}

#[test]
fn a_late_player_starts_at_the_cached_keyframe_with_headers() {
    needs!("ffmpeg");
    let dir = TempDir::new("sink-srv-late");
    let media = make_flv(&dir, "in.flv", 5, Tracks::AudioVideo);
    let (p, _, port) = sink_server(&file_source(&media, Tracks::AudioVideo), "sync=true");
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let joined = Instant::now();
    let probe = {
        let url = url.clone();
        std::thread::spawn(move || ffprobe_frames(&url))
    };
    let decode = {
        let url = url.clone();
        std::thread::spawn(move || {
            Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-rw_timeout",
                    "20000000",
                ])
                .args(["-i", &url, "-f", "null", "-"])
                .output()
                .unwrap()
        })
    };
    play_to_eos(&p, Duration::from_secs(30));
    let got = probe.join().unwrap();
    let out = decode.join().unwrap();
    assert!(out.status.success());
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        errors.trim().is_empty(),
        "decoding from the cached GOP: {errors}"
    );
    let file = ffprobe_frames(media.to_str().unwrap());
    let (gv, ga) = split(&got);
    let (fv, fa) = split(&file);
    // The first video frame is a keyframe from before the join (the GOP
    // cache, 1 s GOPs), and from there on nothing is missing.
    assert!(gv[0].key, "first frame {:?}", gv[0]);
    let start = fv
        .iter()
        .position(|f| f == &gv[0])
        .expect("a frame of the file");
    assert!(start > 0, "the late player got the stream from its start");
    assert_eq!(
        gv,
        fv[start..].to_vec(),
        "video from the cached keyframe on"
    );
    let astart = fa
        .iter()
        .position(|f| f == &ga[0])
        .expect("an audio frame of the file");
    assert_eq!(ga, fa[astart..].to_vec(), "audio from the start point on");
    let _ = joined;
}

/// A live stream served by rtmpsink mode=server is live to its players:
/// no StreamIsRecorded (nginx-rtmp's live application sends none either),
/// so rtmpsrc playing it answers not seekable and no duration, and a seek
/// fails at once (with StreamIsRecorded, rtmpsrc took the stream for a
/// recorded one: seekable, and a seek sent to a server that has no answer
/// for it dropped 5 s of frames).
#[test]
fn a_live_stream_from_rtmpsink_server_cannot_be_sought() {
    let live = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video audiotestsrc is-live=true ! avenc_aac ! aacparse ! s.audio";
    let (p, _, port) = sink_server(live, "");
    p.set_state(gst::State::Playing).unwrap();
    let (player, log, _) = seek_player(&format!("rtmp://127.0.0.1:{port}/live/key"), "");
    player.set_state(gst::State::Playing).unwrap();
    assert!(
        video_came(&log, 10, Duration::from_secs(10)),
        "no video from rtmpsink"
    );
    let mut q = gst::query::Seeking::new(gst::Format::Time);
    assert!(player.query(&mut q));
    assert!(!q.result().0, "a live stream said seekable");
    assert_eq!(player.query_duration::<gst::ClockTime>(), None);
    assert!(
        player
            .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_seconds(1))
            .is_err(),
        "a live stream was sought"
    );
    let n = log.lock().unwrap().iter().filter(|f| f.video).count();
    assert!(
        video_came(&log, n + 10, Duration::from_secs(2)),
        "the stream stopped after the seek"
    );
    player.set_state(gst::State::Null).unwrap();
    p.set_state(gst::State::Null).unwrap();
}

/// A player made of our core that plays and then never reads.
fn stalled_player(port: u16) -> gstrtmp::net::blocking::BlockingClient {
    use gstrtmp::rtmp::session::{ClientConfig, ClientMode};
    let url =
        gstrtmp::rtmp::url::RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/key")).unwrap();
    gstrtmp::net::blocking::BlockingClient::open(&url, ClientConfig::new(ClientMode::Play, &url))
        .expect("play")
}

#[test]
fn a_player_that_stops_reading_never_slows_the_pipeline_or_the_others() {
    init();
    // 4 Mbit/s live for 6 s: the stalled player's socket fills at once.
    let desc = "videotestsrc is-live=true pattern=snow num-buffers=180 ! video/x-raw,width=640,height=360,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=4000 key-int-max=30 ! h264parse ! s.video audiotestsrc is-live=true num-buffers=260 ! avenc_aac ! aacparse ! s.audio";
    let (p, notes, port) = sink_server(desc, "max-clients=3 client-queue-time=1000 timeout=3");
    let sent = probe_parsers(&p);
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let (good, good_log, _) = player(&url, "");
    good.set_state(gst::State::Playing).unwrap();
    let stalled = stalled_player(port);
    wait_notice(&notes, "rtmp-client-connected", 2, Duration::from_secs(10));
    // A third connection that says nothing, and a fourth over the limit.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(2)),
        "over max-clients"
    );
    let started = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    let s = p.by_name("s").unwrap();
    let limit = 16u64 << 20;
    let mut max_queued = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let st: gst::Structure = s.property("stats");
        if let Ok(clients) = st.get::<gst::Array>("clients") {
            for c in clients.iter() {
                let c = c.get::<gst::Structure>().unwrap();
                max_queued = max_queued.max(c.get::<u64>("queued-bytes").unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    play_to_eos(&p, Duration::from_secs(30));
    // In real time: the stalled player held nothing up (at EOS a player
    // that is still behind gets at most `timeout`, 3 s, to drain).
    assert!(
        started.elapsed() < Duration::from_millis(10_500),
        "{:?}",
        started.elapsed()
    );
    assert!(max_queued <= limit, "a queue held {max_queued} bytes");
    play_to_eos(&good, Duration::from_secs(10));
    let got = good_log.lock().unwrap().clone();
    same_frames(
        "the player that kept up, beside one that stalled",
        &sent.lock().unwrap(),
        &got,
        true,
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(1)),
        "silent connection"
    );
    let gone = wait_notice(
        &notes,
        "rtmp-client-disconnected",
        2,
        Duration::from_secs(5),
    );
    let stalled_note = gone
        .iter()
        .find(|g| {
            g.get::<u64>("dropped").unwrap() > 0
                || g.get::<String>("reason").unwrap().contains("read nothing")
        })
        .unwrap_or_else(|| panic!("the stalled player was never cut off: {gone:?}"));
    let reason = stalled_note.get::<String>("reason").unwrap();
    assert!(
        reason.contains("cannot keep up") || reason.contains("read nothing"),
        "{reason}"
    );
    let rejected = wait_notice(&notes, "rtmp-client-rejected", 1, Duration::from_secs(1));
    assert!(
        rejected
            .iter()
            .any(|r| r.get::<String>("reason").unwrap().contains("max-clients")),
        "{rejected:?}"
    );
    drop(stalled);
}

#[test]
fn accept_player_signal_and_unknown_streams() {
    needs!("ffmpeg");
    let dir = TempDir::new("sink-srv-signal");
    let media = make_flv(&dir, "in.flv", 1, Tracks::VideoOnly);
    let (p, notes, port) = sink_server(&file_source(&media, Tracks::VideoOnly), "sync=false");
    p.by_name("s")
        .unwrap()
        .connect("accept-player", false, |args| {
            Some((args[4].get::<String>().unwrap() != "token=bad").to_value())
        });
    let base = format!("rtmp://127.0.0.1:{port}/live");
    for (stream, why) in [
        ("other", "unknown stream"),
        ("key?token=bad", "refused by the application"),
    ] {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "5000000",
                &format!("{base}/{stream}"),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{stream} was played");
        let r = wait_notice(&notes, "rtmp-client-rejected", 1, Duration::from_secs(2));
        assert!(
            r.iter()
                .any(|r| r.get::<String>("reason").unwrap().contains(why)),
            "{r:?}"
        );
        notes.lock().unwrap().clear();
    }
    p.set_state(gst::State::Null).unwrap();
}

/// Each server takes one role: a publisher at rtmpsink mode=server (which
/// serves players) is refused its stream with NetStream.Publish.Denied, a
/// player at rtmpsrc mode=server (which takes a publisher) with
/// NetStream.Play.Failed. The peer is told why (FFmpeg prints it), and
/// the element's rtmp-client-rejected notice says the same.
#[test]
fn each_server_refuses_the_other_role() {
    needs!("ffmpeg");
    let dir = TempDir::new("srv-roles");
    let media = make_flv(&dir, "in.flv", 1, Tracks::VideoOnly);
    let (sink, notes, port) = sink_server(&file_source(&media, Tracks::VideoOnly), "sync=false");
    let (ok, err) = ffmpeg_push(
        "ffmpeg",
        &media,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(!ok, "a publisher was taken by rtmpsink mode=server");
    assert!(
        err.contains("this server only serves players"),
        "FFmpeg said: {err}"
    );
    let r = wait_notice(&notes, "rtmp-client-rejected", 1, Duration::from_secs(2));
    let reason = r[0].get::<String>("reason").unwrap();
    assert_eq!(reason, "publisher refused: this server only serves players");
    sink.set_state(gst::State::Null).unwrap();

    let (src, _, _, notes, port) = src_server("");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "5000000"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a player was served by rtmpsrc mode=server"
    );
    assert!(
        err.contains("this server only takes a publisher"),
        "FFprobe said: {err}"
    );
    let r = wait_notice(&notes, "rtmp-client-rejected", 1, Duration::from_secs(2));
    let reason = r[0].get::<String>("reason").unwrap();
    assert_eq!(reason, "player refused: this server only takes a publisher");
    src.set_state(gst::State::Null).unwrap();
}

// ---- hostile peers ------------------------------------------------------

#[test]
fn hostile_peers_are_cut_off_and_the_publisher_is_not_disturbed() {
    needs!("ffmpeg");
    use std::io::Write;
    let dir = TempDir::new("srv-hostile");
    let media = make_flv(&dir, "in.flv", 4, Tracks::AudioVideo);
    let (p, log, _, notes, port) = src_server("eos-on-unpublish=true timeout=2");
    let good = {
        let (media, url) = (media.clone(), format!("rtmp://127.0.0.1:{port}/live/key"));
        std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
    };
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    let limit = Duration::from_secs(4);

    // Not RTMP at all.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_within(&mut s, limit), "an HTTP request");

    // Garbage after a good handshake.
    let mut s = handshaken(port);
    s.write_all(&[0xC3; 4096]).unwrap();
    s.write_all(&(0..8192u32).map(|i| (i * 7919) as u8).collect::<Vec<_>>())
        .unwrap();
    assert!(closed_within(&mut s, limit), "garbage chunks");

    // Connects and says nothing: the handshake timeout.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_within(&mut s, limit), "a silent connection");

    // Handshakes, then never connects.
    let mut s = handshaken(port);
    assert!(
        closed_within(&mut s, limit),
        "no connect after the handshake"
    );

    // The largest chunk size, then a 16 MiB command.
    let mut s = handshaken(port);
    let mut m = chunk_header(2, 4, 1);
    m.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    m.extend(chunk_header(3, 0xFF_FFFF, 20));
    m.extend_from_slice(&[0u8; 1000]);
    s.write_all(&m).unwrap();
    assert!(closed_within(&mut s, limit), "a 16 MiB command");

    // Endless chunk streams, each with a message begun and never ended.
    let mut s = handshaken(port);
    let mut m = Vec::new();
    for csid in 3..300 {
        m.extend(chunk_header(csid, 100_000, 9));
        m.extend_from_slice(&[0u8; 64]);
    }
    let _ = s.write_all(&m);
    assert!(closed_within(&mut s, limit), "endless chunk streams");

    let (ok, err) = good.join().unwrap();
    assert!(ok, "the publisher was disturbed: {err}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file("the publisher beside hostile peers", &log, &media);
}

/// What one server got, as indexes into what was sent (matched by CRC, in
/// order); panics on a frame that was never sent.
fn positions(sent: &[Out], got: &[Out], video: bool) -> Vec<usize> {
    let s: Vec<&Out> = sent.iter().filter(|o| o.video == video).collect();
    let mut from = 0;
    got.iter()
        .filter(|o| o.video == video)
        .map(|g| {
            let i = from
                + s[from..]
                    .iter()
                    .position(|o| o.crc == g.crc)
                    .expect("a frame that was sent");
            from = i + 1;
            i
        })
        .collect()
}

#[test]
fn rtmpsink_moves_to_the_server_a_reconnect_request_names_at_a_keyframe() {
    moves_at_a_keyframe(None);
}

/// The same between two rtmps:// servers: the request names an rtmps
/// tcUrl, the new connection is a new TLS session checked as the first.
#[test]
fn a_reconnect_request_naming_an_rtmps_tc_url_is_followed() {
    moves_at_a_keyframe(Some(&common::pki::Pki::new()));
}

fn moves_at_a_keyframe(tls: Option<&common::pki::Pki>) {
    let (scheme, host, server_tls, client_tls) = match tls {
        None => ("rtmp", "127.0.0.1", String::new(), String::new()),
        Some(pki) => (
            "rtmps",
            "localhost",
            format!(
                "tls-certificate-file={} tls-key-file={}",
                pki.server.cert.display(),
                pki.server.key.display()
            ),
            format!("tls-ca-file={}", pki.ca.display()),
        ),
    };
    let listen = format!("{scheme}://127.0.0.1:0/live/key");
    let (a, a_got, _, _, a_port) =
        src_server_at(&listen, &format!("eos-on-unpublish=true {server_tls}"));
    let (b, b_got, _, _, b_port) =
        src_server_at(&listen, &format!("eos-on-unpublish=true {server_tls}"));
    let p = launch(&format!(
        "videotestsrc is-live=true num-buffers=240 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video \
         audiotestsrc is-live=true num-buffers=340 ! avenc_aac ! aacparse ! s.audio \
         rtmpsink name=s location={scheme}://{host}:{a_port}/live/key {client_tls}"
    ));
    let sent = probe_parsers(&p);
    let states = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let asked: u32 = element(&a, "rtmpsrc").emit_by_name(
        "request-reconnect",
        &[
            &Some(format!("{scheme}://{host}:{b_port}/live")),
            &"going down for maintenance",
        ],
    );
    assert_eq!(asked, 1, "one publisher asked");
    play_to_eos(&p, Duration::from_secs(30));
    play_to_eos(&a, Duration::from_secs(10));
    play_to_eos(&b, Duration::from_secs(10));

    let log = state_names(&states);
    assert_eq!(log, ["reconnecting", "connected"], "{log:?}");
    let reason = states.lock().unwrap()[0].1.get::<String>("reason").unwrap();
    assert!(
        reason.contains(&format!(":{b_port}/live")) && reason.contains("maintenance"),
        "{reason}"
    );
    let sent = sent.lock().unwrap().clone();
    let (a_got, b_got) = (a_got.lock().unwrap().clone(), b_got.lock().unwrap().clone());
    for video in [true, false] {
        let (pa, pb) = (
            positions(&sent, &a_got, video),
            positions(&sent, &b_got, video),
        );
        assert!(
            !pa.is_empty() && !pb.is_empty(),
            "video={video}: {pa:?} {pb:?}"
        );
        // One stream, cut in two: everything once, in order, nothing lost.
        let all: Vec<usize> = pa.iter().chain(&pb).copied().collect();
        let n = sent.iter().filter(|o| o.video == video).count();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "video={video}");
        // The new server's stream keeps the sender's spacing of time.
        let s: Vec<&Out> = sent.iter().filter(|o| o.video == video).collect();
        let g: Vec<&Out> = b_got.iter().filter(|o| o.video == video).collect();
        for (k, o) in g.iter().enumerate() {
            let want = (s[pb[k]].dts - s[pb[0]].dts) / 1_000_000;
            let got = (o.dts - g[0].dts) / 1_000_000;
            assert!(
                (want - got).abs() <= 1,
                "video={video} frame {k}: {got} ms, sent {want} ms"
            );
        }
    }
    let first_b = b_got.iter().find(|o| o.video).unwrap();
    assert!(first_b.key, "the new server's stream starts on a keyframe");
    let stats: gst::Structure = p.by_name("s").unwrap().property("stats");
    assert_eq!(stats.get::<u64>("reconnects").unwrap(), 1, "{stats}");
}

#[test]
fn a_reconnect_request_to_a_dead_server_leaves_the_stream_where_it_was() {
    let (a, a_got, _, _, a_port) = src_server("eos-on-unpublish=true");
    let p = launch(&format!(
        "videotestsrc is-live=true num-buffers=120 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video \
         rtmpsink name=s timeout=2 location=rtmp://127.0.0.1:{a_port}/live/key"
    ));
    let sent = probe_parsers(&p);
    let states = connection_states(&p);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let nobody = free_port();
    let _: u32 = element(&a, "rtmpsrc").emit_by_name(
        "request-reconnect",
        &[&Some(format!("//127.0.0.1:{nobody}/live")), &None::<String>],
    );
    play_to_eos(&p, Duration::from_secs(30));
    play_to_eos(&a, Duration::from_secs(10));
    assert_eq!(state_names(&states), ["reconnecting", "connected"]);
    let sent = sent.lock().unwrap().clone();
    let got = a_got.lock().unwrap().clone();
    same_frames("stayed on the first server", &sent, &got, false);
}

/// A gate a probe waits at until another opens it.
#[derive(Default)]
struct Gate(Mutex<bool>, std::sync::Condvar);

impl Gate {
    fn open(&self) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.lock().unwrap();
        while !*open {
            open = self.1.wait(open).unwrap();
        }
    }
}

fn latency_ms(stats: &gst::Structure, field: &str) -> f64 {
    stats
        .get::<u64>(field)
        .unwrap_or_else(|_| panic!("{field} in {stats}")) as f64
        / 1e6
}

/// With `measure-latency`, the latency figures in stats time what they
/// say: rtmpsink from a frame entering its pad to the socket (a video frame
/// held for audio counts the wait), rtmpsrc from the socket to its pad (a
/// frame queued behind a blocked downstream counts the wait); and the
/// arrival stamps they carry inside never reach the user's buffers.
/// Without it (the default) there are no such figures.
#[test]
fn stats_time_frames_inside_rtmpsink_and_rtmpsrc() {
    const HOLD: Duration = Duration::from_millis(400);
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true measure-latency=true");
    let src = element(&p, "rtmpsrc");
    let zero: gst::Structure = src.property("stats");
    assert_eq!(latency_ms(&zero, "video-latency-p99"), 0.0, "{zero}");

    // rtmpsrc: the first video frame out waits until ten more were read,
    // then HOLD longer; those ten wait in the element meanwhile.
    let offsets: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (weak, offs) = (src.downgrade(), offsets.clone());
    src.connect_pad_added(move |_, pad| {
        let (weak, offs) = (weak.clone(), offs.clone());
        let video = pad.name() == "video";
        let first = std::sync::atomic::AtomicBool::new(video);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            offs.lock().unwrap().push(info.buffer().unwrap().offset());
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let Some(src) = weak.upgrade() else {
                    return gst::PadProbeReturn::Ok;
                };
                let end = Instant::now() + Duration::from_secs(20);
                while Instant::now() < end {
                    let s: gst::Structure = src.property("stats");
                    if s.get::<u64>("video-messages").unwrap() >= 12 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(HOLD);
            }
            gst::PadProbeReturn::Ok
        });
    });

    // rtmpsink: audio enters HOLD after the first video frame, which
    // cannot leave before it (the muxer interleaves by DTS).
    let desc = AV
        .replace("SINK", "s")
        .replace("num-buffers=60", "num-buffers=90")
        + &format!(
            " rtmpsink name=s sync=false measure-latency=true location=rtmp://127.0.0.1:{port}/live/key"
        );
    let publisher = launch(&desc);
    let sink = publisher.by_name("s").unwrap();
    let video_in = Arc::new(Gate::default());
    let gate = video_in.clone();
    sink.static_pad("video")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            gate.open();
            gst::PadProbeReturn::Ok
        });
    let first = std::sync::atomic::AtomicBool::new(true);
    sink.static_pad("audio")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                video_in.wait();
                std::thread::sleep(HOLD);
            }
            gst::PadProbeReturn::Ok
        });
    publisher.set_state(gst::State::Playing).unwrap();
    play_to_eos(&publisher, Duration::from_secs(60));
    let sink_stats: gst::Structure = sink.property("stats");
    publisher.set_state(gst::State::Null).unwrap();
    play_to_eos(&p, Duration::from_secs(30));
    let src_stats: gst::Structure = src.property("stats");
    p.set_state(gst::State::Null).unwrap();

    let got = log.lock().unwrap().clone();
    assert_eq!(got.iter().filter(|o| o.video).count(), 90);
    let hold = HOLD.as_secs_f64() * 1000.0;
    // Nearest rank: with 90 video frames, p99 is the slowest.
    let sink_v99 = latency_ms(&sink_stats, "video-latency-p99");
    assert!(sink_v99 >= hold * 0.95, "{sink_stats}");
    let src_v99 = latency_ms(&src_stats, "video-latency-p99");
    assert!(src_v99 >= hold * 0.95, "{src_stats}");
    assert_latency_figures(&sink_stats, "rtmpsink");
    assert_latency_figures(&src_stats, "rtmpsrc");
    // The stamps stay inside: every buffer out has no offset.
    let offsets = offsets.lock().unwrap();
    assert_eq!(offsets.len(), got.len());
    assert!(offsets.iter().all(|o| *o == u64::MAX), "{offsets:?}");
}

/// The same figures where no pad queue is between the socket and the pad:
/// rtmpsrc's streaming thread pushing itself (`pad-queues=false`), and a
/// context's thread pushing for it. Each frame is timed and its stamp
/// stays inside.
#[test]
fn stats_time_frames_pushed_without_pad_queues() {
    for extra in ["pad-queues=false", "pad-queues=false context=stats-test"] {
        let (p, log, _, _, port) = src_server(&format!(
            "eos-on-unpublish=true measure-latency=true {extra}"
        ));
        let src = element(&p, "rtmpsrc");
        let offsets: Arc<Mutex<Vec<u64>>> = Arc::default();
        let offs = offsets.clone();
        src.connect_pad_added(move |_, pad| {
            let offs = offs.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                offs.lock().unwrap().push(info.buffer().unwrap().offset());
                gst::PadProbeReturn::Ok
            });
        });
        let desc = AV.replace("SINK", "s")
            + &format!(" rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/key");
        let publisher = launch(&desc);
        publisher.set_state(gst::State::Playing).unwrap();
        play_to_eos(&publisher, Duration::from_secs(60));
        publisher.set_state(gst::State::Null).unwrap();
        play_to_eos(&p, Duration::from_secs(30));
        let stats: gst::Structure = src.property("stats");
        p.set_state(gst::State::Null).unwrap();

        let got = log.lock().unwrap().clone();
        assert_eq!(got.iter().filter(|o| o.video).count(), 60, "{extra}");
        assert_latency_figures(&stats, extra);
        let offsets = offsets.lock().unwrap();
        assert_eq!(offsets.len(), got.len(), "{extra}");
        assert!(
            offsets.iter().all(|o| *o == u64::MAX),
            "{extra}: {offsets:?}"
        );
    }
}

/// A pipeline that stops taking frames makes the server stop reading the
/// publisher once 32 MiB wait for it (TCP then holds the publisher back),
/// and read on when the pipeline takes them again: nothing lost, nothing
/// stuck, memory bounded.
#[test]
fn a_blocked_pipeline_holds_the_publisher_back_then_reads_on() {
    const BLOCK: Duration = Duration::from_secs(3);
    let dir = TempDir::new("srv-paused");
    let media = make_flv(&dir, "in.flv", 1, Tracks::VideoOnly);
    let header = read_flv_tags(&media)
        .into_iter()
        .find(|t| t.tag_type == gstrtmp::rtmp::flv::tag_type::VIDEO)
        .expect("a sequence header first");
    // 80 frames of 1 MiB, 100 ms apart: more than the pads' queues (2 s)
    // and the server's 32 MiB hold together.
    let mut tags = vec![header];
    for i in 0..80u32 {
        let mut body = vec![if i == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend((0..1u32 << 20).map(|b| (b.wrapping_mul(i + 7) >> 3) as u8));
        tags.push(gstrtmp::rtmp::flv::FlvTag {
            tag_type: gstrtmp::rtmp::flv::tag_type::VIDEO,
            timestamp: i * 100,
            data: body.into(),
        });
    }
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true");
    let src = element(&p, "rtmpsrc");
    src.connect_pad_added(|_, pad| {
        let first = std::sync::atomic::AtomicBool::new(true);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(BLOCK);
            }
            gst::PadProbeReturn::Ok
        });
    });
    let t0 = Instant::now();
    publish_tags(&format!("rtmp://127.0.0.1:{port}/live/key"), &tags).unwrap();
    let took = t0.elapsed();
    play_to_eos(&p, Duration::from_secs(30));
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 80);
    for (i, (o, t)) in got.iter().zip(&tags[1..]).enumerate() {
        assert_eq!(
            (o.size, o.crc),
            (t.data.len() - 5, crc32(&t.data[5..])),
            "frame {i}"
        );
    }
    // The publisher could not finish before the pipeline took frames
    // again: it was held back, not buffered without bound.
    assert!(
        took >= BLOCK - Duration::from_millis(500),
        "published in {took:?}"
    );
}

/// rtmpsrc's streaming thread runs the server's loop while it waits for a
/// message. While the pipeline holds that thread (here in a pad probe,
/// without pad queues), the server's own thread takes the loop over: a
/// second publisher is refused while the thread is still held, not left
/// waiting until the pipeline comes back; and the first publisher's
/// frames all arrive after.
#[test]
fn while_the_pipeline_holds_its_thread_the_server_still_answers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    needs!("ffmpeg");
    let dir = TempDir::new("srv-away");
    let media = make_flv(&dir, "in.flv", 4, Tracks::VideoOnly);
    let tags = read_flv_tags(&media);
    let frames = tags
        .iter()
        .filter(|t| t.tag_type == gstrtmp::rtmp::flv::tag_type::VIDEO && t.data.get(1) == Some(&1))
        .count();
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true pad-queues=false");
    let held = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let h = held.clone();
    element(&p, "rtmpsrc").connect_pad_added(move |_, pad| {
        let (h, tx) = (h.clone(), tx.lock().unwrap().clone());
        let first = AtomicBool::new(true);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if first.swap(false, Ordering::SeqCst) {
                h.store(true, Ordering::SeqCst);
                tx.send(()).ok();
                std::thread::sleep(Duration::from_secs(3));
                h.store(false, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
    });
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    // In real time: live all through the pipeline's hold.
    let first = {
        let (media, url) = (media.clone(), url.clone());
        std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
    };
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a first frame reached the pad");
    let second = publish_tags(&url, &tags[..1]);
    let still_held = held.load(Ordering::SeqCst);
    let err = second.expect_err("a second publisher was accepted");
    assert!(err.to_string().contains("BadName"), "{err}");
    assert!(still_held, "the refusal waited for the pipeline");
    let (ok, why) = first.join().unwrap();
    assert!(ok, "the first publisher: {why}");
    play_to_eos(&p, Duration::from_secs(30));
    assert_eq!(log.lock().unwrap().len(), frames);
}

/// The threads that pushed buffers on each of `src`'s pads, by pad name:
/// a thread's name where Rust knows it (a context's), else its id (the
/// GStreamer task threads).
type PadThreads = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

/// Records `PadThreads` for `src` from now on.
fn pushing_threads(src: &gst::Element) -> PadThreads {
    let names = PadThreads::default();
    let n = names.clone();
    src.connect_pad_added(move |_, pad| {
        let (n, pad_name) = (n.clone(), pad.name().to_string());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let me = std::thread::current();
            let me = me
                .name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{:?}", me.id()));
            n.lock()
                .unwrap()
                .entry(pad_name.clone())
                .or_default()
                .insert(me);
            gst::PadProbeReturn::Ok
        });
    });
    names
}

/// The threads that pushed on any of the pads.
fn on_any_pad(threads: &PadThreads) -> BTreeSet<String> {
    threads
        .lock()
        .unwrap()
        .values()
        .flatten()
        .cloned()
        .collect()
}

/// Two rtmpsrc mode=server in one context, throttled: one shared thread
/// reads both publishers and pushes both streams (the names of the threads
/// that pushed say so: the context's without pad queues; with them, the
/// queues' own for the first frames, then the context's, directly, once
/// downstream showed it takes them at once), and each gives its own
/// publisher's frames, times and flags, and ends on its own.
#[test]
fn two_servers_in_one_context_each_give_their_own_frames() {
    let extra = "eos-on-unpublish=true context=two context-wait=10";
    let servers: Vec<_> = ["pad-queues=false", "pad-queues=true"]
        .iter()
        .map(|q| src_server(&format!("{extra} {q}")))
        .collect();
    let threads: Vec<_> = servers
        .iter()
        .map(|s| pushing_threads(&element(&s.0, "rtmpsrc")))
        .collect();
    let publishers: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Different pictures: a mix-up would not pass for the same frames.
            let av = AV.replace("videotestsrc", &format!("videotestsrc pattern={}", i * 18));
            let desc = format!(
                "{} rtmpsink name=s sync=false location=rtmp://127.0.0.1:{}/live/key",
                av.replace("SINK", "s"),
                s.4
            );
            std::thread::spawn(move || publish_to_eos(&desc))
        })
        .collect();
    let sent: Vec<_> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (s, sent)) in servers.iter().zip(&sent).enumerate() {
        play_to_eos(&s.0, Duration::from_secs(20));
        same_frames(
            &format!("publisher {i} -> rtmpsrc in a context"),
            sent,
            &s.1.lock().unwrap(),
            true,
        );
    }
    let without_queues = on_any_pad(&threads[0]);
    assert_eq!(
        without_queues.iter().collect::<Vec<_>>(),
        ["rtmp-ctx-two"],
        "threads that pushed without pad queues"
    );
    let with_queues = on_any_pad(&threads[1]);
    assert!(
        with_queues.len() > 1 && with_queues.contains("rtmp-ctx-two"),
        "threads that pushed with pad queues: {with_queues:?}"
    );
}

/// The same with FFmpeg publishing both in real time (a frame at a time)
/// and the pad queues on, as a user would set a context up: every frame of
/// each file comes out of its own rtmpsrc, and the context's thread
/// pushes too (directly, once downstream showed it keeps up).
#[test]
fn ffmpeg_publishes_into_two_servers_of_a_context_with_pad_queues() {
    needs!("ffmpeg");
    let extra = "eos-on-unpublish=true context=ffmpeg-two context-wait=20";
    let servers: Vec<_> = (0..2).map(|_| src_server(extra)).collect();
    let threads: Vec<_> = servers
        .iter()
        .map(|s| pushing_threads(&element(&s.0, "rtmpsrc")))
        .collect();
    let dir = TempDir::new("srv-ctx-ffmpeg");
    let media = make_flv(&dir, "in.flv", 4, Tracks::AudioVideo);
    let want = file_frames(&media);
    let publishers: Vec<_> = servers
        .iter()
        .map(|s| {
            let (media, url) = (media.clone(), format!("rtmp://127.0.0.1:{}/live/key", s.4));
            std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
        })
        .collect();
    for h in publishers {
        let (ok, err) = h.join().unwrap();
        assert!(ok, "ffmpeg could not publish: {err}");
    }
    for (i, s) in servers.iter().enumerate() {
        play_to_eos(&s.0, Duration::from_secs(20));
        s.0.set_state(gst::State::Null).unwrap();
        assert_same_frames(
            &format!("ffmpeg -re -> rtmpsrc {i} in a context with pad queues"),
            &frames(&s.1.lock().unwrap()),
            &want,
        );
    }
    for (i, t) in threads.iter().enumerate() {
        let pushed = on_any_pad(t);
        assert!(
            pushed.contains("rtmp-ctx-ffmpeg-two"),
            "threads that pushed on rtmpsrc {i}'s pads: {pushed:?}"
        );
    }
}

/// In a context, the deadlines still hold: no publisher within
/// publisher-timeout is an error that says so.
#[test]
fn in_a_context_publisher_timeout_is_an_error() {
    let (p, _, _, _, _) = src_server("context=lonely context-wait=20 publisher-timeout=1");
    let start = Instant::now();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error]);
    p.set_state(gst::State::Null).unwrap();
    let msg = msg.expect("an error within 10 s");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert!(
        e.error()
            .to_string()
            .contains("No publisher came within 1 s"),
        "{}",
        e.error()
    );
    assert!(start.elapsed() >= Duration::from_secs(1), "too early");
}

/// A pipeline paused and resumed while a live publisher sends: in a
/// context the element leaves the shared thread while paused (the server's
/// thread keeps the publisher's data) and comes back; every frame arrives.
#[test]
fn in_a_context_pausing_loses_nothing() {
    needs!("ffmpeg");
    let dir = TempDir::new("ctx-pause");
    let media = make_flv(&dir, "in.flv", 4, Tracks::AudioVideo);
    let (p, log, _, _, port) =
        src_server("eos-on-unpublish=true pad-queues=false context=pausing context-wait=5");
    let threads = pushing_threads(&element(&p, "rtmpsrc"));
    let publisher = {
        let (media, url) = (media.clone(), format!("rtmp://127.0.0.1:{port}/live/key"));
        std::thread::spawn(move || ffmpeg_push("ffmpeg", &media, &url, true))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no frame came");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.set_state(gst::State::Paused).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let while_paused = log.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        log.lock().unwrap().len() <= while_paused + 2,
        "frames went on while paused"
    );
    p.set_state(gst::State::Playing).unwrap();
    let (ok, why) = publisher.join().unwrap();
    assert!(ok, "the publisher: {why}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file("rtmpsrc in a context, paused and resumed", &log, &media);
    let t = on_any_pad(&threads);
    assert_eq!(t.iter().collect::<Vec<_>>(), ["rtmp-ctx-pausing"]);
}

/// A pad whose downstream holds its frames lets its queue fill until the
/// streaming thread waits for room: pausing then neither hangs (that wait
/// gives way to the pause) nor loses a frame once the pad moves again.
/// (Sinks with async=false: with prerolling ones, a held pad keeps the
/// pipeline from PLAYING and a pause would change nothing upstream.)
#[test]
fn pausing_with_a_full_pad_queue_neither_hangs_nor_loses_a_frame() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("full-pause");
    let media = make_flv(&dir, "in.flv", 6, Tracks::AudioVideo);
    let p = launch(
        "rtmpsrc name=src mode=server eos-on-unpublish=true location=rtmp://127.0.0.1:0/live/key \
         src.video ! fakesink sync=false async=false src.audio ! fakesink sync=false async=false",
    );
    let log = OutLog::default();
    // Holds whatever reaches rtmpsrc's video pad until removed.
    let held: Arc<Mutex<Option<(gst::Pad, gst::PadProbeId)>>> = Arc::default();
    let (h, l) = (held.clone(), log.clone());
    element(&p, "rtmpsrc").connect_pad_added(move |_, pad| {
        // After the launch line's own handler linked it.
        if let Some(sink) = pad.peer() {
            record(&sink, l.clone(), Arc::default());
        }
        if pad.name() == "video" {
            let id = pad
                .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
                    gst::PadProbeReturn::Ok
                })
                .expect("a probe");
            *h.lock().unwrap() = Some((pad.clone(), id));
        }
    });
    p.set_state(gst::State::Playing).unwrap();
    let url = format!(
        "rtmp://127.0.0.1:{}/live/key",
        port_of(&element(&p, "rtmpsrc"))
    );
    let (ok, why) = ffmpeg_push("ffmpeg", &media, &url, false);
    assert!(ok, "the publisher: {why}");
    // The reader stops once the video queue is full: audio stops too.
    let audio = || log.lock().unwrap().iter().filter(|o| !o.video).count();
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    while audio() != last {
        assert!(Instant::now() < deadline, "audio never settled");
        last = audio();
        std::thread::sleep(Duration::from_millis(500));
    }
    let want = file_frames(&media);
    let want_audio = want.iter().filter(|f| !f.video).count();
    assert!(
        last > 0 && last < want_audio,
        "{last} of {want_audio} audio frames came while video was held: the queue never filled"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let pipeline = p.clone();
    std::thread::spawn(move || {
        tx.send(pipeline.set_state(gst::State::Paused)).ok();
    });
    let paused = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        matches!(paused, Ok(Ok(_))),
        "PAUSED did not come (or failed) with a pad's queue full: {paused:?}"
    );
    let (pad, id) = held.lock().unwrap().take().expect("a video pad");
    pad.remove_probe(id);
    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    assert_same_frames(
        "rtmpsrc paused with a full pad queue",
        &frames(&log.lock().unwrap()),
        &want,
    );
}

/// FFmpeg ends a publish with FCUnpublish, then deleteStream, in several
/// writes. An ingest pipeline that stops at the EOS the first one brought
/// must not answer the rest with a reset (FFmpeg then says "Broken pipe"):
/// the publisher's last writes are taken, every frame came out, and the
/// connection ends with a FIN.
#[test]
fn a_pipeline_stopped_at_unpublish_lets_the_publisher_finish_its_writes() {
    use gstrtmp::net::blocking::BlockingClient;
    use gstrtmp::rtmp::session::{ClientConfig, ClientMode};
    use gstrtmp::rtmp::url::RtmpUrl;
    use std::io::{Read, Write};
    let dir = TempDir::new("srv-linger");
    let media = make_flv(&dir, "in.flv", 1, Tracks::VideoOnly);
    let video: Vec<_> = read_flv_tags(&media)
        .into_iter()
        .filter(|t| t.tag_type == gstrtmp::rtmp::flv::tag_type::VIDEO)
        .collect();
    let frames = video.iter().filter(|t| t.data.get(1) == Some(&1)).count();
    let (p, log, _, _, port) = src_server("eos-on-unpublish=true");
    let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/key")).unwrap();
    let mut c = BlockingClient::open(&url, ClientConfig::new(ClientMode::Publish, &url)).unwrap();
    for t in &video {
        c.send_video(t.timestamp, &t.data).unwrap();
    }
    c.stop_with(gstrtmp::rtmp::session::StopCommands {
        fc_unpublish: true,
        ..gstrtmp::rtmp::session::StopCommands::NONE
    })
    .unwrap();
    // Stops the pipeline at the EOS.
    play_to_eos(&p, Duration::from_secs(20));
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), frames);
    for (o, t) in got
        .iter()
        .zip(video.iter().filter(|t| t.data.get(1) == Some(&1)))
    {
        assert_eq!((o.size, o.crc), (t.data.len() - 5, crc32(&t.data[5..])));
    }
    // The publisher's last messages (an acknowledgement here, for what
    // they are does not matter once the server is gone), a write at a
    // time: into a closed socket the first is answered with a reset and
    // the second fails.
    let ack = [2u8, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut s = c.stream();
    for i in 0..3 {
        s.write_all(&ack)
            .unwrap_or_else(|e| panic!("write {i} after the pipeline stopped: {e}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the connection ends with a FIN, not a reset");
}
