// SPDX-License-Identifier: MPL-2.0
//! Publishes an FLV file to an RTMP server with the core's client while a
//! second client plays it back, then reports what arrived and whether every
//! frame came back byte for byte.
//!
//! cargo run --release --example core_roundtrip -- media.flv rtmp://127.0.0.1:1935/live/demo

use std::time::{Duration, Instant};

use gstrtmp::net::blocking::BlockingClient;
use gstrtmp::rtmp::amf0;
use gstrtmp::rtmp::flv::{FlvReader, FlvTag, tag_type};
use gstrtmp::rtmp::message::DataMessage;
use gstrtmp::rtmp::session::{ClientConfig, ClientEvent, ClientMode};
use gstrtmp::rtmp::url::RtmpUrl;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        fail("usage: core_roundtrip FILE.flv rtmp://host[:port]/app/stream");
    }
    let data = std::fs::read(&args[1]).unwrap_or_else(|e| fail(format!("{}: {e}", args[1])));
    let mut reader = FlvReader::new(16 << 20);
    reader.feed(&data);
    let mut tags: Vec<FlvTag> = Vec::new();
    while let Some(t) = reader.poll_tag().unwrap_or_else(|e| fail(e)) {
        tags.push(t);
    }
    let url = RtmpUrl::parse(&args[2]).unwrap_or_else(|e| fail(e));

    // The player first, so that it sees the stream from its first frame.
    let mut player = BlockingClient::open(&url, ClientConfig::new(ClientMode::Play, &url))
        .unwrap_or_else(|e| fail(e));
    println!("player:    playing {url}");
    let publish_url = url.clone();
    let to_send = tags.clone();
    let publisher = std::thread::spawn(move || -> gstrtmp::rtmp::Result<(u64, Duration)> {
        let mut c = BlockingClient::open(
            &publish_url,
            ClientConfig::new(ClientMode::Publish, &publish_url),
        )?;
        let start = Instant::now();
        for t in &to_send {
            match t.tag_type {
                tag_type::SCRIPT => {
                    let v = amf0::decode_all(&t.data, &Default::default())?;
                    if v.len() > 1 {
                        c.send_data(
                            t.timestamp,
                            &DataMessage::SetDataFrame {
                                name: "onMetaData".into(),
                                value: v[1].clone(),
                            },
                        )?;
                    }
                }
                tag_type::AUDIO => c.send_audio(t.timestamp, &t.data)?,
                _ => c.send_video(t.timestamp, &t.data)?,
            }
        }
        let stats = c.finish()?;
        Ok((stats.bytes_out, start.elapsed()))
    });

    let mut got: Vec<(u8, u32, bytes::Bytes)> = Vec::new();
    let mut ended = String::from("server closed the connection");
    loop {
        match player.next_event_timeout(Duration::from_secs(10)) {
            Ok(Some(ClientEvent::Audio { timestamp, payload })) => {
                got.push((tag_type::AUDIO, timestamp, payload))
            }
            Ok(Some(ClientEvent::Video { timestamp, payload })) => {
                got.push((tag_type::VIDEO, timestamp, payload))
            }
            Ok(Some(ClientEvent::StreamEnded { reason })) => {
                ended = reason;
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => fail(format!("player: {e}")),
        }
    }
    let (sent, took) = publisher
        .join()
        .unwrap()
        .unwrap_or_else(|e| fail(format!("publisher: {e}")));
    let pstats = player.finish().unwrap_or_else(|e| fail(e));
    println!(
        "publisher: sent {} tags, {} bytes in {:.0} ms ({:.0} Mbit/s)",
        tags.len(),
        sent,
        took.as_secs_f64() * 1000.0,
        sent as f64 * 8.0 / took.as_secs_f64().max(1e-6) / 1e6
    );
    println!(
        "player:    stream ended ({ended}); received {} bytes",
        pstats.bytes_in
    );

    let mut ok = true;
    for (kind, name) in [(tag_type::VIDEO, "video"), (tag_type::AUDIO, "audio")] {
        let want: Vec<_> = tags
            .iter()
            .filter(|t| t.tag_type == kind)
            .map(|t| (t.timestamp, &t.data))
            .collect();
        let have: Vec<_> = got
            .iter()
            .filter(|g| g.0 == kind)
            .map(|g| (g.1, &g.2))
            .collect();
        let same = want.len() == have.len()
            && want
                .iter()
                .zip(&have)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1);
        ok &= same;
        println!(
            "{name:>9}: sent {:>5}, received {:>5}, {}",
            want.len(),
            have.len(),
            if same {
                "all identical (payload and timestamp)"
            } else {
                "MISMATCH"
            }
        );
    }
    if !ok {
        std::process::exit(1);
    }
}
