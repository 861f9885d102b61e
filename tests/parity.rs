// SPDX-License-Identifier: MPL-2.0
//! What users of rtmp2sink and rtmp2src set, on our elements: the location
//! in parts (scheme, host, port, application, stream), async-connect on
//! rtmpsrc, peak-kbps on rtmpsink (client and server mode), and the base
//! sink's properties. Each
//! is checked by what it does: what the server was asked for, what
//! arrived, what the socket is paced at.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::player::*;
use common::server::*;
use common::*;
use gst::prelude::*;

fn url_of(e: &gst::Element) -> Option<String> {
    e.property("location")
}

#[test]
fn the_location_and_its_parts_are_one_setting() {
    init();
    for factory in ["rtmpsink", "rtmpsrc"] {
        let e = gst::ElementFactory::make(factory).build().unwrap();
        // Unset: rtmp2's defaults show, and nothing is made up.
        assert_eq!(url_of(&e), None, "{factory}");
        assert_eq!(e.property::<String>("host"), "localhost");
        assert_eq!(e.property::<i32>("port"), 1935);
        assert_eq!(e.property::<String>("application"), "live");
        assert_eq!(e.property::<String>("stream"), "myStream");

        // A whole location gives its parts.
        e.set_property(
            "location",
            "rtmps://u:p%40ss@ingest.example:4443/app/inst/key?t=1",
        );
        assert_eq!(
            glib_enum_nick(&e, "scheme"),
            "rtmps",
            "{factory}: the scheme"
        );
        assert_eq!(e.property::<String>("host"), "ingest.example");
        assert_eq!(e.property::<i32>("port"), 4443);
        assert_eq!(e.property::<String>("application"), "app/inst");
        assert_eq!(e.property::<String>("stream"), "key?t=1");

        // A part changes only itself; the credentials stay. Who watches
        // the location hears of it.
        let told: Arc<Mutex<Vec<String>>> = Arc::default();
        let t = told.clone();
        e.connect_notify(Some("location"), move |e, _| {
            t.lock().unwrap().push(url_of(e).unwrap_or_default());
        });
        e.set_property("stream", "other");
        assert_eq!(
            *told.lock().unwrap(),
            ["rtmps://u:p%40ss@ingest.example:4443/app/inst/other"]
        );
        e.set_property_from_str("scheme", "rtmp");
        assert_eq!(
            url_of(&e).as_deref(),
            Some("rtmp://u:p%40ss@ingest.example:4443/app/inst/other")
        );
        // No port given: the scheme's.
        e.set_property("location", "rtmps://h/live/k");
        assert_eq!(e.property::<i32>("port"), 443);

        // Parts alone, as with rtmp2: rtmp2's defaults fill the rest.
        let e = gst::ElementFactory::make(factory).build().unwrap();
        e.set_property("host", "10.0.0.1");
        e.set_property("stream", "abc");
        assert_eq!(url_of(&e).as_deref(), Some("rtmp://10.0.0.1/live/abc"));
        e.set_property("port", 1940i32);
        e.set_property("application", "app/inst");
        assert_eq!(
            url_of(&e).as_deref(),
            Some("rtmp://10.0.0.1:1940/app/inst/abc")
        );

        // The URI handler reads and writes the same setting.
        let h = e.dynamic_cast_ref::<gst::URIHandler>().unwrap();
        h.set_uri("rtmp://[::1]:1941/a/b").unwrap();
        assert_eq!(e.property::<String>("host"), "::1");
        e.set_property("host", "[::2]");
        assert_eq!(h.uri().as_deref(), Some("rtmp://[::2]:1941/a/b"));
        e.set_property("host", "::1");
        assert_eq!(e.property::<i32>("port"), 1941);
        assert_eq!(h.uri().as_deref(), Some("rtmp://[::1]:1941/a/b"));
        assert!(h.set_uri("http://h/a/b").is_err());
        assert_eq!(h.uri().as_deref(), Some("rtmp://[::1]:1941/a/b"));
    }
}

fn glib_enum_nick(e: &gst::Element, name: &str) -> String {
    let v = e.property_value(name);
    let (_, ev) = gst::glib::EnumValue::from_value(&v).unwrap();
    ev.nick().to_owned()
}

/// A location that does not parse reads back as given, and starting fails
/// with its reason, also after a part was set (rtmp2 would then connect
/// to its defaults, localhost, which nobody named).
#[test]
fn a_bad_location_is_reported_at_start() {
    init();
    let p = launch(&format!(
        "{} rtmpsink name=s location=rtmp:///nohost/key",
        AV.replace("SINK", "s")
    ));
    let s = p.by_name("s").unwrap();
    // The error a start gives (after what an earlier failure left on the
    // bus: the bin's own summary).
    let start_error = || {
        while p.bus().unwrap().pop().is_some() {}
        assert!(p.set_state(gst::State::Playing).is_err());
        expect_error(&p, Duration::from_secs(5)).0
    };
    assert_eq!(url_of(&s).as_deref(), Some("rtmp:///nohost/key"));
    let e = start_error();
    assert!(
        e.contains("Invalid location") && e.contains("no host"),
        "{e}"
    );
    s.set_property("port", 1940i32);
    assert_eq!(url_of(&s).as_deref(), Some("rtmp:///nohost/key"));
    let e = start_error();
    assert!(e.contains("no host"), "{e}");
    // A part is checked as a location would be.
    s.set_property("location", "rtmp://h/live/k");
    s.set_property("host", "a b");
    let e = start_error();
    assert!(e.contains("no host name"), "{e}");
    // A location that parses replaces it, and parts apply again.
    s.set_property("location", "rtmp://h/live/k");
    s.set_property("stream", "k2");
    assert_eq!(url_of(&s).as_deref(), Some("rtmp://h/live/k2"));
}

/// What a server was asked for (app, stream) by each publisher.
type Asked = Arc<Mutex<Vec<(String, String)>>>;

/// rtmpsrc mode=server for app "live", any stream, recording what each
/// publisher asked for; started, with its port.
fn server_for_any_stream() -> (gst::Pipeline, OutLog, Asked, u16) {
    let (p, log, _, _, port) = src_server_at("rtmp://127.0.0.1:0/live", "eos-on-unpublish=true");
    let asked = Asked::default();
    let a = asked.clone();
    element(&p, "rtmpsrc").connect("accept-publisher", false, move |args| {
        let app = args[1].get::<String>().unwrap();
        let stream = args[2].get::<String>().unwrap();
        a.lock().unwrap().push((app, stream));
        Some(true.to_value())
    });
    (p, log, asked, port)
}

/// The same launch line with rtmp2sink and with rtmpsink: the location in
/// parts, a stream name with a `/` in it (which a location string would
/// split into the app). Both ask for app "live", stream "sub/key", and
/// every frame arrives.
#[test]
fn an_rtmp2sink_launch_line_with_the_location_in_parts_works_with_rtmpsink() {
    needs!("ffmpeg");
    for factory in ["rtmp2sink", "rtmpsink"] {
        let (p, log, asked, port) = server_for_any_stream();
        let desc = format!(
            "{} flvmux name=m streamable=true ! {factory} sync=false host=127.0.0.1 port={port} application=live stream=sub/key",
            AV.replace("SINK", "m")
        );
        let sent = publish_to_eos(&desc);
        play_to_eos(&p, Duration::from_secs(20));
        assert_eq!(
            *asked.lock().unwrap(),
            [("live".to_owned(), "sub/key".to_owned())],
            "{factory}"
        );
        // flvmux rewrites B-frame times (see tests/rtmpsrc.rs): payloads
        // and key flags must match.
        same_frames(
            &format!("flvmux ! {factory} (location in parts) -> rtmpsrc"),
            &sent,
            &log.lock().unwrap(),
            false,
        );
    }
}

/// rtmpsrc with the parts set over another location plays what
/// rtmpsink mode=server serves: every frame of the file.
#[test]
fn rtmpsrc_plays_from_the_location_in_parts() {
    needs!("ffmpeg");
    let dir = TempDir::new("parts-play");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let (srv, notes, port) = sink_server(&file_source(&media, Tracks::AudioVideo), "sync=false");
    let (p, log, _) = player(
        "rtmps://nowhere.invalid:1/x/y",
        &format!("scheme=rtmp host=127.0.0.1 port={port} application=live stream=key"),
    );
    p.set_state(gst::State::Playing).unwrap();
    // The whole file goes out at once: the player must be there first.
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    srv.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    srv.set_state(gst::State::Null).unwrap();
    assert_delivered_file("rtmpsrc (location in parts) <- rtmpsink", &log, &media);
}

/// async-connect=false: the state change waits for the connection. With
/// no server it fails, with the reason on the bus; with one, the source
/// is playing from it when the state change returns.
#[test]
fn rtmpsrc_without_async_connect_connects_in_the_state_change() {
    needs!("ffmpeg");
    init();
    let port = free_port();
    let (p, _, _) = player(
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        "async-connect=false reconnect-attempts=0",
    );
    assert!(
        p.set_state(gst::State::Playing).is_err(),
        "the state change did not wait for the connection"
    );
    assert_said_once(&errors_now(&p), "connection refused");
    p.set_state(gst::State::Null).unwrap();

    let dir = TempDir::new("sync-connect");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let (srv, _, port) = sink_server(&file_source(&media, Tracks::AudioVideo), "sync=false");
    let (p, log, _) = player(
        &format!("rtmp://127.0.0.1:{port}/live/key"),
        "async-connect=false",
    );
    p.set_state(gst::State::Playing).unwrap();
    let stats: gst::Structure = element(&p, "rtmpsrc").property("stats");
    assert_eq!(
        stats.get::<&str>("connection-state").unwrap(),
        "playing",
        "{stats}"
    );
    srv.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    srv.set_state(gst::State::Null).unwrap();
    assert_delivered_file("rtmpsrc async-connect=false", &log, &media);
}

/// A stream much bigger than a second of the cap, pushed as fast as it
/// comes (sync=false).
const SNOW: &str = "videotestsrc pattern=snow num-buffers=90 ! video/x-raw,width=640,height=360,framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! SINK.video audiotestsrc num-buffers=120 ! avenc_aac ! aacparse ! SINK.audio";

/// Publishes SNOW with `sink_props` into rtmpsrc mode=server, watching the
/// sink's `pacing-rate` while it runs (and calling `during` once it is
/// connected); returns what was sent and got, the rates seen, the bytes
/// sent and how long it took.
fn publish_paced(
    sink_props: &str,
    during: impl FnOnce(&gst::Element) + Send + 'static,
) -> (Vec<Out>, Vec<Out>, Vec<u64>, u64, Duration) {
    let (srv, log, _, _, port) = src_server("eos-on-unpublish=true");
    let pub_p = launch(&format!(
        "{} rtmpsink name=s sync=false location=rtmp://127.0.0.1:{port}/live/key {sink_props}",
        SNOW.replace("SINK", "s")
    ));
    let sent = probe_parsers(&pub_p);
    let sink = pub_p.by_name("s").unwrap();
    let rates: Arc<Mutex<Vec<u64>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (sink, rates, done) = (sink.clone(), rates.clone(), done.clone());
        std::thread::spawn(move || {
            let mut during = Some(during);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let s: gst::Structure = sink.property("stats");
                if let Ok(r) = s.get::<u64>("pacing-rate") {
                    let mut v = rates.lock().unwrap();
                    if v.last() != Some(&r) {
                        v.push(r);
                    }
                    drop(v);
                    if let Some(f) = during.take() {
                        let sink = sink.clone();
                        std::thread::spawn(move || f(&sink));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    pub_p.set_state(gst::State::Playing).unwrap();
    let mut bytes = 0;
    let bus = pub_p.bus().unwrap();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .expect("the publish did not end within 60 s");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("publishing failed: {}", e.error()),
            _ => {
                let s: gst::Structure = sink.property("stats");
                bytes = bytes.max(s.get::<u64>("bytes-out").unwrap());
            }
        }
    }
    let took = started.elapsed();
    let s: gst::Structure = sink.property("stats");
    bytes = bytes.max(s.get::<u64>("bytes-out").unwrap());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    pub_p.set_state(gst::State::Null).unwrap();
    play_to_eos(&srv, Duration::from_secs(20));
    let got = log.lock().unwrap().clone();
    let rates = rates.lock().unwrap().clone();
    (sent.lock().unwrap().clone(), got, rates, bytes, took)
}

/// peak-kbps caps the socket's rate (Linux TCP pacing): a stream pushed
/// with sync=false takes at least its size over the cap, and all of it
/// arrives. Changed while playing, the new cap applies at once; 0 lifts it.
#[test]
fn peak_kbps_paces_the_connection() {
    needs!("ffmpeg");
    init();
    let (sent, got, rates, bytes, took) = publish_paced("peak-kbps=4000", |_| {});
    assert_eq!(rates, [500_000], "4000 kbit/s is 500000 bytes/s");
    assert!(bytes > 600_000, "the test stream is too small: {bytes}");
    // A lower bound only (a slow machine takes longer, never shorter): the
    // size over the cap, less what went before the first flush and a
    // margin for the kernel's first packets.
    let least = Duration::from_secs_f64((bytes as f64 - 200_000.0) / 500_000.0);
    assert!(
        took >= least,
        "{bytes} bytes in {took:?}, paced at 500 kB/s"
    );
    same_frames("rtmpsink peak-kbps=4000 -> rtmpsrc", &sent, &got, true);

    // While playing: 2000 kbit/s, then no cap (the stream lasts seconds at
    // these rates: each change meets flushes to apply it).
    let (sent, got, rates, _, _) = publish_paced("peak-kbps=1000", |sink| {
        sink.set_property("peak-kbps", 2000u32);
        std::thread::sleep(Duration::from_millis(200));
        sink.set_property("peak-kbps", 0u32);
    });
    assert_eq!(rates, [125_000, 250_000, 0], "the caps in force, in turn");
    same_frames(
        "rtmpsink peak-kbps changed while playing",
        &sent,
        &got,
        true,
    );
}

/// The pacing caps of the players in a server rtmpsink's `stats`
/// (bytes/s, 0: none; None for a player without one).
fn players_pacing(sink: &gst::Element) -> Vec<Option<u64>> {
    let stats: gst::Structure = sink.property("stats");
    let Ok(clients) = stats.get::<gst::Array>("clients") else {
        return Vec::new();
    };
    clients
        .iter()
        .filter_map(|c| c.get::<gst::Structure>().ok())
        .filter(|c| c.get::<&str>("kind") == Ok("player"))
        .map(|c| c.get::<u64>("pacing-rate").ok())
        .collect()
}

/// Waits up to 10 s for `players` players, each with the cap `want`.
fn wait_players_pacing(sink: &gst::Element, players: usize, want: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    while players_pacing(sink) != vec![Some(want); players] {
        assert!(
            Instant::now() < until,
            "the players' pacing stayed at {:?}, not {players} at {want}",
            players_pacing(sink)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Server mode: peak-kbps caps each player's socket, from when it connects
/// and at once when changed while it plays (0 lifts it); a stream pushed
/// with sync=false reaches the player no faster, every frame of it.
#[test]
fn peak_kbps_paces_each_player_in_server_mode() {
    needs!("ffmpeg");
    init();
    // The parsers watched before the pipeline prerolls: a probe added
    // after PAUSED can miss the first frames (sync=false, as here).
    let (srv, sent, _, url) = paused_sink_server(&SNOW.replace("SINK", "s"), "peak-kbps=1000");
    let sink = element(&srv, "rtmpsink");
    let (p, log, _) = player(&url, "");
    p.set_state(gst::State::Playing).unwrap();
    // FFmpeg (ffprobe) plays too, paced the same.
    let probe = std::thread::spawn(move || ffprobe_frames(&url));
    wait_players_pacing(&sink, 2, 125_000);
    for (kbps, rate) in [(2000u32, 250_000), (0, 0), (1000, 125_000)] {
        sink.set_property("peak-kbps", kbps);
        wait_players_pacing(&sink, 2, rate);
    }
    let started = Instant::now();
    srv.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(60));
    let took = started.elapsed();
    srv.set_state(gst::State::Null).unwrap();
    let got = log.lock().unwrap().clone();
    let bytes: u64 = got.iter().map(|o| o.size as u64).sum();
    assert!(bytes > 700_000, "the test stream is too small: {bytes}");
    // A lower bound only (a slow machine takes longer, never shorter): the
    // frames' bytes over the cap, less what Linux lets a new loopback
    // connection send at once (some 0.3-0.5 MB here, within its first ten
    // 64 KiB segments). Unpaced, this stream arrives in about 0.6 s.
    let least = Duration::from_secs_f64((bytes as f64 - 655_360.0) / 125_000.0);
    assert!(
        took >= least,
        "{bytes} bytes in {took:?}, paced at 125 kB/s"
    );
    same_frames(
        "rtmpsink mode=server peak-kbps=1000 -> rtmpsrc",
        &sent.lock().unwrap(),
        &got,
        true,
    );
    assert_same_frames(
        "rtmpsink mode=server peak-kbps=1000 -> FFmpeg (ffprobe), as rtmpsrc got them",
        &normalized(probe.join().unwrap()),
        &frames(&got),
    );
}

/// The base sink's properties rtmp2sink has reach our connection sink:
/// last-sample holds the last FLV tag sent, max-bitrate and the rest read
/// back what was set.
#[test]
fn the_base_sink_properties_work_on_rtmpsink() {
    needs!("ffmpeg");
    let (srv, log, _, _, port) = src_server("eos-on-unpublish=true");
    let p = launch(&format!(
        "{} rtmpsink name=s sync=false qos=true max-bitrate=0 render-delay=1000 throttle-time=0 processing-deadline=30000000 location=rtmp://127.0.0.1:{port}/live/key",
        AV.replace("SINK", "s")
    ));
    let sent = probe_parsers(&p);
    let s = p.by_name("s").unwrap();
    assert!(s.property::<bool>("qos"));
    assert_eq!(s.property::<u64>("render-delay"), 1000);
    assert_eq!(s.property::<u64>("processing-deadline"), 30_000_000);
    assert!(s.property::<bool>("enable-last-sample"));
    p.set_state(gst::State::Playing).unwrap();
    let end = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 30 s");
    assert!(matches!(end.view(), gst::MessageView::Eos(_)), "{end:?}");
    // Still PLAYING: the base sink keeps its last sample until it stops.
    let sample: gst::Sample = s.property("last-sample");
    let caps = sample
        .caps()
        .unwrap()
        .structure(0)
        .unwrap()
        .name()
        .to_string();
    assert_eq!(caps, "video/x-flv");
    let buf = sample.buffer().unwrap().map_readable().unwrap();
    assert!(
        matches!(buf.first(), Some(8 | 9 | 18)),
        "the last sample is an FLV tag: {:?}",
        &buf[..buf.len().min(11)]
    );
    drop(buf);
    p.set_state(gst::State::Null).unwrap();
    play_to_eos(&srv, Duration::from_secs(20));
    same_frames(
        "rtmpsink with base sink properties",
        &sent.lock().unwrap(),
        &log.lock().unwrap(),
        true,
    );
}

/// Every property of rtmp2src and rtmp2sink is one of ours too, so that a
/// launch line or a playbin `source-setup` handler written for them finds
/// it, their base classes' too.
#[test]
fn rtmp2s_properties_are_ours_too() {
    init();
    for (theirs, ours) in [("rtmp2src", "rtmpsrc"), ("rtmp2sink", "rtmpsink")] {
        let Ok(t) = gst::ElementFactory::make(theirs).build() else {
            panic!("{theirs} is not installed: run scripts/setup.sh first");
        };
        let o = gst::ElementFactory::make(ours).build().unwrap();
        // Writable there: writable here too, and of the same type (an
        // enum or flags of our own taking each of their nicks, as a launch
        // line writes them).
        let takes = |ours: &gst::glib::ParamSpec, theirs: &gst::glib::ParamSpec| {
            if !ours.flags().contains(gst::glib::ParamFlags::WRITABLE) {
                return false;
            }
            let nicks = |p: &gst::glib::ParamSpec| -> Option<Vec<String>> {
                if let Some(e) = p.downcast_ref::<gst::glib::ParamSpecEnum>() {
                    let class = e.enum_class();
                    return Some(class.values().iter().map(|v| v.nick().into()).collect());
                }
                let f = p.downcast_ref::<gst::glib::ParamSpecFlags>()?;
                let class = f.flags_class();
                Some(class.values().iter().map(|v| v.nick().into()).collect())
            };
            match (nicks(ours), nicks(theirs)) {
                (Some(ours), Some(theirs)) => theirs.iter().all(|n| ours.contains(n)),
                _ => ours.value_type() == theirs.value_type(),
            }
        };
        let lacking: Vec<String> = t
            .list_properties()
            .iter()
            .filter(|p| p.flags().contains(gst::glib::ParamFlags::WRITABLE))
            .filter(|theirs| {
                o.find_property(theirs.name())
                    .is_none_or(|p| !takes(&p, theirs))
            })
            .map(|p| p.name().to_string())
            .collect();
        assert!(
            lacking.is_empty(),
            "{theirs}'s properties that {ours} lacks: {lacking:?}"
        );
    }
}

/// librtmp's options after the URL that we cannot honour fail the start
/// with their name, as librtmp refused what it did not know; options are
/// for a client, so a server refuses them too.
#[test]
fn librtmp_options_that_cannot_be_honoured_are_reported_at_start() {
    init();
    let p = launch(&format!(
        "{} rtmpsink name=s location=rtmp://h/live/key",
        AV.replace("SINK", "s")
    ));
    let s = p.by_name("s").unwrap();
    let start_error = || {
        while p.bus().unwrap().pop().is_some() {}
        assert!(p.set_state(gst::State::Playing).is_err());
        let e = expect_error(&p, Duration::from_secs(5)).0;
        p.set_state(gst::State::Null).unwrap();
        e
    };
    for (location, says) in [
        ("rtmp://h/live/key socks=proxy:1080", "SOCKS proxy"),
        ("rtmp://h/live/key swfVfy=1", "SWF verification"),
        ("rtmp://h/live/key lve=1", "unknown option lve="),
    ] {
        s.set_property("location", location);
        // As given, since it does not parse.
        assert_eq!(url_of(&s).as_deref(), Some(location));
        let e = start_error();
        assert!(
            e.contains("Invalid location") && e.contains(says),
            "{location}: {e}"
        );
    }
    s.set_property_from_str("mode", "server");
    s.set_property("location", "rtmp://127.0.0.1:0/live/key live=1");
    let e = start_error();
    assert!(e.contains("are for client mode"), "{e}");
}
