// SPDX-License-Identifier: MPL-2.0
//! TLS for `rtmps://`: a stage between the socket and the RTMP core.
//!
//! rustls is itself sans-IO (ciphertext in, plaintext out, records to
//! send), so each driver passes what it reads through [`decrypt`] before the
//! session sees it, and hands the session's output to rustls before the
//! socket does; the core never knows. Certificates are checked against the
//! system's trust store (`rustls-platform-verifier`) plus any CA file the
//! user names, with GIO's `GTlsCertificateFlags` choosing which failures
//! count, as rtmp2 and every GIO-based element do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ConnectionCommon, DigitallySignedStruct, RootCertStore};

use crate::rtmp::error::{Error, ErrorKind, Result};

/// `GTlsCertificateFlags` bits: which certificate problems fail the
/// connection. The values are GIO's, so that `tls-validation-flags` means
/// what it means on rtmp2src, souphttpsrc and every other GIO element.
pub mod flags {
    pub const UNKNOWN_CA: u32 = 1 << 0;
    pub const BAD_IDENTITY: u32 = 1 << 1;
    pub const NOT_ACTIVATED: u32 = 1 << 2;
    pub const EXPIRED: u32 = 1 << 3;
    pub const REVOKED: u32 = 1 << 4;
    pub const INSECURE: u32 = 1 << 5;
    pub const GENERIC_ERROR: u32 = 1 << 6;
    pub const VALIDATE_ALL: u32 = 0x7f;
}

/// What the elements' `tls-*` properties say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Client: which certificate problems fail the connection
    /// ([`flags`]); 0 accepts any certificate.
    pub validation_flags: u32,
    /// Client: CA certificates (PEM) trusted beside the system's. Server:
    /// the CAs client certificates must chain to; setting it makes a client
    /// certificate required.
    pub ca_file: Option<PathBuf>,
    /// Server: our certificate chain (PEM). Client: a client certificate
    /// for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            validation_flags: flags::VALIDATE_ALL,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Fills `out` from the system's secure random source (the same provider
/// TLS uses), for what must not be guessed (a SecureToken challenge); false
/// if the source failed.
pub(crate) fn secure_random(out: &mut [u8]) -> bool {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(out)
        .is_ok()
}

fn config_error(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported, why.into())
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(format!("could not read {what} {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| config_error(format!("{what} {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "{what} {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        config_error(format!(
            "could not read a private key from {} (PEM, PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        ))
    })
}

fn roots_from(certs: Vec<CertificateDer<'static>>, path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| {
            config_error(format!(
                "a certificate in {} cannot be a trust anchor: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The client side's rustls configuration for these settings.
pub fn client_config(s: &TlsSettings) -> Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let extra = match &s.ca_file {
        Some(p) => load_certs(p, "CA file")?,
        None => Vec::new(),
    };
    let platform = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra.iter().cloned(),
        provider.clone(),
    );
    let inner: Arc<dyn ServerCertVerifier> = match platform {
        Ok(v) => Arc::new(v),
        // No system store (no ca-certificates package): the CA file alone.
        Err(_) if !extra.is_empty() => {
            let path = s.ca_file.as_deref().expect("extra roots come from a file");
            WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots_from(extra.clone(), path)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| config_error(format!("TLS verifier: {e}")))?
        }
        Err(e) if s.validation_flags & flags::UNKNOWN_CA != 0 => {
            return Err(config_error(format!(
                "no trusted CA certificates: {e}; install the ca-certificates package or set tls-ca-file"
            )));
        }
        // Nothing to trust, and trust is not asked for: names and dates
        // are still checked, against the chain the server presents.
        Err(_) => Arc::new(NoRoots(provider.clone())),
    };
    let verifier = Arc::new(FlagsVerifier {
        inner,
        flags: s.validation_flags,
        provider: provider.clone(),
        pinned: extra,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(load_certs(c, "client certificate file")?, load_key(k)?)
            .map_err(|e| {
                config_error(format!(
                    "the client certificate {} and key {} do not go together: {e}",
                    c.display(),
                    k.display()
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(config_error(
                "a client certificate needs both tls-certificate-file and tls-key-file",
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The server side's rustls configuration: our certificate and key, and,
/// with a CA file, client certificates required and checked against it.
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) else {
        return Err(config_error(
            "an rtmps:// server needs tls-certificate-file and tls-key-file (PEM)",
        ));
    };
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS: {e}")))?;
    let builder = match &s.ca_file {
        Some(p) => {
            let roots = roots_from(load_certs(p, "CA file")?, p)?;
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| config_error(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(cert, "certificate file")?, load_key(key)?)
        .map_err(|e| {
            config_error(format!(
                "the certificate {} and key {} do not go together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// The name the client expects the server's certificate to hold (and sends
/// as SNI, unless it is an address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| config_error(format!("'{host}' is not a valid TLS server name")))
}

/// The certificate problem a rustls error is, as a `GTlsCertificateFlags` bit.
fn flag_of(e: &CertificateError) -> u32 {
    match e {
        CertificateError::UnknownIssuer => flags::UNKNOWN_CA,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            flags::BAD_IDENTITY
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            flags::NOT_ACTIVATED
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => flags::EXPIRED,
        CertificateError::Revoked => flags::REVOKED,
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            flags::INSECURE
        }
        _ => flags::GENERIC_ERROR,
    }
}

/// Checks the server's certificate with `inner`, failing only on the
/// problems `flags` names. A problem that is let through is set aside and
/// the check run again past it (another name the certificate holds, a time
/// within its validity, the presented chain as its own anchor), so that
/// leaving out `expired` still catches a wrong host name.
#[derive(Debug)]
struct FlagsVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    flags: u32,
    provider: Arc<CryptoProvider>,
    /// The certificates of `tls-ca-file`: one the server presents as is
    /// was trusted by the user as it stands.
    pinned: Vec<CertificateDer<'static>>,
}

impl FlagsVerifier {
    /// A server certificate the user put in `tls-ca-file` itself (the
    /// self-signed certificate of `openssl req -x509`, which is marked as
    /// a CA and which webpki therefore refuses as a server's): trusted as
    /// it is, its name and dates still checked as the flags say.
    fn verify_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Option<std::result::Result<ServerCertVerified, rustls::Error>> {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return None;
        }
        let fail = |e: CertificateError| Some(Err(rustls::Error::InvalidCertificate(e)));
        if let Some((not_before, not_after)) = validity(end_entity) {
            if now.as_secs() > not_after && self.flags & flags::EXPIRED != 0 {
                return fail(CertificateError::ExpiredContext {
                    time: now,
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_after,
                    )),
                });
            }
            if now.as_secs() < not_before && self.flags & flags::NOT_ACTIVATED != 0 {
                return fail(CertificateError::NotValidYetContext {
                    time: now,
                    not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_before,
                    )),
                });
            }
        }
        match verify_name(end_entity, server_name) {
            Err(rustls::Error::InvalidCertificate(e)) if self.flags & flag_of(&e) != 0 => fail(e),
            _ => Some(Ok(ServerCertVerified::assertion())),
        }
    }
}

impl ServerCertVerifier for FlagsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let first =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if first.is_err()
            && let Some(r) = self.verify_pinned(end_entity, server_name, now)
        {
            return r;
        }
        let mut name = server_name.to_owned();
        let mut time = now;
        let mut self_anchored: Option<Arc<dyn ServerCertVerifier>> = None;
        let mut result = Some(first);
        // Each pass sets one kind of problem aside; there are few kinds.
        for _ in 0..6 {
            let verifier = self_anchored.as_ref().unwrap_or(&self.inner);
            let r = result.take().unwrap_or_else(|| {
                verifier.verify_server_cert(end_entity, intermediates, &name, ocsp, time)
            });
            let e = match r {
                Ok(v) => return Ok(v),
                Err(rustls::Error::InvalidCertificate(e)) => e,
                Err(other) => return Err(other),
            };
            if flag_of(&e) == flags::BAD_IDENTITY && common_name_fits(end_entity, server_name) {
                // No DNS name in subjectAltName, and this host in the
                // Common Name. webpki checks the name after the chain and
                // the dates, so those held.
                return Ok(ServerCertVerified::assertion());
            }
            if self.flags & flag_of(&e) != 0 {
                return Err(rustls::Error::InvalidCertificate(e));
            }
            match &e {
                CertificateError::NotValidForNameContext { presented, .. } => {
                    match presented
                        .iter()
                        .find_map(|n| ServerName::try_from(n.trim_start_matches("*.")).ok())
                    {
                        Some(n) => name = n.to_owned(),
                        None => return Ok(ServerCertVerified::assertion()),
                    }
                }
                CertificateError::ExpiredContext { not_after, .. } => {
                    time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_after.as_secs().saturating_sub(1),
                    ));
                }
                CertificateError::NotValidYetContext { not_before, .. } => {
                    time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_before.as_secs() + 1,
                    ));
                }
                CertificateError::UnknownIssuer if self_anchored.is_none() => {
                    // Trust the chain the server sent, so dates and names
                    // are still checked.
                    let mut roots = RootCertStore::empty();
                    roots.add_parsable_certificates(
                        std::iter::once(end_entity.clone().into_owned())
                            .chain(intermediates.iter().map(|c| c.clone().into_owned())),
                    );
                    match WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        self.provider.clone(),
                    )
                    .build()
                    {
                        Ok(v) => self_anchored = Some(v),
                        Err(_) => return Ok(ServerCertVerified::assertion()),
                    }
                }
                CertificateError::UnknownIssuer => {
                    // No chain at all: webpki checked the dates before it
                    // looked for an issuer, so the name is what is left.
                    return match verify_name(end_entity, &name) {
                        Err(rustls::Error::InvalidCertificate(e))
                            if self.flags & flag_of(&e) != 0 =>
                        {
                            Err(rustls::Error::InvalidCertificate(e))
                        }
                        _ => Ok(ServerCertVerified::assertion()),
                    };
                }
                // Nothing more can be checked past this problem.
                _ => return Ok(ServerCertVerified::assertion()),
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A verifier with no trust anchors: every chain is of an unknown issuer.
/// Used only when no CA is installed and `unknown-ca` is not checked.
#[derive(Debug)]
struct NoRoots(Arc<CryptoProvider>);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Seconds since 1970 of an X.509 time (UTCTime or GeneralizedTime, Z).
fn x509_time(tag: u8, t: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, t.len()) {
        (0x17, 12) => {
            let y: i64 = t[..2].parse().ok()?;
            (if y < 50 { 2000 + y } else { 1900 + y }, &t[2..])
        }
        (0x18, 14) => (t[..4].parse().ok()?, &t[4..]),
        _ => return None,
    };
    let f = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, h, m, s) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    // Days from civil (Howard Hinnant's algorithm), the inverse of `utc`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// The fields of a certificate's TBSCertificate after its optional [0]
/// version: serial number, signature algorithm, issuer, validity, subject,
/// public key, then the optional [1], [2] and [3] (extensions).
fn tbs_fields(cert: &[u8]) -> Option<&[u8]> {
    let (_, cert, _) = der(cert)?;
    let (_, tbs, _) = der(cert)?;
    let (tag, _, after) = der(tbs)?;
    Some(if tag == 0xa0 { after } else { tbs })
}

/// A certificate's notBefore and notAfter, in seconds since 1970.
fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let mut rest = tbs_fields(cert)?;
    // Serial number, signature algorithm and issuer come first.
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (_, validity, _) = der(rest)?;
    let (t1, nb, after) = der(validity)?;
    let (t2, na, _) = der(after)?;
    Some((x509_time(t1, nb)?, x509_time(t2, na)?))
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The subject's Common Names of a certificate that names no DNS host in a
/// subjectAltName: where OpenSSL and GnuTLS (so FFmpeg, and rtmp2 through
/// GIO) look for the host name then, and webpki never does. Empty when the
/// certificate has DNS names (they alone count then) or cannot be read.
fn legacy_common_names(cert: &[u8]) -> Vec<String> {
    let read = || -> Option<Vec<String>> {
        let mut rest = tbs_fields(cert)?;
        // Serial number, signature algorithm, issuer, validity.
        for _ in 0..4 {
            rest = der(rest)?.2;
        }
        let (_, mut subject, after) = der(rest)?;
        // The public key, then [1], [2] and [3] as far as there are any.
        let mut rest = der(after)?.2;
        while let Some((tag, fields, after)) = der(rest) {
            if tag == 0xa3 && has_dns_alt_name(fields)? {
                return None;
            }
            rest = after;
        }
        let mut names = Vec::new();
        // A SEQUENCE of SETs of (type, value) SEQUENCEs.
        while let Some((_, rdn, after)) = der(subject) {
            let mut attrs = rdn;
            while let Some((_, attr, next)) = der(attrs) {
                let (_, oid, value) = der(attr)?;
                let (tag, value, _) = der(value)?;
                // UTF8String, PrintableString, T61String, IA5String.
                if oid == OID_COMMON_NAME && matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                    names.push(String::from_utf8(value.to_vec()).ok()?);
                }
                attrs = next;
            }
            subject = after;
        }
        Some(names)
    };
    read().unwrap_or_default()
}

/// Whether the extensions ([3]'s contents) hold a subjectAltName with a
/// dNSName in it; None if they cannot be read.
fn has_dns_alt_name(extensions: &[u8]) -> Option<bool> {
    let (_, mut list, _) = der(extensions)?;
    while let Some((_, ext, after)) = der(list) {
        let (_, oid, mut rest) = der(ext)?;
        if oid == OID_SUBJECT_ALT_NAME {
            // An optional `critical` BOOLEAN, then the OCTET STRING.
            let (tag, _, after_critical) = der(rest)?;
            if tag == 0x01 {
                rest = after_critical;
            }
            let (_, value, _) = der(rest)?;
            let (_, mut names, _) = der(value)?;
            while let Some((tag, _, after)) = der(names) {
                // dNSName is [2], IMPLICIT.
                if tag == 0x82 {
                    return Some(true);
                }
                names = after;
            }
        }
        list = after;
    }
    Some(false)
}

/// Whether a certificate with no DNS name in a subjectAltName is for
/// `name` by its Common Name, as OpenSSL and GnuTLS take it: the same name
/// (letters in any case), or `*.` and the rest of the name after its first
/// label. An address never matches a Common Name.
fn common_name_fits(cert: &[u8], name: &ServerName<'_>) -> bool {
    let ServerName::DnsName(host) = name else {
        return false;
    };
    let host = host.as_ref().trim_end_matches('.');
    legacy_common_names(cert).iter().any(|cn| {
        let cn = cn.trim_end_matches('.');
        if cn.eq_ignore_ascii_case(host) {
            return true;
        }
        match (cn.strip_prefix("*."), host.split_once('.')) {
            (Some(parent), Some((label, rest))) => {
                !label.is_empty() && parent.contains('.') && parent.eq_ignore_ascii_case(rest)
            }
            _ => false,
        }
    })
}

/// Whether the certificate is for `name`: by its subjectAltName, as webpki
/// reads it, or by its Common Name when it has no DNS name there.
fn verify_name(
    end_entity: &CertificateDer<'_>,
    name: &ServerName<'_>,
) -> std::result::Result<(), rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
    match rustls::client::verify_server_name(&parsed, name) {
        Err(rustls::Error::InvalidCertificate(e))
            if flag_of(&e) == flags::BAD_IDENTITY && common_name_fits(end_entity, name) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// A date a person reads ("2025-03-01 12:00:00 UTC") from Unix seconds.
fn utc(t: UnixTime) -> String {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A sentence for a failed TLS handshake with `host`: what the problem is
/// and which setting lets a user past it.
pub fn describe(e: &rustls::Error, host: &str) -> String {
    use rustls::AlertDescription as A;
    let skip =
        |flag: &str| format!("(to accept it anyway, leave {flag} out of tls-validation-flags)");
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!(
                "the certificate of {host} is not signed by a trusted authority (unknown issuer): \
                 trust its CA with tls-ca-file=/path/to/ca.pem {}",
                skip("unknown-ca")
            ),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the certificate of {host} is not valid for that name: it holds {} {}",
                if presented.is_empty() {
                    "no names".to_owned()
                } else {
                    presented.join(", ")
                },
                skip("bad-identity")
            ),
            CertificateError::NotValidForName => format!(
                "the certificate of {host} is not valid for that name {}",
                skip("bad-identity")
            ),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the certificate of {host} expired on {} {}",
                utc(*not_after),
                skip("expired")
            ),
            CertificateError::Expired => {
                format!("the certificate of {host} has expired {}", skip("expired"))
            }
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "the certificate of {host} is not valid before {} (is the clock right?) {}",
                utc(*not_before),
                skip("not-activated")
            ),
            CertificateError::NotValidYet => format!(
                "the certificate of {host} is not valid yet {}",
                skip("not-activated")
            ),
            CertificateError::Revoked => format!(
                "the certificate of {host} has been revoked {}",
                skip("revoked")
            ),
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "the certificate of {host} is a CA certificate, not a server's (as `openssl req -x509` makes them): \
                 give that certificate file as tls-ca-file to trust it as it is {}",
                skip("generic-error")
            ),
            other => format!(
                "the certificate of {host} was not accepted ({other:?}) {}",
                skip("generic-error")
            ),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => format!(
            "{host} requires a client certificate: set tls-certificate-file and tls-key-file"
        ),
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => format!(
            "{host} refused our client certificate ({a:?}): check tls-certificate-file and \
             tls-key-file against the CA the server trusts"
        ),
        rustls::Error::AlertReceived(a) => {
            format!("{host} ended the TLS handshake with the alert {a:?}")
        }
        rustls::Error::InvalidMessage(_) => {
            format!("{host} did not answer with TLS (is it an rtmp:// port rather than rtmps://?)")
        }
        other => format!("TLS with {host} failed: {other}"),
    }
}

/// Whether a failure is the certificate or the peer's TLS refusal, which
/// a reconnection would only meet again.
pub fn is_permanent(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::AlertReceived(_)
            | rustls::Error::NoCertificatesPresented
    )
}

/// A failed TLS exchange as a core error: the kind tells the reconnect
/// logic whether trying again may help.
pub fn tls_error(e: &rustls::Error, host: &str) -> Error {
    let kind = if is_permanent(e) {
        ErrorKind::Rejected
    } else {
        ErrorKind::Protocol
    };
    Error::new(kind, format!("TLS: {}", describe(e, host)))
}

/// What one pass of ciphertext gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decrypted {
    /// The peer sent close_notify: no more plaintext will come.
    pub closed: bool,
}

/// Feeds ciphertext that was read into `tls` and appends the plaintext it
/// gives to `plain`. Handshake messages are answered inside rustls (the
/// caller sends what `wants_write` then says). Memory stays bounded: rustls
/// holds at most one record, and its plaintext is taken after each.
pub fn decrypt<D>(
    tls: &mut ConnectionCommon<D>,
    mut input: &[u8],
    plain: &mut Vec<u8>,
) -> std::result::Result<Decrypted, rustls::Error> {
    let mut out = Decrypted::default();
    while !input.is_empty() {
        // Reading from a slice cannot fail but for a full buffer, which
        // processing below empties. It takes nothing once the peer has
        // sent close_notify: what follows that is not the peer's to say.
        match tls.read_tls(&mut input) {
            Ok(0) => {
                out.closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(rustls::Error::General(format!("TLS input: {e}"))),
        }
        let state = tls.process_new_packets()?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let start = plain.len();
            plain.resize(start + n, 0);
            tls.reader()
                .read_exact(&mut plain[start..])
                .map_err(|e| rustls::Error::General(format!("TLS plaintext: {e}")))?;
        }
        if state.peer_has_closed() {
            out.closed = true;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn dates_read_as_dates() {
        let t = |s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        assert_eq!(utc(t(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(t(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(t(1_767_225_599)), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn validity_is_read_from_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 2, 29);
        p.not_after = rcgen::date_time_ymd(2060, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        let (nb, na) = validity(cert.der()).unwrap();
        assert_eq!(
            utc(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                nb
            ))),
            "2020-02-29 00:00:00 UTC"
        );
        // 2060 is past UTCTime's range: GeneralizedTime.
        assert_eq!(
            utc(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                na
            ))),
            "2060-01-01 00:00:00 UTC"
        );
        assert!(validity(b"\x30\x03\x02\x01").is_none());
    }

    #[test]
    fn problems_map_to_gio_flags() {
        assert_eq!(flag_of(&CertificateError::UnknownIssuer), flags::UNKNOWN_CA);
        assert_eq!(flag_of(&CertificateError::Expired), flags::EXPIRED);
        assert_eq!(
            flag_of(&CertificateError::NotValidYet),
            flags::NOT_ACTIVATED
        );
        assert_eq!(
            flag_of(&CertificateError::NotValidForName),
            flags::BAD_IDENTITY
        );
        assert_eq!(flag_of(&CertificateError::Revoked), flags::REVOKED);
        assert_eq!(
            flag_of(&CertificateError::BadSignature),
            flags::GENERIC_ERROR
        );
    }

    /// A client and a server connection that have shaken hands, in memory.
    fn pair() -> (
        rustls::ClientConnection,
        rustls::ServerConnection,
        Arc<rustls::ServerConfig>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        shake(&pem, &key.serialize_pem(), &pem, "localhost").unwrap()
    }

    /// A TLS handshake in memory: a server with `cert` and `key`, a client
    /// that trusts `ca` and expects `host`. The client's error if it
    /// refused the server's certificate.
    fn shake(
        cert: &str,
        key: &str,
        ca: &str,
        host: &str,
    ) -> std::result::Result<
        (
            rustls::ClientConnection,
            rustls::ServerConnection,
            Arc<rustls::ServerConfig>,
        ),
        rustls::Error,
    > {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gstrtmp-tls-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k, a) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("ca.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&a, ca).unwrap();
        let server = server_config(&TlsSettings {
            cert_file: Some(c),
            key_file: Some(k),
            ..Default::default()
        })
        .unwrap();
        let client = client_config(&TlsSettings {
            ca_file: Some(a),
            ..Default::default()
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let mut cc = rustls::ClientConnection::new(client, server_name(host).unwrap()).unwrap();
        let mut sc = rustls::ServerConnection::new(server.clone()).unwrap();
        let mut plain = Vec::new();
        while cc.is_handshaking() || sc.is_handshaking() {
            let mut wire = Vec::new();
            cc.write_tls(&mut wire).unwrap();
            decrypt(&mut sc, &wire, &mut plain)?;
            let mut wire = Vec::new();
            sc.write_tls(&mut wire).unwrap();
            decrypt(&mut cc, &wire, &mut plain)?;
        }
        assert!(plain.is_empty());
        Ok((cc, sc, server))
    }

    /// A certificate for `sans` (DNS names or addresses) with `cn` as its
    /// Common Name, signed by a CA made here: (its PEM, its key's, the CA's).
    fn issued(sans: &[&str], cn: &str) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "unit CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name
            .push(DnType::OrganizationName, "gst-plugin-rtmp");
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem(), ca.pem())
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn common_names_count_only_without_dns_alt_names() {
        let (cn_only, ..) = issued(&[], "rtmp.example.org");
        assert_eq!(legacy_common_names(&der_of(&cn_only)), ["rtmp.example.org"]);
        // A DNS name in subjectAltName: the Common Name no longer counts.
        let (with_dns, ..) = issued(&["ingest.example.org"], "rtmp.example.org");
        assert!(legacy_common_names(&der_of(&with_dns)).is_empty());
        // Addresses alone leave the Common Name for host names.
        let (with_ip, ..) = issued(&["192.0.2.7"], "rtmp.example.org");
        assert_eq!(legacy_common_names(&der_of(&with_ip)), ["rtmp.example.org"]);
        // What is not a certificate has none, and does not panic.
        let der = der_of(&cn_only);
        for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
            let _ = legacy_common_names(&der[..cut]);
        }
        assert!(legacy_common_names(b"\x30\x03\x02\x01\x00").is_empty());
    }

    #[test]
    fn common_names_match_as_openssl_takes_them() {
        let fits = |cn: &str, host: &str| {
            let (cert, ..) = issued(&[], cn);
            common_name_fits(&der_of(&cert), &server_name(host).unwrap())
        };
        assert!(fits("rtmp.example.org", "rtmp.example.org"));
        assert!(fits("RTMP.Example.org", "rtmp.example.ORG"));
        assert!(fits("localhost", "localhost"));
        assert!(fits("*.example.org", "live.example.org"));
        assert!(!fits("*.example.org", "a.live.example.org"));
        assert!(!fits("*.example.org", "example.org"));
        assert!(!fits("*.org", "example.org"));
        assert!(!fits("rtmp.example.org", "example.org"));
        assert!(!fits("localhost", "localhost.example.org"));
        // An address is never matched by a Common Name.
        assert!(!fits("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn a_certificate_named_by_its_common_name_alone_is_accepted_for_that_name() {
        let (cert, key, ca) = issued(&[], "localhost");
        shake(&cert, &key, &ca, "localhost").unwrap();
        // Another name is refused, and says so.
        let e = shake(&cert, &key, &ca, "rtmp.example.org").unwrap_err();
        let rustls::Error::InvalidCertificate(c) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(flag_of(c), flags::BAD_IDENTITY, "{e:?}");
        // With a DNS name in subjectAltName, the Common Name is not read.
        let (cert, key, ca) = issued(&["rtmp.example.org"], "localhost");
        let e = shake(&cert, &key, &ca, "localhost").unwrap_err();
        assert!(format!("{e:?}").contains("rtmp.example.org"), "{e:?}");
        // The same self-signed and given as the CA file (trusted as it is).
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = p.self_signed(&key).unwrap().pem();
        shake(&cert, &key.serialize_pem(), &cert, "localhost").unwrap();
        assert!(shake(&cert, &key.serialize_pem(), &cert, "127.0.0.1").is_err());
    }

    #[test]
    fn bytes_after_close_notify_end_the_input() {
        let (mut cc, mut sc, _) = pair();
        cc.writer().write_all(b"last words").unwrap();
        cc.send_close_notify();
        let mut wire = Vec::new();
        cc.write_tls(&mut wire).unwrap();
        // What a hostile peer adds after close_notify is not read (this
        // once looped for ever).
        wire.extend_from_slice(&[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
        let mut plain = Vec::new();
        let d = decrypt(&mut sc, &wire, &mut plain).unwrap();
        assert!(d.closed);
        assert_eq!(plain, b"last words");
        assert!(decrypt(&mut sc, b"more", &mut plain).unwrap().closed);
    }

    #[test]
    fn records_split_anywhere_decrypt_whole() {
        let (mut cc, mut sc, _) = pair();
        let msg: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
        let mut wire = Vec::new();
        // As the drivers do: a batch, its records out, the next batch.
        for batch in msg.chunks(40_000) {
            cc.writer().write_all(batch).unwrap();
            while cc.wants_write() {
                cc.write_tls(&mut wire).unwrap();
            }
        }
        let mut plain = Vec::new();
        for piece in wire.chunks(777) {
            decrypt(&mut sc, piece, &mut plain).unwrap();
        }
        assert_eq!(plain, msg);
    }

    /// What the client's writer counts on: pieces handed over in one
    /// vectored write (chunk headers of a byte between payloads) become
    /// full records, not a record per piece.
    #[test]
    fn vectored_pieces_make_full_records() {
        let (mut cc, mut sc, _) = pair();
        let mut want = Vec::new();
        let mut pieces = Vec::new();
        for i in 0..32u32 {
            pieces.push(vec![0xC6]);
            pieces.push((0..4096u32).map(|j| (i * 7 + j) as u8).collect::<Vec<u8>>());
        }
        for p in &pieces {
            want.extend_from_slice(p);
        }
        // rustls takes up to its buffer limit at a time, as the writer
        // does: the rest again after the records went out.
        let mut wire = Vec::new();
        let mut done = 0;
        while done < want.len() {
            let mut skip = done;
            let iov: Vec<std::io::IoSlice<'_>> = pieces
                .iter()
                .filter_map(|p| {
                    let k = skip.min(p.len());
                    skip -= k;
                    (k < p.len()).then(|| std::io::IoSlice::new(&p[k..]))
                })
                .collect();
            let n = cc.writer().write_vectored(&iov).unwrap();
            assert!(n > 0);
            done += n;
            while cc.wants_write() {
                cc.write_tls(&mut wire).unwrap();
            }
        }
        // Records: a 5-byte header each, with its length.
        let mut records = 0;
        let mut at = 0;
        while at < wire.len() {
            let len = u16::from_be_bytes([wire[at + 3], wire[at + 4]]) as usize;
            at += 5 + len;
            records += 1;
        }
        // Full records but where a batch ended.
        assert!(
            records <= want.len().div_ceil(16 * 1024) + 2,
            "{records} records"
        );
        let mut plain = Vec::new();
        decrypt(&mut sc, &wire, &mut plain).unwrap();
        assert_eq!(plain, want);
    }

    #[test]
    fn garbage_and_oversized_records_are_errors() {
        let (_, mut sc, config) = pair();
        let mut plain = Vec::new();
        let mut huge = vec![0x17, 3, 3, 0xFF, 0xFF];
        huge.extend(std::iter::repeat_n(0u8, 0xFFFF));
        assert!(decrypt(&mut sc, &huge, &mut plain).is_err());
        let mut fresh = rustls::ServerConnection::new(config).unwrap();
        assert!(decrypt(&mut fresh, b"GET / HTTP/1.1\r\n\r\n", &mut plain).is_err());
        assert!(plain.is_empty());
    }

    #[test]
    fn settings_errors_name_the_file() {
        let s = TlsSettings {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        let e = server_config(&s).unwrap_err();
        assert!(e.reason().contains("/nonexistent/cert.pem"), "{e}");
        let e = server_config(&TlsSettings::default()).unwrap_err();
        assert!(e.reason().contains("tls-certificate-file"), "{e}");
        let half = TlsSettings {
            cert_file: Some("/nonexistent/cert.pem".into()),
            validation_flags: 0,
            ..Default::default()
        };
        let e = client_config(&half).unwrap_err();
        assert!(e.reason().contains("both"), "{e}");
    }
}
