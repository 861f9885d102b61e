// SPDX-License-Identifier: MPL-2.0
//! Enhanced RTMP multitrack: rtmpsink's `video_N`/`audio_N` pads go out as
//! Multitrack packets, and rtmpsrc gives every track of a stream on its own
//! pad (`video`/`audio` for track 0, `video_N`/`audio_N` for track N).
//! Checked frame by frame (sizes, checksums, times) against what was sent,
//! with FFmpeg 9 (the reference Enhanced RTMP implementation) on the other
//! side both ways, FFmpeg 5.1 as a legacy player (track 0 only), and
//! nginx-rtmp relaying.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::player::*;
use common::server::{FFMPEG_PLAYER, framemd5_counts, paused_sink_server};
use common::*;
use gst::prelude::*;

/// What arrived, by (video, track).
fn by_track(log: &[Out]) -> BTreeMap<(bool, u8), Vec<Out>> {
    let mut m: BTreeMap<(bool, u8), Vec<Out>> = BTreeMap::new();
    for o in log {
        m.entry((o.video, o.track)).or_default().push(o.clone());
    }
    m
}

/// Sizes of the packets FFmpeg 9 reads from `file` for stream `map`
/// ("0:v:1": the second video stream).
fn ffmpeg_sizes(ffmpeg9: &str, file: &std::path::Path, map: &str) -> Vec<usize> {
    let out = Command::new(ffmpeg9)
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-map", map, "-c", "copy", "-f", "framecrc", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').nth(4).unwrap().trim().parse().unwrap())
        .collect()
}

/// Tag events seen on each of an rtmpsrc's pads, by pad name.
type PadTags = Arc<Mutex<BTreeMap<String, gst::TagList>>>;

fn record_tags(src: &gst::Element) -> PadTags {
    let tags = PadTags::default();
    let t = tags.clone();
    src.connect_pad_added(move |_, pad| {
        let t = t.clone();
        let name = pad.name().to_string();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && let gst::EventView::Tag(tag) = e.view()
            {
                let mut m = t.lock().unwrap();
                let merged = match m.remove(&name) {
                    Some(old) => old.merge(&tag.tag_owned(), gst::TagMergeMode::Replace),
                    None => tag.tag_owned(),
                };
                m.insert(name.clone(), merged);
            }
            gst::PadProbeReturn::Ok
        });
    });
    tags
}

/// FFmpeg 9 publishes two video tracks (H.264 320x240 as track 0, H.265
/// 160x120 as track 1) and two audio tracks (AAC, Opus): rtmpsrc gives
/// `video`, `video_1`, `audio` and `audio_1`, each with exactly the packets
/// FFmpeg reads from the file for that stream, as a server and as a client
/// through nginx-rtmp. (Before, both video tracks came out interleaved on
/// one pad and the second audio track was dropped.)
#[test]
fn ffmpeg9_multitrack_gives_a_pad_per_track() {
    needs!("nginx", "ffmpeg9");
    init();
    let ffmpeg9 = common::server::require_ffmpeg9();
    let dir = TempDir::new("ff9-multitrack");
    let file = dir.path("mt.flv");
    let st = Command::new(&ffmpeg9)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=s=320x240:r=30:d=2"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=160x120:r=30:d=2"])
        .args(["-f", "lavfi", "-i", "sine=d=2"])
        .args(["-f", "lavfi", "-i", "sine=f=880:d=2"])
        .args(["-map", "0", "-map", "1", "-map", "2", "-map", "3"])
        .args([
            "-c:v:0", "libx264", "-c:v:1", "libx265", "-pix_fmt", "yuv420p",
        ])
        .args(["-x265-params", "log-level=error"])
        .args(["-c:a:0", "aac", "-c:a:1", "libopus", "-f", "flv"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success(), "FFmpeg 9 could not make the multitrack file");
    let tracks = [
        ((true, 0), "0:v:0", "video/x-h264"),
        ((true, 1), "0:v:1", "video/x-h265"),
        ((false, 0), "0:a:0", "audio/mpeg"),
        ((false, 1), "0:a:1", "audio/x-opus"),
    ];
    let want: Vec<Vec<usize>> = tracks
        .iter()
        .map(|(_, map, _)| ffmpeg_sizes(&ffmpeg9, &file, map))
        .collect();
    assert!(want.iter().all(|w| w.len() >= 50), "{want:?}");
    let check = |what: &str, log: &OutLog, caps: &Arc<Mutex<Vec<gst::Caps>>>| {
        let got = by_track(&log.lock().unwrap());
        let keys: Vec<(bool, u8)> = got.keys().copied().collect();
        assert_eq!(keys.len(), 4, "{what}: tracks {keys:?}");
        for ((id, map, _), want) in tracks.iter().zip(&want) {
            let sizes: Vec<usize> = got
                .get(id)
                .map_or(vec![], |o| o.iter().map(|o| o.size).collect());
            assert_eq!(&sizes, want, "{what}: track {id:?} ({map})");
        }
        let names = caps_names(caps);
        for (_, _, c) in tracks {
            assert!(names.iter().any(|n| n == c), "{what}: no {c} in {names:?}");
        }
    };

    // FFmpeg 9 straight into rtmpsrc mode=server.
    let (server, log, caps, _, port) = common::server::src_server("eos-on-unpublish=true");
    let (ok, err) = common::server::ffmpeg_push_with(
        &ffmpeg9,
        &file,
        &["-map", "0"],
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(ok, "FFmpeg 9 could not publish: {err}");
    let warning = last_warning_until_eos(&server, Duration::from_secs(20));
    assert_eq!(warning, None, "no track is left out");
    check("FFmpeg 9 -> rtmpsrc mode=server", &log, &caps);
    server.set_state(gst::State::Null).unwrap();

    // Through nginx-rtmp (which relays Enhanced RTMP video only with
    // wait_key off).
    let nginx = Nginx::start("wait_key off;");
    let url = nginx.url("mt");
    let (player, log, caps) = player(&url, "");
    player.set_state(gst::State::Playing).unwrap();
    nginx.wait_player("mt");
    let (ok, err) = common::server::ffmpeg_push_with(&ffmpeg9, &file, &["-map", "0"], &url, false);
    assert!(ok, "FFmpeg 9 could not publish to nginx: {err}");
    play_to_eos(&player, Duration::from_secs(30));
    check("FFmpeg 9 -> nginx -> rtmpsrc", &log, &caps);
}

/// The publishing side of the tests below: H.264 as track 0 and H.265 as
/// video track 1, AAC as track 0 and Opus as audio track 2 (tagged with a
/// language and a title). Parsers named sentv/sentv1/senta/senta2.
const MULTITRACK_PUBLISH: &str = "\
    videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
      ! x264enc key-int-max=15 ! h264parse name=sentv ! s.video \
    videotestsrc num-buffers=60 pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
      ! x265enc speed-preset=ultrafast key-int-max=15 ! h265parse name=sentv1 ! s.video_1 \
    audiotestsrc num-buffers=60 ! avenc_aac ! aacparse name=senta ! s.audio \
    audiotestsrc num-buffers=60 freq=880 ! opusenc ! opusparse name=senta2 \
      ! taginject tags=\"language-code=fra,title=Commentary\" ! s.audio_2";

/// rtmpsink with `video`, `video_1`, `audio` and `audio_2` pads, serving:
/// rtmpsrc gets each track on its own pad, frame for frame (checksums,
/// times), and audio_2's language and title from the metadata's track
/// map; FFmpeg 9 (announcing Enhanced RTMP) decodes all four tracks,
/// every frame; FFmpeg 5.1 (a legacy player) gets track 0's H.264 and AAC
/// intact.
#[test]
fn rtmpsink_multitrack_pads_serve_every_player() {
    needs!("ffmpeg", "ffmpeg9");
    init();
    let ffmpeg9 = common::server::require_ffmpeg9();
    let (server, sent_log, notes, url) = paused_sink_server(MULTITRACK_PUBLISH, "");
    let ffmpeg = |exe: &str, extra: &[&str]| {
        Command::new(exe)
            .args(FFMPEG_PLAYER)
            .args(extra)
            .args(["-i", &url, "-map", "0", "-f", "framemd5", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ff9 = ffmpeg(&ffmpeg9, &["-rtmp_enhanced_codecs", "hvc1,Opus"]);
    let ff5 = ffmpeg("ffmpeg", &[]);
    let (player, got_log, caps) = player(&url, "");
    let src = player
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "rtmpsrc"))
        .unwrap();
    let tags = record_tags(&src);
    player.set_state(gst::State::Playing).unwrap();
    common::server::wait_notice(&notes, "rtmp-client-connected", 3, Duration::from_secs(15));
    server.set_state(gst::State::Playing).unwrap();
    play_to_eos(&server, Duration::from_secs(60));
    play_to_eos(&player, Duration::from_secs(20));

    let sent_all = sent_log.lock().unwrap().clone();
    let got_all = got_log.lock().unwrap().clone();
    let sent = by_track(&sent_all);
    let ids: Vec<(bool, u8)> = sent.keys().copied().collect();
    assert_eq!(ids, [(false, 0), (false, 2), (true, 0), (true, 1)]);
    assert_eq!(by_track(&got_all).len(), 4, "a pad per track");
    for (video, track) in ids {
        same_track_frames(
            &format!("track {track} (video {video}): rtmpsink mode=server -> rtmpsrc"),
            &sent_all,
            &got_all,
            video,
            track,
        );
    }
    let names = caps_names(&caps);
    for c in ["video/x-h264", "video/x-h265", "audio/mpeg", "audio/x-opus"] {
        assert!(names.iter().any(|n| n == c), "no {c} in {names:?}");
    }
    let tags = tags.lock().unwrap();
    let t = tags.get("audio_2").expect("tags on audio_2");
    assert_eq!(
        t.get::<gst::tags::LanguageCode>()
            .map(|l| l.get().to_owned()),
        Some("fra".to_owned()),
        "{t:?}"
    );
    assert_eq!(
        t.get::<gst::tags::Title>().map(|l| l.get().to_owned()),
        Some("Commentary".to_owned()),
        "{t:?}"
    );

    let count = |id: (bool, u8)| sent[&id].len();
    for (who, child, want) in [
        (
            "FFmpeg 9",
            ff9,
            vec![
                count((true, 0)),
                count((true, 1)),
                count((false, 0)),
                count((false, 2)),
            ],
        ),
        ("FFmpeg 5.1", ff5, vec![count((true, 0)), count((false, 0))]),
    ] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut counts: Vec<usize> = framemd5_counts(&String::from_utf8_lossy(&out.stdout))
            .iter()
            .map(|&(_, n)| n)
            .collect();
        let mut want = want;
        counts.sort();
        want.sort();
        assert_eq!(counts, want, "{who}: frames decoded per stream");
    }
}

/// The same four pads published through nginx-rtmp: every track arrives
/// at rtmpsrc on its own pad, frame for frame.
#[test]
fn rtmpsink_multitrack_through_nginx() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("wait_key off;");
    let url = nginx.url("mt");
    let (player, got_log, _) = player(&url, "");
    player.set_state(gst::State::Playing).unwrap();
    nginx.wait_player("mt");
    let sent = publish_to_eos(&format!(
        "{MULTITRACK_PUBLISH} rtmpsink name=s sync=false location={url}"
    ));
    play_to_eos(&player, Duration::from_secs(30));
    let got = got_log.lock().unwrap().clone();
    let ids: Vec<(bool, u8)> = by_track(&sent).keys().copied().collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(by_track(&got).len(), 4, "a pad per track");
    for (video, track) in ids {
        same_track_frames(
            &format!("track {track} (video {video}): rtmpsink -> nginx -> rtmpsrc"),
            &sent,
            &got,
            video,
            track,
        );
    }
}

/// The formats that reach a playbin's video and audio sinks, in order:
/// "width N" for video, "rate N" for audio.
fn sink_formats(p: &gst::Pipeline) -> Arc<Mutex<Vec<String>>> {
    let formats: Arc<Mutex<Vec<String>>> = Arc::default();
    for prop in ["video-sink", "audio-sink"] {
        let sink = p.property::<gst::Element>(prop);
        let f = formats.clone();
        sink.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data
                    && let gst::EventView::Caps(c) = e.view()
                {
                    let s = c.caps().structure(0).unwrap();
                    f.lock().unwrap().push(match s.get::<i32>("width") {
                        Ok(w) => format!("width {w}"),
                        Err(_) => format!("rate {}", s.get::<i32>("rate").unwrap_or(0)),
                    });
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    formats
}

/// playbin3 on a multitrack stream plays track 0 of each kind (H.264
/// 320x240 and AAC at 44.1 kHz), not whichever track's pad came first (the
/// H.265 160x120 or the Opus at 48 kHz, as it did now and then): rtmpsrc
/// gives one collection of every track, in track order, on every pad, and
/// decodebin3 selects the first of each kind in it.
#[test]
fn playbin3_plays_track_0_of_each_kind() {
    init();
    for run in 0..3 {
        let (server, _, notes, url) = paused_sink_server(MULTITRACK_PUBLISH, "");
        let (p, source, decoded) = playbin_with_source("playbin3", &url, |_| {});
        // What reached the sinks, and what decodebin3 said it had and chose.
        let negotiated = sink_formats(&p);
        let collections: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let selected: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let (c2, s2) = (collections.clone(), selected.clone());
        let tail = |s: &gst::Stream| {
            let id = s.stream_id().map(|i| i.to_string()).unwrap_or_default();
            id.rsplit('/').next().unwrap_or_default().to_owned()
        };
        p.bus().unwrap().set_sync_handler(move |_, m| {
            match m.view() {
                gst::MessageView::StreamCollection(c) => {
                    c2.lock()
                        .unwrap()
                        .push(c.stream_collection().iter().map(|s| tail(&s)).collect());
                }
                gst::MessageView::StreamsSelected(s) => {
                    s2.lock()
                        .unwrap()
                        .push(s.streams().map(|s| tail(&s)).collect());
                }
                _ => {}
            }
            gst::BusSyncReply::Pass
        });
        p.set_state(gst::State::Playing).unwrap();
        common::server::wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(15));
        server.set_state(gst::State::Playing).unwrap();
        play_to_eos(&server, Duration::from_secs(60));
        play_to_eos(&p, Duration::from_secs(30));
        p.set_state(gst::State::Null).unwrap();
        server.set_state(gst::State::Null).unwrap();
        assert_eq!(source.lock().unwrap().as_deref(), Some("rtmpsrc"));
        let collections = collections.lock().unwrap().clone();
        assert!(
            collections
                .iter()
                .any(|c| c == &["video", "audio", "video_1", "audio_2"]),
            "run {run}: {collections:?}"
        );
        let selected = selected.lock().unwrap().clone();
        let mut last = selected.last().cloned().unwrap_or_default();
        last.sort();
        assert_eq!(last, ["audio", "video"], "run {run}: {selected:?}");
        let mut negotiated = negotiated.lock().unwrap().clone();
        negotiated.sort();
        assert_eq!(negotiated, ["rate 44100", "width 320"], "run {run}");
        let [video, audio] = *decoded.lock().unwrap();
        assert_eq!(video, 60, "run {run}: track 0's frames decoded");
        assert!(audio > 0, "run {run}: no audio decoded");
    }
}

/// An application switches tracks in playbin3 as in a file: after
/// `select-streams` naming the H.265 track and the Opus track of the
/// collection, those are what decode (160x120, 48 kHz).
#[test]
fn playbin3_switches_tracks_with_select_streams() {
    init();
    // Live, so that the switch comes while the stream plays (4 s).
    let publish = MULTITRACK_PUBLISH
        .replace(
            "videotestsrc num-buffers=60",
            "videotestsrc is-live=true num-buffers=120",
        )
        .replace(
            "audiotestsrc num-buffers=60",
            "audiotestsrc is-live=true num-buffers=170",
        );
    let (server, _, notes, url) = paused_sink_server(&publish, "");
    // audio_2's first event held 200 ms on its way, as a loaded machine may
    // hold its pad's thread: see the wait below.
    let (p, _, _) = playbin_with_source("playbin3", &url, |src| {
        src.connect_pad_added(|_, pad| {
            if pad.name() == "audio_2" {
                pad.add_probe(gst::PadProbeType::DATA_DOWNSTREAM, |_, _| {
                    std::thread::sleep(Duration::from_millis(200));
                    gst::PadProbeReturn::Remove
                });
            }
        });
    });
    let negotiated = sink_formats(&p);
    let collection: Arc<Mutex<Option<gst::StreamCollection>>> = Arc::default();
    let c2 = collection.clone();
    p.bus().unwrap().set_sync_handler(move |_, m| {
        if let gst::MessageView::StreamCollection(c) = m.view() {
            *c2.lock().unwrap() = Some(c.stream_collection());
        }
        gst::BusSyncReply::Pass
    });
    p.set_state(gst::State::Playing).unwrap();
    common::server::wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(15));
    server.set_state(gst::State::Playing).unwrap();
    // The switch once the first two sinks have their caps and decodebin3
    // has a slot (a multiqueue pad) for each of the four tracks whose
    // stream has come out of the multiqueue: decodebin3 of GStreamer 1.22
    // knows a slot's stream only from there (its stream-start out of the
    // slot) and never activates a track named in select-streams whose
    // stream it does not know yet (it logs "Stream switch requested for
    // future collection", then the other switched track stalls). Holding
    // rtmpsrc's audio_2 pad 200 ms did it every time (2 runs of 2, and of
    // video_1's too) while the test waited for no slot; waiting for the
    // slots alone, a loaded machine still did it (2 runs of 10 beside two
    // busy loops: audio_2's slot was there, its stream-start not yet out).
    // A segment on a slot's pad came after its stream-start.
    let slots = || {
        p.iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| {
                e.factory().is_some_and(|f| f.name() == "multiqueue")
                    && e.parent()
                        .is_some_and(|b| b.name().starts_with("decodebin3"))
            })
            .map(|e| {
                e.src_pads()
                    .iter()
                    .filter(|pad| pad.sticky_event::<gst::event::Segment>(0).is_some())
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let began = std::time::Instant::now();
    while (negotiated.lock().unwrap().len() < 2 || slots() < 4)
        && began.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(slots(), 4, "decodebin3's slots");
    let ids: Vec<String> = {
        let c = collection.lock().unwrap();
        let c = c.as_ref().expect("a stream collection");
        c.iter()
            .filter_map(|s| s.stream_id().map(|i| i.to_string()))
            .filter(|id| id.ends_with("/video_1") || id.ends_with("/audio_2"))
            .collect()
    };
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(p.send_event(gst::event::SelectStreams::new(
        ids.iter().map(String::as_str)
    )));
    play_to_eos(&server, Duration::from_secs(30));
    play_to_eos(&p, Duration::from_secs(30));
    p.set_state(gst::State::Null).unwrap();
    server.set_state(gst::State::Null).unwrap();
    let negotiated = negotiated.lock().unwrap().clone();
    let mut first: Vec<&str> = negotiated[..2].iter().map(String::as_str).collect();
    first.sort();
    assert_eq!(first, ["rate 44100", "width 320"], "{negotiated:?}");
    for want in ["rate 48000", "width 160"] {
        assert!(
            negotiated[2..].iter().any(|n| n == want),
            "no {want} after the switch: {negotiated:?}"
        );
    }
}

/// rtmpsink takes elementary pads or the FLV pad `sink`, never both at
/// once; with every elementary pad released, the FLV pad can be had (the
/// internal muxer goes with them), and the other way round.
#[test]
fn elementary_pads_or_the_flv_pad() {
    init();
    let sink = gst::ElementFactory::make("rtmpsink").build().unwrap();
    let refused = |name: &str, what: &str| {
        assert!(sink.request_pad_simple(name).is_none(), "{what}");
    };
    let video = sink.request_pad_simple("video").unwrap();
    let audio = sink.request_pad_simple("audio").unwrap();
    refused("sink", "FLV beside video/audio");
    sink.release_request_pad(&video);
    refused("sink", "FLV beside audio");
    sink.release_request_pad(&audio);
    let flv = sink
        .request_pad_simple("sink")
        .expect("FLV once video/audio are gone");
    refused("video", "video beside FLV");
    sink.release_request_pad(&flv);
    let video = sink
        .request_pad_simple("video")
        .expect("video once FLV is gone");
    assert_eq!(video.name(), "video");
    let bin = sink.downcast_ref::<gst::Bin>().unwrap();
    let muxers = bin.children().iter().filter(|c| c.name() == "mux").count();
    assert_eq!(muxers, 1, "one muxer at a time");
}

/// Pads that cannot be: a second track 0 (`video` and `video_0`), a track
/// past 255, and G.711 on a track other than 0 (Enhanced RTMP has no FourCC
/// for it), which fails with an error naming the pad.
#[test]
fn multitrack_pad_requests_are_checked() {
    init();
    let sink = gst::ElementFactory::make("rtmpsink").build().unwrap();
    let video = sink.request_pad_simple("video").unwrap();
    assert_eq!(video.name(), "video");
    assert!(sink.request_pad_simple("video_0").is_none());
    assert!(sink.request_pad_simple("video_256").is_none());
    let v1 = sink.request_pad_simple("video_%u").unwrap();
    assert_eq!(v1.name(), "video_1");
    let v7 = sink.request_pad_simple("video_7").unwrap();
    assert_eq!(v7.name(), "video_7");
    assert_eq!(
        sink.request_pad_simple("video_%u").unwrap().name(),
        "video_2"
    );
    let a0 = sink.request_pad_simple("audio_0").unwrap();
    assert_eq!(a0.name(), "audio_0");
    assert!(sink.request_pad_simple("audio").is_none(), "track 0 taken");
    sink.release_request_pad(&a0);
    assert_eq!(sink.request_pad_simple("audio").unwrap().name(), "audio");

    let p = gst::Pipeline::new();
    let src =
        gst::parse::bin_from_description("audiotestsrc num-buffers=10 ! alawenc", true).unwrap();
    let sink = gst::ElementFactory::make("rtmpsink")
        .property("location", "rtmp://127.0.0.1:9/live/x")
        .build()
        .unwrap();
    p.add_many([src.upcast_ref::<gst::Element>(), &sink])
        .unwrap();
    let pad = sink.request_pad_simple("audio_3").unwrap();
    src.static_pad("src").unwrap().link(&pad).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (msg, _) = expect_error(&p, Duration::from_secs(10));
    p.set_state(gst::State::Null).unwrap();
    assert!(
        msg.contains("audio/x-alaw") && msg.contains("track 3") && msg.contains("audio_3"),
        "{msg}"
    );
}

/// A player that joins a live multitrack stream late (rtmpsink
/// mode=server's GOP cache): it starts at a keyframe of track 0, gets
/// track 0's and track 1's sequence headers both, and track 1 from its own
/// next keyframe (its GOPs are not aligned with track 0's); from there every
/// track arrives whole to the end of the stream. Its pads come in track
/// order (the server sends the sequence headers so, however they came),
/// which is what players pick their default tracks by.
#[test]
fn late_player_starts_every_video_track_at_its_own_keyframe() {
    init();
    let publish = "\
        videotestsrc is-live=true num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
          ! x264enc tune=zerolatency key-int-max=30 ! h264parse name=sentv ! s.video \
        videotestsrc is-live=true num-buffers=90 pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
          ! x264enc tune=zerolatency key-int-max=20 ! h264parse name=sentv1 ! s.video_1 \
        audiotestsrc is-live=true samplesperbuffer=1024 num-buffers=130 ! avenc_aac ! aacparse name=senta ! s.audio";
    let (server, sent_log, notes, url) = paused_sink_server(publish, "sync=true");
    server.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1400));
    let (player, got_log, _) = player(&url, "");
    let pads: Arc<Mutex<Vec<String>>> = Arc::default();
    let p2 = pads.clone();
    common::server::element(&player, "rtmpsrc")
        .connect_pad_added(move |_, pad| p2.lock().unwrap().push(pad.name().to_string()));
    player.set_state(gst::State::Playing).unwrap();
    common::server::wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(15));
    play_to_eos(&server, Duration::from_secs(30));
    play_to_eos(&player, Duration::from_secs(20));
    let sent = by_track(&sent_log.lock().unwrap());
    let got = by_track(&got_log.lock().unwrap());
    assert_eq!(got.len(), 3, "a pad per track: {:?}", got.keys());
    assert_eq!(*pads.lock().unwrap(), ["video", "audio", "video_1"]);
    for (id, want) in &sent {
        let got = &got[id];
        if id.0 {
            assert!(got[0].key, "track {id:?} starts at a keyframe");
        }
        // What arrived is the end of what was sent, without a gap.
        let crcs = |v: &[Out]| v.iter().map(|o| o.crc).collect::<Vec<_>>();
        let tail = &crcs(want)[want.len() - got.len()..];
        assert_eq!(
            crcs(got),
            tail,
            "track {id:?}: the stream from where it joined"
        );
        assert!(got.len() < want.len(), "track {id:?}: joined late");
    }
    // Track 1 starts at its own keyframe, after track 0's.
    assert!(got[&(true, 1)][0].dts >= got[&(true, 0)][0].dts);
}
