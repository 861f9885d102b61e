// SPDX-License-Identifier: MPL-2.0
//! Helpers for tests of the server modes: bus notices, the elements'
//! picked ports, FFmpeg 5.1 and 9 as publishers and players, and hostile
//! peers written by hand.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::player::{OutLog, player, probe_parsers};
use super::{Tracks, init};

pub type Notices = Arc<Mutex<Vec<gst::Structure>>>;

/// Records the element messages our servers post (rtmp-client-*), leaving
/// every message on the bus.
pub fn notices(p: &gst::Pipeline) -> Notices {
    let log = Notices::default();
    let l = log.clone();
    p.bus().unwrap().set_sync_handler(move |_, m| {
        if let gst::MessageView::Element(e) = m.view()
            && let Some(s) = e.structure()
            && s.name().starts_with("rtmp-client-")
        {
            l.lock().unwrap().push(s.to_owned());
        }
        gst::BusSyncReply::Pass
    });
    log
}

pub fn wait_notice(log: &Notices, name: &str, n: usize, limit: Duration) -> Vec<gst::Structure> {
    let end = Instant::now() + limit;
    loop {
        let found: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name() == name)
            .cloned()
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < end,
            "no {n} '{name}' message within {limit:?}; got {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The element of a pipeline made by `factory`.
pub fn element(p: &gst::Pipeline, factory: &str) -> gst::Element {
    p.iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == factory))
        .unwrap_or_else(|| panic!("no {factory} in the pipeline"))
}

/// The port a server element listens on, from its location (port 0 was
/// asked, the element shows the one picked).
pub fn port_of(e: &gst::Element) -> u16 {
    let l: String = e.property("location");
    let url = gstrtmp::rtmp::url::RtmpUrl::parse(&l).unwrap();
    assert_ne!(url.port(), 0, "location still says port 0: {l}");
    url.port()
}

/// rtmpsrc mode=server, recording what it gives; started, with its port.
pub fn src_server(
    extra: &str,
) -> (
    gst::Pipeline,
    OutLog,
    Arc<Mutex<Vec<gst::Caps>>>,
    Notices,
    u16,
) {
    src_server_at("rtmp://127.0.0.1:0/live/key", extra)
}

/// Like `src_server`, listening on `location` (`rtmps://`, say).
pub fn src_server_at(
    location: &str,
    extra: &str,
) -> (
    gst::Pipeline,
    OutLog,
    Arc<Mutex<Vec<gst::Caps>>>,
    Notices,
    u16,
) {
    init();
    let (p, log, caps) = player(location, &format!("mode=server {extra}"));
    let n = notices(&p);
    p.set_state(gst::State::Playing).unwrap();
    let port = port_of(&element(&p, "rtmpsrc"));
    (p, log, caps, n, port)
}

pub fn ffmpeg9() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn require_ffmpeg9() -> String {
    ffmpeg9().expect("FFmpeg 9 (imageio-ffmpeg) is installed by scripts/setup.sh")
}

/// `ffmpeg -i file -c copy -f flv url`; returns the exit status and stderr.
pub fn ffmpeg_push(
    ffmpeg: &str,
    file: &std::path::Path,
    url: &str,
    realtime: bool,
) -> (bool, String) {
    ffmpeg_push_with(ffmpeg, file, &[], url, realtime)
}

/// `ffmpeg_push` with output options (`-ca_file`, say) before the URL.
pub fn ffmpeg_push_with(
    ffmpeg: &str,
    file: &std::path::Path,
    args: &[&str],
    url: &str,
    realtime: bool,
) -> (bool, String) {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        cmd.arg("-re");
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args(["-c", "copy"])
        .args(args)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A short live-made H.264 (with B-frames) and AAC stream into element
/// `SINK`'s `video` and `audio` pads (replace SINK with its name).
pub const AV: &str = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=2 speed-preset=ultrafast key-int-max=30 ! h264parse ! SINK.video audiotestsrc num-buffers=40 ! avenc_aac ! aacparse ! SINK.audio";

/// A pipeline serving `desc`'s streams with rtmpsink mode=server (named
/// `s`), paused: listening, no media yet. Returns it with its port.
pub fn sink_server(desc: &str, extra: &str) -> (gst::Pipeline, Notices, u16) {
    sink_server_at(desc, "rtmp://127.0.0.1:0/live/key", extra)
}

/// Like `sink_server`, listening on `location` (`rtmps://`, say).
pub fn sink_server_at(desc: &str, location: &str, extra: &str) -> (gst::Pipeline, Notices, u16) {
    init();
    let p = super::launch(&format!(
        "{desc} rtmpsink name=s mode=server location={location} {extra}"
    ));
    let n = notices(&p);
    p.set_state(gst::State::Paused).unwrap();
    let port = port_of(&p.by_name("s").unwrap());
    (p, n, port)
}

pub fn file_source(file: &std::path::Path, tracks: Tracks) -> String {
    let mut d = format!("filesrc location={} ! flvdemux name=d ", file.display());
    if tracks != Tracks::AudioOnly {
        d += "d.video ! queue ! h264parse ! s.video ";
    }
    if tracks != Tracks::VideoOnly {
        d += "d.audio ! queue ! aacparse ! s.audio ";
    }
    d
}

/// `ffmpeg -i input -c copy -f framecrc -`: one line per packet (stream,
/// dts, pts, duration, size, checksum), for comparing FFmpeg 9's view of a
/// stream with its view of the file.
pub fn framecrc(ffmpeg: &str, input: &str) -> Vec<String> {
    framecrc_with(ffmpeg, &[], input)
}

/// `framecrc` with input options (`-ca_file`, say).
pub fn framecrc_with(ffmpeg: &str, args: &[&str], input: &str) -> Vec<String> {
    let out = Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "20000000",
        ])
        .args(args)
        .args(["-i", input, "-map", "0:v?", "-map", "0:a?"])
        .args(["-c", "copy", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{ffmpeg} on {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Whether the server closes the connection within `limit` (reading and
/// dropping whatever it sends).
pub fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    let end = Instant::now() + limit;
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Connects and completes a handshake by hand.
pub fn handshaken(port: u16) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[3]).unwrap();
    s.write_all(&[7u8; 1536]).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut s0s1s2).unwrap();
    s.write_all(&s0s1s2[1..1537]).unwrap();
    s
}

/// A type-0 chunk header: one-byte basic header for csid < 64, two above.
pub fn chunk_header(csid: u32, length: u32, type_id: u8) -> Vec<u8> {
    let mut h = if csid < 64 {
        vec![csid as u8]
    } else {
        vec![0, (csid - 64) as u8]
    };
    h.extend_from_slice(&[0, 0, 0]);
    h.extend_from_slice(&length.to_be_bytes()[1..]);
    h.push(type_id);
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// FFmpeg as a player: quiet but for errors, a long read timeout.
pub const FFMPEG_PLAYER: [&str; 5] = [
    "-hide_banner",
    "-loglevel",
    "error",
    "-rw_timeout",
    "20000000",
];

/// Frames per stream in FFmpeg's framemd5 output: (stream index, frames).
pub fn framemd5_counts(out: &str) -> Vec<(u32, usize)> {
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let Some(idx) = line.split(',').next().and_then(|s| s.trim().parse().ok()) else {
            continue;
        };
        match counts.iter_mut().find(|(i, _)| *i == idx) {
            Some((_, n)) => *n += 1,
            None => counts.push((idx, 1)),
        }
    }
    counts
}

/// For `paused_sink_server`: three seconds of live H.264 and AAC, parsers named as the frame log
/// wants them.
pub const LIVE: &str = "\
    videotestsrc is-live=true num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
      ! x264enc tune=zerolatency key-int-max=30 ! h264parse name=sentv ! s.video \
    audiotestsrc is-live=true samplesperbuffer=1024 num-buffers=130 ! avenc_aac ! aacparse name=senta ! s.audio";

/// `publish` into rtmpsink mode=server (with `extra` properties), paused:
/// listening, its parsers recorded from before it prerolls (or the first
/// frames would go by unseen). Returns it, what it sent, its notices and
/// its URL.
pub fn paused_sink_server(publish: &str, extra: &str) -> (gst::Pipeline, OutLog, Notices, String) {
    let server = super::launch(&format!(
        "{publish} rtmpsink name=s mode=server location=rtmp://127.0.0.1:0/live/key sync=false {extra}"
    ));
    let sent_log = probe_parsers(&server);
    let notes = notices(&server);
    server.set_state(gst::State::Paused).unwrap();
    let port = port_of(&server.by_name("s").unwrap());
    (
        server,
        sent_log,
        notes,
        format!("rtmp://127.0.0.1:{port}/live/key"),
    )
}
