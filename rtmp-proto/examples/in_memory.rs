// SPDX-License-Identifier: MPL-2.0
//! The core with no socket at all: a publishing client and a server, each
//! a sans-IO session, joined by two byte queues in memory. Bytes go in
//! (`feed`), events and bytes to send come out (`poll_event`, `send_buf`
//! and `advance`), time is passed in (`handle_timeout`). This is what a
//! browser (over a WebSocket) or an embedded program would do around it.
//!
//!     cargo run -p rtmp-proto --example in_memory

use std::time::{Duration, Instant};

use rtmp_proto::handshake::RANDOM_SIZE;
use rtmp_proto::session::{
    ClientConfig, ClientEvent, ClientMode, ClientSession, ClientState, ServerConfig, ServerEvent,
    ServerSession,
};
use rtmp_proto::url::RtmpUrl;

/// Moves what each side has to send to the other, until both are quiet.
fn pump(c: &mut ClientSession, s: &mut ServerSession, now: Instant) -> rtmp_proto::Result<()> {
    loop {
        let (to_server, to_client) = (c.send_buf().to_vec(), s.send_buf().to_vec());
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
        c.advance(to_server.len());
        s.advance(to_client.len());
        s.feed(&to_server, now)?;
        c.feed(&to_client, now)?;
    }
}

fn main() -> rtmp_proto::Result<()> {
    let mut now = Instant::now();
    let url = RtmpUrl::parse("rtmp://example.org/live/key")?;
    // Randomness for the handshakes is passed in, like time.
    let mut client = ClientSession::new(
        ClientConfig::new(ClientMode::Publish, &url),
        now,
        &[1; RANDOM_SIZE],
    );
    let mut server = ServerSession::new(ServerConfig::default(), now, &[2; RANDOM_SIZE]);

    let mut frames = 0;
    for step in 0..50 {
        pump(&mut client, &mut server, now)?;
        while let Some(ev) = server.poll_event() {
            match ev {
                ServerEvent::ConnectRequest(p) => {
                    println!("server: connect to app '{}'", p.app);
                    server.accept_connect()?;
                }
                ServerEvent::PublishRequest {
                    stream_id, name, ..
                } => {
                    println!("server: publish '{name}' on stream {stream_id}");
                    server.accept_publish(stream_id)?;
                }
                ServerEvent::Video {
                    timestamp, payload, ..
                } => {
                    frames += 1;
                    println!("server: video at {timestamp} ms, {} bytes", payload.len());
                }
                other => println!("server: {other:?}"),
            }
        }
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::PublishStarted { .. } = ev {
                println!("client: publishing");
            }
        }
        let publishing = matches!(client.state(), ClientState::Publishing { .. });
        if publishing && step % 5 == 0 {
            // An AVC sequence header, then frames: FLV video tag bodies.
            let body = if frames == 0 {
                vec![0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e, 0xff]
            } else {
                vec![0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]
            };
            client.send_video(step * 40, &body)?;
        }
        now += Duration::from_millis(40);
        client.handle_timeout(now)?;
        server.handle_timeout(now)?;
    }
    println!("{frames} video messages went through, and no socket was opened");
    assert!(frames > 0);
    Ok(())
}
