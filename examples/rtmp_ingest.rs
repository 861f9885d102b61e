// SPDX-License-Identifier: MPL-2.0
//! Takes several publishers at once in one process, the way an ingest
//! server would: one `rtmpsrc mode=server` per port, each pad into a
//! fakesink, until every publisher has left (EOS). Counts the frames each
//! one delivered; `scripts/bench_serve.py` measures this process's CPU and
//! checks the counts.
//!
//! ```sh
//! cargo run --release --example rtmp_ingest -- 19350 19351
//! cargo run --release --example rtmp_ingest -- --props pad-queues=false 19350 19351
//! ```
//!
//! Prints one JSON line at the end: `{"publishers":[{"port":..,"video":..,"audio":..}]}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;

fn fail(why: impl std::fmt::Display) -> ! {
    eprintln!("rtmp_ingest: {why}");
    std::process::exit(1)
}

fn main() {
    let mut props = String::new();
    let mut ports = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--props" => props = args.next().unwrap_or_else(|| fail("--props needs a value")),
            p => ports.push(
                p.parse::<u16>()
                    .unwrap_or_else(|_| fail(format!("not a port: {p}"))),
            ),
        }
    }
    if ports.is_empty() {
        fail("usage: rtmp_ingest [--props \"rtmpsrc properties\"] PORT...");
    }
    gst::init().unwrap_or_else(|e| fail(e));
    gstrtmp::plugin_register_static().unwrap_or_else(|e| fail(e));

    let desc: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "rtmpsrc name=s{i} mode=server eos-on-unpublish=true {props} \
                 location=rtmp://127.0.0.1:{port}/live/key \
                 s{i}.video ! fakesink name=v{i} sync=false async=false \
                 s{i}.audio ! fakesink name=a{i} sync=false async=false"
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&desc.join(" "))
        .unwrap_or_else(|e| fail(e))
        .downcast::<gst::Pipeline>()
        .unwrap_or_else(|_| fail("not a pipeline"));
    // Frames per fakesink: video then audio, per publisher.
    let counts: Vec<Arc<AtomicU64>> = (0..ports.len() * 2).map(|_| Arc::default()).collect();
    for (i, c) in counts.iter().enumerate() {
        let name = match i % 2 {
            0 => format!("v{}", i / 2),
            _ => format!("a{}", i / 2),
        };
        let pad = pipeline
            .by_name(&name)
            .and_then(|e| e.static_pad("sink"))
            .unwrap_or_else(|| fail(format!("no {name}")));
        let c = c.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().expect("a pipeline has a bus");
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The element's own error (a port in use...) says more; it may
        // reach the bus just after the state change gives up.
        let why = bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Error],
            )
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| e.to_string());
        fail(why);
    }
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::NONE,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).ok();
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        fail(format!("{} ({:?})", e.error(), e.debug()));
    }
    let each: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "{{\"port\":{port},\"video\":{},\"audio\":{}}}",
                counts[2 * i].load(Ordering::Relaxed),
                counts[2 * i + 1].load(Ordering::Relaxed)
            )
        })
        .collect();
    println!("{{\"publishers\":[{}]}}", each.join(","));
}
