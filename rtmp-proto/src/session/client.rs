// SPDX-License-Identifier: MPL-2.0
//! The client side: connect, then publish or play.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::amf0::{Amf0Value, Properties};
use crate::chunk::RawMessage;
use crate::error::{Error, ErrorKind, Refusal, Result};
use crate::handshake::RANDOM_SIZE;
use crate::limits::Limits;
use crate::message::{
    ConnectParams, DataMessage, Message, NetCommand, Status, UserControl, type_id,
};
use crate::url::{RtmpUrl, redact_key};

use super::{Connection, ConnectionStats, DEFAULT_OUT_CHUNK_SIZE, csid};

/// What a client connects for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// Send a stream (`publish`).
    Publish,
    /// Receive a stream (`play`).
    Play,
}

/// The Enhanced RTMP capabilities announced in `connect`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnhancedCaps {
    /// `fourCcList`: the codecs we take or send ("hvc1", "av01"...).
    pub fourcc_list: Vec<String>,
    /// `videoFourCcInfoMap`: per video FourCC, what we can do with it.
    pub video_fourcc_info_map: Properties,
    /// `audioFourCcInfoMap`: per audio FourCC, what we can do with it.
    pub audio_fourcc_info_map: Properties,
    /// `capsEx`: extended capabilities (reconnect, multitrack, ModEx).
    pub caps_ex: Option<f64>,
}

/// What a client session connects to and how.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Publish or play.
    pub mode: ClientMode,
    /// The application (`app` in connect), with its query.
    pub app: String,
    /// Stream name (key), query included.
    pub stream: String,
    /// `tcUrl` in connect.
    pub tc_url: String,
    /// `flashVer` in connect.
    pub flash_ver: String,
    /// `swfUrl` in connect, if any.
    pub swf_url: Option<String>,
    /// `pageUrl` in connect (players), if any.
    pub page_url: Option<String>,
    /// Extra properties for the connect command object.
    pub connect_extra: Properties,
    /// Extra arguments after the connect command object.
    pub connect_args: Vec<Amf0Value>,
    /// Enhanced RTMP fields for connect, if any.
    pub enhanced: Option<EnhancedCaps>,
    /// Our outgoing chunk size, announced right after the handshake.
    pub chunk_size: u32,
    /// Publish type: "live", "record" or "append".
    pub publish_kind: String,
    /// Play: the buffer length told to the server.
    pub buffer_ms: u32,
    /// Play: start (-2 live or recorded, -1 live only (librtmp and FFmpeg
    /// send -1000), >= 0 milliseconds into a recorded stream, as servers
    /// take it).
    pub play_start: f64,
    /// Play: how many milliseconds of a recorded stream (-1: to its end).
    pub play_duration: f64,
    /// Play: a name to `FCSubscribe` to before playing (the CDNs' live
    /// streams, Akamai and Limelight, want it; librtmp sends it with
    /// `live=1`).
    pub fc_subscribe: Option<String>,
    /// The secret shared with a server that challenges its clients after
    /// `connect` (SecureToken, see [`crate::secure_token`]); None: such a
    /// server is an error.
    pub secure_token: Option<crate::secure_token::Secret>,
    /// How long to wait for the handshake or an answer to a command.
    pub response_timeout: Duration,
    /// The bounds it decodes within.
    pub limits: Limits,
}

impl ClientConfig {
    /// A configuration for `url` with the usual defaults.
    pub fn new(mode: ClientMode, url: &RtmpUrl) -> Self {
        ClientConfig {
            mode,
            app: url.app.clone(),
            stream: url.stream.clone(),
            tc_url: url.tc_url(),
            flash_ver: match mode {
                ClientMode::Publish => "FMLE/3.0 (compatible; gst-rtmp)".into(),
                ClientMode::Play => "LNX 9,0,124,2".into(),
            },
            swf_url: None,
            page_url: None,
            connect_extra: Vec::new(),
            connect_args: Vec::new(),
            enhanced: None,
            chunk_size: DEFAULT_OUT_CHUNK_SIZE,
            publish_kind: "live".into(),
            buffer_ms: 1000,
            play_start: -2.0,
            play_duration: -1.0,
            fc_subscribe: None,
            secure_token: None,
            response_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// C0+C1 sent, waiting for S0+S1+S2.
    Handshaking,
    /// `connect` sent, waiting for its answer.
    Connecting,
    /// `createStream` sent, waiting for the stream id.
    CreatingStream,
    /// `publish` sent, waiting for NetStream.Publish.Start.
    StartingPublish {
        /// The stream created for it.
        stream_id: u32,
    },
    /// Media may be sent.
    Publishing {
        /// The stream published on.
        stream_id: u32,
    },
    /// `play` sent, waiting for NetStream.Play.Start.
    StartingPlay {
        /// The stream created for it.
        stream_id: u32,
    },
    /// Media comes in.
    Playing {
        /// The stream played.
        stream_id: u32,
    },
    /// Ended politely (`stop`).
    Closed,
    /// Ended by an error; nothing more can be done with it.
    Failed,
}

/// What a rejection or timeout happened during.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The handshake.
    Handshake,
    /// `connect`.
    Connect,
    /// `createStream`.
    CreateStream,
    /// `publish`.
    Publish,
    /// `play`.
    Play,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Handshake => "handshake",
            Stage::Connect => "connect",
            Stage::CreateStream => "createStream",
            Stage::Publish => "publish",
            Stage::Play => "play",
        }
    }
}

/// What the server did, for the driver to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server accepted `connect`.
    Connected {
        /// The command object of the answer (fmsVer, capabilities...).
        properties: Amf0Value,
        /// The info object of the answer, if it had one.
        status: Option<Status>,
    },
    /// Publishing has begun: media may be sent.
    PublishStarted {
        /// The stream published on.
        stream_id: u32,
    },
    /// Playing has begun: media will come.
    PlayStarted {
        /// The stream played.
        stream_id: u32,
    },
    /// An onStatus that did not change the state (Play.Reset, Publish.Idle ...).
    Status(Status),
    /// User control StreamBegin for this stream id.
    StreamBegin(u32),
    /// User control StreamDry: the stream has no data for now.
    StreamDry(u32),
    /// User control StreamIsRecorded: a recorded (not live) stream.
    StreamIsRecorded(u32),
    /// The played stream ended: StreamEOF, Play.Complete / Stop / UnpublishNotify.
    StreamEnded {
        /// Why, in words.
        reason: String,
    },
    /// Audio of the played stream.
    Audio {
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// Video of the played stream.
    Video {
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
    /// A data message of the played stream (metadata...).
    Data {
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The decoded message.
        data: DataMessage,
    },
    /// The server told us to reconnect (Enhanced RTMP v2).
    ReconnectRequest {
        /// Where to: a tcUrl (absolute or relative), or none for the same server.
        tc_url: Option<String>,
        /// The server's reason.
        description: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Connect,
    CreateStream,
    Other,
}

/// The commands a client sends when it ends a stream (see
/// `ClientSession::stop_with`). The default is FCUnpublish and
/// deleteStream, as rtmp2sink's and FFmpeg's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopCommands {
    /// `FCUnpublish` with the stream name (a publisher only): the
    /// counterpart of FCPublish, which CDNs (and FMLE) expect.
    pub fc_unpublish: bool,
    /// `closeStream` on the stream itself, as Flash's `NetStream.close()`.
    pub close_stream: bool,
    /// `deleteStream` with the stream's id, on the connection.
    pub delete_stream: bool,
}

impl Default for StopCommands {
    fn default() -> Self {
        StopCommands {
            fc_unpublish: true,
            close_stream: false,
            delete_stream: true,
        }
    }
}

impl StopCommands {
    /// None at all: the connection just closes.
    pub const NONE: StopCommands = StopCommands {
        fc_unpublish: false,
        close_stream: false,
        delete_stream: false,
    };
}

/// A client connection as a state machine: the handshake, `connect`,
/// `createStream`, then `publish` or `play`, acknowledgements and pings.
/// The driver feeds it bytes and time and sends what it gives.
pub struct ClientSession {
    conn: Connection,
    config: ClientConfig,
    state: ClientState,
    events: VecDeque<ClientEvent>,
    pending: HashMap<u64, Pending>,
    next_txn: u64,
    deadline: Option<Instant>,
    failure: Option<Error>,
    /// PingResponses the server sent, and the value of the last one.
    pings_answered: u64,
    last_ping_answer: Option<u32>,
    /// A `seek` is unanswered (see [`ClientSession::seek`]).
    seeking: bool,
}

impl ClientSession {
    /// A client whose handshake starts at once (C0+C1 are in `send_buf`).
    /// `random` fills C1; it need not be secret.
    pub fn new(config: ClientConfig, now: Instant, random: &[u8; RANDOM_SIZE]) -> Self {
        ClientSession {
            conn: Connection::client(0, random, config.limits),
            deadline: Some(now + config.response_timeout),
            config,
            state: ClientState::Handshaking,
            events: VecDeque::new(),
            pending: HashMap::new(),
            next_txn: 1,
            failure: None,
            pings_answered: 0,
            last_ping_answer: None,
            seeking: false,
        }
    }

    /// Where it is.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// What it was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection's counters.
    pub fn stats(&self) -> ConnectionStats {
        self.conn.stats()
    }

    /// The connection under it (chunk figures, limits).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The stream id once createStream has been answered.
    pub fn stream_id(&self) -> Option<u32> {
        match self.state {
            ClientState::StartingPublish { stream_id }
            | ClientState::Publishing { stream_id }
            | ClientState::StartingPlay { stream_id }
            | ClientState::Playing { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = ClientState::Failed;
        self.deadline = None;
        self.failure = Some(e.clone());
        e
    }

    fn check_alive(&self) -> Result<()> {
        match &self.failure {
            Some(e) => Err(e.clone()),
            None if self.state == ClientState::Closed => {
                Err(Error::new(ErrorKind::Closed, "the session is closed"))
            }
            None => Ok(()),
        }
    }

    /// Bytes from the server.
    pub fn feed(&mut self, data: &[u8], now: Instant) -> Result<()> {
        // After `stop` the server's last answers still arrive; they are read
        // (so acknowledgements stay right) and otherwise ignored.
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if let Err(e) = self.conn.feed(data) {
            return Err(self.fail(e));
        }
        if self.state == ClientState::Handshaking && self.conn.handshake_done() {
            self.on_handshake_done(now).map_err(|e| self.fail(e))?;
        }
        loop {
            let next = self.conn.poll_message();
            match next {
                Ok(Some((raw, msg))) => {
                    if let Err(e) = self.on_message(raw, msg, now) {
                        return Err(self.fail(e));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The next thing the server did.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to send now.
    pub fn send_buf(&self) -> &[u8] {
        self.conn.send_buf()
    }

    /// Marks `n` bytes of [`send_buf`](Self::send_buf) as sent.
    pub fn advance(&mut self, n: usize) {
        self.conn.advance(n)
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Deadlines: an answer that does not come within the response timeout
    /// is an error. Call it by [`poll_timeout`](Self::poll_timeout) at the latest.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        self.check_alive()?;
        if let Some(d) = self.deadline
            && now >= d
        {
            let stage = match self.state {
                ClientState::Handshaking => Stage::Handshake,
                ClientState::Connecting => Stage::Connect,
                ClientState::CreatingStream => Stage::CreateStream,
                ClientState::StartingPublish { .. } => Stage::Publish,
                _ => Stage::Play,
            };
            let e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "server did not answer {} within {:.1} s",
                    stage.name(),
                    self.config.response_timeout.as_secs_f64()
                ),
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn txn(&mut self, p: Pending) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1;
        if p != Pending::Other {
            self.pending.insert(t, p);
        }
        t as f64
    }

    fn on_handshake_done(&mut self, now: Instant) -> Result<()> {
        self.conn.set_chunk_size(self.config.chunk_size)?;
        let c = &self.config;
        let mut params = ConnectParams {
            app: c.app.clone(),
            tc_url: Some(c.tc_url.clone()),
            flash_ver: Some(c.flash_ver.clone()),
            swf_url: c.swf_url.clone(),
            page_url: c.page_url.clone(),
            extra: c.connect_extra.clone(),
            args: c.connect_args.clone(),
            ..Default::default()
        };
        match c.mode {
            ClientMode::Publish => params.kind = Some("nonprivate".into()),
            ClientMode::Play => {
                params.fpad = Some(false);
                params.capabilities = Some(15.0);
                params.audio_codecs = Some(4071.0);
                params.video_codecs = Some(252.0);
                params.video_function = Some(1.0);
            }
        }
        if let Some(e) = &c.enhanced {
            params.fourcc_list = e.fourcc_list.clone();
            params.video_fourcc_info_map = e.video_fourcc_info_map.clone();
            params.audio_fourcc_info_map = e.audio_fourcc_info_map.clone();
            params.caps_ex = e.caps_ex;
        }
        let txn = self.txn(Pending::Connect);
        self.conn.send_command(
            csid::COMMAND,
            0,
            NetCommand::Connect(Box::new(params)).into_command(txn),
        )?;
        self.state = ClientState::Connecting;
        self.deadline = Some(now + self.config.response_timeout);
        Ok(())
    }

    fn rejected(&self, stage: Stage, status: &Status) -> Error {
        let what = match stage {
            Stage::Publish | Stage::Play => format!(" for '{}'", redact_key(&self.config.stream)),
            _ => String::new(),
        };
        Error::refused(
            Refusal {
                command: stage.name(),
                code: status.code.clone(),
                description: status.description.clone(),
            },
            format!("server rejected {}: {status}{what}", stage.name()),
        )
    }

    fn on_message(&mut self, raw: RawMessage, msg: Message, now: Instant) -> Result<()> {
        // A player has one stream, so any media is for it: FFmpeg's listen
        // server sends on a stream id other than the one it handed out.
        let on_our_stream = match self.config.mode {
            ClientMode::Play => self.stream_id().is_some(),
            ClientMode::Publish => self.stream_id() == Some(raw.stream_id),
        };
        match msg {
            Message::Command { command, .. } => {
                let txn = command.transaction_id as u64;
                let parsed = command.parse();
                self.on_command(txn, parsed, now)?;
            }
            Message::UserControl(u) => match u {
                UserControl::StreamBegin(s) => self.events.push_back(ClientEvent::StreamBegin(s)),
                // As with media, a player's only stream is the one that ended.
                // A server stops the old position before it seeks.
                UserControl::StreamEof(_) if self.seeking => {}
                UserControl::StreamEof(_)
                    if self.config.mode == ClientMode::Play && self.stream_id().is_some() =>
                {
                    self.events.push_back(ClientEvent::StreamEnded {
                        reason: "server sent StreamEOF".into(),
                    });
                }
                UserControl::StreamDry(s) => self.events.push_back(ClientEvent::StreamDry(s)),
                UserControl::StreamIsRecorded(s) => {
                    self.events.push_back(ClientEvent::StreamIsRecorded(s))
                }
                UserControl::PingResponse(t) => {
                    self.pings_answered += 1;
                    self.last_ping_answer = Some(t);
                }
                _ => {}
            },
            Message::Audio(payload) if on_our_stream => self.events.push_back(ClientEvent::Audio {
                timestamp: raw.timestamp,
                payload,
            }),
            Message::Video(payload) if on_our_stream => self.events.push_back(ClientEvent::Video {
                timestamp: raw.timestamp,
                payload,
            }),
            Message::Data { data, .. } if on_our_stream || raw.stream_id == 0 => {
                self.events.push_back(ClientEvent::Data {
                    timestamp: raw.timestamp,
                    data,
                })
            }
            // Protocol control was handled by the connection; media on other
            // streams and shared objects are not ours.
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, txn: u64, cmd: NetCommand, now: Instant) -> Result<()> {
        match cmd {
            NetCommand::Result { properties, info } => match self.pending.remove(&txn) {
                Some(Pending::Connect) => {
                    let status = Status::from_value(&info);
                    if let Some(s) = status.as_ref().filter(|s| s.is_error()) {
                        return Err(self.rejected(Stage::Connect, s));
                    }
                    self.answer_secure_token(&info)?;
                    self.events
                        .push_back(ClientEvent::Connected { properties, status });
                    self.after_connect(now)?;
                }
                Some(Pending::CreateStream) => {
                    let id = info
                        .as_f64()
                        .filter(|v| *v >= 0.0 && *v <= f64::from(u32::MAX))
                        .ok_or_else(|| {
                            Error::protocol(format!(
                                "createStream answer has no stream id: {info:?}"
                            ))
                        })? as u32;
                    self.after_create_stream(id, now)?;
                }
                _ => {}
            },
            NetCommand::Error { info, .. } => {
                let status =
                    Status::from_value(&info).unwrap_or_else(|| Status::new("error", "_error", ""));
                match self.pending.remove(&txn) {
                    Some(Pending::Connect) => return Err(self.rejected(Stage::Connect, &status)),
                    Some(Pending::CreateStream) => {
                        return Err(self.rejected(Stage::CreateStream, &status));
                    }
                    // releaseStream / FCPublish are optional; many servers
                    // answer them with _error and that is fine.
                    _ => {}
                }
            }
            NetCommand::OnStatus(s) => self.on_status(s, now)?,
            NetCommand::OnFcPublish(s) if s.is_error() => {
                return Err(self.rejected(Stage::Publish, &s));
            }
            NetCommand::Other(c) if c.name == "close" => {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "server closed the connection (close command)",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// A server that challenges its clients (`secureToken` in the connect
    /// answer's info object) gets the answer before anything else.
    fn answer_secure_token(&mut self, info: &Amf0Value) -> Result<()> {
        let Some(challenge) = info.get_str("secureToken") else {
            return Ok(());
        };
        let Some(secret) = self
            .config
            .secure_token
            .as_ref()
            .map(|s| s.0.as_str())
            .filter(|s| !s.is_empty())
        else {
            return Err(Error::refused(
                Refusal {
                    command: "connect",
                    code: "SecureToken.Required".into(),
                    description: "the server challenges its clients with a SecureToken".into(),
                },
                "server requires a SecureToken answer: set secure-token to the secret it shares with its clients",
            ));
        };
        let answer = crate::secure_token::response(secret, challenge)?;
        self.conn.send_command(
            csid::COMMAND,
            0,
            NetCommand::SecureTokenResponse(answer).into_command(0.0),
        )
    }

    fn after_connect(&mut self, now: Instant) -> Result<()> {
        if self.config.mode == ClientMode::Publish {
            let name = self.config.stream.clone();
            let t = self.txn(Pending::Other);
            self.conn.send_command(
                csid::COMMAND,
                0,
                NetCommand::ReleaseStream { name: name.clone() }.into_command(t),
            )?;
            let t = self.txn(Pending::Other);
            self.conn.send_command(
                csid::COMMAND,
                0,
                NetCommand::FcPublish { name }.into_command(t),
            )?;
        }
        if let (ClientMode::Play, Some(name)) = (self.config.mode, &self.config.fc_subscribe) {
            let name = name.clone();
            let t = self.txn(Pending::Other);
            self.conn.send_command(
                csid::COMMAND,
                0,
                NetCommand::FcSubscribe { name }.into_command(t),
            )?;
        }
        let t = self.txn(Pending::CreateStream);
        self.conn
            .send_command(csid::COMMAND, 0, NetCommand::CreateStream.into_command(t))?;
        self.state = ClientState::CreatingStream;
        self.deadline = Some(now + self.config.response_timeout);
        Ok(())
    }

    fn after_create_stream(&mut self, stream_id: u32, now: Instant) -> Result<()> {
        let name = self.config.stream.clone();
        match self.config.mode {
            ClientMode::Publish => {
                let kind = self.config.publish_kind.clone();
                self.conn.send_command(
                    csid::STREAM_COMMAND,
                    stream_id,
                    NetCommand::Publish { name, kind }.into_command(0.0),
                )?;
                self.state = ClientState::StartingPublish { stream_id };
            }
            ClientMode::Play => {
                let start = self.config.play_start;
                self.conn.send_command(
                    csid::STREAM_COMMAND,
                    stream_id,
                    NetCommand::Play {
                        name,
                        start,
                        duration: self.config.play_duration,
                        reset: true,
                    }
                    .into_command(0.0),
                )?;
                let buf = UserControl::SetBufferLength {
                    stream_id,
                    buffer_ms: self.config.buffer_ms,
                };
                self.conn
                    .send_message(csid::CONTROL, 0, 0, &Message::UserControl(buf))?;
                self.state = ClientState::StartingPlay { stream_id };
            }
        }
        self.deadline = Some(now + self.config.response_timeout);
        Ok(())
    }

    /// Asks the server for the played stream from `millis` on (`seek`): a
    /// recorded stream's server answers NetStream.Seek.Notify, then sends
    /// the stream again from a key frame it picks (nginx-rtmp: at or after
    /// that point). Until
    /// the answer, the stream's end (StreamEOF, which servers send as they
    /// stop the old position) is not taken for the end of the stream.
    pub fn seek(&mut self, millis: u32) -> Result<()> {
        self.check_alive()?;
        let ClientState::Playing { stream_id } = self.state else {
            return Err(Error::protocol(format!(
                "cannot seek in state {:?}",
                self.state
            )));
        };
        self.conn.send_command(
            csid::STREAM_COMMAND,
            stream_id,
            NetCommand::Seek {
                millis: f64::from(millis),
            }
            .into_command(0.0),
        )?;
        self.seeking = true;
        Ok(())
    }

    /// Sends a ping (user control PingRequest; servers answer it). A player
    /// on a quiet stream sends one now and then: with nothing else going
    /// out, a dead route would never show.
    pub fn ping(&mut self, timestamp: u32) -> Result<()> {
        self.conn.send_message(
            csid::CONTROL,
            0,
            0,
            &Message::UserControl(UserControl::PingRequest(timestamp)),
        )
    }

    /// How many of our pings the server has answered. A server answers
    /// in order, after what came before the ping: an answer to a ping sent
    /// after the last message says that the server has read everything.
    pub fn pings_answered(&self) -> u64 {
        self.pings_answered
    }

    /// The value the server's last PingResponse carried back.
    pub fn last_ping_answer(&self) -> Option<u32> {
        self.last_ping_answer
    }

    fn on_status(&mut self, s: Status, _now: Instant) -> Result<()> {
        if s.code == "NetConnection.Connect.ReconnectRequest" {
            let tc_url = s
                .extra
                .iter()
                .find(|(k, _)| k == "tcUrl")
                .and_then(|(_, v)| v.as_str().map(str::to_owned));
            self.events.push_back(ClientEvent::ReconnectRequest {
                tc_url,
                description: s.description.clone(),
            });
            return Ok(());
        }
        match self.state {
            ClientState::StartingPublish { stream_id } => {
                if s.code == "NetStream.Publish.Start" {
                    self.state = ClientState::Publishing { stream_id };
                    self.deadline = None;
                    self.events
                        .push_back(ClientEvent::PublishStarted { stream_id });
                    return Ok(());
                }
                if s.is_error() {
                    return Err(self.rejected(Stage::Publish, &s));
                }
            }
            // The answer to a seek (Seek.Notify, or Seek.Failed and
            // Seek.InvalidTime at level error): the stream goes on either
            // way, so the failures are not the play's.
            ClientState::Playing { .. } if s.code.starts_with("NetStream.Seek.") => {
                self.seeking = false;
            }
            ClientState::StartingPlay { stream_id } | ClientState::Playing { stream_id } => {
                if s.is_error() {
                    return Err(self.rejected(Stage::Play, &s));
                }
                match s.code.as_str() {
                    "NetStream.Play.Start"
                        if matches!(self.state, ClientState::StartingPlay { .. }) =>
                    {
                        self.state = ClientState::Playing { stream_id };
                        self.deadline = None;
                        self.events
                            .push_back(ClientEvent::PlayStarted { stream_id });
                        return Ok(());
                    }
                    "NetStream.Play.Complete"
                    | "NetStream.Play.Stop"
                    | "NetStream.Play.UnpublishNotify" => {
                        self.events.push_back(ClientEvent::StreamEnded {
                            reason: format!("server sent {}", s.code),
                        });
                        return Ok(());
                    }
                    _ => {}
                }
            }
            ClientState::Publishing { .. } if s.is_error() => {
                return Err(Error::refused(
                    Refusal {
                        command: "publish",
                        code: s.code.clone(),
                        description: s.description.clone(),
                    },
                    format!("server stopped the publish: {s}"),
                ));
            }
            _ => {}
        }
        self.events.push_back(ClientEvent::Status(s));
        Ok(())
    }

    fn publishing_stream(&self) -> Result<u32> {
        self.check_alive()?;
        match self.state {
            ClientState::Publishing { stream_id } => Ok(stream_id),
            s => Err(Error::protocol(format!("cannot send media in state {s:?}"))),
        }
    }

    /// Sends an audio message (an FLV audio tag body).
    pub fn send_audio(&mut self, timestamp: u32, payload: &[u8]) -> Result<()> {
        let sid = self.publishing_stream()?;
        self.conn
            .send_raw(csid::AUDIO, timestamp, type_id::AUDIO, sid, payload)
    }

    /// Sends a video message (an FLV video tag body).
    pub fn send_video(&mut self, timestamp: u32, payload: &[u8]) -> Result<()> {
        let sid = self.publishing_stream()?;
        self.conn
            .send_raw(csid::VIDEO, timestamp, type_id::VIDEO, sid, payload)
    }

    /// Sends an audio (8), video (9) or AMF0 data (18) message whose body is
    /// the concatenation of `parts`.
    pub fn send_media_parts(&mut self, type_id: u8, timestamp: u32, parts: &[&[u8]]) -> Result<()> {
        let (cs, sid) = self.media_route(type_id)?;
        self.conn.send_raw_parts(cs, timestamp, type_id, sid, parts)
    }

    /// Like [`send_media_parts`](Self::send_media_parts), the big pieces
    /// referenced instead of copied: for a driver that takes what is to be
    /// sent with [`take_send_pieces`](Self::take_send_pieces) and writes
    /// it vectored.
    pub fn send_media_shared(
        &mut self,
        type_id: u8,
        timestamp: u32,
        parts: &[Bytes],
    ) -> Result<()> {
        let (cs, sid) = self.media_route(type_id)?;
        self.conn
            .send_raw_shared(cs, timestamp, type_id, sid, parts)
    }

    /// The chunk stream and message stream a media message goes on.
    fn media_route(&self, type_id: u8) -> Result<(u32, u32)> {
        let sid = self.publishing_stream()?;
        let cs = match type_id {
            type_id::AUDIO => csid::AUDIO,
            type_id::VIDEO => csid::VIDEO,
            type_id::DATA_AMF0 => csid::DATA,
            t => return Err(Error::unsupported(format!("message type {t} is not media"))),
        };
        Ok((cs, sid))
    }

    /// Takes every byte waiting to be sent (instead of `send_buf`/`advance`).
    pub fn take_send_buf(&mut self) -> Bytes {
        self.conn.take_send_buf()
    }

    /// Takes every byte waiting to be sent in the pieces they are in (for
    /// a vectored write); returns how many bytes that was.
    pub fn take_send_pieces(&mut self, into: &mut impl Extend<Bytes>) -> usize {
        self.conn.take_send_pieces(into)
    }

    /// Sends a data message such as `@setDataFrame onMetaData`.
    pub fn send_data(&mut self, timestamp: u32, data: &DataMessage) -> Result<()> {
        let sid = self.publishing_stream()?;
        self.conn.send_data(csid::DATA, timestamp, sid, data)
    }

    /// Ends the session politely with the default stop commands
    /// (FCUnpublish and deleteStream for a publisher, deleteStream for a
    /// player). Send what `send_buf` then holds before closing the socket.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with(StopCommands::default())
    }

    /// Like `stop`, choosing which stop commands to send (FCUnpublish is
    /// only ever sent by a publisher), in this order: FCUnpublish,
    /// closeStream, deleteStream.
    pub fn stop_with(&mut self, cmds: StopCommands) -> Result<()> {
        if self.failure.is_some() || self.state == ClientState::Closed {
            return Ok(());
        }
        if let Some(sid) = self.stream_id() {
            if cmds.fc_unpublish && self.config.mode == ClientMode::Publish {
                let name = self.config.stream.clone();
                let t = self.txn(Pending::Other);
                self.conn.send_command(
                    csid::COMMAND,
                    0,
                    NetCommand::FcUnpublish { name }.into_command(t),
                )?;
            }
            if cmds.close_stream {
                // On the stream it closes, as NetStream.close() sends it
                // (and as nginx-rtmp and our server read it).
                self.conn.send_command(
                    csid::STREAM_COMMAND,
                    sid,
                    NetCommand::CloseStream.into_command(0.0),
                )?;
            }
            if cmds.delete_stream {
                let t = self.txn(Pending::Other);
                self.conn.send_command(
                    csid::COMMAND,
                    0,
                    NetCommand::DeleteStream {
                        stream_id: f64::from(sid),
                    }
                    .into_command(t),
                )?;
            }
        }
        self.state = ClientState::Closed;
        self.deadline = None;
        Ok(())
    }

    /// Bytes waiting to be sent.
    pub fn pending_bytes(&self) -> usize {
        self.conn.pending()
    }
}
