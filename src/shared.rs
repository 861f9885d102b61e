// SPDX-License-Identifier: MPL-2.0
//! The properties rtmpsink and rtmpsrc share, declared once with their
//! defaults beside them: where to connect or listen and how (location, or
//! its parts as rtmp2 has them: scheme, host, port, application, stream;
//! mode, async-connect, timeout, flash-version, tc-url, extra-connect-args), reconnecting
//! (reconnect-*), and TLS and logins ([`Security`]). Each element keeps one
//! [`SharedSettings`] in its settings; what differs between the two (the
//! words of a blurb, a default) is a [`Role`].

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::mode::{RtmpMode, UrlScheme};
use crate::policy::ReconnectSettings;
use crate::rtmp::url::RtmpUrl;
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

/// rtmp2's defaults for the parts of a location, which a part set on an
/// element with no location completes: `rtmp://localhost/live/myStream`.
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_APPLICATION: &str = "live";
const DEFAULT_STREAM: &str = "myStream";

/// Where the element connects or listens: a whole `location` (or URI), or
/// its parts set one by one (scheme, host, port, application, stream, as
/// on rtmp2). The parts are held split, so an application and a stream
/// set apart stay apart even where a location string would split them
/// otherwise.
#[derive(Clone, Default)]
pub enum Target {
    #[default]
    Unset,
    Url(RtmpUrl),
    /// A location that does not parse: read back as given, its error
    /// returned when the element starts.
    Invalid {
        given: String,
        error: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unset => f.write_str("Unset"),
            Target::Url(u) => write!(f, "Url({u})"),
            // The string may hold a password or a key.
            Target::Invalid { error, .. } => write!(f, "Invalid({error})"),
        }
    }
}

impl Target {
    /// What `location` reads: the URL written out, or the string given.
    pub fn location(&self) -> Option<String> {
        match self {
            Target::Unset => None,
            Target::Url(u) => Some(u.to_uri()),
            Target::Invalid { given, .. } => Some(given.clone()),
        }
    }

    fn set_location(&mut self, location: Option<String>) {
        *self = match location {
            None => Target::Unset,
            Some(l) => match RtmpUrl::parse(&l) {
                Ok(u) => Target::Url(u),
                Err(e) => Target::Invalid {
                    given: l,
                    error: e.to_string(),
                },
            },
        };
    }

    /// The URL to change a part of: the one set, or rtmp2's default.
    fn url_mut(&mut self) -> &mut RtmpUrl {
        if !matches!(self, Target::Url(_)) {
            let default = format!("rtmp://{DEFAULT_HOST}/{DEFAULT_APPLICATION}/{DEFAULT_STREAM}");
            *self = Target::Url(RtmpUrl::parse(&default).expect("valid default"));
        }
        match self {
            Target::Url(u) => u,
            _ => unreachable!("set above"),
        }
    }

    /// Sets part `name` of the URL, if it is one. Over a location that
    /// does not parse, it changes nothing: the element still fails to
    /// start with that location's error, rather than connect to a URL made
    /// of a part and defaults that nobody named (rtmp2 falls back to
    /// them).
    fn set_part(&mut self, name: &str, value: &glib::Value) -> bool {
        let text = |v: &glib::Value| v.get::<Option<String>>().expect("type checked");
        let part = matches!(name, "scheme" | "host" | "port" | "application" | "stream");
        if part && matches!(self, Target::Invalid { .. }) {
            return true;
        }
        match name {
            "scheme" => {
                self.url_mut().scheme = value.get::<UrlScheme>().expect("type checked").into()
            }
            "host" => {
                // An IPv6 address is held without its brackets, as parsed.
                let host = text(value).unwrap_or_else(|| DEFAULT_HOST.into());
                let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
                self.url_mut().host = bare.map(str::to_owned).unwrap_or(host);
            }
            "port" => {
                let port = value.get::<i32>().expect("type checked");
                self.url_mut().explicit_port = Some(u16::try_from(port).expect("range checked"));
            }
            "application" => {
                self.url_mut().app = text(value).unwrap_or_else(|| DEFAULT_APPLICATION.into())
            }
            "stream" => {
                self.url_mut().stream = text(value).unwrap_or_else(|| DEFAULT_STREAM.into())
            }
            _ => return false,
        }
        true
    }

    /// Part `name` of the URL, if it is one (rtmp2's default without one).
    fn part(&self, name: &str) -> Option<glib::Value> {
        let url = match self {
            Target::Url(u) => Some(u),
            _ => None,
        };
        Some(match name {
            "scheme" => url.map_or(UrlScheme::Rtmp, |u| u.scheme.into()).to_value(),
            "host" => url.map_or(DEFAULT_HOST, |u| &u.host).to_value(),
            "port" => i32::from(url.map_or(1935, |u| u.port())).to_value(),
            "application" => url.map_or(DEFAULT_APPLICATION, |u| &u.app).to_value(),
            "stream" => url.map_or(DEFAULT_STREAM, |u| &u.stream).to_value(),
            _ => return None,
        })
    }

    /// A server listens on `port` (picked for it, its location said 0):
    /// the location shows it from now on.
    pub fn listening_on(&mut self, port: u16) {
        if let Target::Url(u) = self {
            u.explicit_port = Some(port);
        }
    }

    /// The URL to connect to or listen on, or the error `start()` returns.
    /// A server may leave the stream (or the app) out: it then accepts any.
    pub fn url(&self, mode: RtmpMode) -> Result<RtmpUrl, gst::ErrorMessage> {
        let url = match self {
            Target::Unset => {
                let example = match mode {
                    RtmpMode::Client => "rtmp://host/app/stream",
                    RtmpMode::Server => "rtmp://0.0.0.0:1935/app/stream",
                };
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("No location set: set location={}", example)
                ));
            }
            Target::Invalid { error, .. } => {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Invalid location: {}", error)
                ));
            }
            Target::Url(u) => u,
        };
        // Parts set one by one are checked as a location would be (a
        // host with a space, say).
        if let Err(e) = url.check() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid location {}: {}", url.redacted(), e)
            ));
        }
        if !url.options.is_empty() && mode == RtmpMode::Server {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Invalid location {}: options after the URL ({:?}) are for client mode",
                    url.redacted(),
                    url.options
                )
            ));
        }
        if url.stream.is_empty() && mode == RtmpMode::Client {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Invalid location {}: no stream name (rtmp://host/app/stream)",
                    url.redacted()
                )
            ));
        }
        if url.port() == 0 && mode == RtmpMode::Client {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Invalid location {}: port 0 (only a server picks one)",
                    url.redacted()
                )
            ));
        }
        Ok(url.clone())
    }
}

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
    /// `location`, or its parts.
    pub target: Target,
    pub mode: RtmpMode,
    /// Client mode: connect while the pipeline starts, rather than in the
    /// state change.
    pub async_connect: bool,
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
            target: Target::Unset,
            mode: RtmpMode::Client,
            async_connect: true,
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
                    "RTMP URL to {}: rtmp[s]://[user:pass@]host[:port]/app[/instance]/stream[?query], then in client mode librtmp's options after a space if any (live=1 token=... conn=S:x ...; see the README); in server mode, the address to listen on (port 0 picks one), and the app and stream to accept. Also set in parts by scheme, host, port, application and stream",
                    role.client_verb
                ))
                .build(),
            glib::ParamSpecEnum::builder::<UrlScheme>("scheme")
                .nick("Scheme")
                .blurb("The location's scheme: rtmp (TCP) or rtmps (TLS)")
                .build(),
            glib::ParamSpecString::builder("host")
                .nick("Host")
                .blurb("The location's host: the server's name or address; in server mode, the address to listen on. Like the other parts, changes nothing over a location that does not parse (the element then fails to start with its error)")
                .default_value(Some(DEFAULT_HOST))
                .build(),
            glib::ParamSpecInt::builder("port")
                .nick("Port")
                .blurb("The location's port (1935 for rtmp, 443 for rtmps unless set); in server mode, 0 picks a free one")
                .minimum(0)
                .maximum(i32::from(u16::MAX))
                .default_value(1935)
                .build(),
            glib::ParamSpecString::builder("application")
                .nick("Application")
                .blurb("The location's application (app or app/instance, with its query if any), kept apart from the stream even where the location string would split them otherwise")
                .default_value(Some(DEFAULT_APPLICATION))
                .build(),
            glib::ParamSpecString::builder("stream")
                .nick("Stream")
                .blurb("The location's stream name (key), with its query if any")
                .default_value(Some(DEFAULT_STREAM))
                .build(),
            glib::ParamSpecEnum::builder::<RtmpMode>("mode")
                .nick("Mode")
                .blurb(&format!(
                    "client: {} a server; server: listen on the location's address and {}",
                    role.client_verb, role.server_verb
                ))
                .build(),
            glib::ParamSpecBoolean::builder("async-connect")
                .nick("Async connect")
                .blurb("Client mode: connect in the background while the pipeline starts; if false, the state change waits for the connection and fails with it")
                .default_value(true)
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
            "location" => self.target.set_location(value.get().expect("type checked")),
            "mode" => self.mode = value.get().expect("type checked"),
            "async-connect" => self.async_connect = value.get().expect("type checked"),
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
            _ => return self.target.set_part(name, value) || self.security.set(name, value),
        }
        true
    }

    /// The other properties that setting `name` changes (the location and
    /// its parts are one setting), to notify once the settings are let go.
    pub fn also_changed(name: &str) -> &'static [&'static str] {
        match name {
            "location" => &["scheme", "host", "port", "application", "stream"],
            "scheme" | "host" | "port" | "application" | "stream" => &["location"],
            _ => &[],
        }
    }

    /// The value of property `name`, if it is one of these.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        let ms = |d: Duration| (d.as_millis() as u32).to_value();
        Some(match name {
            "location" => self.target.location().to_value(),
            "mode" => self.mode.to_value(),
            "async-connect" => self.async_connect.to_value(),
            "timeout" => self.timeout.to_value(),
            "flash-version" => self.flash_version.to_value(),
            "tc-url" => self.tc_url.to_value(),
            "extra-connect-args" => self.extra_connect_args.to_value(),
            "reconnect-attempts" => self.reconnect.attempts.to_value(),
            "reconnect-delay" => ms(self.reconnect.first_delay),
            "reconnect-max-delay" => ms(self.reconnect.max_delay),
            "measure-latency" => self.measure_latency.to_value(),
            _ => return self.target.part(name).or_else(|| self.security.get(name)),
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
                crate::sync::lock(&self.settings).shared.target.location()
            }

            fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
                let url = crate::rtmp::url::RtmpUrl::parse(uri)
                    .map_err(|e| glib::Error::new(gst::URIError::BadUri, &e.to_string()))?;
                crate::sync::lock(&self.settings).shared.target = crate::shared::Target::Url(url);
                Ok(())
            }
        }
    };
}
pub(crate) use impl_uri_handler;
