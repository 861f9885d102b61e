// SPDX-License-Identifier: MPL-2.0
//! The server side of one connection. The caller decides whether an app may
//! connect and whether a stream may be published or played; the session
//! does everything else the protocol asks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::amf0::Amf0Value;
use crate::chunk::RawMessage;
use crate::error::{Error, ErrorKind, Refusal, Result};
use crate::handshake::RANDOM_SIZE;
use crate::idmap::IdMap;
use crate::limits::Limits;
use crate::message::{
    BandwidthLimit, ConnectParams, DataMessage, Message, NetCommand, Status, UserControl, type_id,
};

use super::{Connection, ConnectionStats, DEFAULT_OUT_CHUNK_SIZE, csid};

/// What a server session announces and enforces.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The chunk size it sends with once `connect` is accepted.
    pub chunk_size: u32,
    /// The window after which the client must acknowledge.
    pub window_ack_size: u32,
    /// The Set Peer Bandwidth it asks the client to keep to.
    pub peer_bandwidth: u32,
    /// How long the handshake and `connect` may take.
    pub handshake_timeout: Duration,
    /// Streams one connection may create.
    pub max_streams: u32,
    /// `fmsVer` in the `connect` answer (clients look for "FMS/").
    pub fms_ver: String,
    /// The bounds it decodes within.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: DEFAULT_OUT_CHUNK_SIZE,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            handshake_timeout: Duration::from_secs(10),
            max_streams: 8,
            fms_ver: "FMS/3,5,7,7009".into(),
            limits: Limits::default(),
        }
    }
}

/// What the client did, for the driver to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// Answer with `accept_connect` or `reject_connect`.
    ConnectRequest(Box<ConnectParams>),
    /// Answer with `accept_publish` or `reject_stream`.
    PublishRequest {
        /// The stream it will publish on.
        stream_id: u32,
        /// The stream name (key), with its query.
        name: String,
        /// "live", "record" or "append".
        kind: String,
    },
    /// Answer with `accept_play` or `reject_stream`.
    PlayRequest {
        /// The stream it will play on.
        stream_id: u32,
        /// The stream name, with its query.
        name: String,
        /// Where to start (-2: live or recorded, -1: live only, >= 0: seconds).
        start: f64,
        /// How long to play (-1: to the end).
        duration: f64,
        /// Whether to flush the player's playlist first.
        reset: bool,
    },
    /// The publisher of `stream_id` stopped (FCUnpublish, closeStream or deleteStream).
    Unpublished {
        /// The stream.
        stream_id: u32,
    },
    /// A player or publisher deleted its stream.
    StreamDeleted {
        /// The stream.
        stream_id: u32,
    },
    /// An audio message from a publisher.
    Audio {
        /// The stream it came on.
        stream_id: u32,
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// A video message from a publisher.
    Video {
        /// The stream it came on.
        stream_id: u32,
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
    /// A data message (`@setDataFrame`, `onMetaData`...) from a publisher.
    Data {
        /// The stream it came on (0: the connection's).
        stream_id: u32,
        /// Milliseconds, modulo 2^32.
        timestamp: u32,
        /// The decoded message.
        data: DataMessage,
    },
    /// A player asks for audio on or off.
    ReceiveAudio {
        /// The stream.
        stream_id: u32,
        /// Whether to send audio.
        enable: bool,
    },
    /// A player asks for video on or off.
    ReceiveVideo {
        /// The stream.
        stream_id: u32,
        /// Whether to send video.
        enable: bool,
    },
    /// A player pauses or resumes.
    Pause {
        /// The stream.
        stream_id: u32,
        /// Paused (true) or resumed.
        pause: bool,
        /// Where, in milliseconds of the stream.
        millis: f64,
    },
    /// A player seeks in a recorded stream (see
    /// [`ServerSession::accept_play_recorded`]): answer with
    /// [`ServerSession::answer_seek`]. A live stream's server leaves it
    /// unanswered, as nginx-rtmp's live application does.
    Seek {
        /// The stream.
        stream_id: u32,
        /// Where to, in milliseconds of the stream.
        millis: f64,
    },
    /// The client answered our ping with this timestamp.
    PingResponse(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Created,
    PublishRequested,
    Publishing,
    PlayRequested,
    Playing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    AwaitConnect,
    ConnectRequested { txn: u64 },
    Connected,
    Closed,
}

/// SecureToken (see [`crate::secure_token`]): whether the client may go on
/// past `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenCheck {
    /// Not challenged, or answered right.
    Open,
    /// Challenged; the answer it must send.
    Awaiting(String),
    /// It answered something else.
    Wrong,
}

/// One server connection: the handshake, connect, streams, publish and
/// play, as a state machine the driver feeds bytes and time.
pub struct ServerSession {
    conn: Connection,
    config: ServerConfig,
    phase: Phase,
    events: VecDeque<ServerEvent>,
    streams: IdMap<u32, StreamState>,
    next_stream_id: u32,
    deadline: Option<Instant>,
    connect: Option<ConnectParams>,
    failure: Option<Error>,
    token: TokenCheck,
}

impl ServerSession {
    /// A session for a freshly accepted connection; `random` fills S1.
    pub fn new(config: ServerConfig, now: Instant, random: &[u8; RANDOM_SIZE]) -> Self {
        ServerSession {
            conn: Connection::server(0, random, config.limits),
            deadline: Some(now + config.handshake_timeout),
            config,
            phase: Phase::Handshaking,
            events: VecDeque::new(),
            streams: IdMap::default(),
            next_stream_id: 1,
            connect: None,
            failure: None,
            token: TokenCheck::Open,
        }
    }

    /// The connection's counters.
    pub fn stats(&self) -> ConnectionStats {
        self.conn.stats()
    }

    /// The connection under it (chunk figures, limits).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The accepted (or requested) connect parameters.
    pub fn connect_params(&self) -> Option<&ConnectParams> {
        self.connect.as_ref()
    }

    /// Whether `connect` has been accepted.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    fn fail(&mut self, e: Error) -> Error {
        self.phase = Phase::Closed;
        self.deadline = None;
        self.failure = Some(e.clone());
        e
    }

    fn check_alive(&self) -> Result<()> {
        match &self.failure {
            Some(e) => Err(e.clone()),
            None if self.phase == Phase::Closed => {
                Err(Error::new(ErrorKind::Closed, "the session is closed"))
            }
            None => Ok(()),
        }
    }

    /// Takes bytes from the client; events come from
    /// [`poll_event`](Self::poll_event). An error ends the connection.
    pub fn feed(&mut self, data: &[u8], _now: Instant) -> Result<()> {
        self.check_alive()?;
        if let Err(e) = self.conn.feed(data) {
            return Err(self.fail(e));
        }
        if self.phase == Phase::Handshaking && self.conn.handshake_done() {
            self.phase = Phase::AwaitConnect;
        }
        loop {
            match self.conn.poll_message() {
                Ok(Some((raw, msg))) => {
                    if let Err(e) = self.on_message(raw, msg) {
                        return Err(self.fail(e));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The next thing the client did.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
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

    /// Takes every byte waiting to be sent, for drivers that queue them.
    pub fn take_send_buf(&mut self) -> Bytes {
        self.conn.take_send_buf()
    }

    /// The chunk size this session sends with once `connect` is accepted.
    pub fn out_chunk_size(&self) -> u32 {
        self.config.chunk_size
    }

    /// Bytes waiting to be sent.
    pub fn pending_bytes(&self) -> usize {
        self.conn.pending()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Fails the session if the client has not connected in time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        self.check_alive()?;
        if let Some(d) = self.deadline
            && now >= d
            && matches!(self.phase, Phase::Handshaking | Phase::AwaitConnect)
        {
            let e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "client did not complete the handshake and connect within {:.1} s",
                    self.config.handshake_timeout.as_secs_f64()
                ),
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn on_message(&mut self, raw: RawMessage, msg: Message) -> Result<()> {
        match msg {
            Message::Command { command, .. } => {
                let txn = command.transaction_id;
                let name = command.name.clone();
                self.on_command(txn, raw.stream_id, command.parse(), &name)
            }
            Message::Audio(payload) => {
                if self.is_publishing(raw.stream_id) {
                    self.events.push_back(ServerEvent::Audio {
                        stream_id: raw.stream_id,
                        timestamp: raw.timestamp,
                        payload,
                    });
                }
                Ok(())
            }
            Message::Video(payload) => {
                if self.is_publishing(raw.stream_id) {
                    self.events.push_back(ServerEvent::Video {
                        stream_id: raw.stream_id,
                        timestamp: raw.timestamp,
                        payload,
                    });
                }
                Ok(())
            }
            Message::Data { data, .. } => {
                if self.is_publishing(raw.stream_id) {
                    self.events.push_back(ServerEvent::Data {
                        stream_id: raw.stream_id,
                        timestamp: raw.timestamp,
                        data,
                    });
                }
                Ok(())
            }
            Message::UserControl(UserControl::PingResponse(t)) => {
                self.events.push_back(ServerEvent::PingResponse(t));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn is_publishing(&self, stream_id: u32) -> bool {
        self.streams.get(&stream_id) == Some(&StreamState::Publishing)
    }

    fn reply(&mut self, txn: f64, cmd: NetCommand) -> Result<()> {
        self.conn
            .send_command(csid::COMMAND, 0, cmd.into_command(txn))
    }

    /// `_result` for the call `txn`, with `info`.
    fn answer(&mut self, txn: f64, info: Amf0Value) -> Result<()> {
        let properties = Amf0Value::Null;
        self.reply(txn, NetCommand::Result { properties, info })
    }

    /// `_error` for the call `txn`, with `status`.
    fn answer_error(&mut self, txn: f64, status: &Status) -> Result<()> {
        let (properties, info) = (Amf0Value::Null, status.to_value());
        self.reply(txn, NetCommand::Error { properties, info })
    }

    fn on_command(&mut self, txn: f64, msg_stream: u32, cmd: NetCommand, name: &str) -> Result<()> {
        if !matches!(self.phase, Phase::Connected) && !matches!(cmd, NetCommand::Connect(_)) {
            return Err(Error::protocol(format!(
                "client sent '{name}' before connect was accepted"
            )));
        }
        if !matches!(
            cmd,
            NetCommand::Connect(_) | NetCommand::Result { .. } | NetCommand::Error { .. }
        ) && self.token != TokenCheck::Open
        {
            return self.check_token(txn, &cmd, name);
        }
        // A transaction id of 0 asks for no answer.
        let asked = txn != 0.0;
        match cmd {
            NetCommand::Connect(p) => {
                if self.phase != Phase::AwaitConnect {
                    return Err(Error::protocol("client sent connect twice"));
                }
                self.phase = Phase::ConnectRequested { txn: txn as u64 };
                self.connect = Some((*p).clone());
                self.events.push_back(ServerEvent::ConnectRequest(p));
            }
            NetCommand::CreateStream => self.create_stream(txn)?,
            NetCommand::ReleaseStream { .. } if asked => self.answer(txn, Amf0Value::Undefined)?,
            NetCommand::FcPublish { name } => {
                if asked {
                    self.answer(txn, Amf0Value::Undefined)?;
                }
                let s = Status::new("status", "NetStream.Publish.Start", name);
                self.reply(0.0, NetCommand::OnFcPublish(s))?;
            }
            NetCommand::FcUnpublish { .. } => {
                if asked {
                    self.answer(txn, Amf0Value::Undefined)?;
                }
                self.unpublish_all();
            }
            NetCommand::Publish { name, kind } => {
                self.stream_request(msg_stream, StreamState::PublishRequested)?;
                self.events.push_back(ServerEvent::PublishRequest {
                    stream_id: msg_stream,
                    name,
                    kind,
                });
            }
            NetCommand::Play {
                name,
                start,
                duration,
                reset,
            } => {
                self.stream_request(msg_stream, StreamState::PlayRequested)?;
                self.events.push_back(ServerEvent::PlayRequest {
                    stream_id: msg_stream,
                    name,
                    start,
                    duration,
                    reset,
                });
            }
            NetCommand::DeleteStream { stream_id } => self.end_stream(stream_id as u32, true),
            NetCommand::CloseStream => self.end_stream(msg_stream, false),
            NetCommand::CheckBw if asked => self.answer(txn, Amf0Value::Null)?,
            // Live streams have no length.
            NetCommand::GetStreamLength { .. } => self.answer(txn, Amf0Value::Number(0.0))?,
            NetCommand::ReceiveAudio(enable) => self.events.push_back(ServerEvent::ReceiveAudio {
                stream_id: msg_stream,
                enable,
            }),
            NetCommand::ReceiveVideo(enable) => self.events.push_back(ServerEvent::ReceiveVideo {
                stream_id: msg_stream,
                enable,
            }),
            NetCommand::Pause { pause, millis } => self.events.push_back(ServerEvent::Pause {
                stream_id: msg_stream,
                pause,
                millis,
            }),
            NetCommand::Seek { millis } => self.events.push_back(ServerEvent::Seek {
                stream_id: msg_stream,
                millis,
            }),
            NetCommand::ReleaseStream { .. }
            | NetCommand::CheckBw
            | NetCommand::Result { .. }
            | NetCommand::Error { .. }
            | NetCommand::OnStatus(_)
            | NetCommand::OnBwDone => {}
            // An unknown call that expects an answer gets one, so that
            // the client does not wait for ever.
            _ if asked => {
                let why = format!("method '{name}' not found");
                self.answer_error(txn, &Status::new("error", "NetConnection.Call.Failed", why))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A new stream's id, or `_error` where the client has as many as it
    /// may.
    fn create_stream(&mut self, txn: f64) -> Result<()> {
        if self.streams.len() as u32 >= self.config.max_streams {
            let s = Status::new("error", "NetConnection.Call.Failed", "too many streams");
            return self.answer_error(txn, &s);
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.insert(id, StreamState::Created);
        self.answer(txn, Amf0Value::Number(f64::from(id)))
    }

    /// FCUnpublish: every stream this connection publishes ends.
    fn unpublish_all(&mut self) {
        let publishing: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| **s == StreamState::Publishing)
            .map(|(id, _)| *id)
            .collect();
        for id in publishing {
            self.streams.insert(id, StreamState::Created);
            self.events
                .push_back(ServerEvent::Unpublished { stream_id: id });
        }
    }

    /// A challenged client's command: its answer to the challenge, or a
    /// call it may not make before answering right, refused with `_error`
    /// where it waits for an answer. A stream (createStream, publish, play)
    /// ends the connection; the calls before one (releaseStream, FCPublish)
    /// are only refused, so that a client learns why on the call it waits
    /// for.
    fn check_token(&mut self, txn: f64, cmd: &NetCommand, name: &str) -> Result<()> {
        if let (NetCommand::SecureTokenResponse(answer), TokenCheck::Awaiting(want)) =
            (cmd, &self.token)
        {
            // Compared without stopping at the first difference.
            let same = answer.len() == want.len()
                && answer
                    .bytes()
                    .zip(want.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0;
            self.token = if same {
                TokenCheck::Open
            } else {
                TokenCheck::Wrong
            };
            return Ok(());
        }
        let why = match self.token {
            TokenCheck::Wrong => {
                "the client's SecureToken answer is wrong (not this server's secret)"
            }
            _ => "the client did not answer the SecureToken challenge (it needs the secret)",
        };
        let status = Status::new("error", "NetConnection.Connect.Rejected", why);
        if txn != 0.0 {
            self.answer_error(txn, &status)?;
        }
        if !matches!(
            cmd,
            NetCommand::CreateStream | NetCommand::Publish { .. } | NetCommand::Play { .. }
        ) {
            return Ok(());
        }
        Err(Error::refused(
            Refusal {
                command: "connect",
                code: status.code,
                description: why.into(),
            },
            format!("refused '{name}': {why}"),
        ))
    }

    fn stream_request(&mut self, stream_id: u32, new: StreamState) -> Result<()> {
        match self.streams.get(&stream_id) {
            Some(StreamState::Created) => {
                self.streams.insert(stream_id, new);
                Ok(())
            }
            Some(s) => Err(Error::protocol(format!(
                "stream {stream_id} is already in use ({s:?})"
            ))),
            None => Err(Error::protocol(format!(
                "client used stream {stream_id}, which it did not create"
            ))),
        }
    }

    fn end_stream(&mut self, stream_id: u32, delete: bool) {
        match self.streams.get(&stream_id) {
            Some(StreamState::Publishing) => self
                .events
                .push_back(ServerEvent::Unpublished { stream_id }),
            Some(_) if delete => {}
            _ => {}
        }
        if delete {
            if self.streams.remove(&stream_id).is_some() {
                self.events
                    .push_back(ServerEvent::StreamDeleted { stream_id });
            }
        } else if self.streams.contains_key(&stream_id) {
            self.streams.insert(stream_id, StreamState::Created);
        }
    }

    /// Accepts the pending connect: window size, peer bandwidth, chunk size,
    /// then `_result` with NetConnection.Connect.Success.
    pub fn accept_connect(&mut self) -> Result<()> {
        self.accept(None)
    }

    /// Accepts the pending connect as [`accept_connect`](Self::accept_connect)
    /// does, with a SecureToken challenge: the client must answer it with
    /// the `secret` it shares with this server before anything else, or
    /// its calls are refused (an error from `feed` of kind `Rejected`, after
    /// `_error` for a call that waits for an answer). `nonce` must be
    /// unpredictable (fresh random bytes for each connection).
    pub fn accept_connect_challenged(&mut self, secret: &str, nonce: &[u8; 16]) -> Result<()> {
        self.accept(Some(crate::secure_token::challenge(secret, nonce)))?;
        self.token = TokenCheck::Awaiting(crate::secure_token::expected_answer(nonce));
        Ok(())
    }

    fn accept(&mut self, challenge: Option<String>) -> Result<()> {
        self.check_alive()?;
        let Phase::ConnectRequested { txn } = self.phase else {
            return Err(Error::protocol("no connect to accept"));
        };
        let c = &self.config;
        let (window, bw, chunk) = (c.window_ack_size, c.peer_bandwidth, c.chunk_size);
        self.conn
            .send_message(csid::CONTROL, 0, 0, &Message::WindowAckSize(window))?;
        self.conn.send_message(
            csid::CONTROL,
            0,
            0,
            &Message::SetPeerBandwidth {
                size: bw,
                limit: BandwidthLimit::Dynamic,
            },
        )?;
        self.conn.set_chunk_size(chunk)?;
        let mut props = vec![
            (
                "fmsVer".to_owned(),
                Amf0Value::string(self.config.fms_ver.clone()),
            ),
            ("capabilities".to_owned(), Amf0Value::Number(31.0)),
            ("mode".to_owned(), Amf0Value::Number(1.0)),
        ];
        if let Some(p) = &self.connect {
            // Enhanced RTMP: echo what the client offered, we forward any codec.
            if !p.fourcc_list.is_empty() {
                props.push((
                    "fourCcList".to_owned(),
                    Amf0Value::StrictArray(p.fourcc_list.iter().map(Amf0Value::string).collect()),
                ));
            }
            if let Some(c) = p.caps_ex {
                props.push(("capsEx".to_owned(), Amf0Value::Number(c)));
            }
        }
        let mut status = Status::new(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        let encoding = self
            .connect
            .as_ref()
            .and_then(|p| p.object_encoding)
            .unwrap_or(0.0);
        status
            .extra
            .push(("objectEncoding".into(), Amf0Value::Number(encoding)));
        if let Some(c) = challenge {
            status
                .extra
                .push(("secureToken".into(), Amf0Value::string(c)));
        }
        self.reply(
            txn as f64,
            NetCommand::Result {
                properties: Amf0Value::Object(props),
                info: status.to_value(),
            },
        )?;
        self.phase = Phase::Connected;
        self.deadline = None;
        Ok(())
    }

    /// Refuses the pending connect with `_error`; close the socket once sent.
    pub fn reject_connect(&mut self, code: &str, description: &str) -> Result<()> {
        let Phase::ConnectRequested { txn } = self.phase else {
            return Err(Error::protocol("no connect to reject"));
        };
        self.answer_error(txn as f64, &Status::new("error", code, description))?;
        self.phase = Phase::Closed;
        Ok(())
    }

    fn stream_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<()> {
        let s = Status::new(level, code, description);
        self.conn.send_command(
            csid::STREAM_COMMAND,
            stream_id,
            NetCommand::OnStatus(s).into_command(0.0),
        )
    }

    fn user_control(&mut self, u: UserControl) -> Result<()> {
        self.conn
            .send_message(csid::CONTROL, 0, 0, &Message::UserControl(u))
    }

    /// Starts the publish of `stream_id` (NetStream.Publish.Start).
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<()> {
        self.check_alive()?;
        if self.streams.get(&stream_id) != Some(&StreamState::PublishRequested) {
            return Err(Error::protocol(format!(
                "no publish request on stream {stream_id}"
            )));
        }
        self.user_control(UserControl::StreamBegin(stream_id))?;
        self.stream_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            "Start publishing",
        )?;
        self.streams.insert(stream_id, StreamState::Publishing);
        Ok(())
    }

    /// Starts playing `stream_id` (StreamBegin, Play.Reset if asked, Play.Start)
    /// as a live stream: no StreamIsRecorded, which tells a player that it
    /// can seek (as nginx-rtmp's live application, which sends none).
    pub fn accept_play(&mut self, stream_id: u32, reset: bool) -> Result<()> {
        self.start_play(stream_id, reset, false)
    }

    /// Starts playing `stream_id` as a recording (a file, video on
    /// demand): StreamIsRecorded first, so that the player may seek in it
    /// ([`ServerEvent::Seek`]).
    pub fn accept_play_recorded(&mut self, stream_id: u32, reset: bool) -> Result<()> {
        self.start_play(stream_id, reset, true)
    }

    /// Answers a player's seek on `stream_id`: NetStream.Seek.Notify with
    /// where the stream now is (`Some(ms)`: send from there next), or
    /// NetStream.Seek.Failed (`None`: the stream goes on where it was).
    pub fn answer_seek(&mut self, stream_id: u32, at: Option<f64>) -> Result<()> {
        self.playing(stream_id)?;
        match at {
            Some(ms) => self.stream_status(
                stream_id,
                "status",
                "NetStream.Seek.Notify",
                &format!("Seeking {ms} ms"),
            ),
            None => self.stream_status(stream_id, "error", "NetStream.Seek.Failed", "Seek failed"),
        }
    }

    fn start_play(&mut self, stream_id: u32, reset: bool, recorded: bool) -> Result<()> {
        self.check_alive()?;
        if self.streams.get(&stream_id) != Some(&StreamState::PlayRequested) {
            return Err(Error::protocol(format!(
                "no play request on stream {stream_id}"
            )));
        }
        if recorded {
            self.user_control(UserControl::StreamIsRecorded(stream_id))?;
        }
        self.user_control(UserControl::StreamBegin(stream_id))?;
        if reset {
            self.stream_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                "Playing and resetting",
            )?;
        }
        self.stream_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            "Started playing",
        )?;
        let access = DataMessage::SampleAccess {
            audio: true,
            video: true,
        };
        self.conn.send_data(csid::DATA, 0, stream_id, &access)?;
        self.streams.insert(stream_id, StreamState::Playing);
        Ok(())
    }

    /// Refuses a publish or play with an error onStatus, e.g.
    /// `NetStream.Publish.BadName` or `NetStream.Play.StreamNotFound`.
    pub fn reject_stream(&mut self, stream_id: u32, code: &str, description: &str) -> Result<()> {
        self.check_alive()?;
        match self.streams.get(&stream_id) {
            Some(StreamState::PublishRequested | StreamState::PlayRequested) => {}
            _ => {
                return Err(Error::protocol(format!(
                    "no request to reject on stream {stream_id}"
                )));
            }
        }
        self.stream_status(stream_id, "error", code, description)?;
        self.streams.insert(stream_id, StreamState::Created);
        Ok(())
    }

    fn playing(&self, stream_id: u32) -> Result<()> {
        self.check_alive()?;
        if self.streams.get(&stream_id) != Some(&StreamState::Playing) {
            return Err(Error::protocol(format!(
                "stream {stream_id} is not playing"
            )));
        }
        Ok(())
    }

    /// Sends an audio message to a player.
    pub fn send_audio(&mut self, stream_id: u32, timestamp: u32, payload: &[u8]) -> Result<()> {
        self.playing(stream_id)?;
        self.conn
            .send_raw(csid::AUDIO, timestamp, type_id::AUDIO, stream_id, payload)
    }

    /// Sends a video message to a player.
    pub fn send_video(&mut self, stream_id: u32, timestamp: u32, payload: &[u8]) -> Result<()> {
        self.playing(stream_id)?;
        self.conn
            .send_raw(csid::VIDEO, timestamp, type_id::VIDEO, stream_id, payload)
    }

    /// Sends a data message to a player.
    pub fn send_data(&mut self, stream_id: u32, timestamp: u32, data: &DataMessage) -> Result<()> {
        self.playing(stream_id)?;
        self.conn.send_data(csid::DATA, timestamp, stream_id, data)
    }

    /// Ends a played stream: StreamEOF, then onStatus Play.Stop (or
    /// Play.UnpublishNotify when the publisher went away).
    pub fn end_play(&mut self, stream_id: u32, unpublished: bool) -> Result<()> {
        self.playing(stream_id)?;
        if unpublished {
            self.stream_status(
                stream_id,
                "status",
                "NetStream.Play.UnpublishNotify",
                "stream unpublished",
            )?;
        }
        self.user_control(UserControl::StreamEof(stream_id))?;
        self.stream_status(
            stream_id,
            "status",
            "NetStream.Play.Stop",
            "Stopped playing",
        )?;
        self.streams.insert(stream_id, StreamState::Created);
        Ok(())
    }

    /// Asks the client to reconnect (Enhanced RTMP v2): an onStatus
    /// `NetConnection.Connect.ReconnectRequest` on the connection, with the
    /// server to go to (`tc_url`, absolute or relative to the current one;
    /// none: the same) and why. The client goes on over this connection
    /// until its next keyframe, then moves.
    pub fn request_reconnect(&mut self, tc_url: Option<&str>, description: &str) -> Result<()> {
        self.check_alive()?;
        if self.phase != Phase::Connected {
            return Err(Error::protocol("the client is not connected"));
        }
        let mut s = Status::new(
            "status",
            "NetConnection.Connect.ReconnectRequest",
            description,
        );
        if let Some(t) = tc_url {
            s.extra.push(("tcUrl".into(), Amf0Value::String(t.into())));
        }
        self.conn
            .send_command(csid::COMMAND, 0, NetCommand::OnStatus(s).into_command(0.0))
    }

    /// Sends a ping; the answer comes as [`ServerEvent::PingResponse`].
    pub fn ping(&mut self, timestamp: u32) -> Result<()> {
        self.check_alive()?;
        self.user_control(UserControl::PingRequest(timestamp))
    }
}
