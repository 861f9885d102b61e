// SPDX-License-Identifier: MPL-2.0
//! The stream key, a password and the tokens in a location's query never
//! appear in our debug log, at any level, while the token still reaches
//! the server untouched. (A test binary of its own: it turns logging up for
//! the whole process.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

#[test]
fn stream_key_stays_out_of_the_log() {
    needs!("nginx");
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
    let key = "topsecret0key0123?token=tok0secret0";
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
    {
        let seen = seen.lock().unwrap();
        let ours: Vec<&String> = seen.iter().filter(|l| l.starts_with("rtmp")).collect();
        assert!(
            ours.iter().any(|l| l.contains("publishing to")),
            "the log was not captured: {} lines",
            ours.len()
        );
    }
    // nginx got the name with its token, as given.
    let log = nginx.error_log();
    assert!(log.contains("args='token=tok0secret0'"), "{log}");

    // A login (Adobe, against our own server) and a token in the
    // application's query: neither password nor token is logged.
    let server = launch(
        "rtmpsrc name=srv mode=server location=rtmp://127.0.0.1:0/live username=bob password=pass0word0 eos-on-unpublish=true ! fakesink",
    );
    if server.set_state(gst::State::Playing).is_err() {
        let m = server
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error]);
        panic!("the server did not start: {m:?}");
    }
    let srv = server.by_name("srv").unwrap();
    let queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let q2 = queries.clone();
    srv.connect("accept-publisher", false, move |args| {
        q2.lock().unwrap().push(args[4].get::<String>().unwrap());
        Some(true.to_value())
    });
    let location: String = srv.property("location");
    let port = gstrtmp::rtmp::url::RtmpUrl::parse(&location)
        .unwrap()
        .port();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=10 ! x264enc speed-preset=ultrafast ! h264parse ! rtmpsink sync=false location=rtmp://bob:pass0word0@127.0.0.1:{port}/live?apptok=app0secret0/stream0key0?token=tok0secret0"
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    server.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            msg.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{msg:?}"
    );
    assert_eq!(*queries.lock().unwrap(), ["token=tok0secret0"]);

    std::thread::sleep(Duration::from_millis(100));
    let seen = seen.lock().unwrap();
    let ours: Vec<&String> = seen.iter().filter(|l| l.starts_with("rtmp")).collect();
    let leaks: Vec<&&String> = ours
        .iter()
        .filter(|l| {
            ["0key0", "0secret0", "0word0"]
                .iter()
                .any(|secret| l.contains(secret))
        })
        .collect();
    assert!(leaks.is_empty(), "a secret leaked into the log: {leaks:?}");
}
