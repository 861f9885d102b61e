use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::mode::RtmpMode;
use crate::net::client::{Cancel, ClientConnection, is_cancelled};
use crate::net::server::{PeerKind, PlayOptions, Role, Server};
use crate::rtmp::flv::{FlvReader, TAG_HEADER_SIZE, tag_type};
use crate::rtmp::message::type_id;
use crate::rtmp::session::{ClientConfig, ClientMode};
use crate::rtmp::url::RtmpUrl;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("rtmpsink", gst::DebugColorFlags::empty(), Some("RTMP sink"))
});

pub mod defaults {
    pub const TIMEOUT: u32 = 10;
    pub const CHUNK_SIZE: u32 = crate::rtmp::session::DEFAULT_OUT_CHUNK_SIZE;
    pub const FLASH_VERSION: &str = "FMLE/3.0 (compatible; GStreamer rtmpsink)";
    pub const MAX_CLIENTS: u32 = 256;
    pub const CLIENT_QUEUE_TIME_MS: u32 = 5000;
    pub const CLIENT_QUEUE_BYTES: u32 = 16 << 20;
}

#[glib::flags(name = "GstRtmpSinkStopCommands")]
pub enum StopCommands {
    #[flags_value(name = "Send FCUnpublish", nick = "fcunpublish")]
    FC_UNPUBLISH = 1 << 0,
    #[flags_value(name = "Send deleteStream", nick = "deletestream")]
    DELETE_STREAM = 1 << 1,
}

/// What the `rtmpsink` bin's properties set.
#[derive(Debug, Clone)]
pub struct Settings {
    pub location: Option<String>,
    pub timeout: u32,
    pub async_connect: bool,
    pub chunk_size: u32,
    pub flash_version: String,
    pub tc_url: Option<String>,
    pub extra_connect_args: Option<gst::Structure>,
    pub stop_commands: StopCommands,
    pub mode: RtmpMode,
    pub max_clients: u32,
    pub client_queue_time_ms: u32,
    pub client_queue_bytes: u32,
    pub gop_cache: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            timeout: defaults::TIMEOUT,
            async_connect: true,
            chunk_size: defaults::CHUNK_SIZE,
            flash_version: defaults::FLASH_VERSION.into(),
            tc_url: None,
            extra_connect_args: None,
            stop_commands: StopCommands::all(),
            mode: RtmpMode::Client,
            max_clients: defaults::MAX_CLIENTS,
            client_queue_time_ms: defaults::CLIENT_QUEUE_TIME_MS,
            client_queue_bytes: defaults::CLIENT_QUEUE_BYTES,
            gop_cache: true,
        }
    }
}

enum Conn {
    Idle,
    Connecting(JoinHandle<crate::rtmp::Result<ClientConnection>>),
    Connected(Box<ClientConnection>),
    /// Server mode: players come and go.
    Serving(Arc<Server>),
    Failed,
}

struct State {
    conn: Conn,
    url: Option<RtmpUrl>,
    flv: FlvReader,
    started: Option<Instant>,
    messages: u64,
    video: u64,
    audio: u64,
    last_stats: crate::rtmp::session::ConnectionStats,
}

impl Default for State {
    fn default() -> Self {
        State {
            conn: Conn::Idle,
            url: None,
            flv: FlvReader::new(16 << 20),
            started: None,
            messages: 0,
            video: 0,
            audio: 0,
            last_stats: Default::default(),
        }
    }
}

#[derive(Default)]
pub struct RtmpSinkConn {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Reached by `unlock` without taking the state lock.
    cancel: Cancel,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSinkConn {
    const NAME: &'static str = "GstRtmpSinkConn";
    type Type = super::RtmpSinkConn;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for RtmpSinkConn {}
impl GstObjectImpl for RtmpSinkConn {}

impl ElementImpl for RtmpSinkConn {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &crate::caps::flv_caps(),
                )
                .unwrap(),
            ]
        });
        T.as_ref()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `@setDataFrame` as AMF0, put before an `onMetaData` script tag body.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

impl RtmpSinkConn {
    pub fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    pub fn stats(&self) -> gst::Structure {
        let st = lock(&self.state);
        let mut server = None;
        let (net, state) = match &st.conn {
            Conn::Idle => (st.last_stats, "stopped"),
            Conn::Connecting(_) => (st.last_stats, "connecting"),
            Conn::Connected(c) => (c.stats(), "publishing"),
            Conn::Serving(s) => {
                let stats = s.stats();
                let mut net = st.last_stats;
                for p in &stats.peers {
                    net.bytes_out += p.bytes_out;
                    net.bytes_in += p.bytes_in;
                }
                server = Some(stats);
                (net, "serving")
            }
            Conn::Failed => (st.last_stats, "failed"),
        };
        let secs = st.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        let bitrate = if secs > 0.0 {
            (net.bytes_out as f64 * 8.0 / secs) as u64
        } else {
            0
        };
        let dropped: u64 = server
            .as_ref()
            .map_or(0, |s| s.peers.iter().map(|p| p.dropped).sum());
        let mut b = gst::Structure::builder("application/x-rtmp-sink-stats")
            .field("connection-state", state)
            .field("bytes-out", net.bytes_out)
            .field("bytes-in", net.bytes_in)
            .field("messages-out", st.messages)
            .field("video-frames", st.video)
            .field("audio-frames", st.audio)
            .field("dropped", dropped)
            .field("bitrate", bitrate)
            .field("peer-acknowledged", u64::from(net.peer_acked));
        if let Some(s) = server {
            let players = s
                .peers
                .iter()
                .filter(|p| p.kind == PeerKind::Player)
                .count();
            b = b
                .field("players", players as u32)
                .field("players-served", s.started)
                .field("connections-accepted", s.accepted)
                .field("connections-rejected", s.rejected)
                .field("gop-cache-bytes", s.gop_bytes)
                .field("clients", crate::common::peer_stats_array(&s));
        }
        b.build()
    }

    fn client_config(&self, url: &RtmpUrl) -> ClientConfig {
        let s = self.settings();
        let mut c = ClientConfig::new(ClientMode::Publish, url);
        c.flash_ver = s.flash_version.clone();
        if let Some(t) = &s.tc_url {
            c.tc_url = t.clone();
        }
        c.chunk_size = s.chunk_size;
        c.response_timeout = Duration::from_secs(u64::from(s.timeout.max(1)));
        if let Some(extra) = &s.extra_connect_args {
            c.connect_extra = crate::common::connect_extra(extra);
        }
        c
    }

    /// Waits for the connection to be up; errors are posted here.
    fn ensure_connected(&self, st: &mut State) -> Result<(), gst::FlowError> {
        if let Conn::Connecting(_) = st.conn {
            let Conn::Connecting(h) = std::mem::replace(&mut st.conn, Conn::Failed) else {
                unreachable!()
            };
            let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
            match h.join() {
                Ok(Ok(c)) => {
                    gst::info!(CAT, imp = self, "publishing to {url}");
                    st.conn = Conn::Connected(Box::new(c));
                }
                Ok(Err(e)) if is_cancelled(&e) => {
                    st.conn = Conn::Idle;
                    return Err(gst::FlowError::Flushing);
                }
                Ok(Err(e)) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::OpenWrite,
                        ("Could not publish to {}: {}", url, e)
                    );
                    return Err(gst::FlowError::Error);
                }
                Err(_) => {
                    gst::element_imp_error!(
                        self,
                        gst::LibraryError::Failed,
                        ("connection thread panicked")
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
        match st.conn {
            Conn::Connected(_) | Conn::Serving(_) => Ok(()),
            Conn::Idle => {
                // After a flush that cancelled the connect: start again.
                self.spawn_connect(st);
                self.ensure_connected(st)
            }
            Conn::Failed | Conn::Connecting(_) => Err(gst::FlowError::Error),
        }
    }

    /// Listens on the location's address for players (server mode). With
    /// port 0 the location then shows the port picked.
    fn start_server(&self, url: &RtmpUrl) -> Result<Server, gst::ErrorMessage> {
        let (options, role) = {
            let s = self.settings();
            let options =
                crate::common::server_options(url, &[], s.max_clients, s.timeout, s.chunk_size);
            let role = Role::Play(PlayOptions {
                queue_time: Duration::from_millis(u64::from(s.client_queue_time_ms)),
                queue_bytes: s.client_queue_bytes as usize,
                gop_cache: s.gop_cache,
            });
            (options, role)
        };
        crate::common::start_server(
            self.obj().upcast_ref(),
            url,
            options,
            role,
            "accept-player",
            *CAT,
            |l| self.settings().location = Some(l),
        )
    }

    fn spawn_connect(&self, st: &mut State) {
        let Some(url) = st.url.clone() else { return };
        let config = self.client_config(&url);
        let cancel = self.cancel.clone();
        let h = std::thread::Builder::new()
            .name("rtmpsink-connect".into())
            .spawn(move || ClientConnection::open(&url, config, &cancel))
            .expect("spawn a thread");
        st.conn = Conn::Connecting(h);
        st.started = Some(Instant::now());
    }

    fn send(
        &self,
        st: &mut State,
        kind: u8,
        ts: u32,
        parts: &[&[u8]],
    ) -> Result<(), gst::FlowError> {
        let c = match &st.conn {
            Conn::Connected(c) => c,
            Conn::Serving(server) => {
                // Players get metadata as onMetaData, as it was written.
                let type_id = match kind {
                    tag_type::AUDIO => type_id::AUDIO,
                    tag_type::VIDEO => type_id::VIDEO,
                    tag_type::SCRIPT => type_id::DATA_AMF0,
                    _ => return Ok(()),
                };
                return match server.relay(type_id, ts, parts, &self.cancel) {
                    Ok(()) => {
                        st.messages += 1;
                        match kind {
                            tag_type::AUDIO => st.audio += 1,
                            tag_type::VIDEO => st.video += 1,
                            _ => {}
                        }
                        Ok(())
                    }
                    Err(e) => Err(self.lost(st, e)),
                };
            }
            _ => return Err(gst::FlowError::Error),
        };
        let (type_id, extra): (u8, Option<&[u8]>) = match kind {
            tag_type::AUDIO => (type_id::AUDIO, None),
            tag_type::VIDEO => (type_id::VIDEO, None),
            tag_type::SCRIPT => {
                // A script tag that sets metadata goes out as
                // @setDataFrame onMetaData, as servers expect from publishers.
                let is_meta = parts
                    .first()
                    .is_some_and(|p| p.starts_with(b"\x02\x00\x0aonMetaData"));
                (type_id::DATA_AMF0, is_meta.then_some(SET_DATA_FRAME))
            }
            _ => return Ok(()),
        };
        let r = match extra {
            Some(pre) => {
                let mut v = Vec::with_capacity(parts.len() + 1);
                v.push(pre);
                v.extend_from_slice(parts);
                c.queue_media_parts(type_id, ts, &v)
            }
            None => c.queue_media_parts(type_id, ts, parts),
        };
        match r {
            Ok(()) => {
                st.messages += 1;
                match kind {
                    tag_type::AUDIO => st.audio += 1,
                    tag_type::VIDEO => st.video += 1,
                    _ => {}
                }
                Ok(())
            }
            Err(e) => Err(self.lost(st, e)),
        }
    }

    /// Writes out what `send` encoded.
    fn flush(&self, st: &mut State) -> Result<(), gst::FlowError> {
        let c = match &st.conn {
            Conn::Connected(c) => c,
            // The server's loop writes to players itself.
            Conn::Serving(_) => return Ok(()),
            _ => return Err(gst::FlowError::Error),
        };
        match c.flush(&self.cancel) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(st, e)),
        }
    }

    /// Turns a failed send or write into the flow return, posting an error
    /// unless it was a cancel (flush or stop).
    fn lost(&self, st: &mut State, e: crate::rtmp::Error) -> gst::FlowError {
        if is_cancelled(&e) {
            return gst::FlowError::Flushing;
        }
        let url = st.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        gst::element_imp_error!(
            self,
            gst::ResourceError::Write,
            ("Connection to {} lost: {}", url, e)
        );
        if let Conn::Connected(c) = &st.conn {
            st.last_stats = c.stats();
        }
        st.conn = Conn::Failed;
        gst::FlowError::Error
    }

    /// Encodes the tags of one buffer (not yet written).
    fn render_buffer(&self, st: &mut State, buffer: &gst::BufferRef) -> Result<(), gst::FlowError> {
        if let Some(r) = self.render_one_tag(st, buffer) {
            return r;
        }
        // Anything else (the FLV header, tags split or joined across
        // buffers, a file read in blocks) goes through the FLV reader.
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        st.flv.feed(&map);
        loop {
            match st.flv.poll_tag() {
                Ok(Some(t)) => {
                    let data = t.data.clone();
                    self.send(st, t.tag_type, t.timestamp, &[&data])?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Demux,
                        ("Invalid FLV input: {}", e)
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }

    /// One buffer holding exactly one whole tag, with nothing left over
    /// from earlier buffers: its memories go out as they are.
    fn render_one_tag(
        &self,
        st: &mut State,
        buffer: &gst::BufferRef,
    ) -> Option<Result<(), gst::FlowError>> {
        if st.flv.header().is_none()
            || st.flv.buffered() != 0
            || buffer.size() < TAG_HEADER_SIZE + 4
        {
            return None;
        }
        let mut h = [0u8; TAG_HEADER_SIZE];
        buffer.copy_to_slice(0, &mut h).ok()?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        if buffer.size() != TAG_HEADER_SIZE + size + 4 || h[0] & 0x20 != 0 {
            return None;
        }
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let maps: Vec<gst::memory::MappedMemory<gst::memory::Readable>> = buffer
            .iter_memories_owned()
            .filter_map(|m| m.into_mapped_memory_readable().ok())
            .collect();
        if maps.len() != buffer.n_memory() {
            return None;
        }
        // Slice [TAG_HEADER_SIZE, TAG_HEADER_SIZE + size) across the memories.
        let (mut skip, mut want) = (TAG_HEADER_SIZE, size);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(maps.len());
        for m in &maps {
            let mut s: &[u8] = m.as_slice();
            let k = skip.min(s.len());
            s = &s[k..];
            skip -= k;
            let n = want.min(s.len());
            if n > 0 {
                parts.push(&s[..n]);
                want -= n;
            }
        }
        Some(self.send(st, h[0] & 0x1F, ts, &parts))
    }
}

impl BaseSinkImpl for RtmpSinkConn {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mode = self.settings().mode;
        let url = crate::common::location_url(self.settings().location.clone(), mode)?;
        self.cancel.reset();
        let mut st = lock(&self.state);
        *st = State::default();
        if mode == RtmpMode::Server {
            let server = self.start_server(&url)?;
            st.url = Some(url);
            st.started = Some(Instant::now());
            st.conn = Conn::Serving(Arc::new(server));
            return Ok(());
        }
        st.url = Some(url);
        self.spawn_connect(&mut st);
        if !self.settings().async_connect {
            match self.ensure_connected(&mut st) {
                Ok(()) => {}
                Err(_) => {
                    // The error was posted; fail the state change too.
                    return Err(gst::error_msg!(
                        gst::ResourceError::OpenWrite,
                        ["Could not connect"]
                    ));
                }
            }
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.cancel();
        let mut st = lock(&self.state);
        match std::mem::replace(&mut st.conn, Conn::Idle) {
            Conn::Connecting(h) => {
                h.join().ok();
            }
            Conn::Connected(c) => {
                st.last_stats = c.stats();
                drop(c);
            }
            Conn::Serving(s) => {
                s.stop();
                for p in s.stats().peers {
                    st.last_stats.bytes_out += p.bytes_out;
                    st.last_stats.bytes_in += p.bytes_in;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.cancel();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.reset();
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut st = lock(&self.state);
        self.ensure_connected(&mut st)?;
        self.render_buffer(&mut st, buffer)?;
        self.flush(&mut st)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn render_list(&self, list: &gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        // One write for the whole list.
        let mut st = lock(&self.state);
        self.ensure_connected(&mut st)?;
        for buffer in list.iter() {
            self.render_buffer(&mut st, buffer)?;
        }
        self.flush(&mut st)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // Everything written, the stop commands sent, the connection
            // closed: only then may EOS be posted.
            let mut st = lock(&self.state);
            if let Conn::Serving(server) = &st.conn {
                // Players get what is queued, then the end of the stream.
                let wait = Duration::from_secs(u64::from(self.settings().timeout));
                match server.finish(wait, &self.cancel) {
                    Ok(()) => gst::info!(CAT, imp = self, "stream finished for every player"),
                    Err(e) if is_cancelled(&e) => {}
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Could not end the stream for players: {}", e)
                        );
                        return false;
                    }
                }
            } else if self.ensure_connected(&mut st).is_ok()
                && let Conn::Connected(c) = std::mem::replace(&mut st.conn, Conn::Idle)
            {
                let cmds = self.settings().stop_commands;
                let (fc, delete) = (
                    cmds.contains(StopCommands::FC_UNPUBLISH),
                    cmds.contains(StopCommands::DELETE_STREAM),
                );
                match c.finish(fc, delete, &self.cancel) {
                    Ok(stats) => {
                        st.last_stats = stats;
                        gst::info!(
                            CAT,
                            imp = self,
                            "stream finished: {} bytes sent",
                            stats.bytes_out
                        );
                    }
                    Err(e) if is_cancelled(&e) => {}
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Could not finish the stream: {}", e)
                        );
                        return false;
                    }
                }
            }
        }
        self.parent_event(event)
    }
}
