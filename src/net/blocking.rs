// SPDX-License-Identifier: MPL-2.0
//! A blocking driver: one thread, one socket, one session, `rtmp://` only.
//! The tests, examples and tools use it to reach real servers; the
//! elements use [`super::client`] (threaded, TLS) and [`super::server`]
//! (one mio loop) instead.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::rtmp::error::{Error, ErrorKind, Result};
use crate::rtmp::message::DataMessage;
use crate::rtmp::session::{
    ClientConfig, ClientEvent, ClientSession, ConnectionStats, ServerConfig, ServerEvent,
    ServerSession, StopCommands,
};
use crate::rtmp::url::RtmpUrl;

fn io_error(what: &str, e: std::io::Error) -> Error {
    let why = match e.kind() {
        IoKind::ConnectionRefused => "connection refused (is a server listening?)".to_owned(),
        IoKind::TimedOut | IoKind::WouldBlock => "timed out".to_owned(),
        IoKind::ConnectionReset => "connection reset by peer".to_owned(),
        IoKind::BrokenPipe => "connection closed by peer".to_owned(),
        _ => e.to_string(),
    };
    Error::new(ErrorKind::Io, format!("{what}: {why}"))
}

/// Waits up to `wait` for bytes and hands them to `feed`. Returns true when
/// the peer has closed the connection.
fn read_once(
    stream: &mut TcpStream,
    buf: &mut [u8],
    wait: Duration,
    feed: impl FnOnce(&[u8]) -> Result<()>,
) -> Result<bool> {
    stream.set_read_timeout(Some(wait)).ok();
    match stream.read(buf) {
        Ok(0) => Ok(true),
        Ok(n) => feed(&buf[..n]).map(|_| false),
        Err(e)
            if matches!(
                e.kind(),
                IoKind::WouldBlock | IoKind::TimedOut | IoKind::Interrupted
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_error("read failed", e)),
    }
}

/// Opens a TCP connection to the URL's host within `timeout`.
pub fn tcp_connect(url: &RtmpUrl, timeout: Duration) -> Result<TcpStream> {
    let target = url.host_port();
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not resolve '{}': {e}", url.host),
            )
        })?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true).ok();
                return Ok(s);
            }
            Err(e) => last = Some(io_error(&format!("could not connect to {target}"), e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::new(
            ErrorKind::Io,
            format!("'{}' resolved to no address", url.host),
        )
    }))
}

/// A client session over a blocking socket.
pub struct BlockingClient {
    stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    eof: bool,
}

impl BlockingClient {
    /// Connects and runs the session until publishing or playing has started
    /// (or failed). Events that came before are kept for `next_event`.
    pub fn open(url: &RtmpUrl, config: ClientConfig) -> Result<Self> {
        if url.scheme == crate::rtmp::url::Scheme::Rtmps {
            return Err(Error::unsupported(
                "the blocking driver speaks rtmp:// only; rtmps:// is the elements' (net::client)",
            ));
        }
        let timeout = config.response_timeout;
        let stream = tcp_connect(url, timeout)?;
        let session = ClientSession::new(config, Instant::now(), &super::handshake_random());
        let mut c = BlockingClient {
            stream,
            session,
            buf: vec![0u8; 64 * 1024],
            eof: false,
        };
        c.flush()?;
        use crate::rtmp::session::ClientState::*;
        while !matches!(c.session.state(), Publishing { .. } | Playing { .. }) {
            c.read_some()?;
            if c.eof {
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!(
                        "server closed the connection during {:?}",
                        c.session.state()
                    ),
                ));
            }
        }
        Ok(c)
    }

    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// The socket, for what a peer does outside the session (tests).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends the stop commands `ClientSession::stop_with` names and keeps
    /// the connection open (`finish` closes it).
    pub fn stop_with(&mut self, cmds: StopCommands) -> Result<()> {
        self.session.stop_with(cmds)?;
        self.flush()
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    /// Writes out everything queued. Sends batch up to 64 KiB otherwise;
    /// a paced publisher calls this after each message.
    pub fn flush(&mut self) -> Result<()> {
        while !self.session.send_buf().is_empty() {
            let n = self
                .stream
                .write(self.session.send_buf())
                .map_err(|e| io_error("write failed", e))?;
            self.session.advance(n);
        }
        Ok(())
    }

    /// Reads once (waiting at most until the session's deadline or 1 s).
    fn read_some(&mut self) -> Result<()> {
        let now = Instant::now();
        let wait = self
            .session
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let session = &mut self.session;
        if read_once(&mut self.stream, &mut self.buf, wait, |d| {
            session.feed(d, Instant::now())
        })? {
            self.eof = true;
        }
        self.session.handle_timeout(Instant::now())?;
        self.flush()
    }

    /// The next event; `Ok(None)` once the server closed the connection
    /// and nothing is left.
    pub fn next_event(&mut self) -> Result<Option<ClientEvent>> {
        loop {
            if let Some(e) = self.session.poll_event() {
                return Ok(Some(e));
            }
            if self.eof {
                return Ok(None);
            }
            self.read_some()?;
        }
    }

    /// Like `next_event`, but gives up after `timeout` with `Ok(None)`.
    pub fn next_event_timeout(&mut self, timeout: Duration) -> Result<Option<ClientEvent>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(e) = self.session.poll_event() {
                return Ok(Some(e));
            }
            if self.eof || Instant::now() >= end {
                return Ok(None);
            }
            self.read_some()?;
        }
    }

    /// Reads whatever the server sent without waiting (acks, pings), so
    /// that a long publish keeps the connection healthy.
    fn drain_incoming(&mut self) -> Result<()> {
        loop {
            match super::recv_now(&self.stream, &mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.session.feed(&self.buf[..n], Instant::now())?,
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                Err(e) => return Err(io_error("read failed", e)),
            }
        }
    }

    pub fn send_audio(&mut self, timestamp: u32, payload: &[u8]) -> Result<()> {
        self.session.send_audio(timestamp, payload)?;
        self.after_send()
    }

    pub fn send_video(&mut self, timestamp: u32, payload: &[u8]) -> Result<()> {
        self.session.send_video(timestamp, payload)?;
        self.after_send()
    }

    pub fn send_data(&mut self, timestamp: u32, data: &DataMessage) -> Result<()> {
        self.session.send_data(timestamp, data)?;
        self.after_send()
    }

    fn after_send(&mut self) -> Result<()> {
        if self.session.pending_bytes() >= 64 * 1024 {
            self.flush()?;
            self.drain_incoming()?;
        }
        Ok(())
    }

    /// Stops politely, sends everything, and closes the connection;
    /// returns the connection's final counters.
    pub fn finish(mut self) -> Result<ConnectionStats> {
        self.session.stop()?;
        self.flush()?;
        self.stream.shutdown(Shutdown::Write).ok();
        // Give the server a moment to read what we sent before the socket goes.
        self.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .ok();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.stream.read(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Ok(self.session.stats())
    }
}

/// A server session over one accepted blocking socket.
pub struct BlockingServerConnection {
    stream: TcpStream,
    session: ServerSession,
    buf: Vec<u8>,
    eof: bool,
}

impl BlockingServerConnection {
    /// Accepts one connection from `listener`, waiting at most `timeout`.
    pub fn accept(listener: &TcpListener, config: ServerConfig, timeout: Duration) -> Result<Self> {
        listener.set_nonblocking(true).ok();
        let end = Instant::now() + timeout;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == IoKind::WouldBlock && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(io_error("accept failed", e)),
            }
        };
        stream.set_nonblocking(false).ok();
        stream.set_nodelay(true).ok();
        Ok(BlockingServerConnection {
            stream,
            session: ServerSession::new(config, Instant::now(), &super::handshake_random()),
            buf: vec![0u8; 64 * 1024],
            eof: false,
        })
    }

    pub fn session(&mut self) -> &mut ServerSession {
        &mut self.session
    }

    pub fn flush(&mut self) -> Result<()> {
        while !self.session.send_buf().is_empty() {
            let n = self
                .stream
                .write(self.session.send_buf())
                .map_err(|e| io_error("write failed", e))?;
            self.session.advance(n);
        }
        Ok(())
    }

    /// The next event; `Ok(None)` when the client closed the connection.
    pub fn next_event(&mut self) -> Result<Option<ServerEvent>> {
        self.wait_event(None)
    }

    /// The next event if one comes within `limit`; `Ok(None)` when none
    /// did, or the client closed the connection (see `is_closed`).
    pub fn next_event_within(&mut self, limit: Duration) -> Result<Option<ServerEvent>> {
        self.wait_event(Some(Instant::now() + limit))
    }

    /// Whether the client closed the connection.
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    fn wait_event(&mut self, until: Option<Instant>) -> Result<Option<ServerEvent>> {
        loop {
            if let Some(e) = self.session.poll_event() {
                return Ok(Some(e));
            }
            let left = until.map(|u| u.saturating_duration_since(Instant::now()));
            if self.eof || left.is_some_and(|l| l.is_zero()) {
                return Ok(None);
            }
            let session = &mut self.session;
            let wait = left.map_or(Duration::from_millis(200), |l| {
                l.min(Duration::from_millis(200))
            });
            if read_once(&mut self.stream, &mut self.buf, wait, |d| {
                session.feed(d, Instant::now())
            })? {
                self.eof = true;
            }
            self.session.handle_timeout(Instant::now())?;
            self.flush()?;
        }
    }

    pub fn close(self) {
        self.stream.shutdown(Shutdown::Both).ok();
    }
}
