// SPDX-License-Identifier: MPL-2.0
//! Logging in: our rtmpsink against our rtmpsrc server with Adobe and
//! Limelight authentication (over rtmp and rtmps), FFmpeg 5.1 and 9 and
//! rtmp2sink publishing with a user and password, FFmpeg, rtmp2src and our
//! rtmpsrc playing from a server that asks for one; wrong passwords fail
//! once, cleanly, with no storm of reconnections. Every stream that gets
//! through is checked frame by frame.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::player::*;
use common::server::*;
use common::*;
use gst::prelude::*;

const AV: &str = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=2 speed-preset=ultrafast key-int-max=30 ! h264parse ! SINK.video audiotestsrc num-buffers=40 ! avenc_aac ! aacparse ! SINK.audio";

const LOGIN: &str = "username=bob password=s3cret-9";

fn count(notes: &Notices, name: &str) -> usize {
    notes
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name() == name)
        .count()
}

/// Who the accept-publisher/accept-player signal was told logged in.
fn users_seen(p: &gst::Pipeline, factory: &str, signal: &'static str) -> Arc<Mutex<Vec<String>>> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    element(p, factory).connect(signal, false, move |args| {
        s2.lock().unwrap().push(args[5].get::<String>().unwrap());
        Some(true.to_value())
    });
    seen
}

#[test]
fn rtmpsink_logs_in_to_rtmpsrc_server_with_adobe_and_llnw() {
    let pki = common::pki::Pki::new();
    let tls_server = format!(
        "tls-certificate-file={} tls-key-file={}",
        pki.server.cert.display(),
        pki.server.key.display()
    );
    let ca = format!("tls-ca-file={}", pki.ca.display());
    // (server authmod, scheme, client's settings, connects refused before
    // the login: `auto` first learns the method, then gets a challenge).
    let cases = [
        ("adobe", "rtmp", "userinfo", 2),
        ("auto", "rtmp", "authmod=adobe", 1),
        ("llnw", "rtmp", "authmod=auto", 2),
        ("llnw", "rtmp", "authmod=llnw", 1),
        ("adobe", "rtmps", "userinfo", 2),
    ];
    for (server_mod, scheme, client, refused) in cases {
        init();
        let tls = if scheme == "rtmps" {
            tls_server.as_str()
        } else {
            ""
        };
        let (p, log, _, notes, port) = src_server_at(
            &format!("{scheme}://127.0.0.1:0/live/key"),
            &format!("eos-on-unpublish=true authmod={server_mod} {LOGIN} {tls}"),
        );
        let users = users_seen(&p, "rtmpsrc", "accept-publisher");
        let (location, settings) = match client {
            "userinfo" => (
                format!("{scheme}://bob:s3cret-9@localhost:{port}/live/key"),
                String::new(),
            ),
            m => (
                format!("{scheme}://localhost:{port}/live/key"),
                format!("{m} {LOGIN}"),
            ),
        };
        let tls_client = if scheme == "rtmps" { ca.as_str() } else { "" };
        let sent = publish_to_eos(&format!(
            "{} rtmpsink name=s sync=false location={location} {settings} {tls_client}",
            AV.replace("SINK", "s")
        ));
        play_to_eos(&p, Duration::from_secs(20));
        let what = format!("{server_mod} server, {scheme}, client {client}");
        same_frames(&what, &sent, &log.lock().unwrap(), true);
        assert_eq!(count(&notes, "rtmp-client-rejected"), refused, "{what}");
        let started = wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(1));
        assert_eq!(started[0].get::<&str>("user").unwrap(), "bob", "{what}");
        assert_eq!(*users.lock().unwrap(), ["bob"], "{what}");
    }
}

/// Publishes a short stream with rtmpsink and `settings`, expecting an
/// error; returns it, and how long it took.
fn publish_error(port: u16, settings: &str) -> (gst::glib::Error, Duration) {
    let p = launch(&format!(
        "videotestsrc is-live=true ! x264enc tune=zerolatency ! h264parse ! rtmpsink location=rtmp://127.0.0.1:{port}/live/key {settings}"
    ));
    let started = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error]);
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => (e.error(), started.elapsed()),
        _ => panic!("no error: {msg:?}"),
    }
}

/// Publishes a short stream with `flvmux ! rtmp2sink` and `settings`,
/// expecting an error; returns its message and debug text.
fn rtmp2sink_error(port: u16, settings: &str) -> (String, String) {
    let p = launch(&format!(
        "videotestsrc num-buffers=30 ! x264enc ! flvmux ! rtmp2sink {settings} location=rtmp://127.0.0.1:{port}/live/key"
    ));
    p.set_state(gst::State::Playing).unwrap();
    expect_error(&p, Duration::from_secs(15))
}

#[test]
fn a_wrong_password_fails_once_without_a_reconnect_storm() {
    let (p, _, _, notes, port) = src_server(&format!("authmod=adobe {LOGIN}"));
    // reconnect-attempts is -1 (for ever) by default: a refusal still ends it.
    let (e, took) = publish_error(port, "username=bob password=wrong");
    assert!(
        e.to_string()
            .contains("authentication failed: wrong user name or password for 'bob'"),
        "{e}"
    );
    assert!(e.matches(gst::ResourceError::NotAuthorized), "{e:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Need auth, challenge, failed: three connects, then nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&notes, "rtmp-client-rejected"),
        3,
        "{:?}",
        notes.lock().unwrap()
    );
    let reasons: Vec<String> = notes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.get::<String>("reason").ok())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("wrong user name or password")),
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r.contains("wrong\"") || r.contains("password="))
    );

    // No credentials: the error says what to set.
    let (e, _) = publish_error(port, "");
    assert!(e.to_string().contains("requires a login"), "{e}");
    assert!(e.to_string().contains("password"), "{e}");
    // authmod=none: never logs in.
    let (e, _) = publish_error(port, &format!("authmod=none {LOGIN}"));
    assert!(e.to_string().contains("authmod is none"), "{e}");
    // A server asking for Limelight while we insist on Adobe.
    let (llnw, _, _, _, llnw_port) = src_server(&format!("authmod=llnw {LOGIN}"));
    let (e, _) = publish_error(llnw_port, &format!("authmod=adobe {LOGIN}"));
    assert!(e.to_string().contains("asks for llnw"), "{e}");
    llnw.set_state(gst::State::Null).unwrap();
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn ffmpeg5_and_ffmpeg9_publish_with_adobe_auth() {
    needs!("ffmpeg", "ffmpeg9");
    let dir = TempDir::new("auth-ff");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let want = file_frames(&media);
    for ffmpeg in ["ffmpeg".to_owned(), require_ffmpeg9()] {
        let (p, log, _, notes, port) =
            src_server(&format!("eos-on-unpublish=true authmod=adobe {LOGIN}"));
        // FFmpeg takes the login from the URL's user information.
        let (ok, err) = ffmpeg_push(
            &ffmpeg,
            &media,
            &format!("rtmp://bob:s3cret-9@127.0.0.1:{port}/live/key"),
            false,
        );
        assert!(ok, "{ffmpeg} could not log in: {err}");
        play_to_eos(&p, Duration::from_secs(20));
        assert_same_frames(
            &format!("{ffmpeg} with Adobe auth -> rtmpsrc mode=server"),
            &frames(&log.lock().unwrap()),
            &want,
        );
        let started = wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(1));
        assert_eq!(started[0].get::<&str>("user").unwrap(), "bob");

        let (p, _, _, notes, port) = src_server(&format!("authmod=adobe {LOGIN}"));
        let (ok, _) = ffmpeg_push(
            &ffmpeg,
            &media,
            &format!("rtmp://bob:nope@127.0.0.1:{port}/live/key"),
            false,
        );
        assert!(!ok, "{ffmpeg} published with a wrong password");
        assert_eq!(count(&notes, "rtmp-client-connected"), 0);
        p.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn rtmp2sink_publishes_with_username_and_password() {
    let (p, log, _, notes, port) =
        src_server(&format!("eos-on-unpublish=true authmod=adobe {LOGIN}"));
    let desc = AV.replace("SINK", "m")
        + &format!(
            " flvmux name=m streamable=true ! rtmp2sink sync=false username=bob password=s3cret-9 location=rtmp://127.0.0.1:{port}/live/key"
        );
    let sent = publish_to_eos(&desc);
    play_to_eos(&p, Duration::from_secs(20));
    // flvmux rewrites B-frame times (see tests/rtmpsrc.rs).
    same_frames(
        "rtmp2sink with Adobe auth -> rtmpsrc mode=server",
        &sent,
        &log.lock().unwrap(),
        false,
    );
    let started = wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(1));
    assert_eq!(started[0].get::<&str>("user").unwrap(), "bob");

    let (p, _, _, notes, port) = src_server(&format!("authmod=adobe {LOGIN}"));
    let (msg, _) = rtmp2sink_error(port, "username=bob password=nope");
    assert!(
        msg.contains("auth") || msg.contains("denied") || msg.contains("ermission"),
        "{msg}"
    );
    assert_eq!(count(&notes, "rtmp-client-connected"), 0);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn players_log_in_to_rtmpsink_server() {
    needs!("ffmpeg");
    let dir = TempDir::new("auth-players");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let (p, notes, port) = sink_server(
        &file_source(&media, Tracks::AudioVideo),
        &format!("sync=false authmod=adobe {LOGIN}"),
    );
    let users = users_seen(&p, "rtmpsink", "accept-player");
    let with_login = format!("rtmp://bob:s3cret-9@127.0.0.1:{port}/live/key");
    let probe = {
        let url = with_login.clone();
        std::thread::spawn(move || ffprobe_frames(&url))
    };
    let rtmp2_out = dir.path("rtmp2src.flv");
    let rtmp2 = launch(&format!(
        "rtmp2src location=rtmp://127.0.0.1:{port}/live/key username=bob password=s3cret-9 ! filesink location={}",
        rtmp2_out.display()
    ));
    rtmp2.set_state(gst::State::Playing).unwrap();
    let (ours, ours_log, _) = player(&with_login, "");
    ours.set_state(gst::State::Playing).unwrap();
    wait_notice(&notes, "rtmp-client-connected", 3, Duration::from_secs(15));
    // A player without a login is refused.
    let (refused, _, _) = player(&format!("rtmp://127.0.0.1:{port}/live/key"), "");
    refused.set_state(gst::State::Playing).unwrap();
    let (msg, _) = expect_error(&refused, Duration::from_secs(15));
    assert!(msg.contains("requires a login"), "{msg}");

    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(30));
    let want = file_frames(&media);
    assert_same_frames(
        "FFmpeg (ffprobe) logged in, playing from rtmpsink mode=server",
        &normalized(probe.join().unwrap()),
        &want,
    );
    play_to_eos(&ours, Duration::from_secs(10));
    assert_same_frames(
        "rtmpsrc logged in, playing from rtmpsink mode=server",
        &frames(&ours_log.lock().unwrap()),
        &want,
    );
    play_to_eos(&rtmp2, Duration::from_secs(10));
    assert_same_frames(
        "rtmp2src logged in, playing from rtmpsink mode=server",
        &file_frames(&rtmp2_out),
        &want,
    );
    assert_eq!(*users.lock().unwrap(), ["bob", "bob", "bob"]);
}

const TOKEN: &str = "Wowza-5ecret";

/// The reasons the server gave in its rejection notices.
fn rejections(notes: &Notices) -> Vec<String> {
    notes
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name() == "rtmp-client-rejected")
        .filter_map(|s| s.get::<String>("reason").ok())
        .collect()
}

/// SecureToken (Wowza's, which rtmp2 answers): rtmpsrc mode=server with
/// `secure-token` challenges each publisher. rtmp2sink and rtmpsink with
/// the secret get through, every frame checked; a wrong secret is refused
/// with a reason, and without one both stop at the challenge and say why;
/// rtmpsink gives up at once either way.
#[test]
fn publishers_answer_a_secure_token() {
    // rtmp2sink behind flvmux (which rewrites B-frame times, see
    // tests/rtmpsrc.rs), and rtmpsink.
    for (sink, publisher, check_times) in [
        ("m", "flvmux name=m streamable=true ! rtmp2sink", false),
        ("s", "rtmpsink name=s", true),
    ] {
        let (p, log, _, notes, port) =
            src_server(&format!("eos-on-unpublish=true secure-token={TOKEN}"));
        let desc = AV.replace("SINK", sink)
            + &format!(
                " {publisher} sync=false secure-token={TOKEN} location=rtmp://127.0.0.1:{port}/live/key"
            );
        let sent = publish_to_eos(&desc);
        play_to_eos(&p, Duration::from_secs(20));
        same_frames(
            &format!("{publisher} answering a SecureToken -> rtmpsrc mode=server"),
            &sent,
            &log.lock().unwrap(),
            check_times,
        );
        assert_eq!(count(&notes, "rtmp-client-rejected"), 0);
        p.set_state(gst::State::Null).unwrap();
    }

    let (p, _, _, notes, port) = src_server(&format!("secure-token={TOKEN}"));
    // reconnect-attempts is -1 (for ever) by default: a refusal still ends it.
    let (e, took) = publish_error(port, "secure-token=guess");
    assert!(e.to_string().contains("SecureToken answer is wrong"), "{e}");
    assert!(e.matches(gst::ResourceError::NotAuthorized), "{e:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (e, _) = publish_error(port, "");
    assert!(e.to_string().contains("set secure-token"), "{e}");
    for settings in ["secure-token=guess", ""] {
        let (msg, debug) = rtmp2sink_error(port, settings);
        if settings.is_empty() {
            // rtmp2 stops at the challenge, as rtmpsink does.
            assert!(
                format!("{msg} {debug}").contains("secureToken"),
                "{msg}: {debug}"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // rtmpsink and rtmp2sink with a wrong secret; neither asked for a
    // stream without one (FFmpeg, which knows no SecureToken, does: see
    // the players' test).
    let reasons = rejections(&notes);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for r in &reasons {
        assert!(r.contains("SecureToken answer is wrong"), "{reasons:?}");
    }
    assert!(
        !reasons
            .iter()
            .any(|r| r.contains(TOKEN) || r.contains("guess"))
    );
    assert_eq!(count(&notes, "rtmp-client-connected"), 0);
    p.set_state(gst::State::Null).unwrap();
}

/// rtmpsink mode=server with `secure-token` challenges its players:
/// rtmp2src and rtmpsrc with the secret get every frame; FFmpeg (which
/// knows no SecureToken) and an rtmpsrc without the secret are refused.
#[test]
fn players_answer_an_rtmpsink_servers_secure_token() {
    needs!("ffmpeg");
    let dir = TempDir::new("token-players");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let (p, notes, port) = sink_server(
        &file_source(&media, Tracks::AudioVideo),
        &format!("sync=false secure-token={TOKEN}"),
    );
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let rtmp2_out = dir.path("rtmp2src.flv");
    let rtmp2 = launch(&format!(
        "rtmp2src location={url} secure-token={TOKEN} ! filesink location={}",
        rtmp2_out.display()
    ));
    rtmp2.set_state(gst::State::Playing).unwrap();
    let (ours, ours_log, _) = player(&url, &format!("secure-token={TOKEN}"));
    ours.set_state(gst::State::Playing).unwrap();
    wait_notice(&notes, "rtmp-client-connected", 2, Duration::from_secs(15));
    let (refused, _, _) = player(&url, "");
    refused.set_state(gst::State::Playing).unwrap();
    let (msg, _) = expect_error(&refused, Duration::from_secs(15));
    assert!(msg.contains("set secure-token"), "{msg}");
    refused.set_state(gst::State::Null).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-show_streams",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "FFmpeg played without answering the SecureToken"
    );
    let reasons = rejections(&notes);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("did not answer the SecureToken"),
        "{reasons:?}"
    );

    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(30));
    let want = file_frames(&media);
    play_to_eos(&ours, Duration::from_secs(10));
    assert_same_frames(
        "rtmpsrc answering a SecureToken, playing from rtmpsink mode=server",
        &frames(&ours_log.lock().unwrap()),
        &want,
    );
    play_to_eos(&rtmp2, Duration::from_secs(10));
    assert_same_frames(
        "rtmp2src answering a SecureToken, playing from rtmpsink mode=server",
        &file_frames(&rtmp2_out),
        &want,
    );
    assert_eq!(count(&notes, "rtmp-client-connected"), 2);
}
