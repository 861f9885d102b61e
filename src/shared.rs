// SPDX-License-Identifier: MPL-2.0
//! The properties rtmpsink and rtmpsrc share, declared once with their
//! defaults beside them: where to connect or listen and how (location,
//! mode, timeout, flash-version, tc-url, extra-connect-args), reconnecting
//! (reconnect-*), and TLS and logins ([`Security`]). Each element keeps one
//! [`SharedSettings`] in its settings; what differs between the two (the
//! words of a blurb, a default) is a [`Role`].

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::mode::RtmpMode;
use crate::policy::ReconnectSettings;
use crate::security::Security;

/// Seconds to wait for the peer, unless set.
pub const DEFAULT_TIMEOUT: u32 = 10;
/// Milliseconds before the first reconnection attempt.
pub const DEFAULT_RECONNECT_DELAY_MS: u32 = 1000;
/// The longest wait between reconnection attempts, in milliseconds.
pub const DEFAULT_RECONNECT_MAX_DELAY_MS: u32 = 30_000;
/// Reconnection attempts after a loss (-1: for ever): both elements
/// reconnect by default; `reconnect-attempts=0` turns it off.
pub const DEFAULT_RECONNECT_ATTEMPTS: i32 = -1;

/// What differs between the two elements' shared properties.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    /// What the client does: "publish to", "play from".
    pub client_verb: &'static str,
    /// What the server does: "serve players such as ffplay", "take a
    /// publisher such as OBS or FFmpeg".
    pub server_verb: &'static str,
    /// The `flashVer` sent in connect unless set.
    pub flash_version: &'static str,
    /// What `timeout` covers besides connecting, in this element.
    pub timeout_blurb: &'static str,
    /// From where to where `measure-latency` times a frame.
    pub latency_span: &'static str,
}

/// What the shared properties say.
#[derive(Debug, Clone)]
pub struct SharedSettings {
    pub location: Option<String>,
    pub mode: RtmpMode,
    /// Seconds (at least 1).
    pub timeout: u32,
    pub flash_version: String,
    pub tc_url: Option<String>,
    pub extra_connect_args: Option<gst::Structure>,
    pub reconnect: ReconnectSettings,
    pub security: Security,
    /// Time frames inside the element for `stats` (see crate::latency).
    pub measure_latency: bool,
}

impl SharedSettings {
    /// The defaults for `role`.
    pub fn new(role: &Role) -> Self {
        SharedSettings {
            location: None,
            mode: RtmpMode::Client,
            timeout: DEFAULT_TIMEOUT,
            flash_version: role.flash_version.to_owned(),
            tc_url: None,
            extra_connect_args: None,
            reconnect: ReconnectSettings {
                attempts: DEFAULT_RECONNECT_ATTEMPTS,
                first_delay: Duration::from_millis(u64::from(DEFAULT_RECONNECT_DELAY_MS)),
                max_delay: Duration::from_millis(u64::from(DEFAULT_RECONNECT_MAX_DELAY_MS)),
            },
            security: Security::default(),
            measure_latency: false,
        }
    }

    /// `timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout.max(1)))
    }

    /// The property specs, for each element's `properties()`.
    pub fn properties(role: &Role) -> Vec<glib::ParamSpec> {
        let mut v = vec![
            glib::ParamSpecString::builder("location")
                .nick("Location")
                .blurb(&format!(
                    "RTMP URL to {}: rtmp[s]://[user:pass@]host[:port]/app[/instance]/stream[?query]; in server mode, the address to listen on (port 0 picks one), and the app and stream to accept",
                    role.client_verb
                ))
                .build(),
            glib::ParamSpecEnum::builder::<RtmpMode>("mode")
                .nick("Mode")
                .blurb(&format!(
                    "client: {} a server; server: listen on the location's address and {}",
                    role.client_verb, role.server_verb
                ))
                .build(),
            glib::ParamSpecUInt::builder("timeout")
                .nick("Timeout")
                .blurb(&format!(
                    "Seconds to wait for the peer: connecting (TLS included), each answer, {}",
                    role.timeout_blurb
                ))
                .minimum(1)
                .default_value(DEFAULT_TIMEOUT)
                .build(),
            glib::ParamSpecString::builder("flash-version")
                .nick("Flash version")
                .blurb("flashVer sent in connect")
                .default_value(Some(role.flash_version))
                .build(),
            glib::ParamSpecString::builder("tc-url")
                .nick("tcUrl")
                .blurb("tcUrl sent in connect, if it must differ from the one made from location")
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("extra-connect-args")
                .nick("Extra connect arguments")
                .blurb("Extra properties for the connect command object, e.g. \"args, pageUrl=(string)x, fpad=(boolean)false\"")
                .build(),
            glib::ParamSpecInt::builder("reconnect-attempts")
                .nick("Reconnect attempts")
                .blurb("Client mode: attempts to reconnect after the connection is lost (-1: for ever, 0: do not reconnect; the stream then fails). A refusal (a login, a key, a certificate) is never retried")
                .minimum(-1)
                .default_value(DEFAULT_RECONNECT_ATTEMPTS)
                .build(),
            glib::ParamSpecUInt::builder("reconnect-delay")
                .nick("Reconnect delay")
                .blurb("Client mode: milliseconds before the first reconnection attempt; each further one waits twice as long, up to reconnect-max-delay")
                .default_value(DEFAULT_RECONNECT_DELAY_MS)
                .build(),
            glib::ParamSpecUInt::builder("reconnect-max-delay")
                .nick("Reconnect max delay")
                .blurb("Client mode: the longest wait between reconnection attempts, in milliseconds")
                .default_value(DEFAULT_RECONNECT_MAX_DELAY_MS)
                .build(),
            glib::ParamSpecBoolean::builder("measure-latency")
                .nick("Measure latency")
                .blurb(&format!(
                    "Time how long each frame spends inside the element ({}), for stats: video/audio-latency-p50/p99 in ns over the last 1024 frames of each kind. Costs two clock reads and a lock per frame; set it before the pipeline starts",
                    role.latency_span
                ))
                .default_value(false)
                .build(),
        ];
        v.extend(Security::properties());
        v
    }

    /// Sets the property `name`, if it is one of these; `role` gives the
    /// default a NULL flash-version falls back to.
    pub fn set(&mut self, name: &str, value: &glib::Value, role: &Role) -> bool {
        let ms = |v: &glib::Value| {
            Duration::from_millis(u64::from(v.get::<u32>().expect("type checked")))
        };
        match name {
            "location" => self.location = value.get().expect("type checked"),
            "mode" => self.mode = value.get().expect("type checked"),
            "timeout" => self.timeout = value.get().expect("type checked"),
            "flash-version" => {
                self.flash_version = value
                    .get::<Option<String>>()
                    .expect("type checked")
                    .unwrap_or_else(|| role.flash_version.into())
            }
            "tc-url" => self.tc_url = value.get().expect("type checked"),
            "extra-connect-args" => self.extra_connect_args = value.get().expect("type checked"),
            "reconnect-attempts" => self.reconnect.attempts = value.get().expect("type checked"),
            "reconnect-delay" => self.reconnect.first_delay = ms(value),
            "reconnect-max-delay" => self.reconnect.max_delay = ms(value),
            "measure-latency" => self.measure_latency = value.get().expect("type checked"),
            _ => return self.security.set(name, value),
        }
        true
    }

    /// The value of property `name`, if it is one of these.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        let ms = |d: Duration| (d.as_millis() as u32).to_value();
        Some(match name {
            "location" => self.location.to_value(),
            "mode" => self.mode.to_value(),
            "timeout" => self.timeout.to_value(),
            "flash-version" => self.flash_version.to_value(),
            "tc-url" => self.tc_url.to_value(),
            "extra-connect-args" => self.extra_connect_args.to_value(),
            "reconnect-attempts" => self.reconnect.attempts.to_value(),
            "reconnect-delay" => ms(self.reconnect.first_delay),
            "reconnect-max-delay" => ms(self.reconnect.max_delay),
            "measure-latency" => self.measure_latency.to_value(),
            _ => return self.security.get(name),
        })
    }

    /// The connect parameters both clients share: flashVer, tcUrl (as a
    /// reconnect request gave it, else the setting's, else the
    /// location's), the extra connect arguments and the timeout.
    pub fn apply_to(&self, c: &mut crate::rtmp::session::ClientConfig, tc_url: Option<&str>) {
        c.flash_ver = self.flash_version.clone();
        if let Some(t) = tc_url.or(self.tc_url.as_deref()) {
            c.tc_url = t.to_owned();
        }
        c.response_timeout = self.timeout();
        if let Some(extra) = &self.extra_connect_args {
            c.connect_extra = crate::common::connect_extra(extra);
        }
    }
}

/// The URI handler both bins have (`rtmp://`, `rtmps://`): the URI is the
/// `location` in the bin's `settings` (a `Mutex` of settings with a
/// `shared` field), checked before it is taken.
macro_rules! impl_uri_handler {
    ($bin:ty, $kind:ident) => {
        impl gst::subclass::prelude::URIHandlerImpl for $bin {
            const URI_TYPE: gst::URIType = gst::URIType::$kind;

            fn protocols() -> &'static [&'static str] {
                &["rtmp", "rtmps"]
            }

            fn uri(&self) -> Option<String> {
                crate::sync::lock(&self.settings).shared.location.clone()
            }

            fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
                crate::rtmp::url::RtmpUrl::parse(uri)
                    .map_err(|e| glib::Error::new(gst::URIError::BadUri, &e.to_string()))?;
                crate::sync::lock(&self.settings).shared.location = Some(uri.to_owned());
                Ok(())
            }
        }
    };
}
pub(crate) use impl_uri_handler;
