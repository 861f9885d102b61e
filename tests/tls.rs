// SPDX-License-Identifier: MPL-2.0
//! rtmps:// as a client: rtmpsink and rtmpsrc through nginx-rtmp behind
//! nginx's stream module terminating TLS (the usual RTMPS ingest set-up),
//! against `ffmpeg -listen 1` over TLS, and through playbin; certificate
//! failures (wrong host, expired, unknown issuer) each with their own
//! error, tls-validation-flags letting each through, mutual TLS, and a
//! handshake that never finishes. Certificates are made by the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::player::*;
use common::*;
use gst::prelude::*;

const AV: &str = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=2 speed-preset=ultrafast key-int-max=30 ! h264parse ! s.video audiotestsrc num-buffers=40 ! avenc_aac ! aacparse ! s.audio";

fn front(cert: &common::pki::Pem) -> TlsFront<'_> {
    TlsFront {
        cert,
        client_ca: None,
    }
}

#[test]
fn publish_and_play_over_rtmps_through_nginx_tls_termination() {
    needs!("nginx");
    init();
    let pki = Pki::new();
    let nginx = Nginx::start_tls("", &[front(&pki.server)]);
    let url = nginx.rtmps_url(0, "tlskey");
    let ca = pki.ca.display().to_string();
    let (p, log, caps) = player(&url, &format!("tls-ca-file={ca}"));
    p.set_state(gst::State::Playing).unwrap();
    nginx.wait_player("tlskey");
    let sent = publish_to_eos(&format!(
        "{AV} rtmpsink name=s sync=false location={url} tls-ca-file={ca}"
    ));
    play_to_eos(&p, Duration::from_secs(20));
    same_frames(
        "rtmpsink -rtmps-> nginx -rtmps-> rtmpsrc",
        &sent,
        &log.lock().unwrap(),
        true,
    );
    assert_eq!(sent.iter().filter(|o| o.video).count(), 60);
    assert!(caps.lock().unwrap().len() >= 2, "caps on both pads");
    // nginx saw both over its TLS front: its RTMP side logged a publish
    // and a play from the proxy (a line each as the session closes).
    p.set_state(gst::State::Null).unwrap();
    let access = nginx.access_log_with(
        &["PUBLISH \"live\" \"tlskey\"", "PLAY \"live\" \"tlskey\""],
        Duration::from_secs(10),
    );
    assert!(access.contains("PUBLISH \"live\" \"tlskey\""), "{access}");
    assert!(access.contains("PLAY \"live\" \"tlskey\""), "{access}");
}

/// Plays `url` with rtmpsrc and `extra` properties, expecting an error;
/// returns its message and debug text.
fn play_error(url: &str, extra: &str) -> (String, String) {
    let (p, _, _) = player(url, extra);
    p.set_state(gst::State::Playing).unwrap();
    let r = expect_error(&p, Duration::from_secs(15));
    p.set_state(gst::State::Null).unwrap();
    r
}

/// Plays `url` until the stream is there (the publisher is live), then
/// stops: the TLS session and RTMP play were accepted.
fn plays(url: &str, extra: &str) {
    let (p, log, _) = player(url, extra);
    p.set_state(gst::State::Playing).unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while log.lock().unwrap().len() < 10 {
        if let Some(m) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
            panic!("{url} with {extra}: {m:?}");
        }
        assert!(Instant::now() < end, "{url} with {extra}: nothing played");
        std::thread::sleep(Duration::from_millis(20));
    }
    // stats say what TLS was agreed on.
    let src = p
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "rtmpsrc"))
        .unwrap();
    let stats: gst::Structure = src.property("stats");
    let tls = stats.get::<String>("tls").unwrap();
    assert!(tls.starts_with("TLSv1_"), "{stats}");
    p.set_state(gst::State::Null).unwrap();
}

/// A live publisher on `nginx`'s plain port for the certificate tests.
fn live_publisher(nginx: &Nginx, stream: &str) -> gst::Pipeline {
    let p = launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse ! rtmpsink location={}",
        nginx.url(stream)
    ));
    p.set_state(gst::State::Playing).unwrap();
    p
}

#[test]
fn certificate_failures_name_their_cause() {
    needs!("nginx");
    init();
    let pki = Pki::new();
    let nginx = Nginx::start_tls(
        "",
        &[
            front(&pki.server),
            front(&pki.wrong_host),
            front(&pki.expired),
            front(&pki.untrusted),
            front(&pki.cn_only),
        ],
    );
    let publisher = live_publisher(&nginx, "certs");
    let ca = format!("tls-ca-file={}", pki.ca.display());

    // The good one, to show the set-up works.
    plays(&nginx.rtmps_url(0, "certs"), &ca);

    // Unknown issuer: the system store does not know the test CA.
    let (msg, _) = play_error(&nginx.rtmps_url(0, "certs"), "");
    assert!(msg.contains("unknown issuer"), "{msg}");
    assert!(msg.contains("tls-ca-file"), "{msg}");

    // Wrong host: the names the certificate holds are in the error.
    let (msg, _) = play_error(&nginx.rtmps_url(1, "certs"), &ca);
    assert!(msg.contains("not valid for that name"), "{msg}");
    assert!(msg.contains("rtmp.example.org"), "{msg}");
    assert!(msg.contains("bad-identity"), "{msg}");

    // Expired: when.
    let (msg, _) = play_error(&nginx.rtmps_url(2, "certs"), &ca);
    assert!(msg.contains("expired on 2021-01-01"), "{msg}");

    // Signed by a CA nobody trusts, even with ours added.
    let (msg, _) = play_error(&nginx.rtmps_url(3, "certs"), &ca);
    assert!(msg.contains("unknown issuer"), "{msg}");

    // Each lets through only what tls-validation-flags leaves out.
    plays(
        &nginx.rtmps_url(1, "certs"),
        &format!(
            "{ca} tls-validation-flags=unknown-ca+not-activated+expired+revoked+insecure+generic-error"
        ),
    );
    plays(
        &nginx.rtmps_url(2, "certs"),
        &format!(
            "{ca} tls-validation-flags=unknown-ca+bad-identity+not-activated+revoked+insecure+generic-error"
        ),
    );
    plays(
        &nginx.rtmps_url(3, "certs"),
        "tls-validation-flags=bad-identity+not-activated+expired+revoked+insecure+generic-error",
    );
    // Leaving one problem out does not hide another: the wrong host
    // still fails with expired and unknown-ca let through.
    let (msg, _) = play_error(
        &nginx.rtmps_url(1, "certs"),
        "tls-validation-flags=bad-identity",
    );
    assert!(msg.contains("not valid for that name"), "{msg}");
    // A certificate with no subjectAltName is for the host its Common
    // Name says, as OpenSSL and GnuTLS take it (FFmpeg, rtmp2 through
    // GIO); webpki alone refused it.
    plays(&nginx.rtmps_url(4, "certs"), &ca);
    let (msg, _) = play_error(
        &nginx
            .rtmps_url(4, "certs")
            .replace("localhost", "127.0.0.1"),
        &ca,
    );
    assert!(msg.contains("not valid for that name"), "{msg}");
    // 0 accepts anything (tests only).
    plays(&nginx.rtmps_url(3, "certs"), "tls-validation-flags=0");

    // rtmps:// to a plain RTMP port says so.
    let (msg, _) = play_error(
        &format!("rtmps://localhost:{}/live/certs", nginx.port),
        &format!("{ca} timeout=3"),
    );
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(msg.contains("rtmps://"), "{msg}");
    publisher.set_state(gst::State::Null).unwrap();
}

#[test]
fn mutual_tls_accepted_and_refused() {
    needs!("nginx");
    init();
    let pki = Pki::new();
    let nginx = Nginx::start_tls(
        "",
        &[TlsFront {
            cert: &pki.server,
            client_ca: Some(&pki.ca),
        }],
    );
    let publisher = live_publisher(&nginx, "mtls");
    let ca = format!("tls-ca-file={}", pki.ca.display());
    let url = nginx.rtmps_url(0, "mtls");
    plays(
        &url,
        &format!(
            "{ca} tls-certificate-file={} tls-key-file={}",
            pki.client.cert.display(),
            pki.client.key.display()
        ),
    );
    // nginx (TLS 1.3) completes the handshake without a certificate, then
    // hangs up: the error says a client certificate is what is missing.
    let (msg, _) = play_error(&url, &ca);
    assert!(msg.contains("client certificate"), "{msg}");
    let (msg, _) = play_error(
        &url,
        &format!(
            "{ca} tls-certificate-file={} tls-key-file={}",
            pki.bad_client.cert.display(),
            pki.bad_client.key.display()
        ),
    );
    assert!(msg.contains("client certificate"), "{msg}");
    // A key that is not the certificate's: caught before connecting.
    let (msg, _) = play_error(
        &url,
        &format!(
            "{ca} tls-certificate-file={} tls-key-file={}",
            pki.client.cert.display(),
            pki.bad_client.key.display()
        ),
    );
    assert!(msg.contains("do not go together"), "{msg}");
    publisher.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_stalled_tls_handshake_obeys_timeout() {
    init();
    // Accepts and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h2.lock().unwrap().push(s);
        }
    });
    let started = Instant::now();
    let (msg, _) = play_error(&format!("rtmps://localhost:{port}/live/key"), "timeout=2");
    let took = started.elapsed();
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(msg.contains("within 2 s"), "{msg}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// FFmpeg's one-shot server (`-listen 1`) refuses rtmps:// in both 5.1
/// and 9 ("rtmp_listen not available for rtmps"), so nginx's stream module
/// terminates TLS in front of it: FFmpeg's server quirks, over TLS.
#[test]
fn plays_from_ffmpeg_listen_over_rtmps() {
    needs!("nginx", "ffmpeg");
    init();
    let pki = Pki::new();
    let dir = TempDir::new("tls-fflisten");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let (mut ff, err, port) = ffmpeg_listen(&media);
    let proxy = TlsProxy::start(&pki.server, port);
    let (p, log, _) = player(
        &format!("rtmps://localhost:{}/live/key", proxy.port),
        &format!("eos-on-disconnect=true tls-ca-file={}", pki.ca.display()),
    );
    p.set_state(gst::State::Playing).unwrap();
    play_to_eos(&p, Duration::from_secs(20));
    wait_child(&mut ff, Duration::from_secs(10));
    assert_delivered_file(
        &format!(
            "rtmpsrc from ffmpeg -listen over rtmps (ffmpeg said: {})",
            err.join().unwrap()
        ),
        &log,
        &media,
    );
}

#[test]
fn playbin_plays_rtmps_uris_with_rtmpsrc() {
    needs!("nginx", "ffmpeg");
    init();
    let pki = Pki::new();
    let dir = TempDir::new("tls-playbin");
    let media = make_flv(&dir, "in.flv", 2, Tracks::AudioVideo);
    let nginx = Nginx::start_tls("", &[front(&pki.server)]);
    let want = decoded_counts(&media);
    for factory in ["playbin", "playbin3"] {
        let uri = nginx.rtmps_url(0, factory);
        let ca = pki.ca.display().to_string();
        let (p, source, decoded) = playbin_with_source(factory, &uri, move |src| {
            src.set_property("tls-ca-file", &ca)
        });
        p.set_state(gst::State::Playing).unwrap();
        nginx.wait_player(factory);
        ffmpeg_publish(&media, &nginx.url(factory));
        assert_played_by_rtmpsrc(&p, &source, &decoded, want, factory);
    }
}
