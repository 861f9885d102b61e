// SPDX-License-Identifier: MPL-2.0
//! A web studio: go live from a browser. The page (examples/studio.html,
//! built into the binary) shows the camera, takes a server URL and a
//! stream key, and sends the browser's own H.264 (WebCodecs: no
//! transcoding) and Opus over a WebSocket; here they go through
//! `rtmpsink`, the Opus as AAC so that every RTMP server takes it. The
//! element's state, figures and errors go back to the page as they change.
//!
//! cargo run --release --example studio -- [--listen 127.0.0.1:8080] [--token SECRET] [--tls-ca ca.pem]
//!
//! It listens on 127.0.0.1 unless told otherwise; anywhere else it needs
//! `--token`, which every request must then carry (`?token=`). WebSockets
//! must come from the page itself (their `Origin` is checked, and on
//! loopback the `Host` too, so that another site cannot reach it through
//! DNS rebinding). The stream key goes into rtmpsink's location and
//! nowhere else: never to a log (rtmpsink shows it as `ke***`) nor back to
//! a page.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstrtmp::rtmp::url::RtmpUrl;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;

const PAGE: &str = include_str!("studio.html");
const USAGE: &str = "usage: studio [--listen ADDRESS:PORT] [--token SECRET] [--tls-ca CA.pem]";

/// What a media message starts with: kind (1 video, 2 audio), flags (1:
/// keyframe), two spare bytes, the capture time (µs, f64, big-endian) and
/// the duration (µs, u32).
const MEDIA_HEADER: usize = 16;
/// How long video may wait in the studio before rtmpsink (which waits when
/// the uplink is slower than the stream; audio twice as long): past it,
/// frames are dropped here (video up to its next keyframe) instead of the
/// delay growing. The WebSocket is read on regardless: a queue in its
/// socket would be delay too.
const MAX_QUEUED: gst::ClockTime = gst::ClockTime::from_mseconds(500);
/// rtmpsink's `latency`: how much more each of its pads may queue while
/// the other kind is late, to keep the two interleaved (the WebSocket and
/// the encoders add jitter).
const INTERLEAVE_WAIT: Duration = Duration::from_millis(200);

/// Connections at once; more are refused.
const MAX_CONNECTIONS: u64 = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Options {
    listen: SocketAddr,
    token: Option<String>,
    tls_ca: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        listen: "127.0.0.1:8080".parse().expect("a valid address"),
        token: None,
        tls_ca: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--listen" => {
                let v = value()?;
                o.listen = v
                    .parse()
                    .map_err(|_| format!("--listen {v}: not an ADDRESS:PORT"))?;
            }
            "--token" => o.token = Some(value()?).filter(|t| !t.is_empty()),
            "--tls-ca" => o.tls_ca = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if !o.listen.ip().is_loopback() && o.token.is_none() {
        return Err(format!(
            "listening on {} lets anyone who can reach it stream from this machine: give --token SECRET (the page is then http://HOST:PORT/?token=SECRET)",
            o.listen
        ));
    }
    Ok(o)
}

fn main() {
    let opts = options().unwrap_or_else(|e| {
        eprintln!("studio: {e}");
        std::process::exit(2);
    });
    gst::init().expect("GStreamer");
    gstrtmp::plugin_register_static().expect("our plugin");
    let listener = TcpListener::bind(opts.listen).unwrap_or_else(|e| {
        eprintln!("studio: cannot listen on {}: {e}", opts.listen);
        std::process::exit(1);
    });
    let addr = listener.local_addr().expect("bound");
    let query = opts
        .token
        .as_ref()
        .map_or(String::new(), |t| format!("?token={t}"));
    println!("studio: open http://{addr}/{query} in Chrome, Edge or Chromium");
    let studio = Arc::new(Studio {
        opts,
        current: Mutex::new(None),
    });
    // A thread per connection, and only so many of them: a page needs
    // three (itself, control, media).
    let open = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            // Closed at once: answering would mean reading it first.
            open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (studio, open) = (studio.clone(), open.clone());
        std::thread::spawn(move || {
            if let Err(e) = studio.serve(conn) {
                eprintln!("studio: {e}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// An HTTP request's head: what the studio looks at.
struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    /// Bytes of the head, still unread in the socket.
    len: usize,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn is_websocket(&self) -> bool {
        self.header("upgrade").eq_ignore_ascii_case("websocket")
    }
}

/// Reads a request's head without taking it from the socket (the
/// WebSocket handshake reads it again); `None` if the connection closed
/// first (browsers open spare connections).
fn peek_request(s: &TcpStream) -> Result<Option<Request>, String> {
    let mut buf = vec![0u8; 8192];
    let end = Instant::now() + Duration::from_secs(10);
    let n = loop {
        let n = s
            .peek(&mut buf)
            .map_err(|e| format!("reading a request: {e}"))?;
        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if n == 0 {
            return Ok(None);
        }
        if n == buf.len() || Instant::now() > end {
            return Err("a request without a complete head".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let head = std::str::from_utf8(&buf[..n]).map_err(|_| "a request head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        len: n,
    }))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(if c == b'+' { b' ' } else { c });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn respond(mut s: TcpStream, status: &str, kind: &str, body: &str, extra: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok();
    s.write_all(body.as_bytes()).ok();
}

fn refuse(s: TcpStream, status: &str, why: &str) {
    respond(s, status, "text/plain; charset=utf-8", why, "");
}

/// A random id for a page's session (which its media WebSocket names).
fn random_id() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No /dev/urandom: the hasher's per-process random keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(Instant::now().elapsed().as_nanos());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

struct Studio {
    opts: Options,
    /// The page in charge: one broadcast at a time.
    current: Mutex<Option<Arc<Session>>>,
}

impl Studio {
    fn serve(&self, s: TcpStream) -> Result<(), String> {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let Some(req) = peek_request(&s)? else {
            return Ok(());
        };
        if let Some(why) = self.refusal(&req) {
            refuse(s, "403 Forbidden", why);
            return Ok(());
        }
        match (req.method.as_str(), req.path.as_str(), req.is_websocket()) {
            ("GET", "/control", true) => self.control(s),
            ("GET", "/media", true) => self.media(s, &req),
            ("GET", "/" | "/index.html", false) => {
                let mut s = s;
                let mut head = vec![0u8; req.len];
                s.read_exact(&mut head).ok();
                let host = req.header("host");
                let csp = format!(
                    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src ws://{host} wss://{host}; media-src 'self' blob: mediastream:; frame-ancestors 'none'\r\nReferrer-Policy: no-referrer\r\n"
                );
                respond(s, "200 OK", "text/html; charset=utf-8", PAGE, &csp);
                Ok(())
            }
            _ => {
                refuse(s, "404 Not Found", "not here");
                Ok(())
            }
        }
    }

    /// Why a request may not go on, if it may not.
    fn refusal(&self, req: &Request) -> Option<&'static str> {
        match &self.opts.token {
            Some(t) => {
                if !req.query.get("token").is_some_and(|q| same_secret(q, t)) {
                    return Some("this studio needs its access token: open the address it printed");
                }
            }
            None => {
                // Loopback only (see `options`): the name the page was
                // reached by must be a loopback one, or another site could
                // point its own name here and talk to the studio.
                let host = req.header("host");
                let name = host
                    .rsplit_once(':')
                    .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(host, |(n, _)| n);
                let name = name.trim_start_matches('[').trim_end_matches(']');
                let loopback = name.eq_ignore_ascii_case("localhost")
                    || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Some(
                        "open the studio as http://127.0.0.1:PORT/ or http://localhost:PORT/",
                    );
                }
            }
        }
        if req.is_websocket() {
            let host = req.header("host");
            let origin = req.header("origin");
            if origin != format!("http://{host}") && origin != format!("https://{host}") {
                return Some("WebSockets are for the studio's own page");
            }
        }
        None
    }

    fn control(&self, s: TcpStream) -> Result<(), String> {
        let mut ws = tungstenite::accept_with_config(s, Some(ws_config(64 << 10)))
            .map_err(|e| format!("control WebSocket: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let session = Arc::new(Session {
            id: random_id(),
            out: tx,
            broadcast: Mutex::new(None),
            replaced: AtomicBool::new(false),
        });
        {
            let mut cur = lock(&self.current);
            // A page that is not live gives way (a reload, another tab);
            // a live one keeps the studio.
            if let Some(old) = cur.as_ref() {
                if old.broadcast().is_some() {
                    let busy = json!({"type": "error", "message": "This studio is live from another page: stop there first."});
                    ws.send(Message::text(busy.to_string())).ok();
                    ws.close(None).ok();
                    return Ok(());
                }
                old.fail_page("Another page took over the studio.");
                old.replaced.store(true, Ordering::SeqCst);
            }
            *cur = Some(session.clone());
        }
        println!("studio: a page connected");
        session.say(json!({"type": "hello", "session": session.id}));
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .ok();
        'page: loop {
            match ws.read() {
                Ok(Message::Text(t)) => match serde_json::from_str::<Value>(t.as_str()) {
                    Ok(cmd) => self.command(&session, &cmd),
                    Err(_) => session.fail_page("the studio did not understand the page"),
                },
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
            while let Ok(v) = rx.try_recv() {
                if ws.send(Message::text(v.to_string())).is_err() {
                    break 'page;
                }
            }
            if session.replaced.load(Ordering::SeqCst) {
                // What was said before it went (the reason) first.
                while let Ok(v) = rx.try_recv() {
                    ws.send(Message::text(v.to_string())).ok();
                }
                ws.close(None).ok();
                break;
            }
        }
        // The page went away: so does its broadcast.
        if let Some(b) = session.broadcast() {
            b.finish(Duration::from_secs(5));
        }
        let mut cur = lock(&self.current);
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, &session)) {
            *cur = None;
        }
        drop(cur);
        println!("studio: the page left");
        Ok(())
    }

    fn command(&self, session: &Arc<Session>, cmd: &Value) {
        match cmd["type"].as_str() {
            Some("start") => {
                if session.broadcast().is_some() {
                    return session.fail_page("already live: stop first");
                }
                match Broadcast::start(session, cmd, self.opts.tls_ca.as_deref()) {
                    Ok(b) => {
                        *lock(&session.broadcast) = Some(b);
                        session.say(json!({"type": "started"}));
                    }
                    Err(e) => session.fail_page(&e),
                }
            }
            Some("stop") => {
                if let Some(b) = session.broadcast() {
                    // What is queued for a slow uplink still goes out.
                    std::thread::spawn(move || b.finish(Duration::from_secs(30)));
                }
            }
            _ => session.fail_page("the studio did not understand the page"),
        }
    }

    fn media(&self, s: TcpStream, req: &Request) -> Result<(), String> {
        let session = lock(&self.current).clone();
        let Some(session) = session.filter(|c| {
            req.query
                .get("session")
                .is_some_and(|id| same_secret(id, &c.id))
        }) else {
            refuse(s, "403 Forbidden", "no such session");
            return Ok(());
        };
        // A frame of 1080p H.264 is well under this; a message past it ends
        // the connection rather than the memory.
        let mut ws = tungstenite::accept_with_config(s, Some(ws_config(8 << 20)))
            .map_err(|e| format!("media WebSocket: {e}"))?;
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .ok();
        let mut started = false;
        loop {
            match ws.read() {
                Ok(Message::Binary(data)) => {
                    let Some(b) = session.broadcast() else {
                        continue;
                    };
                    started = true;
                    if let Err(e) = b.push(data) {
                        session.say(json!({"type": "warning", "message": e}));
                    }
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                // Quiet: go on while the page and its broadcast are there.
                Err(e) if would_block(&e) => {
                    let page_left = !lock(&self.current)
                        .as_ref()
                        .is_some_and(|c| Arc::ptr_eq(c, &session));
                    if page_left || started && session.broadcast().is_none() {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        // The page closes this after its last frame: the stream ends there.
        if let Some(b) = session.broadcast() {
            b.end_of_stream();
        }
        Ok(())
    }
}

/// A page connected to the studio.
struct Session {
    id: String,
    /// To the page, in order.
    out: mpsc::Sender<Value>,
    broadcast: Mutex<Option<Arc<Broadcast>>>,
    /// Another page took over (this one was not live).
    replaced: AtomicBool,
}

impl Session {
    fn say(&self, v: Value) {
        self.out.send(v).ok();
    }

    fn fail_page(&self, message: &str) {
        self.say(json!({"type": "error", "message": message}));
    }

    fn broadcast(&self) -> Option<Arc<Broadcast>> {
        lock(&self.broadcast).clone()
    }
}

/// What the page's `start` says about its media.
struct MediaIn {
    video: (u32, u32, u32),
    /// Rate and channels of the Opus audio, if there is a microphone.
    audio: Option<(i32, i32)>,
}

impl MediaIn {
    fn from(cmd: &Value) -> Result<Self, String> {
        let num = |v: &Value, k: &str, max: u64| {
            v[k].as_u64()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("the page gave no valid {k}"))
        };
        let v = &cmd["video"];
        let video = (
            num(v, "width", 7680)? as u32,
            num(v, "height", 4320)? as u32,
            num(v, "fps", 240)? as u32,
        );
        let audio = match &cmd["audio"] {
            Value::Null => None,
            a => Some((
                num(a, "rate", 192_000)? as i32,
                num(a, "channels", 2)? as i32,
            )),
        };
        Ok(MediaIn { video, audio })
    }
}

/// Bytes an appsrc may hold at most, whatever their times: memory stays
/// bounded even if the queue's age (below) were never looked at.
const MAX_QUEUED_BYTES: u64 = 8 << 20;

/// The times of the frames waiting in each appsrc (video, audio), oldest
/// first: how long the oldest has waited is the studio's delay.
#[derive(Default)]
struct Waiting {
    pts: Mutex<[std::collections::VecDeque<i64>; 2]>,
}

impl Waiting {
    /// Takes frames off as they leave `src`.
    fn watch(self: &Arc<Self>, src: &gst_app::AppSrc, kind: usize) {
        let this = self.clone();
        src.static_pad("src")
            .expect("appsrc has a src pad")
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    let mut q = lock(&this.pts);
                    while q[kind].front().is_some_and(|p| *p <= pts.nseconds() as i64) {
                        q[kind].pop_front();
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }

    /// How long the oldest frame of `kind` has waited (ns), at running
    /// time `now`; 0 when none waits.
    fn age(&self, kind: usize, now: i64) -> i64 {
        lock(&self.pts)[kind]
            .front()
            .map_or(0, |p| (now - p).max(0))
    }
}

/// One broadcast: the pipeline from the page's frames to rtmpsink.
struct Broadcast {
    pipeline: gst::Pipeline,
    sink: gst::Element,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
    /// Capture time (ns) to running time: fixed by the first frame.
    offset: Mutex<Option<i64>>,
    /// The last PTS given per kind: a frame that would go back is dropped.
    last: Mutex<[Option<i64>; 2]>,
    /// Frames the studio dropped: the uplink was behind, or they came
    /// before the stream's start or went back in time.
    dropped: AtomicU64,
    /// Video frames are being dropped until the next keyframe.
    skipping: AtomicBool,
    waiting: Arc<Waiting>,
    eos_sent: AtomicBool,
    done: AtomicBool,
    session: Arc<Session>,
}

/// Where the page's frames of one kind enter the pipeline: live, in time,
/// bounded in bytes (the studio bounds the time itself: see `Waiting`).
fn appsrc(name: &str, caps: gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(true)
        .block(true)
        .max_time(gst::ClockTime::ZERO)
        .max_bytes(MAX_QUEUED_BYTES)
        .max_buffers(0)
        .build()
}

fn element(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer's {factory} is missing (scripts/setup.sh installs it)"))
}

impl Broadcast {
    fn start(
        session: &Arc<Session>,
        cmd: &Value,
        tls_ca: Option<&str>,
    ) -> Result<Arc<Broadcast>, String> {
        let server = cmd["server"].as_str().unwrap_or("").trim();
        let key = cmd["key"].as_str().unwrap_or("").trim();
        if !(server.starts_with("rtmp://") || server.starts_with("rtmps://")) {
            return Err("The server URL must start with rtmp:// or rtmps://.".into());
        }
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('/') {
            return Err("Enter the stream key the service gave you (no spaces or slashes).".into());
        }
        let location = format!("{}/{key}", server.trim_end_matches('/'));
        let url = RtmpUrl::parse(&location)
            .map_err(|_| format!("{server} is not a server URL of the form rtmp://host/app"))?;
        let media = MediaIn::from(cmd)?;

        let pipeline = gst::Pipeline::with_name("studio");
        let video = appsrc(
            "video",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        );
        let waiting = Arc::new(Waiting::default());
        waiting.watch(&video, 0);
        let parse = element("h264parse")?;
        let sink = gst::ElementFactory::make("rtmpsink")
            .name("rtmpsink")
            .property("location", &location)
            // The page paces the stream: frames go out as they come.
            .property("sync", false)
            // The page shows how long frames wait inside.
            .property("measure-latency", true)
            .property(
                "latency",
                gst::ClockTime::try_from(INTERLEAVE_WAIT)
                    .expect("fits")
                    .nseconds(),
            )
            .build()
            .map_err(|e| format!("rtmpsink: {e}"))?;
        if let Some(ca) = tls_ca {
            sink.set_property("tls-ca-file", ca);
        }
        pipeline
            .add_many([video.upcast_ref(), &parse, &sink])
            .expect("new elements");
        video.link(&parse).map_err(|e| e.to_string())?;
        parse
            .link_pads(Some("src"), &sink, Some("video"))
            .map_err(|e| format!("h264parse to rtmpsink: {e}"))?;
        let audio = match media.audio {
            None => None,
            Some((rate, channels)) => {
                let src = appsrc(
                    "audio",
                    gst::Caps::builder("audio/x-opus")
                        .field("channel-mapping-family", 0i32)
                        .field("rate", rate)
                        .field("channels", channels)
                        .build(),
                );
                waiting.watch(&src, 1);
                let chain = [
                    src.clone().upcast(),
                    element("opusdec")?,
                    element("audioconvert")?,
                    element("audioresample")?,
                    element("avenc_aac")?,
                    element("aacparse")?,
                ];
                chain[4].set_property("bitrate", 128_000i32);
                pipeline.add_many(&chain).expect("new elements");
                gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
                chain[5]
                    .link_pads(Some("src"), &sink, Some("audio"))
                    .map_err(|e| format!("aacparse to rtmpsink: {e}"))?;
                Some(src)
            }
        };
        let b = Arc::new(Broadcast {
            pipeline,
            sink,
            video,
            audio,
            offset: Mutex::new(None),
            last: Mutex::new([None; 2]),
            dropped: AtomicU64::new(0),
            skipping: AtomicBool::new(false),
            waiting,
            eos_sent: AtomicBool::new(false),
            done: AtomicBool::new(false),
            session: session.clone(),
        });
        b.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| "the pipeline could not start".to_owned())?;
        let (w, h, fps) = media.video;
        println!(
            "studio: going live to {} ({w}x{h} at {fps} fps{})",
            url.redacted(),
            if b.audio.is_some() {
                ", with audio"
            } else {
                ""
            }
        );
        let watcher = b.clone();
        std::thread::spawn(move || watcher.watch());
        Ok(b)
    }

    /// One frame from the page.
    fn push(&self, data: bytes::Bytes) -> Result<(), String> {
        if data.len() <= MEDIA_HEADER {
            return Err("an empty media message from the page".into());
        }
        let kind = data[0];
        let src = match (kind, &self.audio) {
            (1, _) => &self.video,
            (2, Some(a)) => a,
            _ => return Err(format!("a media message of unknown kind {kind}")),
        };
        let key = data[1] & 1 != 0;
        let ts_us = f64::from_be_bytes(data[4..12].try_into().expect("8 bytes"));
        let dur_us = u32::from_be_bytes(data[12..16].try_into().expect("4 bytes"));
        if !ts_us.is_finite() {
            return Err("a media message without a time".into());
        }
        // The uplink is behind: drop rather than wait, video first (it
        // then waits for its next keyframe; asking for one now would only
        // load the uplink more), audio only when twice as far behind.
        let now = self.running_time();
        let limit = MAX_QUEUED.nseconds() as i64 * i64::from(kind);
        if self.waiting.age(usize::from(kind - 1), now) >= limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if kind == 1 {
                self.skipping.store(true, Ordering::SeqCst);
            }
            return Ok(());
        }
        if kind == 1 && self.skipping.load(Ordering::SeqCst) {
            if !key {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            self.skipping.store(false, Ordering::SeqCst);
        }
        let ts = (ts_us * 1000.0) as i64;
        let offset = *lock(&self.offset).get_or_insert(now - ts);
        let pts = ts + offset;
        {
            let mut last = lock(&self.last);
            let last = &mut last[usize::from(kind - 1)];
            if pts < 0 || last.is_some_and(|l| pts <= l) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            *last = Some(pts);
        }
        lock(&self.waiting.pts)[usize::from(kind - 1)].push_back(pts);
        let mut buf = gst::Buffer::from_slice(data.slice(MEDIA_HEADER..));
        {
            let b = buf.get_mut().expect("new buffer");
            let t = gst::ClockTime::from_nseconds(pts as u64);
            b.set_pts(t);
            b.set_dts(t);
            if dur_us > 0 {
                b.set_duration(gst::ClockTime::from_useconds(u64::from(dur_us)));
            }
            if kind == 1 && !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        match src.push_buffer(buf) {
            Ok(_) | Err(gst::FlowError::Flushing | gst::FlowError::Eos) => Ok(()),
            Err(e) => Err(format!(
                "the studio's pipeline stopped taking frames ({e:?})"
            )),
        }
    }

    fn running_time(&self) -> i64 {
        self.pipeline
            .current_running_time()
            .map_or(0, |t| t.nseconds() as i64)
    }

    fn end_of_stream(&self) {
        if !self.eos_sent.swap(true, Ordering::SeqCst) {
            self.video.end_of_stream().ok();
            if let Some(a) = &self.audio {
                a.end_of_stream().ok();
            }
        }
    }

    /// Ends the stream (everything queued goes out, rtmpsink unpublishes),
    /// waiting at most `limit` before stopping anyway.
    fn finish(&self, limit: Duration) {
        self.end_of_stream();
        let end = Instant::now() + limit;
        while !self.done.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.teardown("stopped");
    }

    fn teardown(&self, state: &str) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let stats = self.stats();
        self.pipeline.set_state(gst::State::Null).ok();
        println!(
            "studio: {state} ({} video and {} audio frames sent)",
            stats["videoFrames"], stats["audioFrames"]
        );
        self.session.say(stats);
        self.session.say(json!({"type": "stopped", "state": state}));
        let mut current = lock(&self.session.broadcast);
        if current.as_ref().is_some_and(|b| std::ptr::eq(&**b, self)) {
            *current = None;
        }
    }

    /// rtmpsink's figures for the page.
    fn stats(&self) -> Value {
        let s: gst::Structure = self.sink.property("stats");
        let num = |k: &str| -> f64 {
            let Ok(v) = s.value(k) else { return 0.0 };
            v.get::<u64>()
                .map(|n| n as f64)
                .or_else(|_| v.get::<u32>().map(f64::from))
                .or_else(|_| v.get::<i32>().map(f64::from))
                .or_else(|_| v.get::<i64>().map(|n| n as f64))
                .unwrap_or(0.0)
        };
        let now = self.running_time();
        let queued = self.waiting.age(0, now).max(self.waiting.age(1, now));
        json!({
            "type": "stats",
            "state": s.get::<&str>("connection-state").unwrap_or("stopped"),
            "bitrate": num("bitrate") as u64,
            "videoFrames": num("video-frames-muxed") as u64,
            "audioFrames": num("audio-frames-muxed") as u64,
            "dropped": num("backlog-dropped") as u64 + self.dropped.load(Ordering::Relaxed),
            "reconnects": num("reconnects") as u64,
            "sinkLatencyMs": num("video-latency-p50") / 1e6,
            "queuedMs": (queued / 100_000) as f64 / 10.0,
        })
    }

    /// Until the broadcast ends: the bus (errors, warnings, EOS) and, every
    /// quarter second, rtmpsink's state and figures, each sent to the page
    /// when it changed.
    fn watch(self: Arc<Self>) {
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let mut last_state = String::new();
        let mut last_stats = Value::Null;
        let mut next_stats = Instant::now();
        while !self.done.load(Ordering::SeqCst) {
            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        let message = e.error().to_string();
                        println!("studio: failed: {message}");
                        self.session.fail_page(&message);
                        self.teardown("failed");
                        return;
                    }
                    gst::MessageView::Warning(w) => {
                        self.session
                            .say(json!({"type": "warning", "message": w.error().to_string()}));
                    }
                    gst::MessageView::Eos(_) => {
                        self.teardown("stopped");
                        return;
                    }
                    // A state change of the connection: say it now.
                    gst::MessageView::Element(m)
                        if m.structure()
                            .is_some_and(|s| s.name() == "rtmp-connection-state") =>
                    {
                        next_stats = Instant::now();
                    }
                    _ => {}
                }
            }
            if Instant::now() >= next_stats {
                next_stats = Instant::now() + Duration::from_millis(250);
                let stats = self.stats();
                let state = match stats["state"].as_str().unwrap_or("") {
                    // Ending, rtmpsink has unpublished; but the broadcast
                    // is over only once its last figures are out:
                    // `teardown` says "stopped" after them.
                    "stopped" if self.eos_sent.load(Ordering::SeqCst) => "stopping",
                    s => s,
                }
                .to_owned();
                if state != last_state {
                    self.session.say(json!({"type": "state", "state": state}));
                    last_state = state;
                }
                if stats != last_stats {
                    self.session.say(stats.clone());
                    last_stats = stats;
                }
            }
        }
    }
}
