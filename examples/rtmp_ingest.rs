// SPDX-License-Identifier: MPL-2.0
//! Takes several publishers at once in one process, the way an ingest
//! server would: one `rtmpsrc mode=server` per port, each pad into a
//! fakesink, until every publisher has left (EOS). Counts the frames each
//! one delivered, as its fakesinks' own statistics give them (`rendered`:
//! a buffer a sink dropped is not counted), not with a pad probe, which
//! would add its own cost to every frame (some 0.7 k instructions, which
//! nginx-rtmp, the comparison, does not pay); `scripts/bench_serve.py`
//! measures this process's CPU and checks the counts.
//!
//! ```sh
//! cargo run --release --example rtmp_ingest -- 19350 19351
//! cargo run --release --example rtmp_ingest -- --props pad-queues=false 19350 19351
//! ```
//!
//! Prints one JSON line at the end: `{"publishers":[{"port":..,"video":..,"audio":..}]}`.

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
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        fail(format!("{} ({:?})", e.error(), e.debug()));
    }
    // What each fakesink rendered (a buffer it dropped is not delivered).
    let rendered = |name: String| {
        pipeline
            .by_name(&name)
            .unwrap_or_else(|| fail(format!("no {name}")))
            .property::<gst::Structure>("stats")
            .get::<u64>("rendered")
            .unwrap_or_else(|e| fail(format!("{name}: {e}")))
    };
    let each: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "{{\"port\":{port},\"video\":{},\"audio\":{}}}",
                rendered(format!("v{i}")),
                rendered(format!("a{i}"))
            )
        })
        .collect();
    pipeline.set_state(gst::State::Null).ok();
    println!("{{\"publishers\":[{}]}}", each.join(","));
}
