// SPDX-License-Identifier: MPL-2.0
//! rtmpsink against real peers: nginx-rtmp (recording what it receives),
//! `ffmpeg -listen 1`, and rtmp2src playing it back. What was sent is
//! captured on rtmpsink's own pads; what arrived is read by ffprobe.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// One buffer as it entered rtmpsink, in running time (ns).
#[derive(Debug, Clone)]
struct Sent {
    video: bool,
    dts: i64,
    pts: i64,
    key: bool,
    size: usize,
    crc: u32,
}

type SentLog = Arc<Mutex<Vec<Sent>>>;

fn running(seg: &gst::FormattedSegment<gst::ClockTime>, t: Option<gst::ClockTime>) -> Option<i64> {
    Some(match seg.to_running_time_full(t?)? {
        gst::Signed::Positive(v) => v.nseconds() as i64,
        gst::Signed::Negative(v) => -(v.nseconds() as i64),
    })
}

/// Records every buffer that enters `pad` (a pad of rtmpsink).
fn capture(pad: &gst::Pad, log: &SentLog) {
    let video = pad.name() == "video";
    let log = log.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buf) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let seg = pad
            .sticky_event::<gst::event::Segment>(0)
            .expect("segment before buffers");
        let seg = seg
            .segment()
            .downcast_ref::<gst::ClockTime>()
            .unwrap()
            .clone();
        let map = buf.map_readable().unwrap();
        let dts = running(&seg, buf.dts().or(buf.pts())).unwrap();
        let pts = running(&seg, buf.pts().or(buf.dts())).unwrap();
        log.lock().unwrap().push(Sent {
            video,
            dts,
            pts,
            key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
            size: map.len(),
            crc: crc32(&map),
        });
        gst::PadProbeReturn::Ok
    });
}

/// The frames ffprobe should find, in RTMP milliseconds from the first DTS.
fn expected(sent: &[Sent]) -> Vec<Frame> {
    let base = sent.iter().map(|s| s.dts).min().unwrap_or(0);
    let ms = |ns: i64| (ns - base + 500_000).div_euclid(1_000_000);
    sent.iter()
        .map(|s| Frame {
            video: s.video,
            dts: ms(s.dts),
            pts: ms(s.pts),
            key: s.key || !s.video,
            size: s.size,
            crc: s.crc,
        })
        .collect()
}

/// Runs a pipeline to EOS; panics on an error or after `limit`.
fn run(pipeline: &gst::Pipeline, limit: Duration) {
    pipeline.set_state(gst::State::Playing).unwrap();
    common::player::play_to_eos(pipeline, limit);
}

/// Runs a pipeline expecting an error; returns its text and how long it took.
fn run_to_error(pipeline: &gst::Pipeline, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let _ = pipeline.set_state(gst::State::Playing);
    let (e, debug) = expect_error(pipeline, limit);
    (format!("{e} | {debug}"), start.elapsed())
}

const VIDEO: &str = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=2 key-int-max=30 speed-preset=ultrafast ! h264parse";
const AUDIO: &str =
    "audiotestsrc num-buffers=40 ! audio/x-raw,rate=44100,channels=2 ! avenc_aac ! aacparse";

fn build(desc: &str, log: &SentLog) -> gst::Pipeline {
    let p = launch(desc);
    let sink = p.by_name("s").unwrap();
    for pad in sink.sink_pads() {
        if pad.name() != "sink" {
            capture(&pad, log);
        }
    }
    p
}

fn publish_and_check(name: &str, branches: &str) {
    publish_with_and_check(name, branches, "")
}

/// As `publish_and_check`, with more rtmpsink properties.
fn publish_with_and_check(name: &str, branches: &str, props: &str) {
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let log = SentLog::default();
    let p = build(
        &format!(
            "{branches} rtmpsink name=s sync=false {props} location={}",
            nginx.url(name)
        ),
        &log,
    );
    run(&p, Duration::from_secs(60));
    let rec = nginx.recording(name);
    let got = ffprobe_frames(rec.to_str().unwrap());
    let sent = log.lock().unwrap().clone();
    assert!(!sent.is_empty());
    assert_same_frames(
        &format!("{name}: nginx's recording vs what entered rtmpsink"),
        &got,
        &expected(&sent),
    );
}

#[test]
fn audio_video_to_nginx() {
    needs!("nginx", "ffmpeg");
    publish_and_check("av", &format!("{VIDEO} ! s.video {AUDIO} ! s.audio"));
}

/// Live sources, each frame sent as it comes (`interleave=false`): nginx
/// records every frame with its times, and FFmpeg reads the recording.
#[test]
fn live_audio_video_without_interleaving_to_nginx() {
    needs!("nginx", "ffmpeg");
    let live = |b: &str| b.replacen("testsrc ", "testsrc is-live=true ", 1);
    publish_with_and_check(
        "live-noninterleaved",
        &format!("{} ! s.video {} ! s.audio", live(VIDEO), live(AUDIO)),
        "interleave=false",
    );
}

/// A file straight from qtdemux, no queues (qtdemux reading by time gives
/// audio and video interleaved from one thread; the muxer has no thread of
/// its own to wait for): every frame reaches nginx with its times.
#[test]
fn mp4_from_qtdemux_without_queues_to_nginx() {
    needs!("nginx", "ffmpeg");
    let dir = TempDir::new("qtdemux-noqueue");
    let mp4 = dir.path("in.mp4");
    let st = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "6", "-c:v", "libx264", "-bf", "2", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-preset", "veryfast", "-c:a", "aac"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg could not make the test media");
    publish_and_check(
        "mp4-noqueue",
        &format!(
            "filesrc location={} ! qtdemux name=d d.video_0 ! h264parse ! s.video d.audio_0 ! aacparse ! s.audio",
            mp4.display()
        ),
    );
}

/// A TCP proxy in front of `backend`, for one client: what the server
/// sends goes straight through, what the client sends slowly (16 KiB every
/// 20 ms), and none of it past `forward_limit` bytes; when the client
/// closes its side, the proxy drops what it has not forwarded and resets
/// both connections at once. That is what a TLS terminator in front of an
/// RTMP server can do to bytes the server has not read yet when the client
/// goes. Returns the port and how many bytes the proxy dropped.
fn dropping_proxy(backend: u16, forward_limit: usize) -> (u16, std::thread::JoinHandle<usize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let mut server = std::net::TcpStream::connect(("127.0.0.1", backend)).unwrap();
        let (mut from_server, mut to_client) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
        // The client's bytes, read as fast as they come.
        let held = Arc::new(Mutex::new((std::collections::VecDeque::new(), false)));
        let (h, mut from_client) = (held.clone(), client.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                let n = from_client.read(&mut buf).unwrap_or(0);
                let mut h = h.lock().unwrap();
                if n == 0 {
                    h.1 = true;
                    return;
                }
                h.0.extend(&buf[..n]);
            }
        });
        let mut forwarded = 0;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let mut h = held.lock().unwrap();
            if h.1 {
                let dropped = h.0.len();
                for s in [&server, &client] {
                    socket2::SockRef::from(s)
                        .set_linger(Some(Duration::ZERO))
                        .ok();
                    s.shutdown(std::net::Shutdown::Both).ok();
                }
                return dropped;
            }
            let n = h.0.len().min(16 << 10).min(forward_limit - forwarded);
            let piece: Vec<u8> = h.0.drain(..n).collect();
            drop(h);
            forwarded += n;
            if server.write_all(&piece).is_err() {
                return 0;
            }
        }
    });
    (port, handle)
}

/// rtmpsink ends a publish only when the server has read all of it (its
/// answer to a ping sent after the last message says so): a proxy in front
/// of the server that drops what it holds when the client leaves loses
/// nothing, and nginx records every frame.
#[test]
fn a_proxy_that_drops_what_it_holds_at_the_end_loses_nothing() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let (port, proxy) = dropping_proxy(nginx.port, usize::MAX);
    let log = SentLog::default();
    let p = build(
        &format!(
            "{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/proxied"
        ),
        &log,
    );
    run(&p, Duration::from_secs(60));
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(proxy.join().unwrap(), 0, "the proxy dropped bytes");
    let rec = nginx.recording("proxied");
    let got = ffprobe_frames(rec.to_str().unwrap());
    let sent = log.lock().unwrap().clone();
    assert_same_frames(
        "nginx's recording, through a proxy that drops what it holds at the end",
        &got,
        &expected(&sent),
    );
}

/// A server that answered the ping at the start but never sees the one
/// after the last frame (the proxy stops forwarding halfway): the publish
/// still ends, after `timeout`, with a warning that says what may be lost.
#[test]
fn an_unconfirmed_end_is_a_warning() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let (port, proxy) = dropping_proxy(nginx.port, 60_000);
    let p = launch(&format!(
        "{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false timeout=2 location=rtmp://127.0.0.1:{port}/live/unconfirmed"
    ));
    p.set_state(gst::State::Playing).unwrap();
    let warning = last_warning_until_eos(&p, Duration::from_secs(30));
    let dropped = proxy.join().unwrap();
    assert!(dropped > 0, "the proxy forwarded everything");
    let w = warning.expect("a warning");
    assert!(w.contains("did not confirm within 2 s"), "{w}");
}

#[test]
fn video_only_to_nginx() {
    needs!("nginx", "ffmpeg");
    publish_and_check("v", &format!("{VIDEO} ! s.video"));
}

#[test]
fn audio_only_to_nginx() {
    needs!("nginx", "ffmpeg");
    publish_and_check("a", &format!("{AUDIO} ! s.audio"));
}

#[test]
fn pads_link_without_names() {
    needs!("nginx", "ffmpeg");
    // "h264parse ! rtmpsink": the video pad is picked by its caps.
    publish_and_check("unnamed", &format!("{VIDEO} ! s."));
}

#[test]
fn resolution_change_midstream() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let log = SentLog::default();
    let desc = format!(
        "videotestsrc name=vsrc num-buffers=60 ! capsfilter name=cf caps=video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=0 key-int-max=15 speed-preset=ultrafast ! h264parse ! s.video rtmpsink name=s sync=false location={}",
        nginx.url("resize")
    );
    let p = build(&desc, &log);
    resize_at_frame_30(&p);
    run(&p, Duration::from_secs(60));
    let rec = nginx.recording("resize");
    let sent = log.lock().unwrap().clone();
    assert_same_frames(
        "resize",
        &ffprobe_frames(rec.to_str().unwrap()),
        &expected(&sent),
    );
    // Two different AVC sequence headers were recorded, the second after the change.
    let tags = read_flv_tags(&rec);
    let headers: Vec<_> = tags
        .iter()
        .filter(|t| t.tag_type == 9 && t.data.len() > 5 && t.data[0] == 0x17 && t.data[1] == 0)
        .map(|t| t.data.clone())
        .collect();
    assert_eq!(headers.len(), 2, "sequence headers: {}", headers.len());
    assert_ne!(headers[0], headers[1]);
}

/// A location written for librtmp's rtmpsink, options after the URL
/// (`rtmp://host/app/key live=1`, as tutorials for YouTube and Twitch
/// have it): the stream published is still `key`, every frame arrives,
/// and what the options say goes into connect.
#[test]
fn librtmp_options_after_the_url_to_nginx() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let log = SentLog::default();
    let p = build(
        &format!("{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false"),
        &log,
    );
    let location = format!(
        "{} live=1 flashver=FMLE/3.0\\20(librtmp) conn=S:extra timeout=5",
        nginx.url("lib")
    );
    let sink = p.by_name("s").unwrap();
    sink.set_property("location", &location);
    assert_eq!(sink.property::<String>("stream"), "lib");
    // Read back written out again, the options in librtmp's order.
    assert_eq!(
        sink.property::<String>("location"),
        format!(
            "{} flashver=FMLE/3.0\\20(librtmp) conn=S:extra live=1 timeout=5",
            nginx.url("lib")
        )
    );
    run(&p, Duration::from_secs(60));
    let got = ffprobe_frames(nginx.recording("lib").to_str().unwrap());
    assert_same_frames(
        "librtmp-style location: nginx's recording vs what entered rtmpsink",
        &got,
        &expected(&log.lock().unwrap()),
    );
    let said = nginx.error_log();
    assert!(said.contains("flashver='FMLE/3.0 (librtmp)'"), "{said}");
}

/// `stop-commands`, rtmp2sink's flags: what nginx-rtmp logs of the
/// publisher between its `publish` and its disconnection (it logs
/// closeStream and deleteStream, not FCUnpublish) is what was asked, in
/// order; and every frame is in the recording whatever the commands
/// (`none` just closes).
#[test]
fn stop_commands_reach_nginx_in_order() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let cases: [(&str, &[&str]); 3] = [
        ("", &["deleteStream"]),
        ("stop-commands=none", &[]),
        (
            "stop-commands=fcunpublish+closestream+deletestream",
            &["closeStream", "deleteStream"],
        ),
    ];
    for (i, (cmds, want)) in cases.into_iter().enumerate() {
        let name = format!("stop{i}");
        let log = SentLog::default();
        let p = build(
            &format!(
                "{VIDEO} ! s.video rtmpsink name=s sync=false {cmds} location={}",
                nginx.url(&name)
            ),
            &log,
        );
        run(&p, Duration::from_secs(60));
        p.set_state(gst::State::Null).unwrap();
        let got = ffprobe_frames(nginx.recording(&name).to_str().unwrap());
        assert_same_frames(
            &format!("rtmpsink {cmds}: nginx's recording vs what entered rtmpsink"),
            &got,
            &expected(&log.lock().unwrap()),
        );
        let said = nginx.error_log();
        let publish = format!("publish: name='{name}'");
        let line = said
            .lines()
            .find(|l| l.contains(&publish))
            .unwrap_or_else(|| panic!("no {publish}: {said}"));
        // nginx's connection number, "*N".
        let conn = line
            .split_whitespace()
            .find(|w| w.starts_with('*'))
            .unwrap()
            .to_string();
        let commands: Vec<&str> = said
            .lines()
            .filter_map(|l| l.split_once(&format!(" {conn} ")).map(|(_, rest)| rest))
            .skip_while(|rest| !rest.starts_with(&publish))
            .skip(1)
            .take_while(|rest| !rest.starts_with("disconnect"))
            .filter_map(|rest| rest.split(',').next())
            .collect();
        assert_eq!(commands, want, "{cmds}: {said}");
    }
}

#[test]
fn flvmux_path_keeps_working() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let log = SentLog::default();
    let desc = format!(
        "{VIDEO} ! m.video {AUDIO} ! m.audio flvmux name=m streamable=true ! rtmpsink name=s sync=false location={}",
        nginx.url("flvmux")
    );
    let p = launch(&desc);
    // What leaves the parsers (and enters flvmux) is what must arrive.
    for e in p.iterate_recurse().into_iter().flatten() {
        let kind = e
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        if kind != "h264parse" && kind != "aacparse" {
            continue;
        }
        let video = kind == "h264parse";
        let log2 = log.clone();
        e.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buf) = info.buffer() {
                    let map = buf.map_readable().unwrap();
                    log2.lock().unwrap().push(Sent {
                        video,
                        dts: 0,
                        pts: 0,
                        key: true,
                        size: map.len(),
                        crc: crc32(&map),
                    });
                }
                gst::PadProbeReturn::Ok
            });
    }
    run(&p, Duration::from_secs(60));
    let rec = nginx.recording("flvmux");
    let got = ffprobe_frames(rec.to_str().unwrap());
    let sent = log.lock().unwrap().clone();
    // flvmux sets its own timestamps; the payloads must all be there.
    for video in [true, false] {
        let g: Vec<_> = got
            .iter()
            .filter(|f| f.video == video)
            .map(|f| (f.size, f.crc))
            .collect();
        let w: Vec<_> = sent
            .iter()
            .filter(|f| f.video == video)
            .map(|f| (f.size, f.crc))
            .collect();
        assert_eq!(g, w, "flvmux path, video={video}");
    }
}

#[test]
fn to_ffmpeg_listen() {
    needs!("ffmpeg");
    init();
    let dir = TempDir::new("sink-ff");
    let out = dir.path("out.flv");
    let (mut ff, err, port) = ffmpeg_listen_recording(&out);
    let log = SentLog::default();
    let p = build(
        &format!(
            "{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/key"
        ),
        &log,
    );
    run(&p, Duration::from_secs(60));
    let st = wait_child(&mut ff, Duration::from_secs(20));
    assert!(st.success(), "ffmpeg: {}", err.join().unwrap());
    let sent = log.lock().unwrap().clone();
    assert_same_frames(
        "ffmpeg's recording",
        &ffprobe_frames(out.to_str().unwrap()),
        &expected(&sent),
    );
}

#[test]
fn rtmp2src_plays_what_we_publish() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("");
    let url = nginx.url("for-rtmp2");
    let player = launch(&format!(
        "rtmp2src location={url} timeout=10 ! flvdemux name=d d.video ! queue ! fakesink name=fv d.audio ! queue ! fakesink name=fa"
    ));
    let got: Arc<Mutex<Vec<(bool, u32)>>> = Arc::default();
    for (name, video) in [("fv", true), ("fa", false)] {
        let g = got.clone();
        player
            .by_name(name)
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(b) = info.buffer() {
                    g.lock()
                        .unwrap()
                        .push((video, crc32(&b.map_readable().unwrap())));
                }
                gst::PadProbeReturn::Ok
            });
    }
    let counts = {
        let got = got.clone();
        move || {
            let g = got.lock().unwrap();
            (
                g.iter().filter(|x| x.0).count(),
                g.iter().filter(|x| !x.0).count(),
            )
        }
    };
    player.set_state(gst::State::Playing).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !nginx.error_log().contains("play: name='for-rtmp2'") {
        assert!(Instant::now() < end, "rtmp2src never started playing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = SentLog::default();
    let p = build(
        &format!("{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false location={url}"),
        &log,
    );
    run(&p, Duration::from_secs(60));
    let sent = log.lock().unwrap().clone();
    // rtmp2src goes EOS on the StreamEOF nginx sends when we unpublish.
    let eos = player.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    player.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            eos.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "rtmp2src did not finish: {eos:?} {:?}",
        counts()
    );
    let got = got.lock().unwrap().clone();
    // rtmp2src (1.22) holds one message at a time and, on StreamEOF, ends
    // its task and discards the message still held: when the stream's last
    // frame and StreamEOF come in one burst, that one frame is lost there.
    // Every other frame must arrive, in order.
    let last_is_video = sent.iter().max_by_key(|s| s.dts).is_some_and(|s| s.video);
    for video in [true, false] {
        let g: Vec<u32> = got.iter().filter(|x| x.0 == video).map(|x| x.1).collect();
        let w: Vec<u32> = sent
            .iter()
            .filter(|x| x.video == video)
            .map(|x| x.crc)
            .collect();
        let missing: Vec<usize> = (0..w.len()).filter(|i| !g.contains(&w[*i])).collect();
        let lost_last_only =
            video == last_is_video && g.len() + 1 == w.len() && g[..] == w[..g.len()];
        assert!(
            g == w || lost_last_only,
            "rtmp2src, video={video}: frames missing at {missing:?} of {}",
            w.len()
        );
    }
}

#[test]
fn uri_handler_picks_rtmpsink() {
    init();
    let e =
        gst::Element::make_from_uri(gst::URIType::Sink, "rtmp://127.0.0.1/live/key", None).unwrap();
    assert_eq!(e.factory().unwrap().name(), "rtmpsink");
    assert_eq!(
        e.property::<Option<String>>("location").as_deref(),
        Some("rtmp://127.0.0.1/live/key")
    );
}

#[test]
fn nothing_listening() {
    init();
    let port = free_port();
    let p = build(
        &format!("{VIDEO} ! s.video rtmpsink name=s location=rtmp://127.0.0.1:{port}/live/key"),
        &SentLog::default(),
    );
    let (e, took) = run_to_error(&p, Duration::from_secs(15));
    assert!(e.contains("connection refused"), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn silent_server_times_out() {
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s timeout=2 location=rtmp://127.0.0.1:{port}/live/secretkey"
        ),
        &SentLog::default(),
    );
    let (e, took) = run_to_error(&p, Duration::from_secs(15));
    assert!(e.contains("did not answer handshake"), "{e}");
    assert!(!e.contains("secretkey"), "the stream key leaked: {e}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    drop(l);
}

#[test]
fn nginx_denying_publish() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("deny publish all;");
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s timeout=5 location={}",
            nginx.url("key")
        ),
        &SentLog::default(),
    );
    let (e, took) = run_to_error(&p, Duration::from_secs(20));
    assert!(e.contains("closed") || e.contains("reset"), "{e}");
    assert!(took < Duration::from_secs(8), "{took:?}");
}

/// rtmps:// defaults to port 443 (tests/tls.rs has TLS itself).
#[test]
fn rtmps_defaults_to_port_443() {
    init();
    let p = build(
        &format!("{VIDEO} ! s.video rtmpsink name=s location=rtmps://127.0.0.1/live/key"),
        &SentLog::default(),
    );
    let (e, _) = run_to_error(&p, Duration::from_secs(10));
    assert!(e.contains("127.0.0.1:443"), "{e}");
}

#[test]
fn audio_pad_requested_after_video_started() {
    needs!("nginx", "ffmpeg");
    init();
    let nginx = Nginx::start(RECORD_ALL);
    let log = SentLog::default();
    let p = build(
        &format!(
            "videotestsrc is-live=true num-buffers=75 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse ! s.video rtmpsink name=s location={}",
            nginx.url("late")
        ),
        &log,
    );
    p.set_state(gst::State::Playing).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < 20 {
        assert!(Instant::now() < end, "video did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Video is flowing; now an audio branch joins.
    let audio = gst::parse::bin_from_description(
        "audiotestsrc is-live=true num-buffers=30 ! audio/x-raw,rate=44100,channels=1 ! avenc_aac ! aacparse",
        true,
    )
    .unwrap();
    p.add(&audio).unwrap();
    let s = p.by_name("s").unwrap();
    let pad = s
        .request_pad_simple("audio")
        .expect("an audio pad after start");
    capture(&pad, &log);
    audio.static_pad("src").unwrap().link(&pad).unwrap();
    audio.sync_state_with_parent().unwrap();
    let bus = p.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            msg.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{msg:?}"
    );
    let rec = nginx.recording("late");
    let sent = log.lock().unwrap().clone();
    assert!(
        sent.iter().filter(|s| !s.video).count() >= 30,
        "audio never went in"
    );
    assert_same_frames(
        "late audio pad",
        &ffprobe_frames(rec.to_str().unwrap()),
        &expected(&sent),
    );
}

#[test]
fn stats_count_what_was_sent() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("");
    let log = SentLog::default();
    let p = build(
        &format!(
            "{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false location={}",
            nginx.url("stats")
        ),
        &log,
    );
    let s = p.by_name("s").unwrap();
    let before: gst::Structure = s.property("stats");
    assert_eq!(before.get::<&str>("connection-state").unwrap(), "stopped");
    run(&p, Duration::from_secs(60));
    let stats: gst::Structure = s.property("stats");
    let sent = log.lock().unwrap().clone();
    let video = sent.iter().filter(|s| s.video).count() as u64;
    let audio = sent.len() as u64 - video;
    assert_eq!(
        stats.get::<u64>("video-frames-muxed").unwrap(),
        video,
        "{stats}"
    );
    assert_eq!(
        stats.get::<u64>("audio-frames-muxed").unwrap(),
        audio,
        "{stats}"
    );
    // Frames plus two sequence headers each; metadata counts as a message too.
    assert_eq!(
        stats.get::<u64>("video-frames").unwrap(),
        video + 1,
        "{stats}"
    );
    assert_eq!(
        stats.get::<u64>("audio-frames").unwrap(),
        audio + 1,
        "{stats}"
    );
    let payload: u64 = sent.iter().map(|s| s.size as u64).sum();
    assert!(stats.get::<u64>("bytes-out").unwrap() > payload, "{stats}");
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 0);
    // Latency is timed only when asked (measure-latency).
    assert!(!stats.has_field("video-latency-p50"), "{stats}");
}

/// Runs our server session on `listener` for one client, answering connect
/// and publish as told, until the client leaves.
fn refusing_server(
    listener: std::net::TcpListener,
    connect: Option<(&'static str, &'static str)>,
    publish: Option<(&'static str, &'static str)>,
) -> std::thread::JoinHandle<()> {
    use gstrtmp::net::blocking::BlockingServerConnection;
    use gstrtmp::rtmp::session::{ServerConfig, ServerEvent};
    std::thread::spawn(move || {
        let mut c = BlockingServerConnection::accept(
            &listener,
            ServerConfig::default(),
            Duration::from_secs(10),
        )
        .unwrap();
        while let Ok(Some(ev)) = c.next_event() {
            match ev {
                ServerEvent::ConnectRequest(_) => match connect {
                    Some((code, text)) => c.session().reject_connect(code, text).unwrap(),
                    None => c.session().accept_connect().unwrap(),
                },
                ServerEvent::PublishRequest { stream_id, .. } => match publish {
                    Some((code, text)) => c.session().reject_stream(stream_id, code, text).unwrap(),
                    None => c.session().accept_publish(stream_id).unwrap(),
                },
                _ => {}
            }
            c.flush().unwrap();
        }
    })
}

#[test]
fn connect_rejected_names_the_code() {
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = refusing_server(
        l,
        Some(("NetConnection.Connect.Rejected", "no such app")),
        None,
    );
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s timeout=5 location=rtmp://127.0.0.1:{port}/nope/key"
        ),
        &SentLog::default(),
    );
    let (e, _) = run_to_error(&p, Duration::from_secs(15));
    assert!(
        e.contains("server rejected connect: NetConnection.Connect.Rejected (no such app)"),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn publish_rejected_names_the_code() {
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = refusing_server(
        l,
        None,
        Some(("NetStream.Publish.BadName", "Stream already publishing")),
    );
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s timeout=5 location=rtmp://127.0.0.1:{port}/live/mykey"
        ),
        &SentLog::default(),
    );
    let (e, _) = run_to_error(&p, Duration::from_secs(15));
    assert!(e.contains("server rejected publish: NetStream.Publish.BadName (Stream already publishing) for 'my***'"), "{e}");
    server.join().unwrap();
}

#[test]
fn name_not_resolved() {
    init();
    let p = build(
        &format!("{VIDEO} ! s.video rtmpsink name=s location=rtmp://no-such-host.invalid/live/key"),
        &SentLog::default(),
    );
    let (e, took) = run_to_error(&p, Duration::from_secs(15));
    assert!(
        e.contains("could not resolve 'no-such-host.invalid'"),
        "{e}"
    );
    assert!(took < Duration::from_secs(11), "{took:?}");
}

#[test]
fn connection_lost_midstream() {
    needs!("nginx");
    init();
    let nginx = Nginx::start("");
    let p = build(
        &format!(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast ! h264parse ! s.video rtmpsink name=s timeout=3 reconnect-attempts=0 location={}",
            nginx.url("lost")
        ),
        &SentLog::default(),
    );
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let s = p.by_name("s").unwrap();
    assert_eq!(
        s.property::<gst::Structure>("stats")
            .get::<&str>("connection-state")
            .unwrap(),
        "publishing"
    );
    let killed = Instant::now();
    drop(nginx);
    let (e, debug) = expect_error(&p, Duration::from_secs(10));
    let took = killed.elapsed();
    let text = format!("{e} {debug}");
    assert!(text.contains("lost"), "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn no_state_change_waits_past_the_timeout() {
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Synchronous connect to a server that never answers: the state change
    // fails, within the timeout.
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s async-connect=false timeout=2 location=rtmp://127.0.0.1:{port}/live/k"
        ),
        &SentLog::default(),
    );
    let start = Instant::now();
    let r = p.set_state(gst::State::Playing);
    let took = start.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_said_once(&errors_now(&p), "Could not publish to");
    p.set_state(gst::State::Null).unwrap();
    // Asynchronous connect (the default), stopped while still connecting:
    // shutting down returns at once, not after the 30 s timeout.
    let p = build(
        &format!(
            "{VIDEO} ! s.video rtmpsink name=s timeout=30 location=rtmp://127.0.0.1:{port}/live/k"
        ),
        &SentLog::default(),
    );
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(l);
}

#[test]
fn mp3_audio_to_nginx() {
    needs!("nginx", "ffmpeg");
    publish_and_check(
        "mp3",
        "audiotestsrc num-buffers=40 ! audio/x-raw,rate=44100,channels=2 ! lamemp3enc ! mpegaudioparse ! s.audio",
    );
}

#[test]
fn metadata_describes_the_streams() {
    use gstrtmp::rtmp::message::DataMessage;
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = receive_with_server(l);
    let p = build(
        &format!(
            "{VIDEO} ! s.video {AUDIO} ! s.audio rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/meta"
        ),
        &SentLog::default(),
    );
    run(&p, Duration::from_secs(60));
    let (_, data) = server.join().unwrap();
    let m = data
        .iter()
        .find_map(|d| match d {
            DataMessage::SetDataFrame { name, value } if name == "onMetaData" => {
                Some(value.clone())
            }
            _ => None,
        })
        .expect("rtmpsink sent @setDataFrame onMetaData");
    for (k, want) in [
        ("width", 320.0),
        ("height", 240.0),
        ("framerate", 30.0),
        ("videocodecid", 7.0),
        ("audiocodecid", 10.0),
        ("audiosamplerate", 44100.0),
        ("audiosamplesize", 16.0),
    ] {
        assert_eq!(m.get_f64(k), Some(want), "{k} in {m:?}");
    }
    assert_eq!(
        m.get("stereo").and_then(|v| v.as_bool()),
        Some(true),
        "{m:?}"
    );
    // x264enc and avenc_aac tag their bitrates; the encoder tag names the encoder.
    assert!(m.get_f64("videodatarate").is_some_and(|r| r > 0.0), "{m:?}");
    assert!(m.get_str("encoder").is_some_and(|e| !e.is_empty()), "{m:?}");
}

/// What our server session received from rtmpsink: (is video, RTMP
/// timestamp, body) per audio/video message.
#[allow(clippy::type_complexity)]
fn receive_with_server(
    listener: std::net::TcpListener,
) -> std::thread::JoinHandle<(
    Vec<(bool, u32, bytes::Bytes)>,
    Vec<gstrtmp::rtmp::message::DataMessage>,
)> {
    use gstrtmp::net::blocking::BlockingServerConnection;
    use gstrtmp::rtmp::session::{ServerConfig, ServerEvent};
    std::thread::spawn(move || {
        let mut c = BlockingServerConnection::accept(
            &listener,
            ServerConfig::default(),
            Duration::from_secs(10),
        )
        .unwrap();
        let (mut got, mut data) = (Vec::new(), Vec::new());
        while let Ok(Some(ev)) = c.next_event() {
            match ev {
                ServerEvent::ConnectRequest(_) => c.session().accept_connect().unwrap(),
                ServerEvent::PublishRequest { stream_id, .. } => {
                    c.session().accept_publish(stream_id).unwrap()
                }
                ServerEvent::Video {
                    timestamp, payload, ..
                } => got.push((true, timestamp, payload)),
                ServerEvent::Audio {
                    timestamp, payload, ..
                } => got.push((false, timestamp, payload)),
                ServerEvent::Data { data: d, .. } => data.push(d),
                _ => {}
            }
            c.flush().unwrap();
        }
        (got, data)
    })
}

#[test]
fn timestamps_keep_negative_composition_and_never_drift() {
    use gstrtmp::rtmp::flv::{AvcPacketType, VideoTag};
    init();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = receive_with_server(l);
    let p = launch(&format!(
        "appsrc name=src format=time ! s.video rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/ts"
    ));
    let src = p
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field(
            "codec_data",
            gst::Buffer::from_slice([1u8, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
        )
        .build();
    src.set_caps(Some(&caps));
    p.set_state(gst::State::Playing).unwrap();
    // 29.97 fps for about an hour and a half, in frames whose PTS - DTS
    // swings between +2 and -1 frame durations (negative is legal in a
    // stream that starts at DTS 0 only if kept as such).
    let frame = |n: u64| n * 1_001_000_000 / 30_000;
    let n_frames = 160_000u64;
    let mut want = Vec::new();
    for n in 0..n_frames {
        let dts = frame(n + 10);
        let pts = match n % 3 {
            0 => frame(n + 12),
            1 => frame(n + 9),
            _ => frame(n + 10),
        };
        let mut b = gst::Buffer::from_slice((n as u32).to_be_bytes());
        {
            let b = b.get_mut().unwrap();
            b.set_dts(gst::ClockTime::from_nseconds(dts));
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            if n % 300 != 0 {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        src.push_buffer(b).unwrap();
        let ms = |t: u64| ((t as i64 - frame(10) as i64) + 500_000).div_euclid(1_000_000);
        want.push((ms(dts), ms(pts) - ms(dts), n % 300 == 0));
    }
    src.end_of_stream().unwrap();
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            msg.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{msg:?}"
    );
    let got: Vec<(i64, i64, bool)> = server
        .join()
        .unwrap()
        .0
        .into_iter()
        .filter(|(video, _, _)| *video)
        .filter_map(|(_, ts, body)| match VideoTag::parse(&body).ok()? {
            VideoTag::Legacy(v) if matches!(v.avc, Some((AvcPacketType::Nalu, _))) => Some((
                i64::from(ts),
                i64::from(v.avc.unwrap().1),
                v.frame_type.is_key(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got.windows(2).all(|w| w[0].0 <= w[1].0),
        "timestamps went back on the wire"
    );
    assert!(
        got.iter().any(|g| g.1 < 0),
        "no negative composition time arrived"
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "frame {i}: got (dts, cts, key) {:?}, want {:?}",
            got[i], want[i]
        );
    }
    // After 1.5 hours the last DTS is where arithmetic says, not drifted.
    assert_eq!(
        got.last().unwrap().0,
        ((frame(n_frames + 9) - frame(10)) as i64 + 500_000) / 1_000_000
    );
}
