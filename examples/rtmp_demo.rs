// SPDX-License-Identifier: MPL-2.0
//! The main job: a live test pattern with audio goes through `rtmpsink` to
//! an RTMP server while `rtmpsrc` plays it back; then what was sent and
//! received is compared frame by frame, per pad, and the end-to-end latency
//! (entering rtmpsink to leaving rtmpsrc) shown.
//!
//! cargo run --release --example rtmp_demo -- rtmp://127.0.0.1:1935/live/demo [seconds] [rtmpsink properties]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstrtmp::rtmp::url::RtmpUrl;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// FNV-1a: a payload fingerprint to match frames across the network.
fn fingerprint(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Per kind (video, audio), in order: each frame's fingerprint and when it
/// was seen. Frames keep their order per kind, so the i-th sent is the
/// i-th received.
type Seen = Arc<Mutex<[Vec<(u64, Instant)>; 2]>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(location) = args.get(1) else {
        fail("usage: rtmpsink_demo rtmp://host[:port]/app/stream [seconds]")
    };
    let secs: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    // More properties, as gst-launch takes them: rtmpsink's ("sync=false"),
    // and rtmpsrc's with a prefix ("rtmpsrc.pad-queues=false").
    let (src_props, sink_props): (Vec<&str>, Vec<&str>) = args
        .get(3)
        .map_or("", String::as_str)
        .split_whitespace()
        .partition(|p| p.starts_with("rtmpsrc."));
    let sink_props = sink_props.join(" ");
    let url = RtmpUrl::parse(location).unwrap_or_else(|e| fail(e));
    gst::init().unwrap_or_else(|e| fail(e));
    gstrtmp::plugin_register_static().unwrap_or_else(|e| fail(e));

    // The player first, so that it sees the stream from its first frame.
    let received: Seen = Arc::default();
    let player = gst::Pipeline::new();
    let src = gst::ElementFactory::make("rtmpsrc")
        .property("location", location.as_str())
        .property("measure-latency", true)
        .build()
        .unwrap_or_else(|e| fail(e));
    for p in src_props {
        let Some((name, value)) = p.trim_start_matches("rtmpsrc.").split_once('=') else {
            fail(format!("not a property setting: {p}"))
        };
        if src.find_property(name).is_none() {
            fail(format!("rtmpsrc has no property '{name}'"));
        }
        src.set_property_from_str(name, value);
    }
    player.add(&src).unwrap();
    {
        let (pw, received) = (player.downgrade(), received.clone());
        src.connect_pad_added(move |_, pad| {
            let Some(p) = pw.upgrade() else { return };
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
                .unwrap();
            p.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
            let kind = usize::from(pad.name() != "video");
            let received = received.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(b) = info.buffer()
                    && let Ok(m) = b.map_readable()
                {
                    received.lock().unwrap()[kind].push((fingerprint(&m), Instant::now()));
                }
                gst::PadProbeReturn::Ok
            });
        });
    }
    player
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| fail(e));
    let end = Instant::now() + Duration::from_secs(10);
    while src
        .property::<gst::Structure>("stats")
        .get::<&str>("connection-state")
        != Ok("playing")
    {
        if Instant::now() > end {
            fail("rtmpsrc did not start playing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let desc = format!(
        "videotestsrc is-live=true pattern=ball num-buffers={} ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=veryfast bitrate=3000 key-int-max=60 ! h264parse ! s.video \
         audiotestsrc is-live=true wave=ticks num-buffers={} ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! s.audio \
         rtmpsink name=s measure-latency=true location={location} {sink_props}",
        secs * 30,
        secs * 48_000 / 1024
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap_or_else(|e| fail(e))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("s").unwrap();
    let sent: Seen = Arc::default();
    for pad in sink.sink_pads() {
        let kind = usize::from(pad.name() != "video");
        let sent = sent.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer()
                && let Ok(m) = b.map_readable()
            {
                sent.lock().unwrap()[kind].push((fingerprint(&m), Instant::now()));
            }
            gst::PadProbeReturn::Ok
        });
    }
    println!("demo: publishing a {secs} s live 720p test pattern with audio to {url}");
    pipeline
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| fail(e));
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(u64::from(secs) + 30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let stats: gst::Structure = sink.property("stats");
    pipeline.set_state(gst::State::Null).ok();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => fail(format!("{} ({:?})", e.error(), e.debug())),
        _ => fail("the pipeline did not finish in time"),
    }
    // rtmpsrc ends when the server tells it the stream ended.
    let msg = player.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let src_stats: gst::Structure = src.property("stats");
    player.set_state(gst::State::Null).ok();
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        fail(format!("rtmpsrc: {} ({:?})", e.error(), e.debug()));
    }

    let sent = sent.lock().unwrap();
    let received = received.lock().unwrap();
    let (sv, sa) = (sent[0].len(), sent[1].len());
    let (rv, ra) = (received[0].len(), received[1].len());
    let mut identical = 0;
    let mut lat: Vec<f64> = Vec::new();
    let mut per_kind: [Vec<f64>; 2] = Default::default();
    for k in 0..2 {
        for ((fs, t0), (fr, t1)) in sent[k].iter().zip(&received[k]) {
            if fs == fr {
                identical += 1;
                let ms = t1.saturating_duration_since(*t0).as_secs_f64() * 1000.0;
                lat.push(ms);
                per_kind[k].push(ms);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    for l in &mut per_kind {
        l.sort_by(f64::total_cmp);
    }
    println!(
        "rtmpsink:  sent {sv} video and {sa} audio frames ({} bytes on the wire)",
        stats.get::<u64>("bytes-out").unwrap_or(0)
    );
    println!(
        "rtmpsrc:   gave {rv} video and {ra} audio frames; {identical} of {} identical to what was sent, in order",
        sv + sa
    );
    if let (Some(first), Some(last)) = (lat.first(), lat.last()) {
        println!(
            "latency:   entering rtmpsink -> leaving rtmpsrc: median {:.1} ms, min {first:.1} ms, max {last:.1} ms",
            lat[lat.len() / 2]
        );
        let p = |l: &[f64], q: f64| {
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "           video p50 {:.1} ms, p99 {:.1} ms; audio p50 {:.1} ms, p99 {:.1} ms",
            p(&per_kind[0], 0.5),
            p(&per_kind[0], 0.99),
            p(&per_kind[1], 0.5),
            p(&per_kind[1], 0.99)
        );
    }
    // Each element's own share, from its stats (the last 1024 frames of
    // each kind).
    let inside = |s: &gst::Structure, kind: &str| {
        let ms = |q: &str| {
            s.get::<u64>(format!("{kind}-latency-{q}").as_str())
                .unwrap_or(0) as f64
                / 1e6
        };
        format!("{kind} p50 {:.2} ms, p99 {:.2} ms", ms("p50"), ms("p99"))
    };
    println!(
        "inside:    rtmpsink (pad -> socket) {}; {}",
        inside(&stats, "video"),
        inside(&stats, "audio")
    );
    println!(
        "           rtmpsrc (socket -> pad)  {}; {}",
        inside(&src_stats, "video"),
        inside(&src_stats, "audio")
    );
    if (rv, ra) != (sv, sa) || identical != sv + sa {
        fail("not everything sent arrived");
    }
    println!("demo: ok");
}
