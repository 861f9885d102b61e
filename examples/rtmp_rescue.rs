// SPDX-License-Identifier: MPL-2.0
//! How long a stream stops when a downstream holds one of rtmpsrc's
//! direct pushes (a muxer waiting on another pad, a sink on its clock):
//! the time until the connection's thread takes the publisher over and
//! the held element's other pad gets data again.
//!
//! Each round, in one process: a live H.264 + AAC publisher (rtmpsink)
//! into `rtmpsrc mode=server`, each pad into a fakesink. Once the video
//! pad gets direct pushes (after a warm-up, 3 s unless `--warm-up SECS`
//! says otherwise), one of them is held until audio
//! comes again on that element; the round's figure is how long that took.
//! With `--context`, two rtmpsrc in one context, each with its publisher:
//! the held push stops the context's thread, and the figure is how long
//! the other element's audio stopped too.
//!
//! ```sh
//! cargo run --release --example rtmp_rescue -- 9
//! cargo run --release --example rtmp_rescue -- --context 9
//! cargo run --release --example rtmp_rescue -- --warm-up 10 9
//! ```
//!
//! Prints each round's stop, then the median and the largest, in ms.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn fail(why: impl std::fmt::Display) -> ! {
    eprintln!("rtmp_rescue: {why}");
    std::process::exit(1)
}

const PUBLISH: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
    x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video \
    audiotestsrc is-live=true samplesperbuffer=1024 ! avenc_aac ! aacparse ! s.audio \
    rtmpsink name=s location=URL";

/// A round that sees no audio for this long failed.
const GIVE_UP: Duration = Duration::from_secs(20);

/// What the probes of one round share.
#[derive(Default)]
struct Round {
    /// The video pad's own (queue) thread: the first to push on it.
    own: Option<std::thread::ThreadId>,
    /// When a direct push was held.
    held_at: Option<Instant>,
    /// When audio came again after that, on the element watched.
    audio_again: Option<Instant>,
}

type Shared = Arc<(Mutex<Round>, Condvar)>;

/// An rtmpsrc listening on a free port, each pad into a fakesink.
fn source(p: &gst::Pipeline, props: &str) -> (gst::Element, u16) {
    let bin = gst::parse::bin_from_description(
        &format!(
            "rtmpsrc name=src mode=server {props} location=rtmp://127.0.0.1:0/live/key \
             src.video ! fakesink name=v sync=false async=false \
             src.audio ! fakesink name=a sync=false async=false"
        ),
        false,
    )
    .unwrap_or_else(|e| fail(e));
    p.add(&bin).unwrap_or_else(|e| fail(e));
    let src = bin.by_name("src").unwrap_or_else(|| fail("no rtmpsrc"));
    bin.set_state(gst::State::Playing)
        .unwrap_or_else(|e| fail(e));
    let location: String = src.property("location");
    let port = location
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| fail(format!("no port in {location}")));
    (bin.upcast(), port)
}

fn sink_pad(bin: &gst::Element, name: &str) -> gst::Pad {
    bin.downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name(name))
        .and_then(|e| e.static_pad("sink"))
        .unwrap_or_else(|| fail(format!("no {name}")))
}

/// Holds the first direct video push after the warm-up until `round`
/// sees audio again.
fn hold_video(bin: &gst::Element, round: &Shared, start: Instant, warm_up: Duration) {
    let r = round.clone();
    sink_pad(bin, "v").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let (state, cond) = &*r;
        let mut st = state.lock().unwrap();
        let me = std::thread::current().id();
        if *st.own.get_or_insert(me) == me || st.held_at.is_some() || start.elapsed() < warm_up {
            return gst::PadProbeReturn::Ok;
        }
        st.held_at = Some(Instant::now());
        let _ = cond
            .wait_timeout_while(st, GIVE_UP, |s| s.audio_again.is_none())
            .unwrap();
        gst::PadProbeReturn::Ok
    });
}

/// Notes the first audio on `bin` after the hold began.
fn watch_audio(bin: &gst::Element, round: &Shared) {
    let r = round.clone();
    sink_pad(bin, "a").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let (state, cond) = &*r;
        let mut st = state.lock().unwrap();
        if st.held_at.is_some() && st.audio_again.is_none() {
            st.audio_again = Some(Instant::now());
            cond.notify_all();
        }
        gst::PadProbeReturn::Ok
    });
}

/// One round: how long audio stopped, in ms.
fn round(context: bool, warm_up: Duration) -> f64 {
    let p = gst::Pipeline::new();
    let props = match context {
        true => "context=rescue",
        false => "",
    };
    let shared: Shared = Arc::default();
    let start = Instant::now();
    let (held, held_port) = source(&p, props);
    hold_video(&held, &shared, start, warm_up);
    let mut ports = vec![held_port];
    match context {
        true => {
            let (other, port) = source(&p, props);
            watch_audio(&other, &shared);
            ports.push(port);
        }
        false => watch_audio(&held, &shared),
    }
    p.set_state(gst::State::Playing).unwrap_or_else(|e| fail(e));
    let publishers: Vec<gst::Element> = ports
        .iter()
        .map(|port| {
            let desc = PUBLISH.replace("URL", &format!("rtmp://127.0.0.1:{port}/live/key"));
            let pp = gst::parse::launch(&desc).unwrap_or_else(|e| fail(e));
            pp.set_state(gst::State::Playing)
                .unwrap_or_else(|e| fail(e));
            pp
        })
        .collect();
    let (state, cond) = &*shared;
    let st = cond
        .wait_timeout_while(state.lock().unwrap(), warm_up + GIVE_UP, |s| {
            s.audio_again.is_none()
        })
        .unwrap()
        .0;
    let stop = match (st.held_at, st.audio_again) {
        (Some(h), Some(a)) => a.duration_since(h).as_secs_f64() * 1000.0,
        (None, _) => fail("no direct video push was held (no direct pushes?)"),
        (Some(_), None) => fail("audio never came again: the held push was not rescued"),
    };
    drop(st);
    for pp in publishers {
        pp.set_state(gst::State::Null).ok();
    }
    p.set_state(gst::State::Null).ok();
    stop
}

fn main() {
    let mut context = false;
    let mut rounds = 5usize;
    let mut warm_up = Duration::from_secs(3);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--context" => context = true,
            "--warm-up" => {
                let secs = args.next().and_then(|s| s.parse().ok());
                warm_up =
                    Duration::from_secs(secs.unwrap_or_else(|| fail("--warm-up needs seconds")));
            }
            n => {
                rounds = n
                    .parse()
                    .unwrap_or_else(|_| fail(format!("not a count: {n}")))
            }
        }
    }
    if rounds == 0 {
        fail("usage: rtmp_rescue [--context] [--warm-up SECS] ROUNDS (at least 1)");
    }
    gst::init().unwrap_or_else(|e| fail(e));
    gstrtmp::plugin_register_static().unwrap_or_else(|e| fail(e));
    let mut stops: Vec<f64> = (0..rounds)
        .map(|i| {
            let ms = round(context, warm_up);
            println!("round {}: audio stopped for {ms:.0} ms", i + 1);
            ms
        })
        .collect();
    stops.sort_by(f64::total_cmp);
    let what = match context {
        true => "the other element of the context",
        false => "the held element",
    };
    println!(
        "a held direct video push after {} s: {what}'s audio stopped for {:.0} ms median, {:.0} ms at most ({rounds} rounds)",
        warm_up.as_secs(),
        stops[stops.len() / 2],
        stops[stops.len() - 1]
    );
}
