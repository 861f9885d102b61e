// SPDX-License-Identifier: MPL-2.0
//! The typed model of RTMP messages (types 1-6, 8, 9, 15-20, 22) and of the
//! commands and data messages real peers send.

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value, Properties};
use super::chunk::RawMessage;
use super::error::{Error, Result};
use super::limits::Limits;
use super::reader::Reader;

/// Message type ids (RTMP spec, section 5.4 and 7.1).
pub mod type_id {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort a partly sent message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement of bytes received (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control events.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object, AMF3.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command, AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data, AMF0 (`@setDataFrame`, `onMetaData`...).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object, AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command, AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Several audio/video/data messages in one.
    pub const AGGREGATE: u8 = 22;
}

/// User Control events (message type 4, RTMP spec 7.1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// Stream `n` has begun.
    StreamBegin(u32),
    /// Stream `n` has ended.
    StreamEof(u32),
    /// Stream `n` has no data for now.
    StreamDry(u32),
    /// A player's buffer length for a stream.
    SetBufferLength {
        /// The stream.
        stream_id: u32,
        /// Milliseconds of buffer.
        buffer_ms: u32,
    },
    /// Stream `n` is recorded, not live.
    StreamIsRecorded(u32),
    /// The server asks for an answer with this timestamp.
    PingRequest(u32),
    /// The answer to a ping.
    PingResponse(u32),
    /// Events outside the spec (FMS sends BufferEmpty 31 and BufferReady 32):
    /// kept so that they can be ignored rather than fail the connection.
    Other {
        /// The event type.
        event: u16,
        /// Its data, as sent.
        data: Bytes,
    },
}

impl UserControl {
    fn decode(p: &Bytes) -> Result<Self> {
        let mut r = Reader::new(p);
        let short = |_| {
            Error::malformed(format!(
                "User Control message of {} bytes is too short",
                p.len()
            ))
        };
        let event = r.u16().map_err(short)?;
        Ok(match event {
            0..=4 | 6 | 7 => {
                let v = r.u32().map_err(short)?;
                match event {
                    0 => UserControl::StreamBegin(v),
                    1 => UserControl::StreamEof(v),
                    2 => UserControl::StreamDry(v),
                    3 => UserControl::SetBufferLength {
                        stream_id: v,
                        buffer_ms: r.u32().map_err(short)?,
                    },
                    4 => UserControl::StreamIsRecorded(v),
                    6 => UserControl::PingRequest(v),
                    _ => UserControl::PingResponse(v),
                }
            }
            _ => UserControl::Other {
                event,
                data: p.slice(2..),
            },
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (event, a, b) = match self {
            UserControl::StreamBegin(v) => (0u16, *v, None),
            UserControl::StreamEof(v) => (1, *v, None),
            UserControl::StreamDry(v) => (2, *v, None),
            UserControl::SetBufferLength {
                stream_id,
                buffer_ms,
            } => (3, *stream_id, Some(*buffer_ms)),
            UserControl::StreamIsRecorded(v) => (4, *v, None),
            UserControl::PingRequest(v) => (6, *v, None),
            UserControl::PingResponse(v) => (7, *v, None),
            UserControl::Other { event, data } => {
                out.extend_from_slice(&event.to_be_bytes());
                out.extend_from_slice(data);
                return;
            }
        };
        out.extend_from_slice(&event.to_be_bytes());
        out.extend_from_slice(&a.to_be_bytes());
        if let Some(b) = b {
            out.extend_from_slice(&b.to_be_bytes());
        }
    }
}

/// The limit type of Set Peer Bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthLimit {
    /// The peer must keep to the size.
    Hard,
    /// The peer may keep to the smaller of this and its current size.
    Soft,
    /// Hard if the last limit was hard, else ignored.
    Dynamic,
}

/// A command: name, transaction id, command object, then arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's name ("connect", "_result", "onStatus"...).
    pub name: String,
    /// Matches an answer to its request (0: no answer wanted).
    pub transaction_id: f64,
    /// The command object (often null).
    pub object: Amf0Value,
    /// Further arguments.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// A command from its parts.
    pub fn new(
        name: impl Into<String>,
        transaction_id: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Self {
        Command {
            name: name.into(),
            transaction_id,
            object,
            args,
        }
    }

    fn from_values(values: Vec<Amf0Value>) -> Result<Self> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(v) => v.as_str().map(str::to_owned).ok_or_else(|| {
                Error::malformed(format!("command name is not a string but {v:?}"))
            })?,
            None => return Err(Error::malformed("empty command message")),
        };
        // Anything but a number reads as 0 (no answer wanted), except an
        // object or array: it holds a place in the reference table, so
        // dropping it would shift what later references point at.
        let transaction_id = match it.next() {
            Some(v) if v.is_complex() => {
                return Err(Error::malformed(format!(
                    "command '{name}' has an object or array for a transaction id"
                )));
            }
            v => v.and_then(|v| v.as_f64()).unwrap_or(0.0),
        };
        let object = it.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: it.collect(),
        })
    }

    /// The command as an AMF0 message payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        amf0::encode(&Amf0Value::String(self.name.clone()), &mut out);
        amf0::encode(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.object, &mut out);
        for a in &self.args {
            amf0::encode(a, &mut out);
        }
        out
    }

    /// The typed view of this command.
    pub fn parse(&self) -> NetCommand {
        NetCommand::from_command(self)
    }
}

/// An onStatus / _error info object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// "status", "warning" or "error".
    pub level: String,
    /// What happened ("NetStream.Publish.Start"...).
    pub code: String,
    /// In words.
    pub description: String,
    /// Other properties (details, clientid, ...).
    pub extra: Properties,
}

impl Status {
    /// A status of `level` and `code`.
    pub fn new(level: &str, code: &str, description: impl Into<String>) -> Self {
        Status {
            level: level.into(),
            code: code.into(),
            description: description.into(),
            extra: Vec::new(),
        }
    }

    /// A status from an info object (None if it is not an object).
    pub fn from_value(v: &Amf0Value) -> Option<Self> {
        let props = v.properties()?;
        let mut s = Status::default();
        for (k, v) in props {
            match (k.as_str(), v.as_str()) {
                ("level", Some(t)) => s.level = t.to_owned(),
                ("code", Some(t)) => s.code = t.to_owned(),
                ("description", Some(t)) => s.description = t.to_owned(),
                _ => s.extra.push((k.clone(), v.clone())),
            }
        }
        Some(s)
    }

    /// The status as an info object.
    pub fn to_value(&self) -> Amf0Value {
        let mut p = vec![
            ("level".to_owned(), Amf0Value::string(&self.level)),
            ("code".to_owned(), Amf0Value::string(&self.code)),
            (
                "description".to_owned(),
                Amf0Value::string(&self.description),
            ),
        ];
        p.extend(self.extra.iter().cloned());
        Amf0Value::Object(p)
    }

    /// Whether its level is "error".
    pub fn is_error(&self) -> bool {
        self.level == "error"
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.description.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.description)
        }
    }
}

/// The parameters of `connect`, including the Enhanced RTMP ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectParams {
    /// `app`.
    pub app: String,
    /// `tcUrl`.
    pub tc_url: Option<String>,
    /// `flashVer`.
    pub flash_ver: Option<String>,
    /// `swfUrl`.
    pub swf_url: Option<String>,
    /// `pageUrl`.
    pub page_url: Option<String>,
    /// `type`: "nonprivate" from most publishers.
    pub kind: Option<String>,
    /// `objectEncoding` (0: AMF0, 3: AMF3).
    pub object_encoding: Option<f64>,
    /// `fpad`: whether a proxy is used.
    pub fpad: Option<bool>,
    /// `capabilities`.
    pub capabilities: Option<f64>,
    /// `audioCodecs`: the legacy codec bit set.
    pub audio_codecs: Option<f64>,
    /// `videoCodecs`: the legacy codec bit set.
    pub video_codecs: Option<f64>,
    /// `videoFunction`.
    pub video_function: Option<f64>,
    /// Enhanced RTMP: FourCCs the client can handle ("*" for all).
    pub fourcc_list: Vec<String>,
    /// Enhanced RTMP: FourCC -> capability flags (decode 1, encode 2, forward 4).
    pub video_fourcc_info_map: Properties,
    /// Enhanced RTMP: as `video_fourcc_info_map`, for audio.
    pub audio_fourcc_info_map: Properties,
    /// Enhanced RTMP extended capabilities (reconnect 1, multitrack 2, modEx 4, nano offset 8).
    pub caps_ex: Option<f64>,
    /// Properties of the command object not named above, in order.
    pub extra: Properties,
    /// Optional arguments after the command object.
    pub args: Vec<Amf0Value>,
}

impl ConnectParams {
    fn from_command(c: &Command) -> Self {
        let mut p = ConnectParams {
            args: c.args.clone(),
            ..Default::default()
        };
        let Some(props) = c.object.properties() else {
            return p;
        };
        for (k, v) in props {
            let s = || v.as_str().map(str::to_owned);
            match k.as_str() {
                "app" => p.app = v.as_str().unwrap_or_default().to_owned(),
                "tcUrl" => p.tc_url = s(),
                "flashVer" => p.flash_ver = s(),
                "swfUrl" => p.swf_url = s(),
                "pageUrl" => p.page_url = s(),
                "type" => p.kind = s(),
                "objectEncoding" => p.object_encoding = v.as_f64(),
                "fpad" => p.fpad = v.as_bool(),
                "capabilities" => p.capabilities = v.as_f64(),
                "audioCodecs" => p.audio_codecs = v.as_f64(),
                "videoCodecs" => p.video_codecs = v.as_f64(),
                "videoFunction" => p.video_function = v.as_f64(),
                "fourCcList" => {
                    if let Amf0Value::StrictArray(items) = v {
                        p.fourcc_list = items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect();
                    }
                }
                "videoFourCcInfoMap" => {
                    p.video_fourcc_info_map = v.properties().cloned().unwrap_or_default()
                }
                "audioFourCcInfoMap" => {
                    p.audio_fourcc_info_map = v.properties().cloned().unwrap_or_default()
                }
                "capsEx" => p.caps_ex = v.as_f64(),
                _ => p.extra.push((k.clone(), v.clone())),
            }
        }
        p
    }

    fn to_object(&self) -> Amf0Value {
        let mut o: Properties = vec![("app".into(), Amf0Value::string(&self.app))];
        let mut s = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.push((k.into(), Amf0Value::string(v)));
            }
        };
        s("type", &self.kind);
        s("flashVer", &self.flash_ver);
        s("swfUrl", &self.swf_url);
        s("tcUrl", &self.tc_url);
        s("pageUrl", &self.page_url);
        if let Some(b) = self.fpad {
            o.push(("fpad".into(), Amf0Value::Boolean(b)));
        }
        for (k, v) in [
            ("capabilities", self.capabilities),
            ("audioCodecs", self.audio_codecs),
            ("videoCodecs", self.video_codecs),
            ("videoFunction", self.video_function),
            ("objectEncoding", self.object_encoding),
        ] {
            if let Some(v) = v {
                o.push((k.into(), Amf0Value::Number(v)));
            }
        }
        if !self.fourcc_list.is_empty() {
            o.push((
                "fourCcList".into(),
                Amf0Value::StrictArray(self.fourcc_list.iter().map(Amf0Value::string).collect()),
            ));
        }
        if !self.video_fourcc_info_map.is_empty() {
            o.push((
                "videoFourCcInfoMap".into(),
                Amf0Value::Object(self.video_fourcc_info_map.clone()),
            ));
        }
        if !self.audio_fourcc_info_map.is_empty() {
            o.push((
                "audioFourCcInfoMap".into(),
                Amf0Value::Object(self.audio_fourcc_info_map.clone()),
            ));
        }
        if let Some(c) = self.caps_ex {
            o.push(("capsEx".into(), Amf0Value::Number(c)));
        }
        o.extend(self.extra.iter().cloned());
        Amf0Value::Object(o)
    }
}

/// The commands RTMP peers exchange, typed. Transaction ids stay on the
/// [`Command`] that carries them.
#[derive(Debug, Clone, PartialEq)]
pub enum NetCommand {
    /// `connect` and its parameters.
    Connect(Box<ConnectParams>),
    /// `_result`: the command object (properties) and the first argument
    /// (an info object, or the new stream id for createStream).
    Result {
        /// The command object.
        properties: Amf0Value,
        /// The first argument.
        info: Amf0Value,
    },
    /// `_error`: a refused request.
    Error {
        /// The command object.
        properties: Amf0Value,
        /// The info object (a [`Status`]).
        info: Amf0Value,
    },
    /// `onStatus` on a stream.
    OnStatus(Status),
    /// `createStream`.
    CreateStream,
    /// `publish`.
    Publish {
        /// The stream name, with its query.
        name: String,
        /// "live", "record" or "append".
        kind: String,
    },
    /// `play`.
    Play {
        /// The stream name, with its query.
        name: String,
        /// Where to start (-2, -1 or seconds).
        start: f64,
        /// How long (-1: to the end).
        duration: f64,
        /// Whether to flush the playlist.
        reset: bool,
    },
    /// `deleteStream`.
    DeleteStream {
        /// The stream to delete.
        stream_id: f64,
    },
    /// `closeStream`.
    CloseStream,
    /// `releaseStream` (FMLE's, before publish).
    ReleaseStream {
        /// The stream name.
        name: String,
    },
    /// `FCPublish` (FMLE's, before publish).
    FcPublish {
        /// The stream name.
        name: String,
    },
    /// `FCSubscribe` (a player's, before play: CDNs' live streams).
    FcSubscribe {
        /// The stream name.
        name: String,
    },
    /// `FCUnpublish` (FMLE's, at the end).
    FcUnpublish {
        /// The stream name.
        name: String,
    },
    /// `onFCPublish`: the answer to FCPublish.
    OnFcPublish(Status),
    /// `onFCUnpublish`: the answer to FCUnpublish.
    OnFcUnpublish(Status),
    /// `onBWDone` (the server's bandwidth check is over).
    OnBwDone,
    /// `_checkbw`.
    CheckBw,
    /// `getStreamLength`.
    GetStreamLength {
        /// The stream name.
        name: String,
    },
    /// `receiveAudio`: a player wants audio (true) or not.
    ReceiveAudio(bool),
    /// `receiveVideo`: a player wants video (true) or not.
    ReceiveVideo(bool),
    /// `pause`.
    Pause {
        /// Paused (true) or resumed.
        pause: bool,
        /// Where, in milliseconds of the stream.
        millis: f64,
    },
    /// `seek`: a player asks for the recorded stream from another point.
    Seek {
        /// Where, in milliseconds of the stream.
        millis: f64,
    },
    /// `secureTokenResponse`: a client's answer to the server's SecureToken
    /// challenge (see [`crate::secure_token`]).
    SecureTokenResponse(String),
    /// Anything else, untouched.
    Other(Command),
}

impl NetCommand {
    /// The typed form of `c` ([`Other`](Self::Other) when unknown).
    pub fn from_command(c: &Command) -> Self {
        let arg_str = |i: usize| {
            c.args
                .get(i)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let arg_f64 = |i: usize| c.args.get(i).and_then(|v| v.as_f64());
        let arg_bool = |i: usize| c.args.get(i).and_then(|v| v.as_bool());
        let status = || c.args.first().and_then(Status::from_value);
        match c.name.as_str() {
            "connect" => NetCommand::Connect(Box::new(ConnectParams::from_command(c))),
            "_result" | "_error" => {
                let info = c.args.first().cloned().unwrap_or(Amf0Value::Null);
                let properties = c.object.clone();
                if c.name == "_result" {
                    NetCommand::Result { properties, info }
                } else {
                    NetCommand::Error { properties, info }
                }
            }
            "onStatus" => match status() {
                Some(s) => NetCommand::OnStatus(s),
                None => NetCommand::Other(c.clone()),
            },
            "createStream" => NetCommand::CreateStream,
            "publish" => NetCommand::Publish {
                name: arg_str(0),
                kind: c
                    .args
                    .get(1)
                    .and_then(|v| v.as_str())
                    .unwrap_or("live")
                    .to_owned(),
            },
            "play" => NetCommand::Play {
                name: arg_str(0),
                start: arg_f64(1).unwrap_or(-2.0),
                duration: arg_f64(2).unwrap_or(-1.0),
                reset: arg_bool(3).unwrap_or(true),
            },
            "deleteStream" => NetCommand::DeleteStream {
                stream_id: arg_f64(0).unwrap_or(0.0),
            },
            "closeStream" => NetCommand::CloseStream,
            "releaseStream" => NetCommand::ReleaseStream { name: arg_str(0) },
            "FCPublish" => NetCommand::FcPublish { name: arg_str(0) },
            "FCSubscribe" => NetCommand::FcSubscribe { name: arg_str(0) },
            "FCUnpublish" => NetCommand::FcUnpublish { name: arg_str(0) },
            "onFCPublish" => {
                status().map_or_else(|| NetCommand::Other(c.clone()), NetCommand::OnFcPublish)
            }
            "onFCUnpublish" => {
                status().map_or_else(|| NetCommand::Other(c.clone()), NetCommand::OnFcUnpublish)
            }
            "onBWDone" => NetCommand::OnBwDone,
            "_checkbw" => NetCommand::CheckBw,
            "getStreamLength" => NetCommand::GetStreamLength { name: arg_str(0) },
            "receiveAudio" => NetCommand::ReceiveAudio(arg_bool(0).unwrap_or(true)),
            "receiveVideo" => NetCommand::ReceiveVideo(arg_bool(0).unwrap_or(true)),
            "pause" => NetCommand::Pause {
                pause: arg_bool(0).unwrap_or(true),
                millis: arg_f64(1).unwrap_or(0.0),
            },
            "seek" => NetCommand::Seek {
                millis: arg_f64(0).unwrap_or(0.0),
            },
            "secureTokenResponse" => NetCommand::SecureTokenResponse(arg_str(0)),
            _ => NetCommand::Other(c.clone()),
        }
    }

    /// The command with a transaction id, ready to encode.
    pub fn into_command(self, txn: f64) -> Command {
        let s = Amf0Value::string;
        let (name, object, args): (&str, Amf0Value, Vec<Amf0Value>) = match self {
            NetCommand::Connect(p) => ("connect", p.to_object(), p.args),
            NetCommand::Result { properties, info } => ("_result", properties, vec![info]),
            NetCommand::Error { properties, info } => ("_error", properties, vec![info]),
            NetCommand::OnStatus(st) => ("onStatus", Amf0Value::Null, vec![st.to_value()]),
            NetCommand::CreateStream => ("createStream", Amf0Value::Null, vec![]),
            NetCommand::Publish { name, kind } => {
                ("publish", Amf0Value::Null, vec![s(name), s(kind)])
            }
            NetCommand::Play {
                name,
                start,
                duration,
                reset,
            } => (
                "play",
                Amf0Value::Null,
                vec![
                    s(name),
                    Amf0Value::Number(start),
                    Amf0Value::Number(duration),
                    Amf0Value::Boolean(reset),
                ],
            ),
            NetCommand::DeleteStream { stream_id } => (
                "deleteStream",
                Amf0Value::Null,
                vec![Amf0Value::Number(stream_id)],
            ),
            NetCommand::CloseStream => ("closeStream", Amf0Value::Null, vec![]),
            NetCommand::ReleaseStream { name } => ("releaseStream", Amf0Value::Null, vec![s(name)]),
            NetCommand::FcPublish { name } => ("FCPublish", Amf0Value::Null, vec![s(name)]),
            NetCommand::FcSubscribe { name } => ("FCSubscribe", Amf0Value::Null, vec![s(name)]),
            NetCommand::FcUnpublish { name } => ("FCUnpublish", Amf0Value::Null, vec![s(name)]),
            NetCommand::OnFcPublish(st) => ("onFCPublish", Amf0Value::Null, vec![st.to_value()]),
            NetCommand::OnFcUnpublish(st) => {
                ("onFCUnpublish", Amf0Value::Null, vec![st.to_value()])
            }
            NetCommand::OnBwDone => ("onBWDone", Amf0Value::Null, vec![]),
            NetCommand::CheckBw => ("_checkbw", Amf0Value::Null, vec![]),
            NetCommand::GetStreamLength { name } => {
                ("getStreamLength", Amf0Value::Null, vec![s(name)])
            }
            NetCommand::ReceiveAudio(b) => {
                ("receiveAudio", Amf0Value::Null, vec![Amf0Value::Boolean(b)])
            }
            NetCommand::ReceiveVideo(b) => {
                ("receiveVideo", Amf0Value::Null, vec![Amf0Value::Boolean(b)])
            }
            NetCommand::Pause { pause, millis } => (
                "pause",
                Amf0Value::Null,
                vec![Amf0Value::Boolean(pause), Amf0Value::Number(millis)],
            ),
            NetCommand::Seek { millis } => {
                ("seek", Amf0Value::Null, vec![Amf0Value::Number(millis)])
            }
            NetCommand::SecureTokenResponse(answer) => {
                ("secureTokenResponse", Amf0Value::Null, vec![s(answer)])
            }
            NetCommand::Other(c) => return c,
        };
        Command::new(name, txn, object, args)
    }
}

/// Data messages (types 18 and 15).
#[derive(Debug, Clone, PartialEq)]
pub enum DataMessage {
    /// `@setDataFrame "onMetaData" {..}`: a publisher setting metadata.
    SetDataFrame {
        /// The handler it is for ("onMetaData").
        name: String,
        /// The value (an object or ECMA array).
        value: Amf0Value,
    },
    /// `onMetaData {..}`: metadata as players receive it.
    OnMetaData(Amf0Value),
    /// `|RtmpSampleAccess audio video`.
    SampleAccess {
        /// Whether players may read the audio's samples.
        audio: bool,
        /// Whether players may read the video's samples.
        video: bool,
    },
    /// Anything else: a handler name and its values.
    Other {
        /// The handler name (the first string).
        name: String,
        /// The values after it.
        values: Vec<Amf0Value>,
    },
}

impl DataMessage {
    fn from_values(values: Vec<Amf0Value>) -> Result<Self> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::malformed("data message does not start with a name"))?,
            None => return Err(Error::malformed("empty data message")),
        };
        let rest: Vec<Amf0Value> = it.collect();
        Ok(match name.as_str() {
            "@setDataFrame" if rest.len() >= 2 && rest[0].as_str().is_some() => {
                let mut r = rest.into_iter();
                let n = r
                    .next()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                DataMessage::SetDataFrame {
                    name: n,
                    value: r.next().unwrap_or(Amf0Value::Null),
                }
            }
            "onMetaData" if !rest.is_empty() => {
                DataMessage::OnMetaData(rest.into_iter().next().unwrap_or(Amf0Value::Null))
            }
            "|RtmpSampleAccess" => DataMessage::SampleAccess {
                audio: rest.first().and_then(Amf0Value::as_bool).unwrap_or(false),
                video: rest.get(1).and_then(Amf0Value::as_bool).unwrap_or(false),
            },
            _ => DataMessage::Other { name, values: rest },
        })
    }

    /// The AMF0 values of the message, in order.
    pub fn to_values(&self) -> Vec<Amf0Value> {
        match self {
            DataMessage::SetDataFrame { name, value } => {
                vec![
                    Amf0Value::string("@setDataFrame"),
                    Amf0Value::string(name),
                    value.clone(),
                ]
            }
            DataMessage::OnMetaData(v) => vec![Amf0Value::string("onMetaData"), v.clone()],
            DataMessage::SampleAccess { audio, video } => vec![
                Amf0Value::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(*audio),
                Amf0Value::Boolean(*video),
            ],
            DataMessage::Other { name, values } => {
                let mut v = vec![Amf0Value::string(name)];
                v.extend(values.iter().cloned());
                v
            }
        }
    }

    /// The message as an AMF0 payload.
    pub fn encode(&self) -> Vec<u8> {
        amf0::encode_all(&self.to_values())
    }
}

/// A shared object message (types 19 and 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedObject {
    /// The shared object's name.
    pub name: String,
    /// Its version, as the sender counts it.
    pub version: u32,
    /// Whether it outlives the connection.
    pub persistent: bool,
    /// What happened to it.
    pub events: Vec<SharedObjectEvent>,
}

/// One event of a shared object message: its kind (1 Use ... 11 UseSuccess)
/// and its AMF-encoded data, left for the application to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedObjectEvent {
    /// 1 Use, 2 Release, 3 Request Change, 4 Change, 5 Success, 6 SendMessage,
    /// 7 Status, 8 Clear, 9 Remove, 10 Request Remove, 11 Use Success.
    pub kind: u8,
    /// The event's AMF data, as sent.
    pub data: Bytes,
}

impl SharedObject {
    fn decode(p: &Bytes) -> Result<Self> {
        let mut r = Reader::new(p);
        let short = |_| Error::malformed("shared object message is truncated");
        let name_len = r.u16().map_err(short)? as usize;
        let name = amf0::utf8_lossy(r.bytes(name_len).map_err(short)?);
        let version = r.u32().map_err(short)?;
        let persistent = r.u32().map_err(short)? != 0;
        r.skip(4).map_err(short)?;
        let mut events = Vec::new();
        while !r.is_empty() {
            let kind = r.u8().map_err(short)?;
            if !(1..=11).contains(&kind) {
                return Err(Error::malformed(format!(
                    "unknown shared object event type {kind}"
                )));
            }
            let len = r.u32().map_err(short)? as usize;
            let start = r.position();
            r.skip(len).map_err(short)?;
            events.push(SharedObjectEvent {
                kind,
                data: p.slice(start..start + len),
            });
        }
        Ok(SharedObject {
            name,
            version,
            persistent,
            events,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&u32::from(self.persistent).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for e in &self.events {
            out.push(e.kind);
            out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
            out.extend_from_slice(&e.data);
        }
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Set Chunk Size: the sender's chunks are this long from now on.
    SetChunkSize(u32),
    /// Abort: drop the partial message on this chunk stream.
    Abort(u32),
    /// Acknowledgement: the bytes the sender has received (mod 2^32).
    Acknowledgement(u32),
    /// A User Control event.
    UserControl(UserControl),
    /// Window Acknowledgement Size: acknowledge after this many bytes.
    WindowAckSize(u32),
    /// Set Peer Bandwidth: the output window the sender asks for.
    SetPeerBandwidth {
        /// The window, in bytes.
        size: u32,
        /// How to apply it.
        limit: BandwidthLimit,
    },
    /// An FLV audio tag body (see [`super::flv`]).
    Audio(Bytes),
    /// An FLV video tag body.
    Video(Bytes),
    /// A data message.
    Data {
        /// Whether it came as AMF3 (type 15).
        amf3: bool,
        /// The message.
        data: DataMessage,
    },
    /// A shared object message.
    SharedObject {
        /// Whether it came as AMF3 (type 16).
        amf3: bool,
        /// The message.
        object: SharedObject,
    },
    /// A command.
    Command {
        /// Whether it came as AMF3 (type 17).
        amf3: bool,
        /// The command.
        command: Command,
    },
    /// A run of FLV tags; see [`unpack_aggregate`].
    Aggregate(Bytes),
}

fn u32_of(p: &[u8], what: &str) -> Result<u32> {
    Reader::new(p)
        .u32()
        .map_err(|_| Error::malformed(format!("{what} message of {} bytes is too short", p.len())))
}

/// Values of a type 15/17 message: a format byte (0 = AMF0 with switches
/// to AMF3) comes first, then AMF0.
fn amf_values(p: &[u8], amf3: bool, limits: &Limits) -> Result<Vec<Amf0Value>> {
    let body = if amf3 && p.first() == Some(&0) {
        &p[1..]
    } else {
        p
    };
    amf0::decode_all(body, &limits.amf)
}

impl Message {
    /// Decodes `raw` within `limits`.
    pub fn decode(raw: &RawMessage, limits: &Limits) -> Result<Self> {
        let p = &raw.payload;
        let is_amf = matches!(
            raw.type_id,
            type_id::DATA_AMF0 | type_id::DATA_AMF3 | type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3
        );
        if is_amf && p.len() > limits.max_command_size as usize {
            return Err(Error::limit(format!(
                "command or data message of {} bytes exceeds the limit of {}",
                p.len(),
                limits.max_command_size
            )));
        }
        Ok(match raw.type_id {
            type_id::SET_CHUNK_SIZE => {
                Message::SetChunkSize(u32_of(p, "Set Chunk Size")? & 0x7FFF_FFFF)
            }
            type_id::ABORT => Message::Abort(u32_of(p, "Abort")?),
            type_id::ACKNOWLEDGEMENT => Message::Acknowledgement(u32_of(p, "Acknowledgement")?),
            type_id::USER_CONTROL => Message::UserControl(UserControl::decode(p)?),
            type_id::WINDOW_ACK_SIZE => {
                Message::WindowAckSize(u32_of(p, "Window Acknowledgement Size")?)
            }
            type_id::SET_PEER_BANDWIDTH => {
                let size = u32_of(p, "Set Peer Bandwidth")?;
                // Some servers leave the limit type out; Dynamic is then right.
                let limit = match p.get(4) {
                    Some(0) => BandwidthLimit::Hard,
                    Some(1) => BandwidthLimit::Soft,
                    Some(2) | None => BandwidthLimit::Dynamic,
                    Some(t) => {
                        return Err(Error::malformed(format!(
                            "Set Peer Bandwidth limit type {t} is unknown"
                        )));
                    }
                };
                Message::SetPeerBandwidth { size, limit }
            }
            type_id::AUDIO => Message::Audio(p.clone()),
            type_id::VIDEO => Message::Video(p.clone()),
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                let amf3 = raw.type_id == type_id::DATA_AMF3;
                let values = amf_values(p, amf3, limits).map_err(|e| e.context("data message"))?;
                Message::Data {
                    amf3,
                    data: DataMessage::from_values(values)?,
                }
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let amf3 = raw.type_id == type_id::COMMAND_AMF3;
                let values =
                    amf_values(p, amf3, limits).map_err(|e| e.context("command message"))?;
                Message::Command {
                    amf3,
                    command: Command::from_values(values)?,
                }
            }
            type_id::SHARED_OBJECT_AMF0 | type_id::SHARED_OBJECT_AMF3 => {
                let amf3 = raw.type_id == type_id::SHARED_OBJECT_AMF3;
                let body = if amf3 && p.first() == Some(&0) {
                    p.slice(1..)
                } else {
                    p.clone()
                };
                Message::SharedObject {
                    amf3,
                    object: SharedObject::decode(&body)?,
                }
            }
            type_id::AGGREGATE => Message::Aggregate(p.clone()),
            t => return Err(Error::unsupported(format!("unknown RTMP message type {t}"))),
        })
    }

    /// The message type id it is sent as.
    pub fn type_id(&self) -> u8 {
        match self {
            Message::SetChunkSize(_) => type_id::SET_CHUNK_SIZE,
            Message::Abort(_) => type_id::ABORT,
            Message::Acknowledgement(_) => type_id::ACKNOWLEDGEMENT,
            Message::UserControl(_) => type_id::USER_CONTROL,
            Message::WindowAckSize(_) => type_id::WINDOW_ACK_SIZE,
            Message::SetPeerBandwidth { .. } => type_id::SET_PEER_BANDWIDTH,
            Message::Audio(_) => type_id::AUDIO,
            Message::Video(_) => type_id::VIDEO,
            Message::Data { amf3: false, .. } => type_id::DATA_AMF0,
            Message::Data { amf3: true, .. } => type_id::DATA_AMF3,
            Message::SharedObject { amf3: false, .. } => type_id::SHARED_OBJECT_AMF0,
            Message::SharedObject { amf3: true, .. } => type_id::SHARED_OBJECT_AMF3,
            Message::Command { amf3: false, .. } => type_id::COMMAND_AMF0,
            Message::Command { amf3: true, .. } => type_id::COMMAND_AMF3,
            Message::Aggregate(_) => type_id::AGGREGATE,
        }
    }

    /// The message body.
    pub fn encode_payload(&self) -> Bytes {
        let mut out = Vec::with_capacity(16);
        match self {
            Message::SetChunkSize(v)
            | Message::Abort(v)
            | Message::Acknowledgement(v)
            | Message::WindowAckSize(v) => out.extend_from_slice(&v.to_be_bytes()),
            Message::UserControl(u) => u.encode(&mut out),
            Message::SetPeerBandwidth { size, limit } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.push(match limit {
                    BandwidthLimit::Hard => 0,
                    BandwidthLimit::Soft => 1,
                    BandwidthLimit::Dynamic => 2,
                });
            }
            Message::Audio(b) | Message::Video(b) | Message::Aggregate(b) => return b.clone(),
            Message::Data { amf3, data } => {
                if *amf3 {
                    out.push(0);
                }
                out.extend(data.encode());
            }
            Message::SharedObject { amf3, object } => {
                if *amf3 {
                    out.push(0);
                }
                object.encode(&mut out);
            }
            Message::Command { amf3, command } => {
                if *amf3 {
                    out.push(0);
                }
                out.extend(command.encode());
            }
        }
        Bytes::from(out)
    }
}

/// Unpacks an aggregate message into the messages it carries. Each inner
/// tag's timestamp is taken relative to the first one and added to the
/// aggregate's own timestamp, as FMS and Wowza intend.
pub fn unpack_aggregate(raw: &RawMessage) -> Result<Vec<RawMessage>> {
    let p = &raw.payload;
    let mut r = Reader::new(p);
    let mut out = Vec::new();
    let mut first_ts: Option<u32> = None;
    let bad = |what: &str| Error::malformed(format!("aggregate message: {what}"));
    while !r.is_empty() {
        let t = r.u8().map_err(|_| bad("truncated tag header"))?;
        let size = r.u24().map_err(|_| bad("truncated tag header"))? as usize;
        let ts_lo = r.u24().map_err(|_| bad("truncated tag header"))?;
        let ts_hi = r.u8().map_err(|_| bad("truncated tag header"))?;
        r.skip(3).map_err(|_| bad("truncated tag header"))?;
        let ts = (u32::from(ts_hi) << 24) | ts_lo;
        if t == type_id::AGGREGATE {
            return Err(bad("an aggregate inside an aggregate"));
        }
        if !matches!(
            t,
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 | type_id::DATA_AMF3
        ) {
            return Err(bad(&format!("tag of type {t} is not audio, video or data")));
        }
        let start = r.position();
        r.skip(size)
            .map_err(|_| bad(&format!("tag of {size} bytes runs past the end")))?;
        // The back pointer is the tag size plus its 11-byte header; some
        // writers put the data size alone there, and the last one may be cut.
        match r.u32() {
            Ok(bp) if bp as usize == size + 11 || bp as usize == size => {}
            Ok(bp) => {
                return Err(bad(&format!(
                    "back pointer {bp} does not match a tag of {size} bytes"
                )));
            }
            Err(_) => {}
        }
        let base = *first_ts.get_or_insert(ts);
        out.push(RawMessage {
            csid: raw.csid,
            timestamp: raw.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id: t,
            stream_id: raw.stream_id,
            payload: p.slice(start..start + size),
        });
    }
    Ok(out)
}

/// Builds an aggregate payload (for tests and servers that batch).
pub fn pack_aggregate(messages: &[RawMessage]) -> Bytes {
    let mut out = BytesMut::new();
    for m in messages {
        let ts = m.timestamp;
        out.extend_from_slice(&[m.type_id]);
        out.extend_from_slice(&(m.payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.extend_from_slice(&[(ts >> 24) as u8, 0, 0, 0]);
        out.extend_from_slice(&m.payload);
        out.extend_from_slice(&((m.payload.len() + 11) as u32).to_be_bytes());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(t: u8, payload: Bytes) -> RawMessage {
        RawMessage {
            csid: 3,
            timestamp: 0,
            type_id: t,
            stream_id: 0,
            payload,
        }
    }

    fn round(m: Message) {
        let r = raw(m.type_id(), m.encode_payload());
        assert_eq!(Message::decode(&r, &Limits::default()).unwrap(), m);
    }

    #[test]
    fn every_message_type_round_trips() {
        round(Message::SetChunkSize(4096));
        round(Message::Abort(5));
        round(Message::Acknowledgement(u32::MAX));
        round(Message::WindowAckSize(2_500_000));
        for limit in [
            BandwidthLimit::Hard,
            BandwidthLimit::Soft,
            BandwidthLimit::Dynamic,
        ] {
            round(Message::SetPeerBandwidth {
                size: 5_000_000,
                limit,
            });
        }
        for u in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(1),
            UserControl::StreamDry(1),
            UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(77),
            UserControl::PingResponse(77),
            UserControl::Other {
                event: 31,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            },
        ] {
            round(Message::UserControl(u));
        }
        round(Message::Audio(Bytes::from_static(&[0xAF, 1, 2])));
        round(Message::Video(Bytes::from_static(&[0x17, 1, 0, 0, 0])));
        round(Message::Aggregate(Bytes::new()));
        for amf3 in [false, true] {
            round(Message::Command {
                amf3,
                command: NetCommand::CreateStream.into_command(4.0),
            });
            round(Message::Data {
                amf3,
                data: DataMessage::SampleAccess {
                    audio: true,
                    video: false,
                },
            });
            round(Message::SharedObject {
                amf3,
                object: SharedObject {
                    name: "so".into(),
                    version: 2,
                    persistent: true,
                    events: vec![SharedObjectEvent {
                        kind: 4,
                        data: Bytes::from_static(&[1, 2]),
                    }],
                },
            });
        }
        assert!(Message::decode(&raw(7, Bytes::new()), &Limits::default()).is_err());
        assert!(Message::decode(&raw(1, Bytes::from_static(&[0, 1])), &Limits::default()).is_err());
    }

    #[test]
    fn every_command_round_trips() {
        let st = Status::new("status", "NetStream.Publish.Start", "Start publishing");
        let connect = ConnectParams {
            app: "live".into(),
            tc_url: Some("rtmp://h/live".into()),
            flash_ver: Some("FMLE/3.0 (compatible; GStreamer)".into()),
            kind: Some("nonprivate".into()),
            fourcc_list: vec!["av01".into(), "hvc1".into()],
            video_fourcc_info_map: vec![("hvc1".into(), Amf0Value::Number(1.0))],
            audio_fourcc_info_map: vec![("Opus".into(), Amf0Value::Number(4.0))],
            caps_ex: Some(1.0),
            extra: vec![("custom".into(), Amf0Value::Boolean(true))],
            args: vec![Amf0Value::string("extra arg")],
            ..Default::default()
        };
        for c in [
            NetCommand::Connect(Box::new(connect)),
            NetCommand::Result {
                properties: Amf0Value::Null,
                info: Amf0Value::Number(1.0),
            },
            NetCommand::Error {
                properties: Amf0Value::Null,
                info: st.to_value(),
            },
            NetCommand::OnStatus(st.clone()),
            NetCommand::CreateStream,
            NetCommand::Publish {
                name: "key".into(),
                kind: "live".into(),
            },
            NetCommand::Play {
                name: "key".into(),
                start: -2.0,
                duration: -1.0,
                reset: true,
            },
            NetCommand::DeleteStream { stream_id: 1.0 },
            NetCommand::CloseStream,
            NetCommand::ReleaseStream { name: "key".into() },
            NetCommand::FcPublish { name: "key".into() },
            NetCommand::FcSubscribe { name: "key".into() },
            NetCommand::FcUnpublish { name: "key".into() },
            NetCommand::OnFcPublish(st.clone()),
            NetCommand::OnFcUnpublish(st),
            NetCommand::OnBwDone,
            NetCommand::CheckBw,
            NetCommand::GetStreamLength { name: "key".into() },
            NetCommand::ReceiveAudio(false),
            NetCommand::ReceiveVideo(true),
            NetCommand::Pause {
                pause: true,
                millis: 1500.0,
            },
            NetCommand::Seek { millis: 12_500.0 },
            NetCommand::SecureTokenResponse("0123abcd".into()),
            NetCommand::Other(Command::new("myCall", 9.0, Amf0Value::Null, vec![])),
        ] {
            let cmd = c.clone().into_command(7.0);
            let m = Message::Command {
                amf3: false,
                command: cmd,
            };
            let r = raw(type_id::COMMAND_AMF0, m.encode_payload());
            let Message::Command { command, .. } = Message::decode(&r, &Limits::default()).unwrap()
            else {
                panic!("not a command");
            };
            if !matches!(c, NetCommand::Other(_)) {
                assert_eq!(command.transaction_id, 7.0);
            }
            assert_eq!(command.parse(), c);
        }
    }

    #[test]
    fn data_messages() {
        let meta = Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))]);
        for d in [
            DataMessage::SetDataFrame {
                name: "onMetaData".into(),
                value: meta.clone(),
            },
            DataMessage::OnMetaData(meta),
            DataMessage::SampleAccess {
                audio: false,
                video: true,
            },
            DataMessage::Other {
                name: "onCuePoint".into(),
                values: vec![Amf0Value::Null],
            },
        ] {
            let m = Message::Data {
                amf3: false,
                data: d,
            };
            round(m);
        }
    }

    #[test]
    fn oversized_command_is_refused() {
        let limits = Limits {
            max_command_size: 10,
            ..Limits::default()
        };
        let cmd = NetCommand::CreateStream.into_command(1.0);
        let r = raw(type_id::COMMAND_AMF0, Bytes::from(cmd.encode()));
        assert_eq!(
            Message::decode(&r, &limits).unwrap_err().kind(),
            crate::error::ErrorKind::LimitExceeded
        );
    }

    /// A transaction id that is not a number reads as 0, unless it is an
    /// object or array: that one counts in the reference table, and the
    /// command written again (with a number there) would have its later
    /// references point one place off (found by the `command` fuzzer).
    #[test]
    fn a_transaction_id_that_is_not_a_number() {
        let command = |txn: Amf0Value| {
            let mut b = Vec::new();
            for v in [
                Amf0Value::string("deleteStream"),
                txn,
                Amf0Value::Null,
                Amf0Value::Number(1.0),
            ] {
                amf0::encode(&v, &mut b);
            }
            Message::decode(
                &raw(type_id::COMMAND_AMF0, Bytes::from(b)),
                &Limits::default(),
            )
        };
        for txn in [
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Boolean(true),
        ] {
            let Ok(Message::Command { command, .. }) = command(txn.clone()) else {
                panic!("{txn:?} refused");
            };
            assert_eq!(command.transaction_id, 0.0);
            assert_eq!(command.args, [Amf0Value::Number(1.0)]);
        }
        let e = command(Amf0Value::StrictArray(vec![])).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Malformed);
        assert!(
            e.reason()
                .contains("'deleteStream' has an object or array for a transaction id"),
            "{e}"
        );
    }

    #[test]
    fn aggregates_unpack_with_relative_timestamps() {
        let inner = vec![
            RawMessage {
                csid: 0,
                timestamp: 5000,
                type_id: 9,
                stream_id: 0,
                payload: Bytes::from_static(&[0x17, 1]),
            },
            RawMessage {
                csid: 0,
                timestamp: 5040,
                type_id: 8,
                stream_id: 0,
                payload: Bytes::from_static(&[0xAF, 1, 9]),
            },
        ];
        let agg = RawMessage {
            csid: 6,
            timestamp: 100,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: pack_aggregate(&inner),
        };
        let out = unpack_aggregate(&agg).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].timestamp, 100);
        assert_eq!(out[1].timestamp, 140);
        assert_eq!(out[1].payload, inner[1].payload);
        assert_eq!(out[1].stream_id, 1);
        // Corrupt sizes and nesting are refused.
        let mut bad = agg.payload.to_vec();
        bad[3] = 0xFF;
        assert!(
            unpack_aggregate(&RawMessage {
                payload: bad.into(),
                ..agg.clone()
            })
            .is_err()
        );
        let nested = pack_aggregate(&[RawMessage {
            type_id: type_id::AGGREGATE,
            ..inner[0].clone()
        }]);
        assert!(
            unpack_aggregate(&RawMessage {
                payload: nested,
                ..agg
            })
            .is_err()
        );
    }
}
