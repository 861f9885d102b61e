//! The properties both elements have for `rtmps://` and for logging in:
//! declared once here, kept in one [`Security`] struct in each element's
//! settings, and handed to the drivers as a snapshot when a connection
//! starts.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use crate::net::tls::{TlsSettings, flags};

/// What the TLS and authentication properties say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub tls: TlsSettings,
}

fn path_value(p: &Option<PathBuf>) -> glib::Value {
    p.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .to_value()
}

fn path_from(value: &glib::Value) -> Option<PathBuf> {
    value
        .get::<Option<String>>()
        .expect("type checked")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

impl Security {
    /// The property specs, for each element's `properties()`.
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecFlags::builder::<gio::TlsCertificateFlags>("tls-validation-flags")
                .nick("TLS validation flags")
                .blurb("Client mode, rtmps://: which problems with the server's certificate fail the connection (GIO's flags, as on rtmp2src; 0 accepts any certificate, for tests only)")
                .default_value(gio::TlsCertificateFlags::VALIDATE_ALL)
                .build(),
            glib::ParamSpecString::builder("tls-ca-file")
                .nick("TLS CA file")
                .blurb("rtmps://, PEM: client mode: CA certificates trusted beside the system's (a self-signed ingest server, a test rig); server mode: the CAs client certificates must chain to (clients must then present one)")
                .build(),
            glib::ParamSpecString::builder("tls-certificate-file")
                .nick("TLS certificate file")
                .blurb("rtmps://, PEM: server mode: this server's certificate chain; client mode: a client certificate for servers that ask for one (with tls-key-file)")
                .build(),
            glib::ParamSpecString::builder("tls-key-file")
                .nick("TLS key file")
                .blurb("rtmps://, PEM: the private key of tls-certificate-file")
                .build(),
        ]
    }

    /// Sets the property `name`, if it is one of these.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        match name {
            "tls-validation-flags" => {
                let f: gio::TlsCertificateFlags = value.get().expect("type checked");
                self.tls.validation_flags = f.bits() & flags::VALIDATE_ALL;
            }
            "tls-ca-file" => self.tls.ca_file = path_from(value),
            "tls-certificate-file" => self.tls.cert_file = path_from(value),
            "tls-key-file" => self.tls.key_file = path_from(value),
            _ => return false,
        }
        true
    }

    /// The value of property `name`, if it is one of these.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "tls-validation-flags" => {
                gio::TlsCertificateFlags::from_bits_truncate(self.tls.validation_flags).to_value()
            }
            "tls-ca-file" => path_value(&self.tls.ca_file),
            "tls-certificate-file" => path_value(&self.tls.cert_file),
            "tls-key-file" => path_value(&self.tls.key_file),
            _ => return None,
        })
    }
}
