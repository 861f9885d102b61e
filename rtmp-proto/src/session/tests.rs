// SPDX-License-Identifier: MPL-2.0
//! Client and server sessions talking to each other in memory.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::amf0::Amf0Value;
use crate::error::ErrorKind;
use crate::handshake::RANDOM_SIZE;
use crate::message::{DataMessage, NetCommand};
use crate::url::RtmpUrl;

const R: [u8; RANDOM_SIZE] = [7; RANDOM_SIZE];

struct Pair {
    c: ClientSession,
    s: ServerSession,
    now: Instant,
}

/// Reads one side's output as messages, past its part of the handshake.
struct Tap {
    decoder: crate::chunk::ChunkDecoder,
    /// Handshake bytes still to pass over: C0 (or S0), C1 and C2.
    skip: usize,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            decoder: crate::chunk::ChunkDecoder::new(crate::limits::Limits::default()),
            skip: 1 + 2 * crate::handshake::PACKET_SIZE,
        }
    }
}

impl Tap {
    /// The messages `out`, the side's next bytes, completes.
    fn messages(&mut self, out: &[u8]) -> Vec<crate::message::Message> {
        let n = self.skip.min(out.len());
        self.skip -= n;
        self.decoder.feed(&out[n..]);
        let mut got = Vec::new();
        while let Some(m) = self.decoder.poll_message().unwrap() {
            got.push(
                crate::message::Message::decode(&m, &crate::limits::Limits::default()).unwrap(),
            );
        }
        got
    }
}

impl Pair {
    fn new(mode: ClientMode, url: &str, server: ServerConfig) -> Self {
        let now = Instant::now();
        let url = RtmpUrl::parse(url).unwrap();
        Pair {
            c: ClientSession::new(ClientConfig::new(mode, &url), now, &R),
            s: ServerSession::new(server, now, &R),
            now,
        }
    }

    /// Moves bytes both ways until neither side has any to send, in small
    /// pieces so that every split of the input is exercised somewhere.
    fn pump(&mut self) -> crate::Result<()> {
        loop {
            let mut moved = false;
            while !self.c.send_buf().is_empty() {
                let n = self.c.send_buf().len().min(1000);
                let b = self.c.send_buf()[..n].to_vec();
                self.c.advance(n);
                self.s.feed(&b, self.now)?;
                moved = true;
            }
            while !self.s.send_buf().is_empty() {
                let n = self.s.send_buf().len().min(777);
                let b = self.s.send_buf()[..n].to_vec();
                self.s.advance(n);
                self.c.feed(&b, self.now)?;
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn server_events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    fn client_events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    /// A publisher of rtmp://h:1935/live/key to a server with `cfg`, its
    /// publish accepted and both sides' events taken; and its stream id.
    fn publishing(cfg: ServerConfig) -> (Self, u32) {
        let mut p = Pair::new(ClientMode::Publish, "rtmp://h:1935/live/key", cfg);
        let ServerEvent::PublishRequest { stream_id, .. } = p.up_to_request() else {
            panic!()
        };
        p.s.accept_publish(stream_id).unwrap();
        p.pump().unwrap();
        (p, stream_id)
    }

    /// Runs connect and createStream; returns the publish/play request.
    fn up_to_request(&mut self) -> ServerEvent {
        self.pump().unwrap();
        let ev = self.server_events();
        let ServerEvent::ConnectRequest(p) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.app, "live");
        assert_eq!(p.tc_url.as_deref(), Some("rtmp://h:1935/live"));
        self.s.accept_connect().unwrap();
        self.pump().unwrap();
        assert!(matches!(
            self.client_events()[0],
            ClientEvent::Connected { .. }
        ));
        let ev = self.server_events();
        assert_eq!(ev.len(), 1, "{ev:?}");
        ev.into_iter().next().unwrap()
    }
}

#[test]
fn publish_end_to_end() {
    let mut p = Pair::new(
        ClientMode::Publish,
        "rtmp://h:1935/live/key?x=1",
        ServerConfig::default(),
    );
    let ServerEvent::PublishRequest {
        stream_id,
        name,
        kind,
    } = p.up_to_request()
    else {
        panic!()
    };
    assert_eq!((name.as_str(), kind.as_str()), ("key?x=1", "live"));
    p.s.accept_publish(stream_id).unwrap();
    p.pump().unwrap();
    assert_eq!(p.c.state(), ClientState::Publishing { stream_id });
    assert!(
        p.client_events()
            .contains(&ClientEvent::PublishStarted { stream_id })
    );

    let meta = DataMessage::SetDataFrame {
        name: "onMetaData".into(),
        value: Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
    };
    p.c.send_data(0, &meta).unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    p.c.send_video(0, &big).unwrap();
    p.c.send_audio(23, &[0xAF, 1, 2, 3]).unwrap();
    p.c.send_video(0x0100_0000, &[0x27, 1]).unwrap();
    p.pump().unwrap();
    let ev = p.server_events();
    assert_eq!(
        ev,
        vec![
            ServerEvent::Data {
                stream_id,
                timestamp: 0,
                data: meta
            },
            ServerEvent::Video {
                stream_id,
                timestamp: 0,
                payload: Bytes::from(big)
            },
            ServerEvent::Audio {
                stream_id,
                timestamp: 23,
                payload: Bytes::from_static(&[0xAF, 1, 2, 3])
            },
            ServerEvent::Video {
                stream_id,
                timestamp: 0x0100_0000,
                payload: Bytes::from_static(&[0x27, 1])
            },
        ]
    );

    p.c.stop().unwrap();
    p.pump().unwrap();
    let ev = p.server_events();
    assert!(
        ev.contains(&ServerEvent::Unpublished { stream_id }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&ServerEvent::StreamDeleted { stream_id }),
        "{ev:?}"
    );
    assert_eq!(p.c.state(), ClientState::Closed);
}

/// The stop commands asked for, and only those: none leaves the stream
/// published; closeStream alone, sent on the stream itself, ends the
/// publishing without deleting the stream.
#[test]
fn stop_commands_are_those_asked_for() {
    for (cmds, deleted) in [
        (StopCommands::NONE, None),
        (
            StopCommands {
                close_stream: true,
                ..StopCommands::NONE
            },
            Some(false),
        ),
        (StopCommands::default(), Some(true)),
    ] {
        let (mut p, stream_id) = Pair::publishing(ServerConfig::default());
        p.client_events();
        p.c.stop_with(cmds).unwrap();
        p.pump().unwrap();
        let ev = p.server_events();
        assert_eq!(p.c.state(), ClientState::Closed);
        let unpublished = ev.contains(&ServerEvent::Unpublished { stream_id });
        let gone = ev.contains(&ServerEvent::StreamDeleted { stream_id });
        assert_eq!(
            (unpublished, gone),
            (deleted.is_some(), deleted == Some(true)),
            "{cmds:?}: {ev:?}"
        );
    }
}

#[test]
fn play_end_to_end() {
    let mut p = Pair::new(
        ClientMode::Play,
        "rtmp://h:1935/live/cam",
        ServerConfig::default(),
    );
    let ServerEvent::PlayRequest {
        stream_id, name, ..
    } = p.up_to_request()
    else {
        panic!()
    };
    assert_eq!(name, "cam");
    p.s.accept_play(stream_id, true).unwrap();
    p.s.send_video(stream_id, 40, &[0x17, 0, 0, 0, 0]).unwrap();
    p.s.send_audio(41, 0, &[1]).unwrap_err(); // not a playing stream
    p.s.send_audio(stream_id, 41, &[0xAF, 1]).unwrap();
    p.s.end_play(stream_id, true).unwrap();
    p.pump().unwrap();
    let ev = p.client_events();
    assert!(
        ev.contains(&ClientEvent::PlayStarted { stream_id }),
        "{ev:?}"
    );
    assert!(ev.contains(&ClientEvent::Video {
        timestamp: 40,
        payload: Bytes::from_static(&[0x17, 0, 0, 0, 0])
    }));
    assert!(ev.contains(&ClientEvent::Audio {
        timestamp: 41,
        payload: Bytes::from_static(&[0xAF, 1])
    }));
    assert!(ev.iter().any(|e| matches!(
        e,
        ClientEvent::Data {
            data: DataMessage::SampleAccess { .. },
            ..
        }
    )));
    assert!(
        ev.iter()
            .any(|e| matches!(e, ClientEvent::StreamEnded { .. })),
        "{ev:?}"
    );
}

/// A live stream's play says nothing of recording; a recording's says
/// StreamIsRecorded, and its seeks reach the server, whose answers (where
/// it went, or that it could not) reach the player, still playing.
#[test]
fn recorded_streams_say_so_and_answer_seeks() {
    let playing = |recorded: bool| {
        let mut p = Pair::new(
            ClientMode::Play,
            "rtmp://h:1935/live/movie",
            ServerConfig::default(),
        );
        let ServerEvent::PlayRequest { stream_id, .. } = p.up_to_request() else {
            panic!()
        };
        match recorded {
            true => p.s.accept_play_recorded(stream_id, false).unwrap(),
            false => p.s.accept_play(stream_id, false).unwrap(),
        }
        p.pump().unwrap();
        let said = p
            .client_events()
            .contains(&ClientEvent::StreamIsRecorded(stream_id));
        assert_eq!(said, recorded, "StreamIsRecorded");
        (p, stream_id)
    };
    playing(false);
    let (mut p, stream_id) = playing(true);
    let status = |p: &mut Pair| -> Vec<String> {
        p.client_events()
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Status(s) => Some(format!("{} {}", s.level, s.code)),
                _ => None,
            })
            .collect()
    };
    for (to, at) in [(5000, Some(5040.0)), (9000, None)] {
        p.c.seek(to).unwrap();
        p.pump().unwrap();
        assert_eq!(
            p.server_events(),
            [ServerEvent::Seek {
                stream_id,
                millis: f64::from(to)
            }]
        );
        p.s.answer_seek(stream_id, at).unwrap();
        p.pump().unwrap();
        let want = match at {
            Some(_) => "status NetStream.Seek.Notify",
            None => "error NetStream.Seek.Failed",
        };
        assert_eq!(status(&mut p), [want]);
        assert_eq!(p.c.state(), ClientState::Playing { stream_id });
    }
    // Only a playing stream is answered.
    assert!(p.s.answer_seek(stream_id + 1, None).is_err());
}

#[test]
fn rejections_name_the_code_and_hide_the_key() {
    let mut p = Pair::new(
        ClientMode::Publish,
        "rtmp://h:1935/live/secretkey",
        ServerConfig::default(),
    );
    let ServerEvent::PublishRequest { stream_id, .. } = p.up_to_request() else {
        panic!()
    };
    p.s.reject_stream(
        stream_id,
        "NetStream.Publish.BadName",
        "Stream already publishing",
    )
    .unwrap();
    let e = p.pump().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.reason().contains("NetStream.Publish.BadName"), "{e}");
    assert!(e.reason().contains("Stream already publishing"), "{e}");
    assert!(!e.reason().contains("secretkey"), "{e}");
    assert_eq!(p.c.state(), ClientState::Failed);

    let mut p = Pair::new(
        ClientMode::Play,
        "rtmp://h:1935/live/k",
        ServerConfig::default(),
    );
    p.pump().unwrap();
    p.server_events();
    p.s.reject_connect("NetConnection.Connect.Rejected", "bad app")
        .unwrap();
    let e = p.pump().unwrap_err();
    assert!(
        e.reason()
            .contains("server rejected connect: NetConnection.Connect.Rejected (bad app)"),
        "{e}"
    );

    let mut p = Pair::new(
        ClientMode::Play,
        "rtmp://h:1935/live/gone",
        ServerConfig::default(),
    );
    let ServerEvent::PlayRequest { stream_id, .. } = p.up_to_request() else {
        panic!()
    };
    p.s.reject_stream(stream_id, "NetStream.Play.StreamNotFound", "no such stream")
        .unwrap();
    let e = p.pump().unwrap_err();
    assert!(
        e.reason()
            .contains("server rejected play: NetStream.Play.StreamNotFound"),
        "{e}"
    );
}

#[test]
fn timeouts() {
    let now = Instant::now();
    let url = RtmpUrl::parse("rtmp://h/live/k").unwrap();
    let mut c = ClientSession::new(ClientConfig::new(ClientMode::Publish, &url), now, &R);
    let d = c.poll_timeout().unwrap();
    assert_eq!(d, now + Duration::from_secs(10));
    c.handle_timeout(now + Duration::from_secs(5)).unwrap();
    let e = c.handle_timeout(d).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.reason().contains("handshake"), "{e}");

    let mut s = ServerSession::new(ServerConfig::default(), now, &R);
    let e = s.handle_timeout(now + Duration::from_secs(11)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // Once failed, the session stays failed.
    assert!(s.feed(&[3], now).is_err());
}

#[test]
fn acknowledgements_and_pings() {
    let cfg = ServerConfig {
        window_ack_size: 10_000,
        ..ServerConfig::default()
    };
    let (mut p, _) = Pair::publishing(cfg);
    for i in 0..10 {
        p.c.send_video(i * 40, &[0u8; 5000]).unwrap();
        p.pump().unwrap();
    }
    // The window is the client's to honour for what it receives; the
    // server received 50 kB but the client got far less than 10 000 bytes.
    assert_eq!(p.s.stats().peer_acked, 0);
    assert!(p.s.stats().bytes_in > 50_000);
    p.s.ping(1234).unwrap();
    p.pump().unwrap();
    assert!(p.server_events().contains(&ServerEvent::PingResponse(1234)));
}

#[test]
fn the_server_answers_a_clients_ping_after_what_came_before() {
    let (mut p, _) = Pair::publishing(ServerConfig::default());
    assert_eq!(p.c.pings_answered(), 0);
    assert_eq!(p.c.last_ping_answer(), None);
    p.c.send_video(0, &[0x17; 3000]).unwrap();
    p.c.ping(77).unwrap();
    p.pump().unwrap();
    assert_eq!(p.c.pings_answered(), 1);
    assert_eq!(p.c.last_ping_answer(), Some(77));
    p.c.ping(78).unwrap();
    p.pump().unwrap();
    assert_eq!(p.c.pings_answered(), 2);
    assert_eq!(p.c.last_ping_answer(), Some(78));
}

#[test]
fn client_acknowledges_at_the_window() {
    let cfg = ServerConfig {
        window_ack_size: 4_000,
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientMode::Play, "rtmp://h:1935/live/key", cfg);
    let ServerEvent::PlayRequest { stream_id, .. } = p.up_to_request() else {
        panic!()
    };
    p.s.accept_play(stream_id, false).unwrap();
    for i in 0..20 {
        p.s.send_video(stream_id, i * 40, &[0x27; 1000]).unwrap();
        p.pump().unwrap();
    }
    let acked = p.s.stats().peer_acked;
    let received = p.c.stats().bytes_in;
    assert!(
        acked > 0 && u64::from(acked) <= received,
        "acked {acked} of {received}"
    );
    assert!(
        received - u64::from(acked) < 4_000 + 1100,
        "acked {acked} of {received}"
    );
}

#[test]
fn protocol_violations_fail_cleanly() {
    // A command before connect.
    let now = Instant::now();
    let url = RtmpUrl::parse("rtmp://h/live/k").unwrap();
    let mut c = ClientSession::new(ClientConfig::new(ClientMode::Publish, &url), now, &R);
    let mut s = ServerSession::new(ServerConfig::default(), now, &R);
    let c0c1 = c.send_buf().to_vec();
    c.advance(c0c1.len());
    s.feed(&c0c1, now).unwrap();
    let s012 = s.send_buf().to_vec();
    s.advance(s012.len());
    c.feed(&s012, now).unwrap();
    let mut out = c.send_buf().to_vec();
    // Replace the client's connect with a createStream.
    let c2 = &out[..crate::handshake::PACKET_SIZE];
    let mut bytes = c2.to_vec();
    let mut enc = crate::chunk::ChunkEncoder::new();
    let cmd = crate::message::NetCommand::CreateStream.into_command(2.0);
    enc.write_message(3, 0, 20, 0, &cmd.encode()).unwrap();
    bytes.extend_from_slice(enc.send_buf());
    out.clear();
    let e = s.feed(&bytes, now).unwrap_err();
    assert!(e.reason().contains("before connect"), "{e}");
    // Sending media before publishing has started is refused.
    assert!(c.send_video(0, &[1]).is_err());
}

#[test]
fn set_peer_bandwidth_is_answered_when_the_window_changes() {
    use crate::message::Message;

    let cfg = ServerConfig {
        peer_bandwidth: 1_234_567,
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientMode::Publish, "rtmp://h:1935/live/key", cfg);
    // Watch what the client sends after the handshake.
    let mut tap = Tap::default();
    let mut client_msgs = Vec::new();
    for _ in 0..4 {
        let out = p.c.send_buf().to_vec();
        p.c.advance(out.len());
        client_msgs.extend(tap.messages(&out));
        p.s.feed(&out, p.now).unwrap();
        while let Some(ev) = p.s.poll_event() {
            if let ServerEvent::ConnectRequest(_) = ev {
                p.s.accept_connect().unwrap();
            }
        }
        let back = p.s.send_buf().to_vec();
        p.s.advance(back.len());
        p.c.feed(&back, p.now).unwrap();
    }
    assert!(
        client_msgs.contains(&Message::WindowAckSize(1 << 20)),
        "the window asked for is at most a megabyte: {client_msgs:?}"
    );
    assert!(
        !client_msgs.contains(&Message::WindowAckSize(1_234_567)),
        "{client_msgs:?}"
    );
    assert_eq!(p.c.connection().peer_bandwidth(), Some(1_234_567));
}

/// A server that challenges with a SecureToken, and a client with or
/// without the secret: connect, then the client's first commands, to where
/// the server takes or refuses its stream.
fn challenged(client_secret: Option<&str>) -> (Pair, crate::Result<()>) {
    let mut p = Pair::new(
        ClientMode::Publish,
        "rtmp://h:1935/live/key",
        ServerConfig::default(),
    );
    p.c = ClientSession::new(
        ClientConfig {
            secure_token: client_secret.map(|s| crate::secure_token::Secret(s.to_owned())),
            ..ClientConfig::new(
                ClientMode::Publish,
                &RtmpUrl::parse("rtmp://h:1935/live/key").unwrap(),
            )
        },
        p.now,
        &R,
    );
    p.pump().unwrap();
    assert!(matches!(
        p.server_events()[..],
        [ServerEvent::ConnectRequest(_)]
    ));
    p.s.accept_connect_challenged("s3cret", b"fresh nonce 0001")
        .unwrap();
    let r = p.pump();
    (p, r)
}

#[test]
fn a_client_with_the_secret_answers_the_servers_secure_token() {
    let (mut p, r) = challenged(Some("s3cret"));
    r.unwrap();
    let ev = p.client_events();
    let ClientEvent::Connected {
        status: Some(status),
        ..
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    // The challenge is in the info object, as Wowza sends it.
    let challenge = status
        .extra
        .iter()
        .find(|(k, _)| k == "secureToken")
        .and_then(|(_, v)| v.as_str())
        .unwrap();
    assert_eq!(challenge.len(), 64);
    let ev = p.server_events();
    let [ServerEvent::PublishRequest { stream_id, .. }] = ev[..] else {
        panic!("{ev:?}")
    };
    p.s.accept_publish(stream_id).unwrap();
    p.pump().unwrap();
    assert_eq!(p.c.state(), ClientState::Publishing { stream_id });
}

#[test]
fn a_client_without_the_secret_says_what_to_set() {
    let (mut p, r) = challenged(None);
    // The client stops at the challenge: it never asks for a stream.
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.reason().contains("set secure-token"), "{}", e.reason());
    assert_eq!(p.c.state(), ClientState::Failed);
    assert!(p.server_events().is_empty());
}

#[test]
fn a_wrong_secret_is_refused_at_create_stream() {
    let (mut p, r) = challenged(Some("guess"));
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.reason().contains("SecureToken answer is wrong"), "{e}");
    assert!(e.reason().contains("refused 'createStream'"), "{e}");
    assert!(p.server_events().is_empty());
    // Its _error went out before the server gave up on the connection:
    // the client says why.
    let b = p.s.send_buf().to_vec();
    p.s.advance(b.len());
    let e = p.c.feed(&b, p.now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.reason().contains("server rejected createStream"), "{e}");
    assert!(e.reason().contains("SecureToken answer is wrong"), "{e}");
}

#[test]
fn a_silent_client_is_refused_its_stream() {
    // A client that ignores secureToken (FFmpeg, OBS): createStream
    // straight after connect. Played here by a bare connection.
    let now = Instant::now();
    let mut s = ServerSession::new(ServerConfig::default(), now, &R);
    let mut c = Connection::client(0, &R, crate::Limits::default());
    let to_server = |c: &mut Connection, s: &mut ServerSession| {
        let b = c.send_buf().to_vec();
        c.advance(b.len());
        s.feed(&b, now)
    };
    let to_client = |s: &mut ServerSession, c: &mut Connection| {
        let b = s.send_buf().to_vec();
        s.advance(b.len());
        c.feed(&b).unwrap();
        std::iter::from_fn(|| c.poll_message().unwrap())
            .map(|(_, m)| m)
            .collect::<Vec<_>>()
    };
    to_server(&mut c, &mut s).unwrap();
    to_client(&mut s, &mut c);
    to_server(&mut c, &mut s).unwrap();
    let connect = NetCommand::Connect(Box::new(crate::message::ConnectParams {
        app: "live".into(),
        ..Default::default()
    }));
    c.send_command(3, 0, connect.into_command(1.0)).unwrap();
    to_server(&mut c, &mut s).unwrap();
    assert!(matches!(
        std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>()[..],
        [ServerEvent::ConnectRequest(_)]
    ));
    s.accept_connect_challenged("s3cret", b"fresh nonce 0002")
        .unwrap();
    to_client(&mut s, &mut c);
    c.send_command(3, 0, NetCommand::CreateStream.into_command(2.0))
        .unwrap();
    let e = to_server(&mut c, &mut s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.reason().contains("refused 'createStream'"), "{e}");
    assert!(e.reason().contains("did not answer"), "{e}");
    assert!(s.poll_event().is_none());
    // The client was told why, on its createStream.
    let answers = to_client(&mut s, &mut c);
    let refused = answers.iter().find_map(|m| match m {
        crate::message::Message::Command { command, .. } if command.name == "_error" => {
            Some(command.clone())
        }
        _ => None,
    });
    let refused = refused.expect("an _error");
    assert_eq!(refused.transaction_id, 2.0);
    let status = crate::message::Status::from_value(&refused.args[0]).unwrap();
    assert_eq!(status.code, "NetConnection.Connect.Rejected");
    assert!(status.description.contains("SecureToken"), "{status:?}");
}

#[test]
fn stats_give_the_chunk_sizes_and_windows_in_force() {
    let mut p = Pair::new(
        ClientMode::Publish,
        "rtmp://h:1935/live/key",
        ServerConfig {
            chunk_size: 8192,
            window_ack_size: 100_000,
            ..ServerConfig::default()
        },
    );
    let ServerEvent::PublishRequest { stream_id, .. } = p.up_to_request() else {
        panic!("no publish request")
    };
    let (c, s) = (p.c.stats(), p.s.stats());
    assert_eq!(c.out_chunk_size, p.c.config().chunk_size);
    assert_eq!((c.in_chunk_size, s.out_chunk_size), (8192, 8192));
    assert_eq!(s.in_chunk_size, p.c.config().chunk_size);
    assert_eq!(
        (c.in_window_ack_size, s.out_window_ack_size),
        (100_000, 100_000)
    );
    // The client asks for acknowledgements by the server's Set Peer
    // Bandwidth, at most every MAX_ACK_WINDOW bytes.
    let asked = ServerConfig::default()
        .peer_bandwidth
        .min(super::connection::MAX_ACK_WINDOW);
    assert_eq!(
        (c.out_window_ack_size, s.in_window_ack_size),
        (asked, asked)
    );
    assert_eq!(s.in_bytes_acked, 0);
    // Past the server's window: it acknowledges what it got, and the
    // client hears of it.
    p.s.accept_publish(stream_id).unwrap();
    p.pump().unwrap();
    for _ in 0..5 {
        p.c.send_video(0, &[0x17; 300_000]).unwrap();
    }
    p.pump().unwrap();
    let (c, s) = (p.c.stats(), p.s.stats());
    assert!(s.in_bytes_acked >= u64::from(asked), "{s:?}");
    assert!(s.bytes_in - s.in_bytes_acked < u64::from(asked), "{s:?}");
    assert_eq!(c.peer_acked_total(), Some(s.in_bytes_acked));
}

#[test]
fn librtmp_options_in_the_location_reach_the_server() {
    let url = RtmpUrl::parse(
        "rtmp://h:1935/x/y app=live playpath=mp4:f.mp4 start=2000 stop=5000 subscribe=f \
         pageUrl=http://p/ swfUrl=http://p/a.swf flashver=WIN\\2011,1 conn=S:hello conn=O:1 conn=NN:n:1 conn=O:0",
    )
    .unwrap();
    let now = Instant::now();
    let mut config = ClientConfig::new(ClientMode::Play, &url);
    url.options.apply_to(&mut config);
    let mut p = Pair {
        c: ClientSession::new(config, now, &R),
        s: ServerSession::new(ServerConfig::default(), now, &R),
        now,
    };
    p.pump().unwrap();
    let ev = p.server_events();
    let ServerEvent::ConnectRequest(c) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(c.app, "live");
    assert_eq!(c.page_url.as_deref(), Some("http://p/"));
    assert_eq!(c.swf_url.as_deref(), Some("http://p/a.swf"));
    assert_eq!(c.flash_ver.as_deref(), Some("WIN 11,1"));
    assert_eq!(
        c.args,
        vec![
            Amf0Value::String("hello".into()),
            Amf0Value::Object(vec![("n".into(), Amf0Value::Number(1.0))]),
        ]
    );
    p.s.accept_connect().unwrap();
    // FCSubscribe (which this server does not know: it answers an error,
    // and the client goes on), then createStream and play.
    p.pump().unwrap();
    let ev = p.server_events();
    let Some(ServerEvent::PlayRequest {
        name,
        start,
        duration,
        ..
    }) = ev.into_iter().last()
    else {
        panic!("no play request")
    };
    assert_eq!(
        (name.as_str(), start, duration),
        ("mp4:f.mp4", 2000.0, 3000.0)
    );
}

/// The calls a publisher makes around its stream (releaseStream,
/// FCPublish, createStream, checkBW, getStreamLength) and calls the server
/// does not know: each that carries a transaction id gets its `_result` or
/// `_error`, each with id 0 no answer; FCPublish is told onFCPublish too.
#[test]
fn the_server_answers_every_call_that_waits_for_one() {
    use crate::chunk::ChunkEncoder;
    use crate::message::{Command, Message, Status, type_id};

    let cfg = ServerConfig {
        max_streams: 1,
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientMode::Publish, "rtmp://h:1935/live/key", cfg);
    // Everything the server sends, past its handshake, as commands.
    let mut tap = Tap::default();
    let mut answers = |s: &mut ServerSession| {
        let out = s.send_buf().to_vec();
        s.advance(out.len());
        let got: Vec<Command> = tap
            .messages(&out)
            .into_iter()
            .filter_map(|m| match m {
                Message::Command { command, .. } => Some(command),
                _ => None,
            })
            .collect();
        (out, got)
    };
    // The handshake and the client's connect, accepted; what the client
    // sends after that (its own calls) stays with it.
    let mut connected = Vec::new();
    for _ in 0..4 {
        let out = p.c.send_buf().to_vec();
        p.c.advance(out.len());
        p.s.feed(&out, p.now).unwrap();
        if let Some(ServerEvent::ConnectRequest(_)) = p.s.poll_event() {
            p.s.accept_connect().unwrap();
        }
        let (back, got) = answers(&mut p.s);
        connected.extend(got);
        if !connected.is_empty() {
            break;
        }
        p.c.feed(&back, p.now).unwrap();
    }
    assert_eq!(connected.len(), 1);
    assert_eq!(
        (connected[0].name.as_str(), connected[0].transaction_id),
        ("_result", 1.0)
    );

    // Then our own calls, one at a time, and what each brought back.
    let mut to_server = ChunkEncoder::new();
    let key = || "key".to_string();
    let unknown = |txn| NetCommand::Other(Command::new("myCall", txn, Amf0Value::Null, vec![]));
    let calls = [
        (2.0, NetCommand::ReleaseStream { name: key() }),
        (0.0, NetCommand::ReleaseStream { name: key() }),
        (3.0, NetCommand::FcPublish { name: key() }),
        (4.0, NetCommand::CreateStream),
        (5.0, NetCommand::CreateStream),
        (6.0, NetCommand::CheckBw),
        (0.0, NetCommand::CheckBw),
        (7.0, NetCommand::GetStreamLength { name: key() }),
        (8.0, unknown(8.0)),
        (0.0, unknown(0.0)),
        (9.0, NetCommand::FcUnpublish { name: key() }),
    ];
    let mut said = Vec::new();
    for (txn, call) in calls {
        let body = call.into_command(txn).encode();
        to_server
            .write_message(3, 0, type_id::COMMAND_AMF0, 0, &body)
            .unwrap();
        let bytes = to_server.send_buf().to_vec();
        to_server.advance(bytes.len());
        p.s.feed(&bytes, p.now).unwrap();
        let (_, got) = answers(&mut p.s);
        let got: Vec<(String, f64, Amf0Value)> = got
            .into_iter()
            .map(|c| {
                (
                    c.name,
                    c.transaction_id,
                    c.args.into_iter().next().unwrap_or(Amf0Value::Null),
                )
            })
            .collect();
        said.push((txn, got));
    }
    let status = |v: &Amf0Value| Status::from_value(v).map(|s| (s.code, s.description));
    let names = |got: &[(String, f64, Amf0Value)]| -> Vec<(String, f64)> {
        got.iter().map(|(n, t, _)| (n.clone(), *t)).collect()
    };
    let r = |t: f64| ("_result".to_string(), t);
    let e = |t: f64| ("_error".to_string(), t);
    assert_eq!(names(&said[0].1), [r(2.0)], "releaseStream");
    assert_eq!(names(&said[1].1), [], "releaseStream, no id");
    assert_eq!(
        names(&said[2].1),
        [r(3.0), ("onFCPublish".into(), 0.0)],
        "FCPublish"
    );
    assert_eq!(
        status(&said[2].1[1].2),
        Some(("NetStream.Publish.Start".into(), "key".into()))
    );
    assert_eq!(names(&said[3].1), [r(4.0)], "createStream");
    assert_eq!(
        said[3].1[0].2,
        Amf0Value::Number(1.0),
        "the first stream's id"
    );
    assert_eq!(names(&said[4].1), [e(5.0)], "createStream past max_streams");
    assert_eq!(
        status(&said[4].1[0].2),
        Some((
            "NetConnection.Call.Failed".into(),
            "too many streams".into()
        ))
    );
    assert_eq!(names(&said[5].1), [r(6.0)], "checkBW");
    assert_eq!(names(&said[6].1), [], "checkBW, no id");
    assert_eq!(names(&said[7].1), [r(7.0)], "getStreamLength");
    assert_eq!(
        said[7].1[0].2,
        Amf0Value::Number(0.0),
        "a live stream's length"
    );
    assert_eq!(names(&said[8].1), [e(8.0)], "an unknown call");
    assert_eq!(
        status(&said[8].1[0].2),
        Some((
            "NetConnection.Call.Failed".into(),
            "method 'myCall' not found".into()
        ))
    );
    assert_eq!(names(&said[9].1), [], "an unknown call, no id");
    assert_eq!(names(&said[10].1), [r(9.0)], "FCUnpublish");
}
