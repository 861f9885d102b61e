// SPDX-License-Identifier: MPL-2.0
//! rtmpsrc's `src` pad: the stream as FLV, as librtmp's rtmpsrc (whose
//! element name ours takes over) and rtmp2src give it, so that the
//! pipelines written for them keep working: `rtmpsrc ! flvdemux` links it
//! by its caps; `rtmpsrc name=s s.src ! queue ! flvdemux` and `s.src !
//! filesink location=x.flv` by its name; and where what rtmpsrc's first
//! elementary pad went to wants the whole stream (`rtmpsrc ! decodebin`,
//! `rtmpsrc ! filesink`), or nothing took it (`rtmpsrc ! queue !
//! flvdemux`), rtmpsrc gives the FLV pad instead.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::player::*;
use common::server::*;
use common::*;
use gst::prelude::*;
use gstrtmp::rtmp::amf0::{self, Amf0Value};
use gstrtmp::rtmp::flv::{FlvTag, tag_type};

fn pad_names(e: &gst::Element) -> Vec<String> {
    e.pads().iter().map(|p| p.name().to_string()).collect()
}

fn metadata(tags: &[FlvTag]) -> Vec<Vec<Amf0Value>> {
    tags.iter()
        .filter(|t| t.tag_type == tag_type::SCRIPT)
        .map(|t| amf0::decode_all(&t.data, &Default::default()).unwrap())
        .collect()
}

/// `rtmpsrc mode=server` (with `props`) recording its `src` pad into
/// `out`, playing: the pipeline and the URL to publish to.
fn recorder(props: &str, out: &std::path::Path) -> (gst::Pipeline, String) {
    recording(props, "s.src", out)
}

/// `rtmpsrc mode=server` (with `props`, named `s`) linked to a filesink
/// writing `out` from `from` (`s.src`, or `s.` for no pad named), playing:
/// the pipeline and the URL to publish to.
fn recording(props: &str, from: &str, out: &std::path::Path) -> (gst::Pipeline, String) {
    let p = launch(&format!(
        "rtmpsrc name=s mode=server {props} location=rtmp://127.0.0.1:0/live/key \
         {from} ! filesink location={}",
        out.display()
    ));
    p.set_state(gst::State::Playing).unwrap();
    let port = port_of(&element(&p, "rtmpsrc"));
    (p, format!("rtmp://127.0.0.1:{port}/live/key"))
}

/// `rtmpsrc mode=server ! filesink`, taking a file's tags published with
/// the core's client: the recording is an FLV file with the file's audio
/// and video tags byte for byte, with their timestamps, the metadata's
/// values, and a header that says what the metadata says; FFmpeg reads
/// the same frames in it as in the file.
#[test]
fn filesink_records_the_published_tags() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("flv-out");
    for (tracks, name, flags) in [
        (Tracks::AudioVideo, "av", 0x05),
        (Tracks::VideoOnly, "v", 0x01),
        (Tracks::AudioOnly, "a", 0x04),
    ] {
        let media = make_flv(&dir, &format!("{name}.flv"), 2, tracks);
        let out = dir.path(&format!("{name}-recorded.flv"));
        let (p, url) = recorder("eos-on-unpublish=true", &out);
        let src = element(&p, "rtmpsrc");
        assert_eq!(pad_names(&src), ["src"], "filesink got the FLV pad");
        let tags = read_flv_tags(&media);
        publish_tags(&url, &tags).unwrap();
        play_to_eos(&p, Duration::from_secs(20));
        assert_eq!(pad_names(&src), ["src"], "no elementary pad came");

        let data = std::fs::read(&out).unwrap();
        assert_eq!(&data[..4], b"FLV\x01", "{name}: the file header");
        assert_eq!(data[4], flags, "{name}: the header's audio/video flags");
        let got = read_flv_tags(&out);
        assert_eq!(
            got.first().map(|t| t.tag_type),
            Some(tag_type::SCRIPT),
            "{name}: the metadata first"
        );
        assert_eq!(metadata(&got), metadata(&tags), "{name}: the metadata");
        let (want, have) = (av_of_tags(&tags), av_of_tags(&got));
        assert_eq!(have.len(), want.len(), "{name}: audio and video tags");
        for (i, (h, w)) in have.iter().zip(&want).enumerate() {
            assert!(h == w, "{name}: tag {i} differs ({:?} vs {:?})", h.1, w.1);
        }
        assert_same_frames(
            &format!("{name}: ffprobe of the recording"),
            &ffprobe_frames(out.to_str().unwrap()),
            &ffprobe_frames(media.to_str().unwrap()),
        );
    }
}

/// Launch lines written for librtmp's rtmpsrc: `rtmpsrc ! flvdemux` links
/// rtmpsrc's `src` pad (so does `s.src ! queue ! flvdemux`), and flvdemux
/// gives every frame of the file FFmpeg published through nginx-rtmp
/// (payload, PTS, DTS, key flag).
#[test]
fn flvdemux_behind_rtmpsrc_gets_every_frame() {
    needs!("nginx", "ffmpeg");
    init();
    let dir = TempDir::new("flv-demux");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let nginx = Nginx::start("");
    // The first line as tutorials write it for librtmp's rtmpsrc and
    // rtmp2src, with BaseSrc's properties: they leave the frames and
    // their times as they are, as there.
    // The third as written for librtmp's rtmpsrc: the queue takes any
    // caps, asks flvdemux, and so takes no elementary pad; the FLV pad
    // offered then is what it links (when the stream starts).
    for (i, (props, link)) in [
        ("do-timestamp=true typefind=true blocksize=16384 ", "! "),
        ("", "src.src ! queue ! "),
        ("", "! queue ! "),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("flvdemux{i}");
        let url = nginx.url(&name);
        let p = launch(&format!(
            "rtmpsrc name=src {props}location={url} {link}flvdemux name=d"
        ));
        let src = p.by_name("src").unwrap();
        let offered = link == "! queue ! ";
        let want: &[&str] = if offered { &[] } else { &["src"] };
        assert_eq!(pad_names(&src), want, "{link}flvdemux, before the stream");
        let added = pads_added(&src);
        let (log, caps) = record_pads(&p, &p.by_name("d").unwrap());
        plays_the_file(
            &p,
            &nginx,
            &name,
            &media,
            &log,
            &format!("{props}{link}flvdemux"),
        );
        assert_eq!(
            caps_names(&caps),
            ["video/x-h264", "audio/mpeg"],
            "flvdemux's caps"
        );
        // Offered: the video pad came first, went unlinked, and went.
        let want: &[&str] = if offered { &["video", "src"] } else { &[] };
        assert_eq!(*added.lock().unwrap(), want, "pads added");
    }
}

/// `p` (rtmpsrc playing `name` from nginx-rtmp, into an flvdemux) played
/// while FFmpeg publishes `media` there: `log` recorded every frame of the
/// file, in order, with its time and payload.
fn plays_the_file(
    p: &gst::Pipeline,
    nginx: &Nginx,
    name: &str,
    media: &std::path::Path,
    log: &OutLog,
    what: &str,
) {
    p.set_state(gst::State::Playing).unwrap();
    nginx.wait_player(name);
    ffmpeg_publish(media, &nginx.url(name));
    play_to_eos(p, Duration::from_secs(20));
    // flvdemux stamps audio with a PTS only.
    for o in log.lock().unwrap().iter_mut() {
        if o.dts < 0 {
            o.dts = o.pts;
        }
    }
    assert_delivered_file(
        &format!("rtmpsrc {what}, vs ffprobe of the published file"),
        log,
        media,
    );
}

/// The names of the pads `e` adds from now on, in order.
fn pads_added(e: &gst::Element) -> Arc<Mutex<Vec<String>>> {
    let added: Arc<Mutex<Vec<String>>> = Arc::default();
    let a = added.clone();
    e.connect_pad_added(move |_, pad| a.lock().unwrap().push(pad.name().to_string()));
    added
}

/// The `src` pad once at most, and never beside the elementary pads: a
/// second request is refused, and so is one once the stream plays on the
/// `video`/`audio` pads. Released, it leaves the elementary pads to come.
#[test]
fn one_flv_pad_and_only_instead_of_the_elementary_ones() {
    needs!("ffmpeg");
    init();
    let src = gst::ElementFactory::make("rtmpsrc").build().unwrap();
    let flv = src.request_pad_simple("src").expect("the FLV pad");
    assert_eq!(flv.name(), "src");
    assert_eq!(
        flv.pad_template_caps().structure(0).unwrap().name(),
        "video/x-flv"
    );
    let templ = src.pad_template("src").unwrap();
    assert!(
        src.request_pad(&templ, None, None).is_none(),
        "a second FLV pad"
    );
    src.release_request_pad(&flv);
    assert!(pad_names(&src).is_empty(), "released");

    // Playing on elementary pads: a request then is refused.
    let (p, log, _caps, _notes, port) = src_server("eos-on-unpublish=true");
    let dir = TempDir::new("flv-refused");
    let media = make_flv(&dir, "in.flv", 1, Tracks::AudioVideo);
    publish_tags(
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        &read_flv_tags(&media),
    )
    .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < end, "nothing played");
        std::thread::sleep(Duration::from_millis(10));
    }
    let rtmpsrc = element(&p, "rtmpsrc");
    let refused = rtmpsrc.request_pad_simple("src");
    play_to_eos(&p, Duration::from_secs(20));
    assert!(
        refused.is_none(),
        "an FLV pad beside {:?}",
        pad_names(&rtmpsrc)
    );
    assert!(
        !log.lock().unwrap().is_empty(),
        "the elementary pads played"
    );
}

/// `num-buffers` counts the FLV pad's tags, the metadata's too, as
/// rtmp2src's BaseSrc counts its buffers: the recording holds the first
/// that many tags published.
#[test]
fn num_buffers_counts_flv_tags() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("flv-num-buffers");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let out = dir.path("recorded.flv");
    let (p, url) = recorder("num-buffers=20", &out);
    let tags = read_flv_tags(&media);
    let sent = tags.clone();
    std::thread::spawn(move || {
        publish_tags(&url, &sent).ok();
    });
    play_to_eos(&p, Duration::from_secs(20));
    let got = read_flv_tags(&out);
    assert_eq!(got.len(), 20, "tags recorded");
    assert_eq!(got[0].tag_type, tag_type::SCRIPT);
    assert_eq!(av_of_tags(&got), av_of_tags(&tags[..20]));
}

/// Nothing takes the elementary pads nor the FLV pad offered after the
/// first of them (a queue before an element of other caps): the error
/// names the pads and how to link them, not only "Internal data stream
/// error".
#[test]
fn nothing_linked_says_how_to_link_the_pads() {
    init();
    let p = launch(
        "rtmpsrc mode=server location=rtmp://127.0.0.1:0/live/key ! queue ! jpegdec ! fakesink",
    );
    p.set_state(gst::State::Playing).unwrap();
    let port = port_of(&element(&p, "rtmpsrc"));
    // A live publisher: the pads' pushes go on failing.
    let publisher = launch(&LIVE_AV.replace("URL", &format!("rtmp://127.0.0.1:{port}/live/key")));
    publisher.set_state(gst::State::Playing).unwrap();
    let (error, _) = expect_error(&p, Duration::from_secs(20));
    publisher.set_state(gst::State::Null).unwrap();
    assert!(
        error.starts_with("Nothing is linked to rtmpsrc's pads: ")
            && error.contains("video (video/x-h264)")
            && error.contains("s.src ! ..."),
        "{error}"
    );
}

/// `rtmpsrc ! decodebin name=d d. ! ... d. ! ...`, as written for
/// rtmp2src and librtmp's rtmpsrc, whose FLV decodebin takes whole, and
/// the same with a queue before decodebin: decodebin takes rtmpsrc's first
/// pad, and so gets the whole stream, as FLV on the src pad. Both of the
/// line's branches link, every frame of both tracks comes out of decodebin
/// (checked against ffprobe of the published file), and the pipeline
/// plays to the end. Before, decodebin took the video pad alone: the
/// second branch never linked, its sink never prerolled, and the pipeline
/// stayed paused.
#[test]
fn decodebin_behind_rtmpsrc_gets_every_stream() {
    needs!("nginx", "ffmpeg");
    init();
    let dir = TempDir::new("flv-decodebin");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let nginx = Nginx::start("");
    for (i, link) in ["! ", "! queue ! "].into_iter().enumerate() {
        let name = format!("decodebin{i}");
        let url = nginx.url(&name);
        // Parsed, not decoded: decodebin stops at these caps.
        let p = launch(&format!(
            "rtmpsrc name=src location={url} {link}decodebin caps=video/x-h264;audio/mpeg name=d \
             d. ! queue ! fakesink sync=false d. ! queue ! fakesink sync=false"
        ));
        let added = pads_added(&p.by_name("src").unwrap());
        let log = OutLog::default();
        let caps: Arc<Mutex<Vec<gst::Caps>>> = Arc::default();
        let (log2, caps2) = (log.clone(), caps.clone());
        // After the launch line's own handlers, which link the pad.
        p.by_name("d")
            .unwrap()
            .connect_pad_added(move |_, pad| record(pad, log2.clone(), caps2.clone()));
        plays_the_file(&p, &nginx, &name, &media, &log, &format!("{link}decodebin"));
        let mut names = caps_names(&caps);
        names.sort();
        names.dedup();
        assert_eq!(names, ["audio/mpeg", "video/x-h264"], "decodebin's caps");
        // The video pad came first, went to decodebin, and made way.
        assert_eq!(*added.lock().unwrap(), ["video", "src"], "pads added");
    }
}

/// `rtmpsrc ! filesink location=x.flv`, as written for librtmp's rtmpsrc:
/// the file is FLV, with every published tag byte for byte (the elementary
/// video pad would have given H.264 without its framing or the audio, and
/// does with auto-flv=false).
#[test]
fn filesink_behind_rtmpsrc_records_flv() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("flv-filesink");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let out = dir.path("recorded.flv");
    let (p, url) = recording("eos-on-unpublish=true", "s.", &out);
    let tags = read_flv_tags(&media);
    publish_tags(&url, &tags).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    let got = read_flv_tags(&out);
    assert_eq!(av_of_tags(&got), av_of_tags(&tags), "the recorded tags");
    assert_eq!(metadata(&got).len(), 1, "the metadata, once");

    // auto-flv=false: the video pad stays where the line linked it, and
    // the file has its frames as they are (AVC, each NAL unit after its
    // length), with no FLV around them.
    let raw = dir.path("video.h264");
    let (p, url) = recording("eos-on-unpublish=true auto-flv=false", "s.", &raw);
    let added = pads_added(&p.by_name("s").unwrap());
    publish_tags(&url, &tags).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    let frames: Vec<u8> = tags
        .iter()
        .filter(|t| t.tag_type == tag_type::VIDEO && t.data.get(1) == Some(&1))
        .flat_map(|t| t.data[5..].to_vec())
        .collect();
    let got = std::fs::read(&raw).unwrap();
    assert!(
        got == frames,
        "auto-flv=false: {} bytes recorded, the video frames are {} bytes (starting {:02x?})",
        got.len(),
        frames.len(),
        &got[..got.len().min(8)]
    );
    assert_eq!(*added.lock().unwrap(), ["video", "audio"], "pads added");
}

/// `rtmpsrc ! queue ! rtmpsink`, the relay as written for librtmp's
/// elements: gst-launch links the queue to rtmpsink's first template that
/// fits (`video`) before anything plays, and rtmpsrc's first pad (video)
/// to the queue. rtmpsrc then gives the queue its FLV pad and rtmpsink
/// takes it on its `sink` pad, so the whole stream goes on: nginx-rtmp
/// records every frame of both tracks, as FFmpeg reads them in the file.
/// So for each of two destinations past a tee (`rtmpsrc ! tee name=t t. !
/// queue ! rtmpsink ... t. ! queue ! rtmpsink ...`). Where the launch line
/// links both tracks by name, both stay elementary pads, and the relay is
/// just as whole.
#[test]
fn a_relay_past_a_queue_relays_the_whole_stream() {
    needs!("nginx", "ffprobe");
    init();
    let dir = TempDir::new("flv-relay");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let want = ffprobe_frames(media.to_str().unwrap());
    let nginx = Nginx::start(RECORD_ALL);
    let flv: (&[&str], &[&str], &[&str]) = (&["video"], &["sink"], &["video", "src"]);
    let named: (&[&str], &[&str], &[&str]) = (
        &["video", "audio"],
        &["video", "audio"],
        &["video", "audio"],
    );
    for (i, (link, sinks, (planned, relaying, added))) in [
        ("s. ! queue ! k0.", &["k0"][..], flv),
        (
            "s. ! tee name=t t. ! queue ! k0. t. ! queue ! k1.",
            &["k0", "k1"],
            flv,
        ),
        (
            "s.video ! queue ! k0.video s.audio ! queue ! k0.audio",
            &["k0"],
            named,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let stream = |k: &str| format!("relayed{i}{k}");
        let sinks_desc: Vec<String> = sinks
            .iter()
            .map(|k| format!("rtmpsink name={k} location={}", nginx.url(&stream(k))))
            .collect();
        let p = launch(&format!(
            "rtmpsrc name=s mode=server eos-on-unpublish=true location=rtmp://127.0.0.1:0/live/key \
             {} {link}",
            sinks_desc.join(" ")
        ));
        let pads_of = |k: &str| pad_names(&p.by_name(k).unwrap());
        for k in sinks {
            assert_eq!(pads_of(k), planned, "{link}: {k}'s pads, as launched");
        }
        let pads = pads_added(&p.by_name("s").unwrap());
        p.set_state(gst::State::Playing).unwrap();
        let url = format!(
            "rtmp://127.0.0.1:{}/live/key",
            port_of(&element(&p, "rtmpsrc"))
        );
        publish_tags(&url, &read_flv_tags(&media)).unwrap();
        play_to_eos(&p, Duration::from_secs(20));
        assert_eq!(*pads.lock().unwrap(), added, "{link}: rtmpsrc's pads added");
        for k in sinks {
            assert_eq!(pads_of(k), relaying, "{link}: {k}'s pads, relaying");
            let rec = nginx.recording(&stream(k));
            assert_same_frames(
                &format!("{link}: {k}, recorded by nginx-rtmp, vs the file"),
                &ffprobe_frames(rec.to_str().unwrap()),
                &want,
            );
        }
    }
}

/// Where rtmpsrc's first pad goes to decodebin but flvdemux could not take
/// the stream (here H.265, in Enhanced RTMP, which GStreamer 1.22's
/// flvdemux does not read), it stays on the elementary pads, and
/// `rtmpsrc ! decodebin name=d d. ! ... d. ! ...` gives decodebin the video
/// alone. A warning names the pad left out and how to give decodebin every
/// stream. A pad left out on purpose (`s.video ! fakesink` alone) is not
/// warned of.
#[test]
fn a_pad_left_out_beside_decodebin_is_warned_of() {
    init();
    // Warnings from inside rtmpsrc until `limit`, or until the end; how
    // many buffers the fakesink named `v` took.
    let run = |desc: &str, limit: Duration| -> (Vec<String>, u64) {
        let p = launch(desc);
        let sink = p.by_name("v").unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        p.set_state(gst::State::Playing).unwrap();
        let port = port_of(&element(&p, "rtmpsrc"));
        let publisher =
            launch(&LIVE_HEVC_AAC.replace("URL", &format!("rtmp://127.0.0.1:{port}/live/key")));
        publisher.set_state(gst::State::Playing).unwrap();
        let bus = p.bus().unwrap();
        let mut warnings = Vec::new();
        let end = std::time::Instant::now() + limit;
        while let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(
                end.saturating_duration_since(std::time::Instant::now())
                    .as_nanos() as u64,
            ),
            &[
                gst::MessageType::Warning,
                gst::MessageType::Eos,
                gst::MessageType::Error,
            ],
        ) {
            match m.view() {
                gst::MessageView::Warning(w)
                    if m.src().is_some_and(|s| s.path_string().contains("rtmpsrc")) =>
                {
                    warnings.push(w.error().to_string());
                }
                gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
                gst::MessageView::Eos(_) => break,
                _ => {}
            }
        }
        publisher.set_state(gst::State::Null).unwrap();
        p.set_state(gst::State::Null).unwrap();
        (warnings, count.load(std::sync::atomic::Ordering::Relaxed))
    };
    // The branch that never links has a sink that does not wait for a
    // preroll, so that the pipeline plays: the publisher's 4 s, its 120
    // frames less the few before rtmpsrc had the stream, went through
    // decodebin (parsed, not decoded).
    let (warnings, video) = run(
        "rtmpsrc mode=server eos-on-unpublish=true location=rtmp://127.0.0.1:0/live/key \
         ! decodebin caps=video/x-h265;audio/mpeg name=d \
         d. ! queue ! fakesink name=v d. ! queue ! fakesink name=a async=false",
        Duration::from_secs(8),
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with("Nothing is linked to rtmpsrc's audio pad (audio/mpeg)")
            && w.contains("Its video pad went to d (decodebin)")
            && w.contains("link each pad by name (rtmpsrc name=s s.video ! decodebin"),
        "{w}"
    );
    assert!(video >= 100, "{video} video frames through decodebin");
    // The audio left out on purpose: no warning, every frame to the end.
    let (warnings, video) = run(
        "rtmpsrc mode=server eos-on-unpublish=true name=s location=rtmp://127.0.0.1:0/live/key \
         s.video ! fakesink name=v",
        Duration::from_secs(20),
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(video >= 100, "{video} video frames");
}

/// `LIVE_AV` with its video in H.265 (Enhanced RTMP on the wire).
const LIVE_HEVC_AAC: &str = "videotestsrc is-live=true num-buffers=120 ! video/x-raw,width=320,height=240,framerate=30/1 ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h265parse ! s.video audiotestsrc is-live=true num-buffers=172 samplesperbuffer=1024 ! avenc_aac ! aacparse ! s.audio rtmpsink name=s location=URL";

/// Data messages other than the metadata (cue points sent with
/// `@setDataFrame`, text with a handler of its own) are recorded where
/// they came, as the handler and its values a server passes on to its
/// players; a cue point does not replace the metadata.
#[test]
fn cue_points_and_text_are_recorded_with_the_media() {
    needs!("ffmpeg");
    use gstrtmp::net::blocking::BlockingClient;
    use gstrtmp::rtmp::message::DataMessage;
    use gstrtmp::rtmp::session::{ClientConfig, ClientMode};
    use gstrtmp::rtmp::url::RtmpUrl;
    init();
    let dir = TempDir::new("flv-data");
    let media = make_flv(&dir, "in.flv", 1, Tracks::AudioVideo);
    let out = dir.path("recorded.flv");
    let (p, url) = recorder("eos-on-unpublish=true", &out);
    let tags = read_flv_tags(&media);
    let cue = Amf0Value::Object(vec![
        ("name".into(), Amf0Value::string("break")),
        ("time".into(), Amf0Value::Number(0.4)),
    ]);
    let text = Amf0Value::Object(vec![("text".into(), Amf0Value::string("hello"))]);
    let url = RtmpUrl::parse(&url).unwrap();
    let mut c = BlockingClient::open(&url, ClientConfig::new(ClientMode::Publish, &url)).unwrap();
    let mut av = 0;
    for t in &tags {
        send_tag(&mut c, t).unwrap();
        if t.tag_type == tag_type::SCRIPT {
            continue;
        }
        av += 1;
        let d = match av {
            10 => DataMessage::SetDataFrame {
                name: "onCuePoint".into(),
                value: cue.clone(),
            },
            20 => DataMessage::Other {
                name: "onTextData".into(),
                values: vec![text.clone()],
            },
            _ => continue,
        };
        c.send_data(t.timestamp, &d).unwrap();
    }
    c.finish().unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    let got = read_flv_tags(&out);
    let scripts: Vec<(usize, Vec<Amf0Value>)> = got
        .iter()
        .enumerate()
        .filter(|(_, t)| t.tag_type == tag_type::SCRIPT)
        .map(|(i, t)| (i, amf0::decode_all(&t.data, &Default::default()).unwrap()))
        .collect();
    let names: Vec<&str> = scripts
        .iter()
        .map(|(_, v)| v[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["onMetaData", "onCuePoint", "onTextData"]);
    assert_eq!(scripts[1].1[1], cue);
    assert_eq!(scripts[2].1[1], text);
    // Each after the media it followed (the metadata first).
    assert_eq!(
        scripts.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 11, 22]
    );
    assert_eq!(av_of_tags(&got), av_of_tags(&tags));
}
