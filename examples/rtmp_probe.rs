// SPDX-License-Identifier: MPL-2.0
//! Connects to an RTMP URL with the core's blocking client, publishes or
//! plays, and prints every event: a quick way to see what a server does.
//!
//! cargo run --example rtmp_probe -- play rtmp://host/app/stream [seconds]

use std::time::{Duration, Instant};

use gstrtmp::net::blocking::BlockingClient;
use gstrtmp::rtmp::session::{ClientConfig, ClientEvent, ClientMode};
use gstrtmp::rtmp::url::RtmpUrl;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rtmp_probe play|publish URL [seconds]");
        std::process::exit(2);
    }
    let mode = if args[1] == "publish" {
        ClientMode::Publish
    } else {
        ClientMode::Play
    };
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let url = match RtmpUrl::parse(&args[2]) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut c = match BlockingClient::open(&url, ClientConfig::new(mode, &url)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("{:?} {url}", c.session().state());
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        match c.next_event_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(Some(ClientEvent::Audio { timestamp, payload })) => {
                println!("audio ts={timestamp} {} bytes", payload.len())
            }
            Ok(Some(ClientEvent::Video { timestamp, payload })) => {
                println!("video ts={timestamp} {} bytes", payload.len())
            }
            Ok(Some(e)) => println!("{e:?}"),
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    match c.finish() {
        Ok(stats) => println!("{stats:?}"),
        Err(e) => eprintln!("error: {e}"),
    }
}
