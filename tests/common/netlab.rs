// SPDX-License-Identifier: MPL-2.0
//! Test hosts in network namespaces, made and removed by the test itself:
//!
//! ```text
//!  this process  ── veth ──  [ns mid: scripts/netem.py]  ── veth ──  [ns srv: the server]
//!  10.x.y.1                     delay, loss, blackout                 10.x.y.2
//! ```
//!
//! The impairment is a small layer-2 bridge in the middle namespace rather
//! than `tc qdisc netem`: the kernels here come without sch_netem (and
//! without the tc actions that could stand in). The frames crossing are
//! the real TCP connection's, so TCP sees real losses and delays.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct NetLab {
    /// The server's namespace: run servers with `exec`.
    pub srv: String,
    mid: String,
    host_if: String,
    /// Our side of the link, and the server's address.
    pub host_addr: String,
    pub srv_addr: String,
    bridge: Child,
    control: ChildStdin,
    replies: BufReader<ChildStdout>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Turns off segmentation and checksum offloads: the bridge forwards frames
/// one by one, each no larger than the MTU and with its checksums done.
fn no_offloads(netns: Option<&str>, iface: &str) {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ethtool"]);
            c
        }
        None => Command::new("ethtool"),
    };
    let ok = c
        .args(["-K", iface, "tso", "off", "gso", "off", "gro", "off"])
        .args(["tx", "off", "rx", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ethtool -K {iface} failed: run scripts/setup.sh first");
}

impl NetLab {
    /// Builds the lab, or says why it cannot (no permission for network
    /// namespaces) and gives `None`: the caller skips its test.
    pub fn new() -> Option<NetLab> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("r{}n{n}", pid % 100_000);
        let (mid, srv) = (format!("{tag}mid"), format!("{tag}srv"));
        // Left over from a run that was killed: start clean.
        for ns in [&mid, &srv] {
            ip(&["netns", "del", ns]).ok();
        }
        if let Err(e) = ip(&["netns", "add", &mid]) {
            eprintln!(
                "SKIPPED: this test needs network namespaces (root, or CAP_NET_ADMIN), \
                 and making one failed: {e}"
            );
            return None;
        }
        super::require("ethtool");
        let net = format!("10.{}.{}", 100 + pid % 100, n % 250);
        let host_addr = format!("{net}.1");
        let srv_addr = format!("{net}.2");
        let host_if = format!("{tag}h");
        let (m1, m2, s) = (format!("{tag}a"), format!("{tag}b"), format!("{tag}s"));
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &srv])?;
            ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &m1, "netns", &mid,
            ])?;
            ip(&[
                "link", "add", &s, "netns", &srv, "type", "veth", "peer", "name", &m2, "netns",
                &mid,
            ])?;
            ip(&["addr", "add", &format!("{host_addr}/24"), "dev", &host_if])?;
            ip(&["link", "set", &host_if, "up"])?;
            ip(&[
                "-n",
                &srv,
                "addr",
                "add",
                &format!("{srv_addr}/24"),
                "dev",
                &s,
            ])?;
            ip(&["-n", &srv, "link", "set", &s, "up"])?;
            ip(&["-n", &srv, "link", "set", "lo", "up"])?;
            ip(&["-n", &mid, "link", "set", &m1, "up"])?;
            ip(&["-n", &mid, "link", "set", &m2, "up"])?;
            Ok(())
        };
        if let Err(e) = setup() {
            for ns in [&mid, &srv] {
                ip(&["netns", "del", ns]).ok();
            }
            panic!("building the network lab failed: {e}");
        }
        no_offloads(None, &host_if);
        no_offloads(Some(&srv), &s);
        no_offloads(Some(&mid), &m1);
        no_offloads(Some(&mid), &m2);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/netem.py");
        let mut bridge = Command::new("ip")
            .args(["netns", "exec", &mid, "python3", script, &m1, &m2])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scripts/netem.py");
        let control = bridge.stdin.take().unwrap();
        let mut out = BufReader::new(bridge.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).ok();
        assert_eq!(line.trim(), "ready", "netem.py did not start");
        Some(NetLab {
            srv,
            mid,
            host_if,
            host_addr,
            srv_addr,
            bridge,
            control,
            replies: out,
        })
    }

    fn command(&mut self, line: &str) {
        writeln!(self.control, "{line}").expect("netem.py is running");
        self.control.flush().ok();
    }

    /// One-way delay added in each direction.
    pub fn delay_ms(&mut self, ms: u32) {
        self.command(&format!("delay {ms}"));
    }

    /// Random loss in each direction.
    pub fn loss_percent(&mut self, pct: f64) {
        self.command(&format!("loss {pct}"));
    }

    /// Nothing crosses while on: the route is gone.
    pub fn blackout(&mut self, on: bool) {
        self.command(&format!("blackout {}", if on { "on" } else { "off" }));
    }

    /// Frames that crossed the bridge, and how many of them it dropped.
    pub fn frames(&mut self) -> (u64, u64) {
        self.command("stats");
        let mut line = String::new();
        self.replies.read_line(&mut line).expect("netem.py answers");
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["frames", f, "dropped", d] => (f.parse().unwrap(), d.parse().unwrap()),
            _ => panic!("netem.py said {line:?}"),
        }
    }

    /// A command run inside the server's namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.srv, program]);
        c
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.bridge.kill().ok();
        self.bridge.wait().ok();
        // Deleting the namespaces removes their veth ends, and with them
        // ours.
        for ns in [&self.mid, &self.srv] {
            ip(&["netns", "del", ns]).ok();
        }
        ip(&["link", "del", &self.host_if]).ok();
    }
}
