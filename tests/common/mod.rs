// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests: real peers (nginx-rtmp, ffmpeg)
//! started and stopped by the test, media made by the test, and frame lists
//! to compare what was sent with what arrived.
#![allow(dead_code)]

pub mod netlab;
pub mod pki;
pub mod player;
pub mod server;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstrtmp::rtmp::flv::{
    self, AacPacketType, AudioTag, AvcPacketType, FlvReader, FlvTag, VideoTag,
};

/// The pipeline a launch line describes (it must parse).
pub fn launch(desc: &str) -> gst::Pipeline {
    use gst::prelude::*;
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// GStreamer and our plugin, once per test binary.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstrtmp::plugin_register_static().unwrap();
    });
}

/// A fresh scratch directory under the target folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!("{name}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_FILES").is_none() {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `target/<profile>`: above the test binary's `deps`, where cargo puts
/// the plugin file and, under `examples/`, the examples.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Where cargo put the plugin file (`target/<profile>`, above the test
/// binary's `deps`), if `cargo build` made it: `cargo test` alone builds
/// only the rlib. Without it a test is skipped, or fails under
/// `REQUIRE_PEERS` (scripts/test.sh builds it first).
pub fn built_plugin_dir() -> Option<PathBuf> {
    let dir = profile_dir();
    let file = dir.join("libgstrtmp.so");
    if file.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("REQUIRE_PEERS").is_none(),
        "{} was not built: run `cargo build` first",
        file.display()
    );
    skipped(&format!(
        "{} was not built (`cargo build` makes it; scripts/test.sh does)",
        file.display()
    ));
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_for_host_port("127.0.0.1", port, timeout);
}

pub fn wait_for_host_port(host: &str, port: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on port {port} within {timeout:?}");
}

/// Waits until something listens on `port`, without connecting (a one-shot
/// server such as `ffmpeg -listen 1` would take the probe as its client).
pub fn wait_for_listen(port: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    let needle = format!(":{port:04X} ");
    while Instant::now() < end {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let t = std::fs::read_to_string(table).unwrap_or_default();
            // Columns: sl local_address rem_address st ...; 0A is LISTEN.
            if t.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
            }) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on port {port} within {timeout:?}");
}

/// Whether a real peer or tool a test needs is installed: a command on
/// the PATH, "ffmpeg9" (FFmpeg 9 from PyPI's imageio-ffmpeg) or
/// "selenium" (Python's, from PyPI).
pub fn installed(tool: &str) -> bool {
    if tool == "ffmpeg9" {
        return server::ffmpeg9().is_some_and(|p| std::path::Path::new(&p).exists());
    }
    if tool == "selenium" {
        return Command::new("python3")
            .args(["-c", "import selenium"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn require(tool: &str) {
    assert!(
        installed(tool),
        "{tool} is not installed: run scripts/setup.sh first"
    );
}

/// Says a test was skipped and why, past libtest's capture of a passing
/// test's output (which would hide it).
pub fn skipped(why: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "SKIPPED: {why}").ok();
}

/// Skips the rest of a test, saying so, when a real peer it needs is not
/// installed: `cargo test` on a machine with GStreamer alone still runs
/// every test that needs nothing more. (`scripts/test.sh` installs them
/// all; `REQUIRE_PEERS=1` turns a skip into a failure.)
#[macro_export]
macro_rules! needs {
    ($($tool:literal),+ $(,)?) => {
        $(
            if !$crate::common::installed($tool) {
                assert!(
                    std::env::var_os("REQUIRE_PEERS").is_none(),
                    "{} is not installed: run scripts/setup.sh first",
                    $tool
                );
                $crate::common::skipped(&format!(
                    "{} needs {} (scripts/setup.sh installs it)",
                    module_path!(),
                    $tool
                ));
                return;
            }
        )+
    };
}

/// nginx with the RTMP module, on a free loopback port, as a plain process.
/// nginx-rtmp's application set-up to record each stream, whole, in
/// `rec/NAME.flv` (see `Nginx::recording`).
pub const RECORD_ALL: &str = "record all; record_path RECDIR; record_unique off;";

pub struct Nginx {
    pub dir: TempDir,
    pub host: String,
    pub port: u16,
    /// Runs in this network namespace (a `NetLab`'s server side).
    netns: Option<String>,
    /// Ports where nginx's stream module terminates TLS in front of the
    /// RTMP port (see `start_tls`), in the order of the fronts given.
    pub tls_ports: Vec<u16>,
    child: Child,
}

/// A TLS front for nginx: its certificate, and the CA a client certificate
/// must chain to (mutual TLS) if any.
pub struct TlsFront<'a> {
    pub cert: &'a pki::Pem,
    pub client_ca: Option<&'a Path>,
}

impl Nginx {
    /// `app_conf` goes inside `application live { ... }`.
    /// `RECDIR` in `app_conf` becomes a recording folder nginx's worker
    /// (running as nobody) may write.
    pub fn start(app_conf: &str) -> Self {
        Self::start_on(app_conf, None)
    }

    /// Like `start`, on the server side of a network lab when given one.
    pub fn start_on(app_conf: &str, lab: Option<&netlab::NetLab>) -> Self {
        Self::start_full(app_conf, lab, &[])
    }

    /// Like `start`, with nginx's stream module terminating TLS in front of
    /// the RTMP port on one port per front: the usual production set-up
    /// for RTMPS ingest (nginx-rtmp has no TLS of its own).
    pub fn start_tls(app_conf: &str, fronts: &[TlsFront]) -> Self {
        Self::start_full(app_conf, None, fronts)
    }

    fn start_full(app_conf: &str, lab: Option<&netlab::NetLab>, fronts: &[TlsFront]) -> Self {
        require("nginx");
        // A port picked free may be taken before nginx binds it (by a test
        // running beside this one): nginx then ends at once, and waiting
        // for the port alone would find the other server. Pick again.
        for _ in 0..3 {
            if let Some(n) = Self::start_once(app_conf, lab, fronts) {
                return n;
            }
        }
        panic!("nginx did not start (its ports were taken three times)");
    }

    /// Starts nginx once: None if it ended before it had bound its ports.
    fn start_once(
        app_conf: &str,
        lab: Option<&netlab::NetLab>,
        fronts: &[TlsFront],
    ) -> Option<Self> {
        let dir = TempDir::new("nginx");
        let (host, port, netns) = match lab {
            // The namespace is the lab's own: the usual port is free.
            Some(l) => (l.srv_addr.clone(), 1935, Some(l.srv.clone())),
            None => ("127.0.0.1".to_owned(), free_port(), None),
        };
        let prefix = dir.0.display();
        let rec = dir.path("rec");
        std::fs::create_dir_all(&rec).unwrap();
        // The worker runs as nobody: let it write recordings, and reach them.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let app_conf = app_conf.replace("RECDIR", &rec.display().to_string());
        let tls_ports: Vec<u16> = fronts.iter().map(|_| free_port()).collect();
        let mut stream = String::new();
        if !fronts.is_empty() {
            stream.push_str("stream {\n");
            for (f, tls_port) in fronts.iter().zip(&tls_ports) {
                let verify = match f.client_ca {
                    Some(ca) => format!(
                        "ssl_verify_client on; ssl_client_certificate {};",
                        ca.display()
                    ),
                    None => String::new(),
                };
                stream.push_str(&format!(
                    "  server {{ listen {host}:{tls_port} ssl; ssl_certificate {}; ssl_certificate_key {}; {verify} proxy_pass {host}:{port}; }}\n",
                    f.cert.cert.display(),
                    f.cert.key.display()
                ));
            }
            stream.push_str("}\n");
        }
        let stream_module = if fronts.is_empty() {
            ""
        } else {
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        };
        let conf = format!(
            r#"load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
{stream_module}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
rtmp {{
  log_format bytes '$command "$app" "$name" $bytes_received $bytes_sent';
  server {{
    listen {host}:{port};
    out_queue 16384;
    access_log {prefix}/access.log bytes;
    application live {{ live on; {app_conf} }}
  }}
}}
{stream}"#
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        // nginx wants these to exist for its default http temp paths.
        for d in ["logs", "client_body_temp"] {
            std::fs::create_dir_all(dir.path(d)).unwrap();
        }
        let mut child = Self::spawn(&dir, netns.as_deref());
        // nginx writes its pid file once its listening sockets are bound,
        // and ends at once when one cannot be.
        let end = Instant::now() + Duration::from_secs(10);
        while !std::path::Path::new(&dir.path("nginx.pid")).exists() {
            if child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(Instant::now() < end, "nginx wrote no pid file in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        wait_for_host_port(&host, port, Duration::from_secs(10));
        for p in &tls_ports {
            wait_for_host_port(&host, *p, Duration::from_secs(10));
        }
        Some(Nginx {
            dir,
            host,
            port,
            netns,
            tls_ports,
            child,
        })
    }

    fn spawn(dir: &TempDir, netns: Option<&str>) -> Child {
        let mut c = match netns {
            // `ip netns exec` execs nginx: the child is nginx's master.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nginx"]);
                c
            }
            None => Command::new("nginx"),
        };
        c.arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx")
    }

    /// Stops the server (SIGTERM: connections are closed), keeping its
    /// folder and port for `start_again`.
    pub fn stop(&mut self) {
        // SIGTERM lets the master take its worker down with it; SIGKILL on
        // the master alone would leave the worker listening.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .ok();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Starts the stopped server again on the same port, with the same
    /// configuration and logs.
    pub fn start_again(&mut self) {
        self.child = Self::spawn(&self.dir, self.netns.as_deref());
        wait_for_host_port(&self.host, self.port, Duration::from_secs(10));
        for p in &self.tls_ports {
            wait_for_host_port(&self.host, *p, Duration::from_secs(10));
        }
    }

    /// Sends a signal (STOP, CONT...) to nginx's worker processes.
    pub fn signal_workers(&self, sig: &str) {
        Command::new("pkill")
            .args([&format!("-{sig}"), "-P", &self.child.id().to_string()])
            .status()
            .ok();
    }

    /// The stream `name`'s recording (with `RECORD_ALL`), once nginx has
    /// logged its publisher's disconnection (the file is then whole).
    pub fn recording(&self, name: &str) -> PathBuf {
        let line = format!("PUBLISH \"live\" \"{name}\"");
        let log = self.access_log_with(&[&line], Duration::from_secs(10));
        assert!(
            log.contains(&line),
            "nginx never logged the publish of {name}: {}",
            self.error_log()
        );
        self.dir.path("rec").join(format!("{name}.flv"))
    }

    /// The recordings, oldest first.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(self.dir.path("rec"))
            .map(|d| {
                d.flatten()
                    .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}:{}/live/{stream}", self.host, self.port)
    }

    /// `media` copied by FFmpeg (`-c copy` and `args`) into the folder an
    /// app_conf's `play RECDIR;` serves, as `file` (its container by the
    /// name), readable by nginx's worker.
    pub fn serve_file(&self, media: &Path, file: &str, args: &[&str]) {
        use std::os::unix::fs::PermissionsExt;
        let out = self.dir.path("rec").join(file);
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(media)
            .args(["-c", "copy"])
            .args(args)
            .arg(&out)
            .status()
            .expect("run ffmpeg");
        assert!(st.success(), "ffmpeg could not make {file}");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// The rtmps:// URL of TLS front `i`, by the name its certificate holds.
    pub fn rtmps_url(&self, i: usize, stream: &str) -> String {
        format!("rtmps://localhost:{}/live/{stream}", self.tls_ports[i])
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path("access.log")).unwrap_or_default()
    }

    /// Waits until nginx has a player on `stream`.
    pub fn wait_player(&self, stream: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.error_log().contains(&format!("play: name='{stream}'")) {
            assert!(
                Instant::now() < end,
                "the player never started playing {stream}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log once it holds every one of `lines` (nginx writes a
    /// session's line when the session closes), or as it is after `limit`.
    pub fn access_log_with(&self, lines: &[&str], limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let log = self.access_log();
            if lines.iter().all(|l| log.contains(l)) || Instant::now() > end {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx's stream module alone, terminating TLS in front of a plain RTMP
/// port (a server with no TLS of its own, such as `ffmpeg -listen 1`).
pub struct TlsProxy {
    _dir: TempDir,
    pub port: u16,
    child: Child,
}

impl TlsProxy {
    pub fn start(cert: &pki::Pem, backend: u16) -> Self {
        require("nginx");
        let dir = TempDir::new("tlsproxy");
        let port = free_port();
        let prefix = dir.0.display();
        let conf = format!(
            r#"load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {}; proxy_pass 127.0.0.1:{backend}; }} }}
"#,
            cert.cert.display(),
            cert.key.display()
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        std::fs::create_dir_all(dir.path("logs")).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        // Probing would make the proxy dial a one-shot backend: look at
        // the listening sockets instead.
        wait_for_listen(port, Duration::from_secs(10));
        TlsProxy {
            _dir: dir,
            port,
            child,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ok();
        self.child.wait().ok();
    }
}

/// What kind of media a test file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracks {
    AudioVideo,
    VideoOnly,
    AudioOnly,
}

/// Makes an FLV file with H.264 (with B-frames) and AAC, `secs` long.
pub fn make_flv(dir: &TempDir, name: &str, secs: u32, tracks: Tracks) -> PathBuf {
    require("ffmpeg");
    let out = dir.path(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if tracks != Tracks::AudioOnly {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]);
    }
    if tracks != Tracks::VideoOnly {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    }
    cmd.args(["-t", &secs.to_string()]);
    if tracks != Tracks::AudioOnly {
        cmd.args([
            "-c:v", "libx264", "-bf", "2", "-g", "25", "-pix_fmt", "yuv420p", "-preset", "veryfast",
        ]);
    }
    if tracks != Tracks::VideoOnly {
        cmd.args(["-c:a", "aac", "-b:a", "64k"]);
    }
    cmd.args(["-f", "flv"]).arg(&out);
    let st = cmd.status().expect("run ffmpeg");
    assert!(st.success(), "ffmpeg could not make the test media");
    out
}

/// FFmpeg publishes `file` to `url` as fast as it goes (`-c copy`), to
/// its end.
pub fn ffmpeg_publish(file: &Path, url: &str) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg could not publish {}", file.display());
}

pub fn read_flv_tags(path: &Path) -> Vec<FlvTag> {
    let data = std::fs::read(path).unwrap();
    let mut r = FlvReader::new(16 << 20);
    r.feed(&data);
    let mut tags = Vec::new();
    while let Some(t) = r.poll_tag().unwrap() {
        tags.push(t);
    }
    assert_eq!(r.buffered(), 0, "trailing bytes in {}", path.display());
    tags
}

/// One coded frame as ffprobe reports it and as we check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub video: bool,
    pub dts: i64,
    pub pts: i64,
    pub key: bool,
    pub size: usize,
    pub crc: u32,
}

/// The frames ffprobe finds in a file or stream (sequence headers are not
/// frames to it; neither are they here).
pub fn ffprobe_frames(input: &str) -> Vec<Frame> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_packets", "-show_data_hash", "CRC32"])
        .args([
            "-show_entries",
            "packet=codec_type,pts,dts,size,flags,data_hash",
            "-of",
            "compact",
        ])
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines look like packet|codec_type=video|pts=67|...|data_hash=CRC32:..,
    // with side data sections in between for some packets: read by key.
    // A side data section ends its line: what follows starts with '|'.
    let text = String::from_utf8(out.stdout).unwrap().replace("\n|", "|");
    text.lines()
        .filter(|l| l.starts_with("packet|"))
        .map(|l| {
            let get = |k: &str| {
                l.split('|')
                    .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or_else(|| panic!("no {k} in {l}"))
            };
            Frame {
                video: get("codec_type") == "video",
                pts: get("pts").parse().unwrap(),
                dts: get("dts").parse().unwrap(),
                size: get("size").parse().unwrap(),
                key: get("flags").starts_with('K'),
                crc: u32::from_str_radix(get("data_hash").trim_start_matches("CRC32:"), 16)
                    .unwrap(),
            }
        })
        .collect()
}

/// Frames of audio and video messages, as ffprobe would count them: the
/// payload past the FLV tag header, PTS = DTS + composition time.
pub fn frames_of(messages: &[(bool, u32, Bytes)]) -> Vec<Frame> {
    let mut out = Vec::new();
    for (video, ts, payload) in messages {
        let dts = i64::from(*ts);
        if *video {
            let Ok(VideoTag::Legacy(v)) = VideoTag::parse(payload) else {
                continue;
            };
            if let Some((AvcPacketType::Nalu, cts)) = v.avc {
                out.push(Frame {
                    video: true,
                    dts,
                    pts: dts + i64::from(cts),
                    key: v.frame_type.is_key(),
                    size: v.data.len(),
                    crc: crc32(&v.data),
                });
            }
        } else {
            let Ok(AudioTag::Legacy(a)) = AudioTag::parse(payload) else {
                continue;
            };
            if a.aac_packet_type == Some(AacPacketType::Raw) {
                out.push(Frame {
                    video: false,
                    dts,
                    pts: dts,
                    key: true,
                    size: a.data.len(),
                    crc: crc32(&a.data),
                });
            }
        }
    }
    out
}

/// Audio/video tags of an FLV file as (is_video, timestamp, body).
pub fn av_of_tags(tags: &[FlvTag]) -> Vec<(bool, u32, Bytes)> {
    tags.iter()
        .filter(|t| t.tag_type != flv::tag_type::SCRIPT)
        .map(|t| {
            (
                t.tag_type == flv::tag_type::VIDEO,
                t.timestamp,
                t.data.clone(),
            )
        })
        .collect()
}

/// CRC-32 (IEEE, as zlib and FFmpeg's hash compute it).
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// `ffmpeg -hide_banner -loglevel error` with no input and its stderr
/// piped: give it its arguments, then `start` it.
pub fn ffmpeg_command() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts a command whose stderr is piped: the child, and what it says
/// on stderr (joined once it ended).
pub fn start(cmd: &mut Command) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = cmd.spawn().unwrap();
    let err = collect_stderr(&mut child);
    (child, err)
}

/// FFmpeg as a one-shot RTMP server (`-listen 1`) of `media` (copied, as
/// FLV) at `rtmp://127.0.0.1:PORT/live/key`, listening by the time this
/// returns: the child, what it says on stderr (joined once it ended),
/// and the port.
pub fn ffmpeg_listen(media: &Path) -> (Child, std::thread::JoinHandle<String>, u16) {
    let port = free_port();
    let (ff, err) = start(
        ffmpeg_command()
            .arg("-i")
            .arg(media)
            .args(["-c", "copy", "-f", "flv", "-listen", "1"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/key")),
    );
    wait_for_listen(port, Duration::from_secs(10));
    (ff, err, port)
}

/// FFmpeg as a one-shot RTMP server (`-listen 1`) taking a publisher at
/// `rtmp://127.0.0.1:PORT/live/key` and recording what it gets (copied)
/// to `out` as FLV, listening by the time this returns: the child, what
/// it says on stderr (joined once it ended), and the port.
pub fn ffmpeg_listen_recording(out: &Path) -> (Child, std::thread::JoinHandle<String>, u16) {
    let port = free_port();
    let (ff, err) = start(
        ffmpeg_command()
            .args(["-y", "-listen", "1", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(out),
    );
    wait_for_listen(port, Duration::from_secs(10));
    (ff, err, port)
}

/// A publishing pipeline's `videotestsrc name=vsrc ! capsfilter name=cf`
/// switches from 320x240 to 640x360 at its 30th frame (both at 30 fps):
/// a resolution change in the middle of a stream.
pub fn resize_at_frame_30(p: &gst::Pipeline) {
    use gst::prelude::*;
    let cf = p.by_name("cf").expect("capsfilter cf");
    let n = std::sync::atomic::AtomicU32::new(0);
    p.by_name("vsrc")
        .expect("videotestsrc vsrc")
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == 30 {
                cf.set_property(
                    "caps",
                    gst::Caps::builder("video/x-raw")
                        .field("width", 640i32)
                        .field("height", 360i32)
                        .field("framerate", gst::Fraction::new(30, 1))
                        .build(),
                );
            }
            gst::PadProbeReturn::Ok
        });
}

/// Reads a child's stderr to a string without blocking it.
pub fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    })
}

/// Runs `f` on a thread of its own and gives back what it returned, or
/// fails the test if it has not returned after `limit`: a bound on a hang
/// (something waiting for what never comes), never a measure of speed, so
/// `limit` is many times what the call takes on the slowest machine.
pub fn returns_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).ok());
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still waiting after {limit:?}"),
    }
}

/// Waits for a child with a deadline, killing it if it overstays.
pub fn wait_child(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= end {
            child.kill().ok();
            let st = child.wait().unwrap();
            panic!("child process still running after {timeout:?}; killed ({st})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes FLV tags through the core's blocking client: metadata as
/// `@setDataFrame onMetaData`, then audio and video as they come.
/// Returns the bytes sent on the connection.
pub fn publish_tags(url: &str, tags: &[FlvTag]) -> gstrtmp::rtmp::Result<u64> {
    use gstrtmp::net::blocking::BlockingClient;
    use gstrtmp::rtmp::session::{ClientConfig, ClientMode};
    use gstrtmp::rtmp::url::RtmpUrl;

    let url = RtmpUrl::parse(url)?;
    let mut c = BlockingClient::open(&url, ClientConfig::new(ClientMode::Publish, &url))?;
    for t in tags {
        send_tag(&mut c, t)?;
    }
    Ok(c.finish()?.bytes_out)
}

/// One FLV tag as a publisher sends it: the metadata as `@setDataFrame
/// onMetaData` (other script tags are left out), audio and video as they
/// are.
pub fn send_tag(
    c: &mut gstrtmp::net::blocking::BlockingClient,
    t: &FlvTag,
) -> gstrtmp::rtmp::Result<()> {
    use gstrtmp::rtmp::amf0;
    use gstrtmp::rtmp::message::DataMessage;

    match t.tag_type {
        flv::tag_type::SCRIPT => {
            let v = amf0::decode_all(&t.data, &Default::default())?;
            if v.first().and_then(|v| v.as_str()) == Some("onMetaData") && v.len() > 1 {
                let d = DataMessage::SetDataFrame {
                    name: "onMetaData".into(),
                    value: v[1].clone(),
                };
                c.send_data(t.timestamp, &d)?;
            }
            Ok(())
        }
        flv::tag_type::AUDIO => c.send_audio(t.timestamp, &t.data),
        _ => c.send_video(t.timestamp, &t.data),
    }
}

/// What a player received.
#[derive(Default, Debug)]
pub struct Received {
    pub av: Vec<(bool, u32, Bytes)>,
    pub data: Vec<gstrtmp::rtmp::message::DataMessage>,
    pub ended: Option<String>,
}

/// Plays `url` with the core's blocking client until the stream ends, the
/// server closes, or `idle` passes with nothing new.
pub fn play_until_end(
    url: &str,
    idle: Duration,
    started: Option<std::sync::mpsc::Sender<()>>,
) -> gstrtmp::rtmp::Result<Received> {
    use gstrtmp::net::blocking::BlockingClient;
    use gstrtmp::rtmp::session::{ClientConfig, ClientEvent, ClientMode};
    use gstrtmp::rtmp::url::RtmpUrl;

    let url = RtmpUrl::parse(url)?;
    let mut c = BlockingClient::open(&url, ClientConfig::new(ClientMode::Play, &url))?;
    if let Some(s) = started {
        s.send(()).ok();
    }
    let mut r = Received::default();
    while let Some(ev) = c.next_event_timeout(idle)? {
        match ev {
            ClientEvent::Audio { timestamp, payload } => r.av.push((false, timestamp, payload)),
            ClientEvent::Video { timestamp, payload } => r.av.push((true, timestamp, payload)),
            ClientEvent::Data { data, .. } => r.data.push(data),
            ClientEvent::StreamEnded { reason } => {
                r.ended = Some(reason);
                break;
            }
            _ => {}
        }
    }
    c.finish().ok();
    Ok(r)
}

/// Splits frames into (video, audio) so that each is compared in order.
pub fn split(frames: &[Frame]) -> (Vec<Frame>, Vec<Frame>) {
    frames.iter().cloned().partition(|f| f.video)
}

/// Asserts two frame lists are the same, frame by frame, with a readable
/// message at the first difference.
pub fn assert_same_frames(what: &str, got: &[Frame], want: &[Frame]) {
    let (gv, ga) = split(got);
    let (wv, wa) = split(want);
    for (kind, g, w) in [("video", gv, wv), ("audio", ga, wa)] {
        if let Some(i) = (0..g.len().min(w.len())).find(|&i| g[i] != w[i]) {
            panic!(
                "{what}: {kind} frame {i} differs:\n got  {:?}\n want {:?}",
                g[i], w[i]
            );
        }
        assert_eq!(g.len(), w.len(), "{what}: {kind} frame count");
    }
}

/// Runs `p` to EOS (or `limit`), then stops it; returns the last warning
/// it posted, if any. Panics on an error.
pub fn last_warning_until_eos(p: &gst::Pipeline, limit: Duration) -> Option<String> {
    use gst::prelude::*;
    let bus = p.bus().unwrap();
    let mut warning = None;
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let types = [
            gst::MessageType::Warning,
            gst::MessageType::Eos,
            gst::MessageType::Error,
        ];
        let Some(m) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &types) else {
            continue;
        };
        match m.view() {
            gst::MessageView::Warning(w) => warning = Some(w.error().to_string()),
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    warning
}

/// Waits up to `limit` for the pipeline to fail, then stops it; returns the
/// error's message and its debug text. Panics if it finished or went on.
pub fn expect_error(p: &gst::Pipeline, limit: Duration) -> (String, String) {
    use gst::prelude::*;
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => (
            e.error().to_string(),
            e.debug().map(|d| d.to_string()).unwrap_or_default(),
        ),
        Some(_) => panic!("the pipeline finished instead of failing"),
        None => panic!("no error within {limit:?}"),
    }
}

/// Every error on the bus now, each as "element: message (debug)", for a
/// state change that failed: what it posted is there once it returned.
pub fn errors_now(p: &gst::Pipeline) -> Vec<String> {
    use gst::prelude::*;
    let bus = p.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
        .map(|m| {
            let gst::MessageView::Error(e) = m.view() else {
                unreachable!()
            };
            let from = m.src().map(|s| s.name().to_string()).unwrap_or_default();
            format!("{from}: {} ({:?})", e.error(), e.debug())
        })
        .collect()
}

/// A failed state change said why once: its first error has `reason`, and
/// the only one after it is the base class's fallback (GstBaseSrc and
/// GstBaseSink post one whenever `start` fails), not a second error of
/// ours without the reason.
pub fn assert_said_once(errors: &[String], reason: &str) {
    assert!(
        errors.first().is_some_and(|e| e.contains(reason)),
        "{errors:#?}"
    );
    for e in &errors[1..] {
        assert!(e.contains("Failed to start"), "a second error: {errors:#?}");
    }
}
