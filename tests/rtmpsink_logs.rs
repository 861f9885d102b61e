//! The stream key never appears in rtmpsink's debug log, at any level.
//! (A test binary of its own: it turns logging up for the whole process.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

#[test]
fn stream_key_stays_out_of_the_log() {
    gst::init().unwrap();
    gstrtmp::plugin_register_static().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    gst::log::set_active(true);
    gst::log::set_threshold_from_string("rtmp*:9", true);
    gst::log::add_log_function(move |cat, _level, _file, _func, _line, obj, msg| {
        let text = format!(
            "{} {:?} {}",
            cat.name(),
            obj.map(|o| o.to_string()),
            msg.get().map(|m| m.to_string()).unwrap_or_default()
        );
        s2.lock().unwrap().push(text);
    });
    let nginx = Nginx::start("");
    let key = "topsecret0key0123";
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=10 ! x264enc speed-preset=ultrafast ! h264parse ! rtmpsink sync=false location={}",
        nginx.url(key)
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            msg.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{msg:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    let seen = seen.lock().unwrap();
    let ours: Vec<&String> = seen.iter().filter(|l| l.starts_with("rtmp")).collect();
    assert!(
        ours.iter().any(|l| l.contains("publishing to")),
        "the log was not captured: {} lines",
        ours.len()
    );
    let leaks: Vec<&&String> = ours
        .iter()
        .filter(|l| l.contains(key) || l.contains("0key0"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the stream key leaked into the log: {leaks:?}"
    );
}
