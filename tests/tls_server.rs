// SPDX-License-Identifier: MPL-2.0
//! rtmps:// in server mode: FFmpeg 5.1 (GnuTLS), FFmpeg 9 (OpenSSL),
//! rtmp2sink (GIO) and our rtmpsink publish over TLS straight into
//! `rtmpsrc mode=server`; client certificates required and checked;
//! hostile TLS peers cut off beside a live publisher. (Players over TLS
//! from `rtmpsink mode=server`, and reconnect requests to an rtmps://
//! server: tests/server.rs.)
//! Certificates are made by the test; every frame is checked.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::player::*;
use common::server::*;
use common::*;
use gst::prelude::*;

const LISTEN: &str = "rtmps://127.0.0.1:0/live/key";

fn server_tls(pki: &Pki) -> String {
    format!(
        "tls-certificate-file={} tls-key-file={}",
        pki.server.cert.display(),
        pki.server.key.display()
    )
}

#[test]
fn ffmpeg5_and_ffmpeg9_publish_over_rtmps_into_rtmpsrc_server() {
    needs!("ffmpeg", "ffmpeg9");
    let pki = Pki::new();
    let dir = TempDir::new("tls-srv-ff");
    let media = make_flv(&dir, "in.flv", 3, Tracks::AudioVideo);
    let want = file_frames(&media);
    let ca = pki.ca.display().to_string();
    // FFmpeg 9 checks our certificate against the test CA; 5.1 (GnuTLS)
    // with its defaults, as users run it.
    for (ffmpeg, args) in [
        ("ffmpeg".to_owned(), vec![]),
        (
            require_ffmpeg9(),
            vec!["-tls_verify", "1", "-ca_file", ca.as_str()],
        ),
    ] {
        let (p, log, _, notes, port) = src_server_at(
            LISTEN,
            &format!("eos-on-unpublish=true {}", server_tls(&pki)),
        );
        let (ok, err) = ffmpeg_push_with(
            &ffmpeg,
            &media,
            &args,
            &format!("rtmps://localhost:{port}/live/key"),
            false,
        );
        assert!(ok, "{ffmpeg} could not publish over rtmps: {err}");
        play_to_eos(&p, Duration::from_secs(20));
        assert_same_frames(
            &format!("{ffmpeg} -rtmps-> rtmpsrc mode=server"),
            &frames(&log.lock().unwrap()),
            &want,
        );
        let started = wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(1));
        assert_eq!(started[0].get::<&str>("kind").unwrap(), "publisher");
    }
}

const AV: &str = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc bframes=2 speed-preset=ultrafast key-int-max=30 ! h264parse ! SINK.video audiotestsrc num-buffers=40 ! avenc_aac ! aacparse ! SINK.audio";

#[test]
fn rtmpsink_and_rtmp2sink_publish_over_rtmps_into_rtmpsrc_server() {
    let pki = Pki::new();
    let ca = pki.ca.display().to_string();
    // Ours checks the certificate against the test CA.
    let (p, log, _, notes, port) = src_server_at(
        LISTEN,
        &format!("eos-on-unpublish=true {}", server_tls(&pki)),
    );
    let sent = publish_to_eos(&format!(
        "{} rtmpsink name=s sync=false location=rtmps://localhost:{port}/live/key tls-ca-file={ca}",
        AV.replace("SINK", "s")
    ));
    play_to_eos(&p, Duration::from_secs(20));
    same_frames(
        "rtmpsink -rtmps-> rtmpsrc mode=server",
        &sent,
        &log.lock().unwrap(),
        true,
    );
    // Its FCUnpublish and deleteStream came through, before TLS's
    // close_notify (sent after them, they would be lost).
    let left = wait_notice(
        &notes,
        "rtmp-client-disconnected",
        1,
        Duration::from_secs(5),
    );
    let why = left[0].get::<String>("reason").unwrap();
    assert!(why.contains("stopped publishing"), "{why}");
    // rtmp2sink (GIO) cannot be given a CA: it checks nothing here.
    let (p, log, _, _, port) = src_server_at(
        LISTEN,
        &format!("eos-on-unpublish=true {}", server_tls(&pki)),
    );
    let sent = publish_to_eos(&format!(
        "{} flvmux name=m streamable=true ! rtmp2sink sync=false tls-validation-flags=0 location=rtmps://127.0.0.1:{port}/live/key",
        AV.replace("SINK", "m")
    ));
    play_to_eos(&p, Duration::from_secs(20));
    // flvmux rewrites B-frame times (see tests/rtmpsrc.rs).
    same_frames(
        "flvmux ! rtmp2sink -rtmps-> rtmpsrc mode=server",
        &sent,
        &log.lock().unwrap(),
        false,
    );
}

#[test]
fn client_certificates_required_in_server_mode() {
    let pki = Pki::new();
    let ca = pki.ca.display().to_string();
    let extra = format!(
        "eos-on-unpublish=true {} tls-ca-file={ca}",
        server_tls(&pki)
    );
    // With a certificate the server's CA signed: accepted, frame-exact.
    let (p, log, _, _, port) = src_server_at(LISTEN, &extra);
    let sent = publish_to_eos(&format!(
        "{} rtmpsink name=s sync=false location=rtmps://localhost:{port}/live/key tls-ca-file={ca} tls-certificate-file={} tls-key-file={}",
        AV.replace("SINK", "s"),
        pki.client.cert.display(),
        pki.client.key.display()
    ));
    play_to_eos(&p, Duration::from_secs(20));
    same_frames(
        "rtmpsink with a client certificate -> rtmpsrc mode=server",
        &sent,
        &log.lock().unwrap(),
        true,
    );
    // Without one, or with one from another CA: refused, and the server
    // says why on its bus.
    let (p, _, _, notes, port) = src_server_at(LISTEN, &extra);
    for cert in [None, Some(&pki.bad_client)] {
        let certs = cert
            .map(|c| {
                format!(
                    "tls-certificate-file={} tls-key-file={}",
                    c.cert.display(),
                    c.key.display()
                )
            })
            .unwrap_or_default();
        let pub_p = launch(&format!(
            "videotestsrc num-buffers=30 ! x264enc ! h264parse ! rtmpsink async-connect=false reconnect-attempts=0 location=rtmps://localhost:{port}/live/key tls-ca-file={ca} {certs}"
        ));
        let _ = pub_p.set_state(gst::State::Playing);
        let (msg, _) = expect_error(&pub_p, Duration::from_secs(15));
        assert!(msg.contains("certificate"), "{msg}");
    }
    let refused = wait_notice(&notes, "rtmp-client-rejected", 2, Duration::from_secs(5));
    for r in &refused {
        let why = r.get::<&str>("reason").unwrap();
        assert!(why.starts_with("TLS:"), "{why}");
        assert!(why.contains("ertificate"), "{why}");
    }
    p.set_state(gst::State::Null).unwrap();
}

/// A TLS record header: content type, TLS 1.2, length.
fn record(kind: u8, len: u16) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&len.to_be_bytes());
    r
}

/// A rustls client that completes the TLS handshake, then says nothing.
fn tls_then_silence(port: u16) -> std::net::TcpStream {
    // The certificate is not what this peer is about.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut s).unwrap();
    }
    s
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn hostile_tls_peers_are_cut_off_and_the_publisher_is_not_disturbed() {
    needs!("ffmpeg");
    let pki = Pki::new();
    let dir = TempDir::new("tls-srv-hostile");
    let media = make_flv(&dir, "in.flv", 5, Tracks::AudioVideo);
    let (p, log, _, notes, port) = src_server_at(
        LISTEN,
        &format!("eos-on-unpublish=true timeout=2 {}", server_tls(&pki)),
    );
    let good = {
        let url = format!("rtmps://localhost:{port}/live/key");
        let media = media.clone();
        std::thread::spawn(move || ffmpeg_push_with("ffmpeg", &media, &[], &url, true))
    };
    wait_notice(&notes, "rtmp-client-connected", 1, Duration::from_secs(10));
    let limit = Duration::from_secs(4);
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    // Garbage instead of a ClientHello: an HTTP request, then a plain
    // RTMP handshake.
    let mut s = connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_within(&mut s, limit), "an HTTP request");
    let mut s = connect();
    s.write_all(&[3u8; 1537]).unwrap();
    assert!(closed_within(&mut s, limit), "a plain RTMP handshake");

    // A ClientHello begun and never finished.
    let mut s = connect();
    let mut r = record(22, 512);
    r.extend_from_slice(&[1, 0, 1, 252, 3, 3]);
    s.write_all(&r).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut s, limit), "a handshake that never ends");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // Records far over TLS's limit, as fast as the socket takes them.
    let mut s = connect();
    let mut junk = record(23, 0xFFFF);
    junk.extend(std::iter::repeat_n(0xA5u8, 0xFFFF));
    let _ = s.write_all(&junk);
    assert!(closed_within(&mut s, limit), "a huge record");

    // A complete TLS handshake, then silence: the RTMP start deadline.
    let mut s = tls_then_silence(port);
    assert!(closed_within(&mut s, limit), "TLS, then nothing");

    // Renegotiation (TLS 1.2, OpenSSL's client): refused by rustls, and
    // the connection, which never speaks RTMP, is cut off in time.
    require("openssl");
    // Not -quiet: a line "R" is then s_client's renegotiate command.
    let mut ssl = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = ssl.stdin.as_mut().unwrap().write_all(b"R\n");
    // s_client ends when the server closes (stdin stays open).
    wait_child(&mut ssl, Duration::from_secs(6));

    let (ok, err) = good.join().unwrap();
    assert!(ok, "the publisher was disturbed: {err}");
    play_to_eos(&p, Duration::from_secs(20));
    assert_delivered_file("the rtmps publisher beside hostile TLS peers", &log, &media);
    let rejected = notes
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name() == "rtmp-client-rejected")
        .count();
    assert!(rejected >= 4, "{:?}", notes.lock().unwrap());
}

/// A certificate as `openssl req -x509 -subj /CN=localhost` makes it, with
/// `subjectAltName=DNS:localhost` added or not (openssl adds none by
/// itself): (certificate, key).
fn openssl_self_signed(dir: &TempDir, name: &str, alt_name: bool) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.path(&format!("{name}.pem")),
        dir.path(&format!("{name}.key")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=localhost"]);
    if alt_name {
        cmd.args(["-addext", "subjectAltName=DNS:localhost"]);
    }
    let st = cmd
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    (cert, key)
}

/// What users make for a test rig or a self-hosted ingest: `openssl req
/// -x509`, which marks the certificate as a CA (webpki alone refuses that
/// as a server's certificate). Given as tls-ca-file, it is trusted as it
/// is; its name is still checked, in its subjectAltName or, when it has
/// none (openssl's default), in its Common Name.
#[test]
fn an_openssl_self_signed_certificate_given_as_tls_ca_file() {
    require("openssl");
    let dir = TempDir::new("tls-selfsigned");
    for alt_name in [true, false] {
        let (cert, key) = openssl_self_signed(&dir, &format!("host-{alt_name}"), alt_name);
        let server = format!(
            "eos-on-unpublish=true tls-certificate-file={} tls-key-file={}",
            cert.display(),
            key.display()
        );
        let (p, log, _, _, port) = src_server_at(LISTEN, &server);
        if alt_name {
            // Without it: the error says what to do.
            let unknown = launch(&format!(
                "videotestsrc num-buffers=30 ! x264enc ! h264parse ! rtmpsink location=rtmps://localhost:{port}/live/key"
            ));
            unknown.set_state(gst::State::Playing).unwrap();
            let (msg, _) = expect_error(&unknown, Duration::from_secs(15));
            assert!(msg.contains("tls-ca-file"), "{msg}");
        }
        let sent = publish_to_eos(&format!(
            "{} rtmpsink name=s sync=false location=rtmps://localhost:{port}/live/key tls-ca-file={}",
            AV.replace("SINK", "s"),
            cert.display()
        ));
        play_to_eos(&p, Duration::from_secs(20));
        same_frames(
            &format!(
                "rtmpsink trusting an openssl self-signed certificate (subjectAltName: {alt_name})"
            ),
            &sent,
            &log.lock().unwrap(),
            true,
        );
        // Trusted as it is, but not for another name.
        let (p, _, _, _, port) = src_server_at(LISTEN, &server);
        let bad = launch(&format!(
            "videotestsrc num-buffers=30 ! x264enc ! h264parse ! rtmpsink location=rtmps://127.0.0.1:{port}/live/key tls-ca-file={}",
            cert.display()
        ));
        bad.set_state(gst::State::Playing).unwrap();
        let (msg, _) = expect_error(&bad, Duration::from_secs(15));
        assert!(msg.contains("not valid for that name"), "{msg}");
        p.set_state(gst::State::Null).unwrap();
    }
}
