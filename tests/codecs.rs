// SPDX-License-Identifier: MPL-2.0
//! Every codec rtmpsink takes, from GStreamer's encoders and parsers,
//! through nginx-rtmp to rtmpsrc: the same frames arrive (payload
//! checksums, key flags, times), with caps the matching parser and decoder
//! take (each stream is decoded to the end without an error, every video
//! frame decoded). nginx's recording of the same stream is decoded by
//! FFmpeg 9, the reference Enhanced RTMP implementation, frame for frame.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::player::*;
use common::server::{FFMPEG_PLAYER, framemd5_counts, paused_sink_server};
use common::*;
use gst::prelude::*;

/// rtmpsrc with `video` and `audio` decoding chains (gst-launch bins) on
/// its pads; records what rtmpsrc gave, its caps, and how many buffers
/// each decoding chain gave.
struct DecodingPlayer {
    pipeline: gst::Pipeline,
    got: OutLog,
    caps: Arc<Mutex<Vec<gst::Caps>>>,
    decoded_video: Arc<Mutex<u64>>,
    decoded_audio: Arc<Mutex<u64>>,
}

fn decoding_player(url: &str, video: &'static str, audio: &'static str) -> DecodingPlayer {
    decoding_player_with(url, "", video, audio)
}

/// `decoding_player` with more rtmpsrc properties (`k=v` words).
fn decoding_player_with(
    url: &str,
    extra: &str,
    video: &'static str,
    audio: &'static str,
) -> DecodingPlayer {
    let pipeline = gst::Pipeline::new();
    let src = rtmpsrc(url, extra);
    pipeline.add(&src).unwrap();
    let player = DecodingPlayer {
        pipeline: pipeline.clone(),
        got: OutLog::default(),
        caps: Arc::default(),
        decoded_video: Arc::default(),
        decoded_audio: Arc::default(),
    };
    let (got, caps) = (player.got.clone(), player.caps.clone());
    let (decoded_video, decoded_audio) =
        (player.decoded_video.clone(), player.decoded_audio.clone());
    let weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(p) = weak.upgrade() else { return };
        let is_video = pad.name() == "video";
        let desc = format!(
            "{} ! fakesink name=out sync=false",
            if is_video { video } else { audio }
        );
        let bin = gst::parse::bin_from_description(&desc, true).unwrap();
        p.add(&bin).unwrap();
        bin.sync_state_with_parent().unwrap();
        let decoded = match is_video {
            true => decoded_video.clone(),
            false => decoded_audio.clone(),
        };
        let out = bin.by_name("out").unwrap();
        out.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                *decoded.lock().unwrap() += 1;
                gst::PadProbeReturn::Ok
            });
        record(pad, got.clone(), caps.clone());
        pad.link(&bin.static_pad("sink").unwrap()).unwrap();
    });
    player
}

/// One codec pair through nginx: `publish` names its last elements before
/// rtmpsink `sentv`/`senta`; `video`/`audio` decode on the player's side;
/// `want_caps` are the caps names rtmpsrc must give.
fn round_trip(
    name: &str,
    publish: &str,
    video: &'static str,
    audio: &'static str,
    want_caps: &[&str],
) {
    init();
    // nginx-rtmp waits for a frame of FLV frame type 1 before it relays
    // video to a player (wait_key, on by default); Enhanced RTMP sets the
    // type's high bit, so without this nginx never relays its video.
    let nginx = Nginx::start("wait_key off;");
    let url = nginx.url(name);
    let player = decoding_player(&url, video, audio);
    player.pipeline.set_state(gst::State::Playing).unwrap();
    nginx.wait_player(name);
    let mut sent = publish_to_eos(&format!(
        "{publish} rtmpsink name=s sync=false location={url}"
    ));
    stamp_untimed_first(&mut sent);
    play_to_eos(&player.pipeline, Duration::from_secs(30));
    let got = player.got.lock().unwrap().clone();
    same_frames(
        &format!("{name}: rtmpsink -> nginx -> rtmpsrc"),
        &sent,
        &got,
        true,
    );
    let caps = caps_names(&player.caps);
    for want in want_caps {
        assert!(
            caps.iter().any(|c| c == want),
            "{name}: no {want} caps in {caps:?}"
        );
    }
    let sent_video = sent.iter().filter(|o| o.video).count() as u64;
    if sent_video > 0 {
        assert_eq!(
            *player.decoded_video.lock().unwrap(),
            sent_video,
            "{name}: decoded video frames"
        );
    }
    serve_to_ffmpeg9_and_rtmpsrc(name, publish, video, audio);
}

/// The same stream from rtmpsink mode=server to FFmpeg 9 (the reference
/// Enhanced RTMP player) and rtmpsrc at once: FFmpeg decodes every frame
/// sent, rtmpsrc gives the same frames.
fn serve_to_ffmpeg9_and_rtmpsrc(
    name: &str,
    publish: &str,
    video: &'static str,
    audio: &'static str,
) {
    let ffmpeg9 = common::server::require_ffmpeg9();
    let (server, sent_log, notes, url) = paused_sink_server(publish, "");
    let ff = Command::new(&ffmpeg9)
        .args(FFMPEG_PLAYER)
        .arg("-xerror")
        // Announced in connect: without it FFmpeg is a legacy player, which
        // rtmpsink mode=server sends legacy tracks only.
        .args(["-rtmp_enhanced_codecs", "hvc1,av01,vp09"])
        .args(["-i", &url, "-map", "0", "-f", "framemd5", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let player = decoding_player(&url, video, audio);
    player.pipeline.set_state(gst::State::Playing).unwrap();
    common::server::wait_notice(&notes, "rtmp-client-connected", 2, Duration::from_secs(15));
    server.set_state(gst::State::Playing).unwrap();
    play_to_eos(&server, Duration::from_secs(60));
    play_to_eos(&player.pipeline, Duration::from_secs(20));
    let out = ff.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: FFmpeg 9 playing from rtmpsink mode=server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sent = sent_log.lock().unwrap().clone();
    stamp_untimed_first(&mut sent);
    let got = player.got.lock().unwrap().clone();
    same_frames(
        &format!("{name}: rtmpsink mode=server -> rtmpsrc"),
        &sent,
        &got,
        true,
    );
    let decoded = framemd5_counts(&String::from_utf8_lossy(&out.stdout));
    let sent_video = sent.iter().filter(|o| o.video).count();
    let mut want: Vec<usize> = [sent_video, sent.len() - sent_video]
        .into_iter()
        .filter(|&n| n > 0)
        .collect();
    let mut counts: Vec<usize> = decoded.iter().map(|&(_, n)| n).collect();
    want.sort();
    counts.sort();
    assert_eq!(counts, want, "{name}: frames FFmpeg 9 decoded per stream");
}

/// An encoder's first frame without a timestamp (GStreamer 1.22's
/// speexenc) goes at its segment's start, running time 0 here: what
/// rtmpsink does with it. Any other untimed frame would be an error.
fn stamp_untimed_first(sent: &mut [Out]) {
    for kind in [true, false] {
        let mut frames = sent.iter_mut().filter(|o| o.video == kind);
        if let Some(first) = frames.next()
            && first.dts == -1
        {
            (first.dts, first.pts) = (0, 0);
        }
        assert!(
            frames.all(|o| o.dts != -1),
            "an untimed frame after the first"
        );
    }
}

const VIDEO_RAW: &str =
    "videotestsrc num-buffers=45 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

#[test]
fn hevc_and_opus() {
    needs!("nginx", "ffmpeg9");
    round_trip(
        "hevc-opus",
        &format!(
            "{VIDEO_RAW} ! x265enc speed-preset=ultrafast key-int-max=15 option-string=bframes=2 ! h265parse name=sentv ! s.video \
             audiotestsrc num-buffers=50 ! opusenc ! opusparse name=senta ! s.audio"
        ),
        "h265parse ! avdec_h265",
        "opusparse ! opusdec",
        &["video/x-h265", "audio/x-opus"],
    );
}

#[test]
fn av1_and_flac() {
    needs!("nginx", "ffmpeg9");
    round_trip(
        "av1-flac",
        &format!(
            "{VIDEO_RAW} ! av1enc cpu-used=8 usage-profile=realtime keyframe-max-dist=15 ! av1parse name=sentv ! s.video \
             audiotestsrc num-buffers=50 ! flacenc ! flacparse name=senta ! s.audio"
        ),
        "av1parse ! av1dec",
        "flacparse ! flacdec",
        &["video/x-av1", "audio/x-flac"],
    );
}

#[test]
fn vp9_and_ac3() {
    needs!("nginx", "ffmpeg9");
    round_trip(
        "vp9-ac3",
        &format!(
            "{VIDEO_RAW} ! vp9enc deadline=1 cpu-used=8 keyframe-max-dist=15 ! vp9parse name=sentv ! s.video \
             audiotestsrc num-buffers=50 ! avenc_ac3 ! ac3parse name=senta ! s.audio"
        ),
        "vp9parse ! vp9dec",
        "ac3parse ! avdec_ac3",
        &["video/x-vp9", "audio/x-ac3"],
    );
}

#[test]
fn eac3_audio_only() {
    needs!("nginx", "ffmpeg9");
    round_trip(
        "eac3",
        "audiotestsrc num-buffers=50 ! avenc_eac3 ! ac3parse name=senta ! s.audio",
        "fakesink",
        "ac3parse ! avdec_eac3",
        &["audio/x-eac3"],
    );
}

#[test]
fn legacy_g711_and_pcm() {
    needs!("nginx", "ffmpeg9");
    for (name, enc, dec, caps) in [
        ("alaw", "alawenc", "alawdec", "audio/x-alaw"),
        ("mulaw", "mulawenc", "mulawdec", "audio/x-mulaw"),
    ] {
        round_trip(
            name,
            &format!(
                "audiotestsrc num-buffers=40 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! {enc} name=senta ! s.audio"
            ),
            "fakesink",
            dec,
            &[caps],
        );
    }
    round_trip(
        "pcm",
        "audiotestsrc num-buffers=40 ! audio/x-raw,format=S16LE,rate=22050,channels=2 ! identity name=senta ! s.audio",
        "fakesink",
        "audioconvert",
        &["audio/x-raw"],
    );
}

/// Flash's own codecs from GStreamer's encoders (gst-libav's, FFmpeg's
/// inside): rtmpsink sends them as legacy FLV, as flvmux would, and they
/// come back the same frames with the caps their decoders take, through
/// nginx-rtmp and from rtmpsink mode=server to FFmpeg 9, which decodes
/// every frame.
#[test]
fn flash_codecs_from_gstreamer_encoders() {
    needs!("nginx", "ffmpeg9");
    let video = |enc: &str| {
        format!(
            "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! {enc} name=sentv ! s.video"
        )
    };
    let audio = |enc: &str, rate: u32| {
        format!(
            "audiotestsrc num-buffers=30 ! audio/x-raw,rate={rate},channels=1 ! {enc} name=senta ! s.audio"
        )
    };
    round_trip(
        "sorenson-adpcm",
        &format!("{} {}", video("avenc_flv"), audio("avenc_adpcm_swf", 22050)),
        "avdec_flv",
        "avdec_adpcm_swf",
        &["video/x-flash-video", "audio/x-adpcm"],
    );
    round_trip(
        "screen-nellymoser",
        &format!(
            "{} {}",
            video("videoconvert ! avenc_flashsv"),
            audio("avenc_nellymoser", 16000)
        ),
        "avdec_flashsv",
        "avdec_nellymoser",
        &["video/x-flash-screen", "audio/x-nellymoser"],
    );
    // speexenc's first frame has no timestamp, and its two header packets
    // have no place in FLV: rtmpsink leaves them out, and rtmpsrc makes
    // the headers speexdec starts from.
    round_trip(
        "sorenson-speex",
        &format!("{} {}", video("avenc_flv"), audio("speexenc", 16000)),
        "avdec_flv",
        "speexdec",
        &["video/x-flash-video", "audio/x-speex"],
    );
}

/// flvmux writes speexenc's two header packets as audio tags, as if they
/// were frames, and rtmp2sink sends them so: speexdec then decodes the
/// header as 20 ms of noise. rtmpsink leaves them out of flvmux's stream
/// (nginx-rtmp records the frames alone), and rtmpsrc out of a stream that
/// has them (rtmp2sink's, into rtmpsrc mode=server): the frames speexenc
/// made arrive, and speexdec decodes as many as were sent, not one more.
#[test]
fn speex_header_packets_from_flvmux_stay_out() {
    needs!("nginx");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let publish = |sink: &str, url: &str| {
        let mut sent = publish_to_eos(&format!(
            "audiotestsrc num-buffers=30 ! audio/x-raw,rate=16000,channels=1 ! speexenc name=senta \
             ! flvmux streamable=true ! {sink} sync=false location={url}"
        ));
        stamp_untimed_first(&mut sent);
        // 30 buffers of 1024 samples: 96 frames of 20 ms.
        assert_eq!(sent.len(), 96, "{sink}: frames speexenc made");
        sent
    };
    for (sink, headers) in [("rtmpsink", 0), ("rtmp2sink", 2)] {
        let sent = publish(sink, &nginx.url(sink));
        let recorded: Vec<(usize, u32)> = read_flv_tags(&nginx.recording(sink))
            .iter()
            .filter(|t| t.tag_type == 8)
            .map(|t| (t.data.len() - 1, crc32(&t.data[1..])))
            .collect();
        let frames: Vec<(usize, u32)> = sent.iter().map(|o| (o.size, o.crc)).collect();
        assert_eq!(recorded.len(), frames.len() + headers, "{sink}: audio tags");
        assert_eq!(
            recorded[headers..],
            frames,
            "{sink}: the frames nginx recorded"
        );
    }
    for sink in ["rtmpsink", "rtmp2sink"] {
        let player = decoding_player_with(
            "rtmp://127.0.0.1:0/live/key",
            "mode=server eos-on-unpublish=true",
            "fakesink",
            "speexdec",
        );
        player.pipeline.set_state(gst::State::Playing).unwrap();
        let src = common::server::element(&player.pipeline, "rtmpsrc");
        let port = common::server::port_of(&src);
        let sent = publish(sink, &format!("rtmp://127.0.0.1:{port}/live/key"));
        play_to_eos(&player.pipeline, Duration::from_secs(20));
        let got = player.got.lock().unwrap().clone();
        let what = format!("speexenc ! flvmux ! {sink} -> rtmpsrc mode=server");
        same_frames(&what, &sent, &got, true);
        assert_eq!(caps_names(&player.caps), ["audio/x-speex"], "{what}");
        assert_eq!(*player.decoded_audio.lock().unwrap(), 96, "{what}: decoded");
        player.pipeline.set_state(gst::State::Null).unwrap();
    }
}

/// `ffmpeg` (a path) encodes 1.5 s of test picture at 30 fps and a tone
/// with `codecs` (its options) into an FLV file, then publishes the file
/// into rtmpsrc mode=server, whose pads `video` and `audio` decode: the
/// file, and the player once the stream ended, its caps checked to have
/// each of `want_caps`.
fn ffmpeg_into_server(
    ffmpeg: &str,
    dir: &TempDir,
    name: &str,
    codecs: &str,
    video: &'static str,
    audio: &'static str,
    want_caps: &[&str],
) -> (std::path::PathBuf, DecodingPlayer) {
    let file = dir.path(&format!("{name}.flv"));
    let st = Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc=s=320x240:r=30:d=1.5"])
        .args(["-f", "lavfi", "-i", "sine=d=1.5", "-g", "15"])
        .args(codecs.split_whitespace())
        .args(["-f", "flv"])
        .arg(&file)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{name}: {ffmpeg} could not encode");
    let player = decoding_player_with(
        "rtmp://127.0.0.1:0/live/key",
        "mode=server eos-on-unpublish=true",
        video,
        audio,
    );
    player.pipeline.set_state(gst::State::Playing).unwrap();
    let src = common::server::element(&player.pipeline, "rtmpsrc");
    let port = common::server::port_of(&src);
    let (ok, err) = common::server::ffmpeg_push(
        ffmpeg,
        &file,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(ok, "{name}: {ffmpeg} could not publish: {err}");
    play_to_eos(&player.pipeline, Duration::from_secs(20));
    let caps = caps_names(&player.caps);
    for w in want_caps {
        assert!(
            caps.iter().any(|c| c == w),
            "{name}: no {w} caps in {caps:?}"
        );
    }
    (file, player)
}

/// Flash's own codecs, which FFmpeg's FLV writer still picks by default
/// (Sorenson H.263, screen video 1 and 2, ADPCM, Nellymoser), as FFmpeg
/// publishes them into rtmpsrc mode=server: every packet of FFmpeg's own
/// reading of the file comes out (checksums, sizes, key flags, times),
/// with the caps flvdemux gives (so rtmp2src ! flvdemux plays nothing we
/// do not), and gst-libav's decoders decode every video frame. VP6 maps
/// the same way but has no encoder to make a stream with.
#[test]
fn flash_codecs_from_ffmpeg_play_and_decode() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("flash-codecs");
    for (name, codecs, video, audio, want_caps) in [
        (
            "sorenson-adpcm",
            "-c:v flv1 -c:a adpcm_swf",
            "avdec_flv",
            "avdec_adpcm_swf",
            ["video/x-flash-video", "audio/x-adpcm"],
        ),
        (
            "screen-nellymoser",
            "-c:v flashsv -c:a nellymoser",
            "avdec_flashsv",
            "avdec_nellymoser",
            ["video/x-flash-screen", "audio/x-nellymoser"],
        ),
        (
            "screen2-mp3",
            "-c:v flashsv2 -c:a libmp3lame -ar 22050",
            "avdec_flashsv2",
            "mpegaudioparse ! avdec_mp3",
            ["video/x-flash-screen2", "audio/mpeg"],
        ),
    ] {
        let (file, player) =
            ffmpeg_into_server("ffmpeg", &dir, name, codecs, video, audio, &want_caps);
        let got = player.got.lock().unwrap().clone();
        let want = normalized(ffprobe_frames(file.to_str().unwrap()));
        assert_same_frames(name, &frames(&got), &want);
        let video_frames = got.iter().filter(|o| o.video).count() as u64;
        assert_eq!(video_frames, 45, "{name}: 1.5 s at 30 fps");
        let decoded = *player.decoded_video.lock().unwrap();
        if name == "screen2-mp3" {
            // GStreamer 1.22's avdec_flashsv2 decodes the key frames alone
            // (FFmpeg's decoder inside says "Inter frame without keyframe"
            // for the others, flagged right as the check above shows;
            // FFmpeg itself decodes all 45 of the file): no more is asked.
            let keys = got.iter().filter(|o| o.video && o.key).count() as u64;
            assert!(
                decoded >= keys,
                "{name}: decoded {decoded} of {keys} key frames"
            );
        } else {
            assert_eq!(decoded, video_frames, "{name}: decoded");
        }
    }
}

/// FFmpeg 9 (as OBS would) publishes Enhanced RTMP into rtmpsrc
/// mode=server: every track comes out, with caps its decoder takes, the
/// same packets as FFmpeg's own reading of the file it sent.
#[test]
fn ffmpeg9_publishes_enhanced_codecs_into_rtmpsrc_server() {
    needs!("ffmpeg9");
    init();
    let ffmpeg9 = common::server::require_ffmpeg9();
    let dir = TempDir::new("ff9-ertmp");
    for (name, codecs, video, audio, want_caps) in [
        (
            "hevc-opus",
            "-pix_fmt yuv420p -c:v libx265 -preset ultrafast -c:a libopus",
            "h265parse ! avdec_h265",
            "opusparse ! opusdec",
            ["video/x-h265", "audio/x-opus"],
        ),
        (
            "av1-flac",
            "-pix_fmt yuv420p -c:v libsvtav1 -preset 12 -c:a flac",
            "av1parse ! av1dec",
            "flacparse ! flacdec",
            ["video/x-av1", "audio/x-flac"],
        ),
        (
            "vp9-eac3",
            "-pix_fmt yuv420p -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -c:a eac3",
            "vp9parse ! vp9dec",
            "ac3parse ! avdec_eac3",
            ["video/x-vp9", "audio/x-eac3"],
        ),
    ] {
        let (file, player) =
            ffmpeg_into_server(&ffmpeg9, &dir, name, codecs, video, audio, &want_caps);
        // FFmpeg's packets of the file, per stream: (stream, size).
        let want: Vec<(u32, usize)> = common::server::framecrc(&ffmpeg9, file.to_str().unwrap())
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(',').map(str::trim).collect();
                (f[0].parse().unwrap(), f[4].parse().unwrap())
            })
            .collect();
        let got = player.got.lock().unwrap().clone();
        for (kind, stream_is_video) in [("video", true), ("audio", false)] {
            let got_sizes: Vec<usize> = got
                .iter()
                .filter(|o| o.video == stream_is_video)
                .map(|o| o.size)
                .collect();
            // Stream 0 is video in FFmpeg's file, 1 audio.
            let idx = u32::from(!stream_is_video);
            let want_sizes: Vec<usize> = want
                .iter()
                .filter(|(s, _)| *s == idx)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(got_sizes, want_sizes, "{name}: {kind} packets");
        }
        let video_frames = got.iter().filter(|o| o.video).count() as u64;
        assert_eq!(
            *player.decoded_video.lock().unwrap(),
            video_frames,
            "{name}: decoded"
        );
    }
}

/// `unannounced-codec=fail`: an Enhanced RTMP codec the server did not
/// announce is an error naming it (nginx-rtmp announces nothing); legacy
/// H.264 is never checked; a server that announces the codec (rtmpsrc
/// mode=server echoes what the client offered) gets the stream, and stats
/// show what it announced.
#[test]
fn unannounced_codecs_fail_only_when_asked() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("wait_key off;");
    let hevc = format!("{VIDEO_RAW} ! x265enc speed-preset=ultrafast ! h265parse");
    let p = launch(&format!(
        "{hevc} ! rtmpsink unannounced-codec=fail sync=false location={}",
        nginx.url("strict")
    ));
    p.set_state(gst::State::Playing).unwrap();
    let (msg, _) = expect_error(&p, Duration::from_secs(20));
    assert!(
        msg.contains("did not announce hvc1") && msg.contains("announced no codecs"),
        "{msg}"
    );
    let sent = publish_to_eos(&format!(
        "videotestsrc num-buffers=10 ! x264enc ! h264parse ! rtmpsink unannounced-codec=fail sync=false location={}",
        nginx.url("legacy")
    ));
    assert_eq!(sent.len(), 10);

    let (server, log, _, _, port) = common::server::src_server("eos-on-unpublish=true");
    let publisher = launch(&format!(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x265enc speed-preset=ultrafast tune=zerolatency ! h265parse ! rtmpsink name=s unannounced-codec=fail location=rtmp://127.0.0.1:{port}/live/key"
    ));
    publisher.set_state(gst::State::Playing).unwrap();
    let sink = publisher.by_name("s").unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let announced = loop {
        let stats = sink.property::<gst::Structure>("stats");
        let codecs = stats.get::<String>("server-codecs").unwrap_or_default();
        if !codecs.is_empty() || std::time::Instant::now() > end {
            break codecs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(announced.split(',').any(|c| c == "hvc1"), "{announced}");
    play_to_eos(&publisher, Duration::from_secs(20));
    play_to_eos(&server, Duration::from_secs(20));
    assert_eq!(log.lock().unwrap().iter().filter(|o| o.video).count(), 30);
}

/// rtmpsink mode=server with H.265 and AAC: legacy players (FFmpeg 5.1,
/// and FFmpeg 9 when it announces nothing) get the AAC track only, every
/// frame of it, and no tag they cannot read (FFmpeg 5.1 takes Enhanced RTMP
/// video for screen video and fails); players that announced Enhanced RTMP
/// (rtmpsrc, FFmpeg 9 with -rtmp_enhanced_codecs) get both. With
/// enhanced-to-legacy-players=true, FFmpeg 9 gets both without announcing.
#[test]
fn legacy_players_get_the_legacy_tracks_of_an_enhanced_stream() {
    needs!("ffmpeg", "ffmpeg9");
    init();
    let ffmpeg9 = common::server::require_ffmpeg9();
    let publish = format!(
        "{VIDEO_RAW} ! x265enc speed-preset=ultrafast key-int-max=15 ! h265parse name=sentv ! s.video \
         audiotestsrc num-buffers=50 ! avenc_aac ! aacparse name=senta ! s.audio"
    );
    for to_legacy in [false, true] {
        let (server, sent_log, notes, url) =
            paused_sink_server(&publish, &format!("enhanced-to-legacy-players={to_legacy}"));
        let player = |ffmpeg: &str, extra: &[&str]| {
            Command::new(ffmpeg)
                .args(FFMPEG_PLAYER)
                .args(extra)
                .args(["-i", &url, "-map", "0", "-c", "copy", "-f", "framecrc", "-"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        // (who, player, whether it gets the video)
        let mut players = vec![
            (
                "FFmpeg 9 announcing hvc1",
                player(&ffmpeg9, &["-rtmp_enhanced_codecs", "hvc1"]),
                true,
            ),
            (
                "FFmpeg 9 announcing nothing",
                player(&ffmpeg9, &[]),
                to_legacy,
            ),
        ];
        if !to_legacy {
            players.push(("FFmpeg 5.1", player("ffmpeg", &[]), false));
        }
        let ours = decoding_player(&url, "h265parse ! avdec_h265", "aacparse ! avdec_aac");
        ours.pipeline.set_state(gst::State::Playing).unwrap();
        let n = players.len() + 1;
        common::server::wait_notice(&notes, "rtmp-client-connected", n, Duration::from_secs(15));
        server.set_state(gst::State::Playing).unwrap();
        play_to_eos(&server, Duration::from_secs(60));
        play_to_eos(&ours.pipeline, Duration::from_secs(20));
        let sent = sent_log.lock().unwrap().clone();
        let video = sent.iter().filter(|o| o.video).count();
        let audio = sent.len() - video;
        same_frames("rtmpsrc", &sent, &ours.got.lock().unwrap(), true);
        for (who, child, gets_video) in players {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{who}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut got: Vec<usize> = framemd5_counts(&String::from_utf8_lossy(&out.stdout))
                .iter()
                .map(|&(_, n)| n)
                .collect();
            got.sort();
            let mut want = if gets_video {
                vec![audio, video]
            } else {
                vec![audio]
            };
            want.sort();
            assert_eq!(
                got, want,
                "{who}, enhanced-to-legacy-players={to_legacy}: packets per stream"
            );
        }
    }
}

/// HDR10 H.265: colorimetry, mastering display and content light level
/// from the caps go out as Enhanced RTMP colorInfo and come back as the
/// same caps fields on rtmpsrc's pad (our server, no outside program).
#[test]
fn hdr_caps_travel_as_color_info() {
    init();
    let mdi = "35400:14600:8500:39850:6550:2300:15635:16450:10000000:50";
    let cll = "1000:400";
    let (server, log, caps, _, port) = common::server::src_server("eos-on-unpublish=true");
    let sent = publish_to_eos(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,format=I420_10LE,width=320,height=240,framerate=30/1 \
         ! x265enc speed-preset=ultrafast ! h265parse \
         ! capssetter caps=\"video/x-h265,colorimetry=(string)bt2100-pq,mastering-display-info=(string){mdi},content-light-level=(string){cll}\" \
         ! identity name=sentv ! rtmpsink sync=false location=rtmp://127.0.0.1:{port}/live/key"
    ));
    play_to_eos(&server, Duration::from_secs(20));
    same_frames("HDR10 H.265", &sent, &log.lock().unwrap(), true);
    let caps = caps.lock().unwrap();
    let s = caps
        .iter()
        .rev()
        .find(|c| c.structure(0).unwrap().name() == "video/x-h265")
        .expect("H.265 caps")
        .structure(0)
        .unwrap()
        .to_owned();
    assert_eq!(
        s.get::<&str>("mastering-display-info").ok(),
        Some(mdi),
        "{s}"
    );
    assert_eq!(s.get::<&str>("content-light-level").ok(), Some(cll), "{s}");
    assert_eq!(s.get::<&str>("colorimetry").ok(), Some("bt2100-pq"), "{s}");
}

/// HDR with FFmpeg 9 on the other side, both ways. FFmpeg 9 playing
/// rtmpsink mode=server takes the colour description of its stream from
/// our colorInfo alone (x265enc writes none into the bitstream here: caps
/// saying BT.709 come out BT.709, caps saying HDR10 come out
/// bt2020nc/bt2020/smpte2084). FFmpeg 9 publishing 10-bit H.265 tagged
/// BT.2020 PQ into rtmpsrc mode=server sends a colorInfo with the matrix
/// only: the caps get the BT.2020 matrix, the rest unknown (h265parse
/// fills it from the bitstream).
#[test]
fn ffmpeg9_reads_and_writes_color_info() {
    needs!("ffmpeg9");
    init();
    let ffmpeg9 = common::server::require_ffmpeg9();
    for (caps, want) in [
        (
            "colorimetry=(string)bt2100-pq,mastering-display-info=(string)35400:14600:8500:39850:6550:2300:15635:16450:10000000:50,content-light-level=(string)1000:400",
            "bt2020nc/bt2020/smpte2084",
        ),
        ("colorimetry=(string)bt709", "tv, bt709"),
    ] {
        let publish = format!(
            "videotestsrc num-buffers=10 ! video/x-raw,format=I420_10LE,width=320,height=240,framerate=30/1 \
             ! x265enc speed-preset=ultrafast ! h265parse ! capssetter caps=\"video/x-h265,{caps}\" ! identity name=sentv ! s.video"
        );
        let (server, _, notes, url) = paused_sink_server(&publish, "");
        let ff = Command::new(&ffmpeg9)
            .args(["-hide_banner", "-rw_timeout", "20000000"])
            .args(["-rtmp_enhanced_codecs", "hvc1"])
            .args(["-i", &url, "-c", "copy", "-f", "null", "-"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::server::wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(15));
        server.set_state(gst::State::Playing).unwrap();
        play_to_eos(&server, Duration::from_secs(30));
        let out = ff.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let stream = err
            .lines()
            .find(|l| l.contains("Stream #0:0: Video: hevc"))
            .unwrap_or_else(|| panic!("no video stream in FFmpeg's output: {err}"));
        assert!(stream.contains(want), "{caps}: {stream}");
    }

    let dir = TempDir::new("ff9-hdr");
    let file = dir.path("hdr.flv");
    let st = Command::new(&ffmpeg9)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=s=320x240:r=30:d=1"])
        .args(["-c:v", "libx265", "-pix_fmt", "yuv420p10le"])
        .args(["-x265-params", "log-level=error"])
        .args(["-color_primaries", "bt2020", "-color_trc", "smpte2084"])
        .args(["-colorspace", "bt2020nc", "-color_range", "tv", "-f", "flv"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let (server, log, caps, _, port) = common::server::src_server("eos-on-unpublish=true");
    let (ok, err) = common::server::ffmpeg_push(
        &ffmpeg9,
        &file,
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        false,
    );
    assert!(ok, "FFmpeg 9 could not publish: {err}");
    play_to_eos(&server, Duration::from_secs(20));
    assert_eq!(log.lock().unwrap().len(), 30);
    let caps = caps.lock().unwrap();
    let s = caps.last().expect("caps").structure(0).unwrap().to_owned();
    let c: gst_video::VideoColorimetry = s
        .get::<&str>("colorimetry")
        .unwrap_or_else(|_| panic!("no colorimetry in {s}"))
        .parse()
        .unwrap();
    assert_eq!(c.matrix(), gst_video::VideoColorMatrix::Bt2020, "{s}");
}
