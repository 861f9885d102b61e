// SPDX-License-Identifier: MPL-2.0
//! A server whose process may open fewer files than `max-clients` asks
//! for: rtmpsink mode=server says so at start, says so again when it runs
//! out, and takes the connections that waited once others close.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends the RTMP handshake's C0+C1 and waits up to `wait` for S0: whether
/// the server has taken the connection.
fn answered(mut c: &TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(1))
}

fn hello(c: &mut TcpStream) {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    c.write_all(&c0c1).unwrap();
}

#[test]
fn a_server_past_the_open_file_limit_says_so_and_takes_waiting_clients_later() {
    let Some(dir) = common::built_plugin_dir() else {
        return;
    };
    let port = common::free_port();
    // 80 files in all for the server's process: GStreamer and the pipeline
    // take some, max-clients=200 would need far more.
    let mut server = Command::new("prlimit")
        .args(["--nofile=80:80", "gst-launch-1.0"])
        .args([
            "videotestsrc",
            "is-live=true",
            "!",
            "x264enc",
            "tune=zerolatency",
        ])
        .args([
            "!",
            "h264parse",
            "!",
            "rtmpsink",
            "mode=server",
            "max-clients=200",
        ])
        .arg(format!("location=rtmp://127.0.0.1:{port}/live/key"))
        .env("GST_PLUGIN_PATH", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit and gst-launch-1.0 (util-linux, scripts/setup.sh)");
    let end = Instant::now() + Duration::from_secs(20);
    let mut clients: Vec<TcpStream> = Vec::new();
    while clients.is_empty() {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => clients.push(c),
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the server never listened: {e}"),
        }
    }
    // More connections than it can hold; each says hello.
    for _ in 0..99 {
        clients.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    for c in &mut clients {
        hello(c);
    }
    // The server answers those it took at once: wait for the first, then
    // look at each briefly.
    assert!(answered(&clients[0], Duration::from_secs(10)));
    let mut taken = vec![true];
    taken.extend(
        clients[1..]
            .iter()
            .map(|c| answered(c, Duration::from_millis(50))),
    );
    let n_taken = taken.iter().filter(|t| **t).count();
    assert!(
        n_taken > 0 && n_taken < clients.len(),
        "{n_taken} of {} connections taken",
        clients.len()
    );
    // Those that got in leave: the others are taken now.
    let mut waiting: Vec<TcpStream> = Vec::new();
    for (c, t) in clients.into_iter().zip(taken) {
        if !t {
            waiting.push(c);
        }
    }
    let end = Instant::now() + Duration::from_secs(10);
    let mut now_taken = 0;
    while now_taken == 0 && Instant::now() < end {
        now_taken = waiting
            .iter()
            .filter(|c| answered(c, Duration::from_millis(20)))
            .count();
    }
    drop(waiting);
    server.kill().ok();
    let out = server.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        now_taken > 0,
        "none of the waiting connections was taken later:\n{log}"
    );
    assert!(
        log.contains("max-clients=200 needs about 264 open files, but this process may open 80"),
        "no warning at start:\n{log}"
    );
    assert!(
        log.contains("cannot take new connections") && log.contains("ulimit"),
        "no warning when out of files:\n{log}"
    );
}
