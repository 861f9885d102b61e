// SPDX-License-Identifier: MPL-2.0
//! Entry points of the fuzz targets under `fuzz/`, one per parser. They
//! live here so that a plain `cargo test` replays them (on generated inputs
//! and on the files in `fuzz/regressions/`) without the fuzzing toolchain.
//! Each checks what must hold, not only that nothing panics.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::amf0;
use super::amf3;
use super::chunk::{ChunkDecoder, RawMessage};
use super::flv::{AudioTag, VideoTag, relay_track};
use super::handshake::{Handshake, RANDOM_SIZE};
use super::limits::Limits;
use super::message::{Message, NetCommand, type_id};
use super::session::{
    ClientConfig, ClientMode, ClientSession, ServerConfig, ServerEvent, ServerSession,
};
use super::url::RtmpUrl;

/// Small limits, so that the fuzzer reaches them quickly.
fn tight() -> Limits {
    Limits {
        max_message_size: 256 * 1024,
        max_chunk_streams: 8,
        max_reassembly_bytes: 512 * 1024,
        max_command_size: 64 * 1024,
        ..Limits::default()
    }
}

/// Feeds `data` in pieces whose sizes come from `seed`.
fn pieces(data: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let step = usize::from(seed % 64) + 1;
    data.chunks(if seed & 0x80 != 0 {
        data.len().max(1)
    } else {
        step
    })
}

pub fn chunk(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let limits = tight();
    let mut dec = ChunkDecoder::new(limits);
    for piece in pieces(rest, seed) {
        dec.feed(piece);
        loop {
            match dec.poll_message() {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= limits.max_message_size as usize);
                    let _ = Message::decode(&m, &limits);
                }
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(dec.reassembly_bytes() <= limits.max_reassembly_bytes);
        }
    }
}

pub fn amf0(data: &[u8]) {
    let limits = Default::default();
    if let Ok(values) = amf0::decode_all(data, &limits) {
        // What decodes re-encodes to something that decodes to the same.
        let once = amf0::encode_all(&values);
        let again = amf0::decode_all(&once, &limits).expect("re-encoded AMF0 decodes");
        assert_eq!(amf0::encode_all(&again), once);
    }
}

pub fn amf3(data: &[u8]) {
    let limits = Default::default();
    if let Ok((v, _)) = amf3::decode_one(data, &limits) {
        let mut once = Vec::new();
        amf3::Encoder::new().encode(&v, &mut once);
        let (again, used) = amf3::decode_one(&once, &limits).expect("re-encoded AMF3 decodes");
        assert_eq!(used, once.len());
        let mut twice = Vec::new();
        amf3::Encoder::new().encode(&again, &mut twice);
        assert_eq!(twice, once);
    }
}

/// First byte: 8 for an audio tag body, anything else for video.
pub fn flv_tag(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let video = kind != type_id::AUDIO;
    // What a server reads from the first bytes agrees with the parse: the
    // first track of a multitrack tag, 0 for every other.
    let track = relay_track(video, &body);
    if !video {
        if let Ok(t) = AudioTag::parse(&body) {
            assert_eq!(
                AudioTag::parse(&t.build()).expect("built audio tag parses"),
                t
            );
            if let AudioTag::Enhanced(e) = &t
                && e.multitrack.is_some()
            {
                assert_eq!(Some(track), e.tracks.first().map(|t| t.track_id));
            }
        }
    } else if let Ok(t) = VideoTag::parse(&body) {
        assert_eq!(
            VideoTag::parse(&t.build()).expect("built video tag parses"),
            t
        );
        if let VideoTag::Enhanced(e) = &t
            && e.multitrack.is_some()
            && e.command.is_none()
        {
            assert_eq!(Some(track), e.tracks.first().map(|t| t.track_id));
        }
    }
}

pub fn handshake(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let random = [seed; RANDOM_SIZE];
    for mut h in [Handshake::client(1, &random), Handshake::server(2, &random)] {
        let mut used = 0;
        for piece in pieces(rest, seed) {
            match h.feed(piece) {
                Ok(n) => {
                    assert!(n <= piece.len());
                    used += n;
                }
                Err(_) => break,
            }
        }
        assert!(used <= rest.len());
        let n = h.send_buf().len();
        assert!(n <= 1 + 2 * super::handshake::PACKET_SIZE);
        h.advance(n);
    }
}

/// An AMF0 command message body.
pub fn command(data: &[u8]) {
    let raw = RawMessage {
        csid: 3,
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::copy_from_slice(data),
    };
    if let Ok(Message::Command { command, .. }) = Message::decode(&raw, &tight()) {
        // The typed view survives a trip through the wire form. (Compared
        // as text: NaN arguments are equal to themselves there.)
        let typed = command.parse();
        let wire = typed.clone().into_command(command.transaction_id).encode();
        let raw2 = RawMessage {
            payload: Bytes::from(wire),
            ..raw
        };
        let Ok(Message::Command { command: back, .. }) = Message::decode(&raw2, &Limits::default())
        else {
            panic!("re-encoded command does not decode");
        };
        assert_eq!(
            format!("{:?}", NetCommand::from_command(&back)),
            format!("{typed:?}")
        );
    }
}

/// Bytes a client session receives from a "server"; the first byte picks
/// publish or play.
pub fn client_session(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mode = if seed & 1 == 0 {
        ClientMode::Publish
    } else {
        ClientMode::Play
    };
    let url = RtmpUrl::parse("rtmp://fuzz/live/key").expect("static URL");
    let mut cfg = ClientConfig::new(mode, &url);
    cfg.limits = tight();
    // A server's SecureToken challenge is answered, or refused without one.
    if seed & 4 != 0 {
        cfg.secure_token = Some(super::secure_token::Secret("fuzz secret".into()));
    }
    let mut now = Instant::now();
    let mut c = ClientSession::new(cfg, now, &[seed; RANDOM_SIZE]);
    for piece in pieces(rest, seed) {
        now += Duration::from_millis(300);
        let n = c.send_buf().len();
        c.advance(n);
        if c.feed(piece, now).is_err() || c.handle_timeout(now).is_err() {
            return;
        }
        while c.poll_event().is_some() {}
        if seed & 2 != 0 {
            let _ = c.send_video(1, &[0x17, 1, 0, 0, 0]);
        }
        assert!(c.connection().decoder().reassembly_bytes() <= tight().max_reassembly_bytes);
    }
    let _ = c.stop();
}

/// Bytes a server session receives from a "client"; it accepts everything
/// and serves a frame to players. With a SecureToken challenge, no stream
/// is asked for without the answer in the input.
pub fn server_session(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let cfg = ServerConfig {
        limits: tight(),
        ..ServerConfig::default()
    };
    let mut now = Instant::now();
    let mut s = ServerSession::new(cfg, now, &[seed; RANDOM_SIZE]);
    for piece in pieces(rest, seed) {
        now += Duration::from_millis(300);
        let n = s.send_buf().len();
        s.advance(n);
        if s.feed(piece, now).is_err() || s.handle_timeout(now).is_err() {
            return;
        }
        while let Some(ev) = s.poll_event() {
            let r = match ev {
                ServerEvent::ConnectRequest(_) if seed & 4 == 0 && seed & 16 != 0 => {
                    s.accept_connect_challenged("fuzz secret", &[seed; 16])
                }
                ServerEvent::ConnectRequest(_) if seed & 4 == 0 => s.accept_connect(),
                ServerEvent::PublishRequest { .. } | ServerEvent::PlayRequest { .. }
                    if seed & 4 == 0
                        && seed & 16 != 0
                        && !contains(
                            rest,
                            super::secure_token::expected_answer(&[seed; 16]).as_bytes(),
                        ) =>
                {
                    panic!("a stream asked for without the SecureToken answer")
                }
                ServerEvent::ConnectRequest(_) => {
                    s.reject_connect("NetConnection.Connect.Rejected", "fuzz")
                }
                ServerEvent::PublishRequest { stream_id, .. } if seed & 8 == 0 => {
                    s.accept_publish(stream_id)
                }
                ServerEvent::PlayRequest { stream_id, .. } if seed & 8 == 0 => s
                    .accept_play(stream_id, true)
                    .and_then(|_| s.send_video(stream_id, 0, &[0x17, 1, 0, 0, 0])),
                ServerEvent::PublishRequest { stream_id, .. }
                | ServerEvent::PlayRequest { stream_id, .. } => {
                    s.reject_stream(stream_id, "NetStream.Publish.BadName", "fuzz")
                }
                _ => Ok(()),
            };
            if r.is_err() {
                return;
            }
        }
        assert!(s.connection().decoder().reassembly_bytes() <= tight().max_reassembly_bytes);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Logins: what a hostile server says in a refusal (to the client side)
/// and what a hostile client puts in its connect's app query (to the
/// server side). Neither may panic; the client never asks for more than
/// an announce and one answer; the server's challenges stay bounded and
/// nothing logs in without the password.
pub fn auth(data: &[u8]) {
    use super::auth::{AuthMethod, ClientAuth, ClientAuthMode, Credentials, ServerAuth, Verdict};
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let creds = Credentials {
        user: "u".into(),
        password: "p".into(),
    };
    let mode = [
        ClientAuthMode::Auto,
        ClientAuthMode::None,
        ClientAuthMode::Adobe,
        ClientAuthMode::Llnw,
    ][usize::from(seed % 4)];
    let mut c = ClientAuth::new(mode, Some(creds.clone()), "live");
    let mut retries = 0;
    for part in text.split('\n') {
        if c.on_refused(part, u32::from(seed)).is_err() {
            break;
        }
        retries += 1;
        assert!(retries <= 2, "a login that never ends: {text:?}");
        assert!(c.connect_query().is_some_and(|q| q.starts_with("authmod=")));
    }
    let method = if seed & 4 == 0 {
        AuthMethod::Adobe
    } else {
        AuthMethod::Llnw
    };
    let mut s = ServerAuth::new(method, creds, Duration::from_secs(1));
    let t0 = Instant::now();
    for (i, part) in text.split('\n').enumerate() {
        let now = t0 + Duration::from_millis(100 * i as u64);
        // The password is "p": no query made by hand knows the response
        // to a challenge only the server's randomness made.
        if let Verdict::Accept { .. } = s.check("live", part, now, &[seed; 8]) {
            assert!(part.contains("response="), "{part:?}");
        }
    }
    // A server's SecureToken challenge: an answer or an error, never a
    // panic; and the answer to our own challenge, whatever the secret.
    let _ = super::secure_token::response(&text, &text);
    let nonce = [seed; 16];
    let challenge = super::secure_token::challenge(&text, &nonce);
    assert_eq!(
        super::secure_token::response(&text, &challenge).ok(),
        Some(super::secure_token::expected_answer(&nonce))
    );
}

/// A location a user typed, and a tcUrl a server's reconnect request names
/// (resolved against ours): an error or a URL, never a panic. A URL that
/// parses, written out (`to_uri`), parses back to itself; what is logged
/// of it (`redacted`) does not depend on its password.
pub fn url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (location, tc_url) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(u) = RtmpUrl::parse(location) else {
        return;
    };
    let written = u.to_uri();
    assert_eq!(
        RtmpUrl::parse(&written).as_ref(),
        Ok(&u),
        "{location:?} written out as {written:?}"
    );
    if u.password.is_some() {
        let mut other = u.clone();
        other.password = Some("another".into());
        assert_eq!(u.redacted(), other.redacted(), "{location:?}");
    }
    if let Ok(r) = u.redirected(tc_url) {
        assert_eq!(r.stream, u.stream, "a reconnect keeps the stream");
        let _ = r.to_uri();
    }
}

/// Codec configuration records from a peer (OpusHead, STREAMINFO, vpcC,
/// colorInfo) and temporal units from an encoder (AV1): errors, never a
/// panic; what parses builds back to what was read.
pub fn codec(data: &[u8]) {
    use super::codec::{ColorInfo, FlacStreamInfo, OpusHead, Vp9Config, av1c_from_temporal_unit};
    if let Ok(c) = ColorInfo::from_amf(data) {
        assert_eq!(ColorInfo::from_amf(&c.to_amf()).unwrap(), c);
    }
    if let Ok(h) = OpusHead::parse(data) {
        assert_eq!(OpusHead::parse(&h.build()).unwrap(), h);
    }
    if let Ok(i) = FlacStreamInfo::parse(data) {
        assert!(i.rate > 0 && (1..=8).contains(&i.channels));
    }
    if let Ok(c) = Vp9Config::parse(data) {
        assert_eq!(&c.build()[4..10], &data[4..10]);
    }
    if let Ok(Some(av1c)) = av1c_from_temporal_unit(data) {
        assert_eq!(av1c[0], 0x81);
        assert!(av1c.len() > 4 && av1c.len() <= data.len() + 4);
    }
}

/// Every target, by the name its fuzz target and corpus folder use.
/// A fuzz target body.
pub type Target = fn(&[u8]);

pub const TARGETS: [(&str, Target); 11] = [
    ("chunk", chunk),
    ("amf0", amf0),
    ("amf3", amf3),
    ("flv_tag", flv_tag),
    ("handshake", handshake),
    ("command", command),
    ("client_session", client_session),
    ("server_session", server_session),
    ("auth", auth),
    ("codec", codec),
    ("url", url),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed crash reproducers and a few thousand
    /// generated inputs per target.
    #[test]
    fn targets_hold_on_generated_and_regression_inputs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (name, f) in TARGETS {
            if let Ok(dir) = std::fs::read_dir(root.join(name)) {
                for e in dir.flatten() {
                    f(&std::fs::read(e.path()).unwrap());
                }
            }
            for _ in 0..3000 {
                let len = (next() % 600) as usize;
                let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                f(&data);
            }
        }
    }
}
