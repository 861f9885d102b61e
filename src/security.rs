// SPDX-License-Identifier: MPL-2.0
//! The properties both elements have for `rtmps://` and for logging in:
//! declared once here, kept in one [`Security`] struct in each element's
//! settings, and handed to the drivers as a snapshot when a connection
//! starts.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use std::time::Duration;

use crate::net::client::ConnectOptions;
use crate::net::tls::{TlsSettings, flags};
use crate::rtmp::auth::{AuthMethod, ClientAuthMode, Credentials, ServerAuth};
use crate::rtmp::secure_token::Secret;
use crate::rtmp::session::ClientConfig;
use crate::rtmp::url::RtmpUrl;

/// The `authmod` property.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtmpAuthenticationMode")]
pub enum AuthMode {
    /// Client: log in the way the server asks. Server: Adobe's.
    #[default]
    #[enum_value(name = "Auto: as the server asks (server mode: Adobe)", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "None: never log in / ask for no login", nick = "none")]
    None = 1,
    #[enum_value(
        name = "Adobe: the challenge-response of FMS, Wowza, FFmpeg and rtmp2",
        nick = "adobe"
    )]
    Adobe = 2,
    #[enum_value(name = "Limelight (llnw): a digest login", nick = "llnw")]
    Llnw = 3,
}

/// What the TLS and authentication properties say.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub tls: TlsSettings,
    pub authmod: AuthMode,
    pub username: Option<String>,
    pub password: Option<String>,
    pub secure_token: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls)
            .field("authmod", &self.authmod)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("secure_token", &self.secure_token.as_ref().map(|_| "***"))
            .finish()
    }
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
            glib::ParamSpecEnum::builder::<AuthMode>("authmod")
                .nick("Authentication mode")
                .blurb("Client mode: how to log in when the server asks (auto: as it asks; adobe/llnw: announce that one at once; none: never). Server mode, with username set: the login clients must pass (auto is adobe)")
                .build(),
            glib::ParamSpecString::builder("username")
                .nick("User name")
                .blurb("Client mode: the user to log in as (else the location's user:password@). Server mode: when set, clients must log in as this user (Adobe or Limelight, see authmod)")
                .build(),
            glib::ParamSpecString::builder("password")
                .nick("Password")
                .blurb("The password of username (never logged)")
                .build(),
            glib::ParamSpecString::builder("secure-token")
                .nick("Secure token")
                .blurb("The secret of a SecureToken challenge (Wowza's SecureToken, as rtmp2 has it; never logged). Client mode: the answer to a server that challenges its clients. Server mode: when set, every client must answer this server's challenge with it before it publishes or plays")
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
            "authmod" => self.authmod = value.get().expect("type checked"),
            "username" => self.username = value.get().expect("type checked"),
            "password" => self.password = value.get().expect("type checked"),
            "secure-token" => self.secure_token = value.get().expect("type checked"),
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
            "authmod" => self.authmod.to_value(),
            "username" => self.username.to_value(),
            "password" => self.password.to_value(),
            "secure-token" => self.secure_token.to_value(),
            _ => return None,
        })
    }

    /// The client's login: the properties' user and password, else the
    /// location's `user:password@`.
    pub fn credentials(&self, url: &RtmpUrl) -> Option<Credentials> {
        match (&self.username, &url.user) {
            (Some(u), _) if !u.is_empty() => Some(Credentials {
                user: u.clone(),
                password: self.password.clone().unwrap_or_default(),
            }),
            (_, Some(u)) => Some(Credentials {
                user: u.clone(),
                password: url.password.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// A client connection's options: the session's configuration with
    /// this TLS and login.
    pub fn connect_options(&self, session: ClientConfig, url: &RtmpUrl) -> ConnectOptions {
        let mut session = ClientConfig {
            secure_token: self.secure_token().map(|s| Secret(s.to_owned())),
            ..session
        };
        // librtmp's options in the location have the last word over the
        // properties they stand for.
        url.options.apply_to(&mut session);
        ConnectOptions {
            session,
            tls: self.tls.clone(),
            auth_mode: match self.authmod {
                AuthMode::Auto => ClientAuthMode::Auto,
                AuthMode::None => ClientAuthMode::None,
                AuthMode::Adobe => ClientAuthMode::Adobe,
                AuthMode::Llnw => ClientAuthMode::Llnw,
            },
            credentials: self.credentials(url),
        }
    }

    /// The SecureToken secret, if one is set (an empty one is none).
    pub fn secure_token(&self) -> Option<&str> {
        self.secure_token.as_deref().filter(|s| !s.is_empty())
    }

    /// Server mode: the login clients must pass, if any; challenges live
    /// a little longer than a client's own timeout.
    pub fn server_auth(&self, timeout: Duration) -> Option<ServerAuth> {
        let user = self.username.as_ref().filter(|u| !u.is_empty())?;
        let method = match self.authmod {
            AuthMode::None => return None,
            AuthMode::Llnw => AuthMethod::Llnw,
            AuthMode::Auto | AuthMode::Adobe => AuthMethod::Adobe,
        };
        Some(ServerAuth::new(
            method,
            Credentials {
                user: user.clone(),
                password: self.password.clone().unwrap_or_default(),
            },
            (timeout * 3).max(Duration::from_secs(30)),
        ))
    }
}
