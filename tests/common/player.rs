// SPDX-License-Identifier: MPL-2.0
//! Playing with rtmpsrc and recording every buffer, recording what a
//! publishing pipeline's parsers gave, and comparing the two.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::{Frame, assert_same_frames, crc32, ffprobe_frames};

/// One buffer as rtmpsrc gave it.
#[derive(Debug, Clone)]
pub struct Out {
    pub video: bool,
    /// Enhanced RTMP track id: 0 for `video`/`audio`, N for `video_N`.
    pub track: u8,
    pub dts: i64,
    pub pts: i64,
    pub key: bool,
    pub discont: bool,
    pub size: usize,
    pub crc: u32,
}

pub type OutLog = Arc<Mutex<Vec<Out>>>;

/// An rtmpsrc for `url` with more properties (`k=v` words).
pub fn rtmpsrc(url: &str, extra: &str) -> gst::Element {
    let src = gst::ElementFactory::make("rtmpsrc")
        .property("location", url)
        .build()
        .unwrap();
    for kv in extra.split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap();
        src.set_property_from_str(k, v);
    }
    src
}

/// rtmpsrc with a fakesink per pad, recording every buffer; the pipeline
/// and what it will have recorded.
pub fn player(url: &str, extra: &str) -> (gst::Pipeline, OutLog, Arc<Mutex<Vec<gst::Caps>>>) {
    let p = gst::Pipeline::new();
    let src = rtmpsrc(url, extra);
    p.add(&src).unwrap();
    let (log, caps) = record_pads(&p, &src);
    (p, log, caps)
}

/// Each pad `e` adds (in `p`) into a fakesink of its own, recorded (see
/// `record`).
pub fn record_pads(p: &gst::Pipeline, e: &gst::Element) -> (OutLog, Arc<Mutex<Vec<gst::Caps>>>) {
    let log = OutLog::default();
    let caps: Arc<Mutex<Vec<gst::Caps>>> = Arc::default();
    let (log2, caps2) = (log.clone(), caps.clone());
    sink_per_pad(p, e, false, move |_, sink| {
        record(sink, log2.clone(), caps2.clone())
    });
    (log, caps)
}

/// Each pad `e` adds (in `p`) linked to a fakesink of its own (`sync` as
/// told), then `then` with the pad and the sink's pad.
pub fn sink_per_pad(
    p: &gst::Pipeline,
    e: &gst::Element,
    sync: bool,
    then: impl Fn(&gst::Pad, &gst::Pad) + Send + Sync + 'static,
) {
    let pw = p.downgrade();
    e.connect_pad_added(move |_, pad| {
        let Some(p) = pw.upgrade() else { return };
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", sync)
            .build()
            .unwrap();
        p.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let sinkpad = sink.static_pad("sink").unwrap();
        pad.link(&sinkpad).unwrap();
        then(pad, &sinkpad);
    });
}

/// Records every buffer and caps event that goes through `pad` (of
/// rtmpsrc's `video` pad when its name or its peer's says so, else when
/// its caps do: decodebin's `src_N`).
pub fn record(pad: &gst::Pad, log: OutLog, caps: Arc<Mutex<Vec<gst::Caps>>>) {
    let (video, track) = [Some(pad.name()), pad.peer().map(|p| p.name())]
        .into_iter()
        .flatten()
        .find_map(|n| pad_track(&n))
        .or_else(|| {
            let c = pad.current_caps()?;
            Some((c.structure(0)?.name().starts_with("video/"), 0))
        })
        .unwrap_or((false, 0));
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let m = b.map_readable().unwrap();
                    log.lock().unwrap().push(Out {
                        video,
                        track,
                        dts: b.dts().map(|t| t.nseconds() as i64).unwrap_or(-1),
                        pts: b.pts().map(|t| t.nseconds() as i64).unwrap_or(-1),
                        key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        discont: b.flags().contains(gst::BufferFlags::DISCONT),
                        size: m.len(),
                        crc: crc32(&m),
                    });
                }
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Caps(c) = e.view() {
                        caps.lock().unwrap().push(c.caps_owned());
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// The names of caps, in order (`video/x-h264`...).
pub fn caps_names(caps: &Mutex<Vec<gst::Caps>>) -> Vec<String> {
    caps.lock()
        .unwrap()
        .iter()
        .map(|c| c.structure(0).unwrap().name().to_string())
        .collect()
}

/// Frames in milliseconds from the first DTS, as ffprobe counts them.
pub fn frames(out: &[Out]) -> Vec<Frame> {
    let base = out.iter().map(|o| o.dts).min().unwrap_or(0);
    out.iter()
        .map(|o| Frame {
            video: o.video,
            dts: (o.dts - base) / 1_000_000,
            pts: (o.pts - base) / 1_000_000,
            key: o.key,
            size: o.size,
            crc: o.crc,
        })
        .collect()
}

pub fn normalized(mut f: Vec<Frame>) -> Vec<Frame> {
    let base = f.iter().map(|x| x.dts).min().unwrap_or(0);
    for x in &mut f {
        x.dts -= base;
        x.pts -= base;
    }
    f
}

/// The frames ffprobe reads in a file, in milliseconds from its first DTS:
/// what a stream of that file must deliver, frame for frame.
pub fn file_frames(path: &std::path::Path) -> Vec<Frame> {
    normalized(ffprobe_frames(path.to_str().expect("a UTF-8 path")))
}

/// Panics unless what `log` recorded is the file's every frame, in order,
/// each with its payload's CRC, PTS, DTS and key flag.
pub fn assert_delivered_file(what: &str, log: &OutLog, media: &std::path::Path) {
    assert_same_frames(what, &frames(&log.lock().unwrap()), &file_frames(media));
}

/// Plays until EOS (or the limit); panics on an error.
pub fn play_to_eos(p: &gst::Pipeline, limit: Duration) {
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    // Without an EOS: where each sink and rtmpsrc were, for the failure.
    let state = if msg.is_none() {
        pipeline_state(p)
    } else {
        String::new()
    };
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!(
            "error from {:?}: {} ({:?})",
            e.src().map(|s| s.path_string()),
            e.error(),
            e.debug()
        ),
        _ => panic!("no EOS within {limit:?}: {state}"),
    }
}

/// Each element's state, whether each sink has seen EOS, and the stats of
/// any element that has them (rtmpsrc, rtmpsink).
fn pipeline_state(p: &gst::Pipeline) -> String {
    // The pipeline posts EOS only once every sink did, in PLAYING with no
    // state change pending.
    let (_, cur, pending) = p.state(gst::ClockTime::ZERO);
    let mut out = vec![format!("the pipeline {cur:?}/{pending:?}")];
    for e in p.iterate_recurse().into_iter().flatten() {
        let (_, cur, pending) = e.state(gst::ClockTime::ZERO);
        let mut line = format!("{} {cur:?}/{pending:?}", e.name());
        if e.is::<gst_base::BaseSink>() {
            let eos = e
                .static_pad("sink")
                .and_then(|pad| pad.sticky_event::<gst::event::Eos>(0))
                .is_some();
            line.push_str(&format!(" eos={eos}"));
        }
        if e.find_property("stats").is_some() {
            line.push_str(&format!(" {}", e.property::<gst::Structure>("stats")));
        }
        out.push(line);
    }
    out.join("; ")
}

/// Records what the h264parse and aacparse elements of a publishing
/// pipeline (or elements named sentv and senta) give downstream, in
/// running time.
pub fn probe_parsers(pub_p: &gst::Pipeline) -> OutLog {
    let sent: OutLog = Arc::default();
    for e in pub_p.iterate_recurse().into_iter().flatten() {
        let kind = e
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        // h264parse and aacparse, or whatever a test named sentv/senta
        // (sentvN/sentaN: track N).
        let name = e.name();
        let video = match (kind.as_str(), name.as_str()) {
            ("h264parse", _) => true,
            ("aacparse", _) => false,
            (_, n) if n.starts_with("sentv") => true,
            (_, n) if n.starts_with("senta") => false,
            _ => continue,
        };
        let track: u8 = name.get(5..).and_then(|t| t.parse().ok()).unwrap_or(0);
        let sent = sent.clone();
        // Parsers push lists too (the frames held back until caps were
        // known, say): every buffer of either is recorded.
        let probe = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
        e.static_pad("src")
            .unwrap()
            .add_probe(probe, move |pad, info| {
                let seg = pad.sticky_event::<gst::event::Segment>(0).unwrap();
                let seg = seg
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .unwrap()
                    .clone();
                let record = |b: &gst::BufferRef| {
                    // Opus and FLAC headers travel in caps, not as frames
                    // (a video parser flags the keyframes that carry its
                    // parameter sets as headers: those are frames).
                    if !video && b.flags().contains(gst::BufferFlags::HEADER) {
                        return;
                    }
                    let rt = |t: Option<gst::ClockTime>| match t
                        .and_then(|t| seg.to_running_time_full(t))
                    {
                        Some(gst::Signed::Positive(v)) => v.nseconds() as i64,
                        Some(gst::Signed::Negative(v)) => -(v.nseconds() as i64),
                        None => -1,
                    };
                    let m = b.map_readable().unwrap();
                    sent.lock().unwrap().push(Out {
                        video,
                        track,
                        dts: rt(b.dts().or(b.pts())),
                        pts: rt(b.pts().or(b.dts())),
                        key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        discont: false,
                        size: m.len(),
                        crc: crc32(&m),
                    });
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => record(b),
                    Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(record),
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            });
    }
    sent
}

/// Same frames, in order, per kind: payloads, key flags, and PTS/DTS
/// relative to the first DTS, in milliseconds (RTMP's resolution; the
/// publisher's side is rounded as rtmpsink rounds).
pub fn same_frames(what: &str, sent: &[Out], got: &[Out], check_times: bool) {
    let base = sent.iter().map(|o| o.dts).min().unwrap_or(0);
    let ms = |t: i64| (t - base + 500_000).div_euclid(1_000_000);
    let want: Vec<Frame> = sent
        .iter()
        .map(|o| Frame {
            video: o.video,
            dts: ms(o.dts),
            pts: ms(o.pts),
            // Audio frames are all key frames to rtmpsrc.
            key: o.key || !o.video,
            size: o.size,
            crc: o.crc,
        })
        .collect();
    let mut got = frames(got);
    let mut want = want;
    if !check_times {
        for f in got.iter_mut().chain(want.iter_mut()) {
            (f.dts, f.pts) = (0, 0);
        }
    }
    assert_same_frames(what, &got, &want);
}

/// Runs a publishing pipeline (a gst-launch description) to EOS, recording
/// what its parsers gave (see `probe_parsers`); panics on an error.
pub fn publish_to_eos(desc: &str) -> Vec<Out> {
    let p = super::launch(desc);
    let sent = probe_parsers(&p);
    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(60));
    sent.lock().unwrap().clone()
}

/// `rtmp-connection-state` messages, with the time each came.
pub type States = Arc<Mutex<Vec<(std::time::Instant, gst::Structure)>>>;

/// Records the `rtmp-connection-state` messages a pipeline posts.
pub fn connection_states(p: &gst::Pipeline) -> States {
    let log = States::default();
    let l = log.clone();
    p.bus().unwrap().set_sync_handler(move |_, m| {
        if let gst::MessageView::Element(e) = m.view()
            && let Some(s) = e.structure()
            && s.name() == "rtmp-connection-state"
        {
            l.lock()
                .unwrap()
                .push((std::time::Instant::now(), s.to_owned()));
        }
        gst::BusSyncReply::Pass
    });
    log
}

/// The states' names, in order.
pub fn state_names(log: &States) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.get::<String>("state").unwrap())
        .collect()
}

/// Checks a server's recordings against what the publisher's parsers gave:
/// each recording starts on a keyframe and never goes back in time, and
/// every frame sent is in one of them (a keyframe re-sent after a
/// reconnection may be in two). Returns the number of frames recorded.
pub fn assert_all_recorded(recordings: &[std::path::PathBuf], sent: &[Out]) -> usize {
    let mut got = std::collections::HashSet::new();
    let mut n = 0;
    for r in recordings {
        let frames = super::ffprobe_frames(r.to_str().unwrap());
        let (v, _) = super::split(&frames);
        assert!(
            v.first().is_some_and(|f| f.key),
            "{r:?} starts without a keyframe"
        );
        for w in frames.windows(2) {
            if w[0].video == w[1].video {
                assert!(w[1].dts >= w[0].dts, "{r:?}: time went back: {w:?}");
            }
        }
        n += frames.len();
        got.extend(frames.iter().map(|f| (f.video, f.crc)));
    }
    let missing: Vec<_> = sent
        .iter()
        .filter(|o| !got.contains(&(o.video, o.crc)))
        .map(|o| (o.video, o.dts / 1_000_000))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} frames never reached the server: {:?}",
        missing.len(),
        sent.len(),
        &missing[..missing.len().min(10)]
    );
    n
}

/// What a player that reconnected got, against what was sent: time never
/// goes back; before the DISCONT where it resumed, a run of what was sent
/// with nothing missing; from there a run to the end, starting on a
/// keyframe, with nothing missing; caps sent again for each pad.
pub fn assert_resumed(sent: &[Out], got: &[Out], caps: &[gst::Caps]) {
    for video in [true, false] {
        let g: Vec<&Out> = got.iter().filter(|o| o.video == video).collect();
        let s: Vec<&Out> = sent.iter().filter(|o| o.video == video).collect();
        for w in g.windows(2) {
            assert!(w[1].dts >= w[0].dts, "time went back: {:?}", &w);
        }
        let resume = g
            .iter()
            .skip(1)
            .position(|o| o.discont)
            .map(|i| i + 1)
            .expect("a DISCONT where playback resumed");
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
        let media = if video { "video/" } else { "audio/" };
        let n = caps
            .iter()
            .filter(|c| c.structure(0).unwrap().name().starts_with(media))
            .count();
        assert!(
            n >= 2,
            "{media} caps sent {n} time(s): not again after resuming"
        );
    }
}

/// From a client's connection states, once it reconnected after `back`
/// (the moment the server or route came back): the first reconnection's
/// reason, how long after `back` it was connected again, and the longest
/// backoff delay announced up to `back` (what the attempt waiting then had
/// at most to go).
pub fn resumption(log: &States, back: std::time::Instant) -> (String, Duration, u64) {
    let log = log.lock().unwrap().clone();
    let reconnecting: Vec<_> = log
        .iter()
        .filter(|(_, s)| s.get::<&str>("state") == Ok("reconnecting"))
        .collect();
    assert!(!reconnecting.is_empty(), "{log:?}");
    let reason = reconnecting[0].1.get::<String>("reason").unwrap();
    let (connected_at, _) = log
        .iter()
        .find(|(_, s)| s.get::<&str>("state") == Ok("connected"))
        .unwrap_or_else(|| panic!("never reconnected: {log:?}"));
    let step = reconnecting
        .iter()
        .filter(|(t, _)| *t <= back)
        .map(|(_, s)| s.get::<u64>("delay-ms").unwrap())
        .max()
        .unwrap();
    (reason, connected_at.saturating_duration_since(back), step)
}

/// What a player decodes of a file: its video frames and audio frames, as
/// ffprobe counts them.
pub fn decoded_counts(media: &std::path::Path) -> [usize; 2] {
    let f = file_frames(media);
    let video = f.iter().filter(|x| x.video).count();
    [video, f.len() - video]
}

/// Buffers that reached a player's sinks: video, audio.
pub type Decoded = Arc<Mutex<[usize; 2]>>;

/// `factory` ("playbin" or "playbin3") playing `uri` into fakesinks that
/// count the decoded buffers (video, audio); `setup` sees the source
/// element it picked, whose factory name is kept.
pub fn playbin_with_source(
    factory: &str,
    uri: &str,
    setup: impl Fn(&gst::Element) + Send + Sync + 'static,
) -> (gst::Pipeline, Arc<Mutex<Option<String>>>, Decoded) {
    let decoded: Decoded = Arc::default();
    let counting = |i: usize| {
        let sink = gst::ElementFactory::make("fakesink")
            .property("signal-handoffs", true)
            .build()
            .unwrap();
        let d = decoded.clone();
        sink.connect("handoff", false, move |_| {
            d.lock().unwrap()[i] += 1;
            None
        });
        sink
    };
    let playbin = gst::ElementFactory::make(factory)
        .property("uri", uri)
        .property("video-sink", counting(0))
        .property("audio-sink", counting(1))
        .build()
        .unwrap();
    let source: Arc<Mutex<Option<String>>> = Arc::default();
    let s2 = source.clone();
    playbin.connect("source-setup", false, move |args| {
        let src = args[1].get::<gst::Element>().unwrap();
        *s2.lock().unwrap() = src.factory().map(|f| f.name().to_string());
        setup(&src);
        None
    });
    (
        playbin.downcast::<gst::Pipeline>().unwrap(),
        source,
        decoded,
    )
}

/// Plays `p` (from `playbin_with_source`) to its end, then checks that
/// playbin picked rtmpsrc and that its sinks got `want` decoded buffers
/// (video, audio).
pub fn assert_played_by_rtmpsrc(
    p: &gst::Pipeline,
    source: &Mutex<Option<String>>,
    decoded: &Decoded,
    want: [usize; 2],
    factory: &str,
) {
    play_to_eos(p, Duration::from_secs(30));
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(
        source.lock().unwrap().as_deref(),
        Some("rtmpsrc"),
        "{factory}"
    );
    assert_eq!(
        *decoded.lock().unwrap(),
        want,
        "{factory}: decoded (video, audio)"
    );
}

/// (video, track) of a media pad name: `video`, `audio`, `video_N`, `audio_N`.
pub fn pad_track(name: &str) -> Option<(bool, u8)> {
    let (kind, n) = name.split_once('_').unwrap_or((name, "0"));
    let video = match kind {
        "video" => true,
        "audio" => false,
        _ => return None,
    };
    Some((video, n.parse().ok()?))
}

/// The frames of one track.
pub fn track_frames(log: &[Out], video: bool, track: u8) -> Vec<Out> {
    log.iter()
        .filter(|o| o.video == video && o.track == track)
        .cloned()
        .collect()
}

/// `same_frames` for one track of a multitrack stream: times counted from
/// the start of the whole stream on each side (RTMP time 0 is the first
/// frame of any track), frames of that track compared.
pub fn same_track_frames(what: &str, sent: &[Out], got: &[Out], video: bool, track: u8) {
    let pick = |log: &[Out], round: bool| -> Vec<Frame> {
        let base = log.iter().map(|o| o.dts).min().unwrap_or(0);
        let ms = |t: i64| {
            if round {
                (t - base + 500_000).div_euclid(1_000_000)
            } else {
                (t - base) / 1_000_000
            }
        };
        log.iter()
            .filter(|o| o.video == video && o.track == track)
            .map(|o| Frame {
                video,
                dts: ms(o.dts),
                pts: ms(o.pts),
                key: o.key || !o.video,
                size: o.size,
                crc: o.crc,
            })
            .collect()
    };
    assert_same_frames(what, &pick(got, false), &pick(sent, true));
}

/// A live publisher, four seconds in real time (`URL` to replace).
pub const LIVE_AV: &str = "videotestsrc is-live=true num-buffers=120 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video audiotestsrc is-live=true num-buffers=172 samplesperbuffer=1024 ! avenc_aac ! aacparse ! s.audio rtmpsink name=s location=URL";

/// `LIVE_AV` lasting `secs` seconds (it lasts 4).
pub fn live_av_for(secs: u32) -> String {
    LIVE_AV
        .replace("num-buffers=120", &format!("num-buffers={}", secs * 30))
        .replace(
            "num-buffers=172",
            &format!("num-buffers={}", (secs * 48000).div_ceil(1024)),
        )
}

/// What `hold_a_direct_video_push` saw.
#[derive(Default)]
pub struct Hold {
    /// The video pad's own thread (its queue's: it pushes the first
    /// frames, before downstream showed it takes them at once).
    own: Option<std::thread::ThreadId>,
    /// A push by another thread (rtmpsrc's streaming thread: a direct
    /// push) was held, and whether the audio it waited for came.
    held: bool,
    timed_out: bool,
    audio_pts: Option<gst::ClockTime>,
    /// Video pushes by another thread than the pad's own after the held
    /// one: direct pushes again, after downstream was seen to join pads.
    direct_after: u32,
}

pub struct HeldPush(Arc<(Mutex<Hold>, std::sync::Condvar)>);

impl HeldPush {
    /// Panics unless a direct push was held and let go by audio coming,
    /// and the video pad's own thread pushed everything after it (a
    /// downstream seen to hold one pad for another gets no direct pushes
    /// again, or it would be held again).
    pub fn check(&self) {
        let st = self.0.0.lock().unwrap();
        assert!(st.held, "no direct push on the video pad to hold");
        assert!(!st.timed_out, "the held push was not rescued");
        assert_eq!(
            st.direct_after, 0,
            "direct pushes came back after a push was held for another pad"
        );
    }
}

/// Makes rtmpsrc `src`'s video pad behave like a muxer's once: the first
/// video frame pushed by a thread other than the pad's own (a direct push
/// from the streaming thread) is held until audio half a second past it
/// went out on the audio pad (or 10 s, which `check` reports); the video
/// pushes by other threads after it are counted.
pub fn hold_a_direct_video_push(src: &gst::Element) -> HeldPush {
    let hold: Arc<(Mutex<Hold>, std::sync::Condvar)> = Arc::default();
    let h = hold.clone();
    src.connect_pad_added(move |_, pad| {
        let (h, video) = (h.clone(), pad.name() == "video");
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Ok;
            };
            let (state, cond) = &*h;
            let mut st = state.lock().unwrap();
            if !video {
                st.audio_pts = Some(pts);
                cond.notify_all();
                return gst::PadProbeReturn::Ok;
            }
            let me = std::thread::current().id();
            let own = *st.own.get_or_insert(me);
            if me == own {
                return gst::PadProbeReturn::Ok;
            }
            if st.held {
                st.direct_after += 1;
                return gst::PadProbeReturn::Ok;
            }
            st.held = true;
            let until = pts + gst::ClockTime::from_mseconds(500);
            let (mut st, wait) = cond
                .wait_timeout_while(st, Duration::from_secs(10), |s| {
                    s.audio_pts.is_none_or(|a| a < until)
                })
                .unwrap();
            st.timed_out = wait.timed_out();
            gst::PadProbeReturn::Ok
        });
    });
    HeldPush(hold)
}

/// Panics unless an element's `stats` (with `measure-latency=true`) has
/// latency figures for video and audio, each p50 above 0 and at most its
/// p99; `what` names the element in the message.
pub fn assert_latency_figures(stats: &gst::Structure, what: &str) {
    for kind in ["video", "audio"] {
        let field = |q: &str| {
            let f = format!("{kind}-latency-{q}");
            stats
                .get::<u64>(&f)
                .unwrap_or_else(|_| panic!("{what}: no {f} in {stats}"))
        };
        let (p50, p99) = (field("p50"), field("p99"));
        assert!(p50 > 0 && p50 <= p99, "{what} {kind}: {stats}");
    }
}

/// A buffer that reached a sink of `seek_player`, with its stream time.
#[derive(Debug, Clone)]
pub struct AfterSeek {
    pub video: bool,
    /// Stream time of the DTS, in milliseconds; -1 before the segment.
    pub dts_ms: i64,
    pub key: bool,
    pub discont: bool,
    pub crc: u32,
}

pub type SeekLog = Arc<Mutex<Vec<AfterSeek>>>;

/// rtmpsrc (with more properties, `k=v` words) into fakesinks, in real
/// time as a player's, that keep per pad what came after the last flush;
/// also how many flushes came.
pub fn seek_player(url: &str, extra: &str) -> (gst::Pipeline, SeekLog, Arc<Mutex<u32>>) {
    let p = gst::Pipeline::new();
    let src = rtmpsrc(url, extra);
    p.add(&src).unwrap();
    let log: SeekLog = Arc::default();
    let flushes: Arc<Mutex<u32>> = Arc::default();
    let (log2, flushes2) = (log.clone(), flushes.clone());
    sink_per_pad(&p, &src, true, move |pad, sinkpad| {
        let video = pad.name().starts_with("video");
        let (log, flushes) = (log2.clone(), flushes2.clone());
        let segment = Mutex::new(gst::FormattedSegment::<gst::ClockTime>::new());
        sinkpad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::EVENT_FLUSH,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let m = b.map_readable().unwrap();
                        let dts = segment.lock().unwrap().to_stream_time(b.dts().unwrap());
                        log.lock().unwrap().push(AfterSeek {
                            video,
                            dts_ms: dts.map_or(-1, |t| t.mseconds() as i64),
                            key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                            discont: b.flags().contains(gst::BufferFlags::DISCONT),
                            crc: crc32(&m),
                        });
                    }
                    Some(gst::PadProbeData::Event(e)) => match e.view() {
                        gst::EventView::Segment(s) => {
                            *segment.lock().unwrap() = s.segment().clone().downcast().unwrap();
                        }
                        gst::EventView::FlushStop(_) => {
                            *flushes.lock().unwrap() += 1;
                            log.lock().unwrap().retain(|f| f.video != video);
                        }
                        _ => {}
                    },
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    });
    (p, log, flushes)
}

/// Asserts that the video a `seek_player` kept is a recorded file's from
/// the key frame the server went to (within a second of `near_ms`) up to
/// the last frame before `until_ms`: every frame (CRC, key flag) and each
/// at the file's time as stream time, within 1 ms. Returns the index of
/// that key frame in `file`.
pub fn assert_video_from_server_key(
    what: &str,
    got: &[&AfterSeek],
    file: &[&Frame],
    near_ms: i64,
    until_ms: i64,
) -> usize {
    let k = got
        .first()
        .and_then(|g| file.iter().position(|f| f.crc == g.crc))
        .unwrap_or_else(|| panic!("{what}: the first video frame is not the file's"));
    assert!(
        file[k].key,
        "{what}: the stream went on at a frame that is not a key frame"
    );
    assert!(
        (file[k].dts - near_ms).abs() <= 1000,
        "{what}: the stream went on at {} ms, {near_ms} ms asked",
        file[k].dts
    );
    let want: Vec<&&Frame> = file[k..].iter().take_while(|f| f.dts < until_ms).collect();
    let got_frames: Vec<(u32, bool)> = got.iter().map(|g| (g.crc, g.key)).collect();
    let want_frames: Vec<(u32, bool)> = want.iter().map(|w| (w.crc, w.key)).collect();
    assert_eq!(
        got_frames, want_frames,
        "{what}: video frames (CRC, key) from {} ms",
        file[k].dts
    );
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g.dts_ms - w.dts).abs() <= 1,
            "{what}: video at {} ms came at stream time {} ms",
            w.dts,
            g.dts_ms
        );
    }
    k
}

/// Asserts that the audio a `seek_player` kept is a run of a recorded
/// file's frames (by CRC; nginx's MP4 reader gives it in RTMP time some
/// 90 ms earlier than the FLV file had it), whose last frame is in the
/// last 100 ms before `stop_ms` if the stream stopped there.
pub fn assert_audio_run(what: &str, got: &[&AfterSeek], file: &[&Frame], stop_ms: Option<i64>) {
    let a0 = got
        .first()
        .and_then(|g| file.iter().position(|f| f.crc == g.crc))
        .unwrap_or_else(|| panic!("{what}: the first audio frame is not the file's"));
    let crcs: Vec<u32> = got.iter().map(|o| o.crc).collect();
    let want: Vec<u32> = file[a0..].iter().take(got.len()).map(|f| f.crc).collect();
    assert_eq!(
        crcs, want,
        "{what}: audio from {} ms: not a run of the file's",
        file[a0].dts
    );
    if let Some(stop) = stop_ms {
        let last = got.last().unwrap().dts_ms;
        assert!(
            (stop - 100..stop).contains(&last),
            "{what}: the last audio frame is at {last} ms, the stop at {stop} ms"
        );
    }
}

/// Waits until a `seek_player` kept `n` video frames since its last
/// flush, at most `limit`: whether it did.
pub fn video_came(log: &SeekLog, n: usize, limit: Duration) -> bool {
    wait_until(limit, || {
        log.lock().unwrap().iter().filter(|f| f.video).count() >= n
    })
}

/// Waits until `f` holds, at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
