// SPDX-License-Identifier: MPL-2.0
//! Certificates made by the tests themselves: a test CA, a server
//! certificate for localhost, and the broken ones (another host's name,
//! expired, signed by a CA nobody trusts), plus client certificates for
//! mutual TLS. Nothing is fetched and nothing expires between runs.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};

use super::TempDir;

/// A certificate and its key, written out as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    pub dir: TempDir,
    /// The test CA (trusted by the tests through tls-ca-file).
    pub ca: PathBuf,
    /// localhost and 127.0.0.1, signed by the CA.
    pub server: Pem,
    /// Signed by the CA for another host's name only.
    pub wrong_host: Pem,
    /// localhost, signed by the CA, expired in 2021.
    pub expired: Pem,
    /// localhost, signed by a CA no test trusts.
    pub untrusted: Pem,
    /// localhost by its Common Name alone (no subjectAltName, as older
    /// tools and private CAs make them), signed by the CA.
    pub cn_only: Pem,
    /// A client certificate signed by the CA (mutual TLS).
    pub client: Pem,
    /// A client certificate signed by the untrusted CA.
    pub bad_client: Pem,
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = TempDir::new("pki");
        let trusted = ca("gst-rtmp test CA");
        let other = ca("nobody's CA");
        let write = |name: &str, text: String| {
            let p = dir.path(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let issue = |name: &str, sans: &[&str], by: &Ca, client: bool, expired: bool| {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            p.distinguished_name
                .push(DnType::CommonName, sans.first().copied().unwrap_or(name));
            p.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            if expired {
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2021, 1, 1);
            } else {
                p.not_before = date_time_ymd(2024, 1, 1);
                p.not_after = date_time_ymd(2099, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &by.cert, &by.key).unwrap();
            Pem {
                cert: write(&format!("{name}.pem"), cert.pem()),
                key: write(&format!("{name}.key"), key.serialize_pem()),
            }
        };
        let localhost = ["localhost", "127.0.0.1"];
        Pki {
            ca: write("ca.pem", trusted.cert.pem()),
            server: issue("server", &localhost, &trusted, false, false),
            wrong_host: issue("wrong-host", &["rtmp.example.org"], &trusted, false, false),
            expired: issue("expired", &localhost, &trusted, false, true),
            untrusted: issue("untrusted", &localhost, &other, false, false),
            cn_only: issue("localhost", &[], &trusted, false, false),
            client: issue("client", &["publisher"], &trusted, true, false),
            bad_client: issue("bad-client", &["intruder"], &other, true, false),
            dir,
        }
    }
}
