// SPDX-License-Identifier: MPL-2.0
//! librtmp's options after a URL: `rtmp://host/app/stream live=1 buffer=3000`.
//!
//! librtmp (and the GStreamer `rtmpsrc`/`rtmpsink` built on it, and
//! FFmpeg's `librtmp` protocol) read a location as the URL up to the first
//! space, then space-separated `name=value` options for what a URL cannot
//! say: the connect object's fields, extra connect arguments, a SecureToken
//! secret, where a recorded stream starts and stops. Names are matched
//! without regard to case, and `\XX` (two hex digits) in a value is that
//! byte (`\20` a space, `\5c` a backslash).
//!
//! An option librtmp knows but we cannot honour (a SOCKS proxy, SWF
//! verification, Justin.tv tokens, playlists) and an option nobody knows are
//! errors that say so, as they were for librtmp, rather than something
//! silently left out.

use std::fmt;

use crate::amf0::{Amf0Value, Properties};
use crate::error::{Error, Result};
use crate::session::ClientConfig;

/// The options a location gave after its URL (none by default). `app=` and
/// `playpath=` are not here: they replace the URL's application and
/// stream (see [`crate::url::RtmpUrl::parse`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UrlOptions {
    /// `tcUrl=`: the tcUrl sent in connect.
    pub tc_url: Option<String>,
    /// `pageUrl=`: the connect object's pageUrl.
    pub page_url: Option<String>,
    /// `swfUrl=`: the connect object's swfUrl.
    pub swf_url: Option<String>,
    /// `flashver=`: the connect object's flashVer.
    pub flash_ver: Option<String>,
    /// `conn=`, each as given (checked): AMF values sent after the connect
    /// command object, see [`UrlOptions::connect_args`].
    conn: Vec<String>,
    /// `live=1`: play a live stream only (`play` with start -1000, as
    /// librtmp sends it), and subscribe to it (`FCSubscribe`).
    pub live: bool,
    /// `subscribe=`: the name to `FCSubscribe` to (the stream's otherwise).
    pub subscribe: Option<String>,
    /// `token=`: the SecureToken secret.
    pub token: Option<String>,
    /// `start=`: where a recorded stream starts, in milliseconds.
    pub start_ms: Option<u32>,
    /// `stop=`: where a recorded stream stops, in milliseconds.
    pub stop_ms: Option<u32>,
    /// `buffer=`: the buffer length told to the server, in milliseconds.
    pub buffer_ms: Option<u32>,
    /// `timeout=`: seconds to wait for the server.
    pub timeout_s: Option<u32>,
}

/// What [`UrlOptions::parse`] read: the options, and the URL parts that
/// `app=` and `playpath=` replace.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub options: UrlOptions,
    pub app: Option<String>,
    pub playpath: Option<String>,
}

/// librtmp's true values for a boolean option; anything else is false.
fn truth(v: &str) -> bool {
    ["1", "on", "yes", "true"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

impl UrlOptions {
    /// Whether no option was given.
    pub fn is_empty(&self) -> bool {
        *self == UrlOptions::default()
    }

    /// Parses the text after a URL's first space.
    pub(crate) fn parse(text: &str) -> Result<Parsed> {
        let mut p = Parsed::default();
        let o = &mut p.options;
        for item in text.split(' ').filter(|s| !s.is_empty()) {
            let Some((name, raw)) = item.split_once('=') else {
                return Err(Error::malformed(format!(
                    "'{item}' after the URL (which ends at its first space) is not an option (name=value, as librtmp reads them)"
                )));
            };
            let value =
                unescape(raw).map_err(|why| Error::malformed(format!("option {name}: {why}")))?;
            let number = |what: &str| {
                value.parse::<u32>().map_err(|_| {
                    Error::malformed(format!(
                        "option {name}={value}: {what} is a whole number from 0 to {}",
                        u32::MAX
                    ))
                })
            };
            match name.to_ascii_lowercase().as_str() {
                "app" => p.app = Some(value),
                "playpath" => p.playpath = Some(value),
                "tcurl" => o.tc_url = Some(value),
                "pageurl" => o.page_url = Some(value),
                "swfurl" => o.swf_url = Some(value),
                "flashver" => o.flash_ver = Some(value),
                "conn" => {
                    o.conn.push(value);
                    conn_values(&o.conn, true)?;
                }
                "live" => o.live = truth(&value),
                "subscribe" => o.subscribe = Some(value),
                "token" => o.token = Some(value),
                "start" => o.start_ms = Some(number("a position in milliseconds")?),
                "stop" => o.stop_ms = Some(number("a position in milliseconds")?),
                "buffer" => o.buffer_ms = Some(number("a length in milliseconds")?),
                "timeout" => o.timeout_s = Some(number("a number of seconds")?),
                // Only with swfVfy, which is refused below when on.
                "swfage" => {}
                "swfvfy" | "playlist" if !truth(&value) => {}
                "swfvfy" | "playlist" | "socks" | "jtv" => {
                    let why = match name.to_ascii_lowercase().as_str() {
                        "swfvfy" => {
                            "SWF verification is not supported (the servers that asked for it were Flash's); leave it out"
                        }
                        "playlist" => "set_playlist before play is not supported",
                        "socks" => "a SOCKS proxy is not supported",
                        _ => "Justin.tv's token is not supported",
                    };
                    return Err(Error::unsupported(format!("option {name}={value}: {why}")));
                }
                _ => {
                    return Err(Error::unsupported(format!(
                        "unknown option {name}= after the URL (librtmp's options: app, playpath, tcUrl, pageUrl, swfUrl, flashver, conn, live, subscribe, token, start, stop, buffer, timeout)"
                    )));
                }
            }
        }
        conn_values(&p.options.conn, false)?;
        Ok(p)
    }

    /// The `conn=` options as AMF values, in order: the arguments sent
    /// after the connect command object.
    pub fn connect_args(&self) -> Vec<Amf0Value> {
        conn_values(&self.conn, false).expect("checked when parsed")
    }

    /// Writes the options out as [`UrlOptions::parse`] reads them, each
    /// after a space.
    pub(crate) fn write_to(&self, out: &mut String) {
        let mut put = |name: &str, value: &str| put(out, name, value);
        // In the order of librtmp's table of options.
        let connect = [
            ("tcUrl", &self.tc_url),
            ("pageUrl", &self.page_url),
            ("swfUrl", &self.swf_url),
            ("flashver", &self.flash_ver),
        ];
        for (name, v) in connect {
            if let Some(v) = v {
                put(name, v);
            }
        }
        for c in &self.conn {
            put("conn", c);
        }
        if self.live {
            put("live", "1");
        }
        for (name, v) in [("subscribe", &self.subscribe), ("token", &self.token)] {
            if let Some(v) = v {
                put(name, v);
            }
        }
        let numbers = [
            ("start", self.start_ms),
            ("stop", self.stop_ms),
            ("buffer", self.buffer_ms),
            ("timeout", self.timeout_s),
        ];
        for (name, v) in numbers {
            if let Some(v) = v {
                put(name, &v.to_string());
            }
        }
    }

    /// Puts what the options say into a client's configuration, over what
    /// was there (the element's properties).
    pub fn apply_to(&self, c: &mut ClientConfig) {
        if let Some(t) = &self.tc_url {
            c.tc_url = t.clone();
        }
        if let Some(v) = &self.flash_ver {
            c.flash_ver = v.clone();
        }
        if self.swf_url.is_some() {
            c.swf_url = self.swf_url.clone();
        }
        if self.page_url.is_some() {
            c.page_url = self.page_url.clone();
        }
        c.connect_args.extend(self.connect_args());
        if self.live {
            c.play_start = -1000.0;
        } else if let Some(s) = self.start_ms {
            c.play_start = f64::from(s);
        }
        if let Some(stop) = self.stop_ms {
            let from = if self.live {
                0
            } else {
                self.start_ms.unwrap_or(0)
            };
            c.play_duration = f64::from(stop.saturating_sub(from));
        }
        if self.live || self.subscribe.is_some() {
            c.fc_subscribe = Some(self.subscribe.clone().unwrap_or_else(|| c.stream.clone()));
        }
        if let Some(t) = &self.token {
            c.secure_token = Some(crate::secure_token::Secret(t.clone()));
        }
        if let Some(b) = self.buffer_ms {
            c.buffer_ms = b;
        }
        if let Some(t) = self.timeout_s {
            c.response_timeout = std::time::Duration::from_secs(u64::from(t.max(1)));
        }
    }
}

impl fmt::Debug for UrlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret; the rest may go to logs.
        let shown = UrlOptions {
            token: self.token.as_ref().map(|_| "***".into()),
            ..self.clone()
        };
        let mut s = String::new();
        shown.write_to(&mut s);
        f.write_str(s.trim_start())
    }
}

/// Writes an app and a stream that a URL cannot hold (a space in them) as
/// `app=` and `playpath=`.
pub(crate) fn write_parts(app: &str, stream: &str, out: &mut String) {
    put(out, "app", app);
    put(out, "playpath", stream);
}

/// ` name=value`, the value escaped.
fn put(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    out.push_str(&escape(value));
}

/// librtmp's `\XX` escapes undone; the value must then be UTF-8.
fn unescape(raw: &str) -> std::result::Result<String, String> {
    let out = crate::url::hex_unescape(raw, b'\\').ok_or_else(|| {
        format!("'\\' must be followed by two hex digits (\\20 is a space) in '{raw}'")
    })?;
    String::from_utf8(out).map_err(|_| "the value is not UTF-8 once unescaped".into())
}

/// A value written so that [`unescape`] gives it back and no space splits
/// it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == '\\' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The AMF values of `conn=` options (librtmp's and FFmpeg's `rtmp_conn`
/// syntax): `B:1`, `N:3.5`, `S:text`, `Z:` (null), `O:1` ... `O:0` (an
/// object), and inside an object the named forms `NB:name:1`, `NN:`,
/// `NS:`, `NO:name:1`. `open` allows objects still open (while parsing).
fn conn_values(items: &[String], open: bool) -> Result<Vec<Amf0Value>> {
    let bad = |item: &str, why: &str| Error::malformed(format!("option conn={item}: {why}"));
    let mut args = Vec::new();
    // Objects being filled: their name (inside their parent) and fields.
    let mut stack: Vec<(Option<String>, Properties)> = Vec::new();
    for item in items {
        let (kind, rest) = item
            .split_once(':')
            .ok_or_else(|| bad(item, "a type and ':' come first (B:, N:, S:, Z:, O:)"))?;
        let (name, kind) = match kind.as_bytes() {
            [b'N', k] => {
                let (name, value) = rest
                    .split_once(':')
                    .ok_or_else(|| bad(item, "a named value is N<type>:name:value"))?;
                (Some((name.to_owned(), value)), *k)
            }
            [k] => (None, *k),
            _ => return Err(bad(item, "unknown type (B, N, S, Z, O, or N before one)")),
        };
        let text = name.as_ref().map_or(rest, |(_, v)| *v);
        if kind == b'O' && name.is_none() && text.trim() == "0" {
            let (own_name, fields) = stack
                .pop()
                .ok_or_else(|| bad(item, "O:0 closes no object"))?;
            let object = Amf0Value::Object(fields);
            match (own_name, stack.last_mut()) {
                (Some(n), Some((_, parent))) => parent.push((n, object)),
                _ => args.push(object),
            }
            continue;
        }
        if name.is_some() == stack.is_empty() {
            return Err(bad(
                item,
                if stack.is_empty() {
                    "a named value belongs inside an object (O:1 ... O:0)"
                } else {
                    "a value inside an object needs a name (NB:, NN:, NS:, NO:)"
                },
            ));
        }
        let value = match kind {
            b'B' => Amf0Value::Boolean(match text.trim().parse::<i64>() {
                Ok(n) => n != 0,
                Err(_) => truth(text.trim()),
            }),
            b'N' => Amf0Value::Number(
                text.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(item, "not a number"))?,
            ),
            b'S' => Amf0Value::String(text.to_owned()),
            b'Z' if name.is_none() => Amf0Value::Null,
            b'O' => match text.trim() {
                "1" => {
                    stack.push((name.map(|(n, _)| n), Vec::new()));
                    continue;
                }
                _ => return Err(bad(item, "O:1 opens an object and O:0 closes it")),
            },
            _ => return Err(bad(item, "unknown type (B, N, S, Z, O, or N before one)")),
        };
        match (name, stack.last_mut()) {
            (Some((n, _)), Some((_, fields))) => fields.push((n, value)),
            _ => args.push(value),
        }
    }
    if !open && !stack.is_empty() {
        return Err(Error::malformed(
            "option conn: an object opened with O:1 is not closed with O:0",
        ));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ClientMode;
    use crate::url::RtmpUrl;

    #[test]
    fn librtmp_options_after_the_url() {
        let u = RtmpUrl::parse(
            "rtmp://h/live/key live=1 buffer=3000  timeout=5 flashVer=FMLE/3.0\\20(compatible) TOKEN=s\\5cecret",
        )
        .unwrap();
        assert_eq!((u.app.as_str(), u.stream.as_str()), ("live", "key"));
        let o = &u.options;
        assert!(o.live);
        assert_eq!(o.buffer_ms, Some(3000));
        assert_eq!(o.timeout_s, Some(5));
        assert_eq!(o.flash_ver.as_deref(), Some("FMLE/3.0 (compatible)"));
        assert_eq!(o.token.as_deref(), Some("s\\ecret"));
        // The token stays out of what is logged.
        assert!(!format!("{o:?}").contains("ecret"), "{o:?}");
        // Written out, read back the same.
        assert_eq!(RtmpUrl::parse(&u.to_uri()).unwrap(), u);
    }

    #[test]
    fn app_and_playpath_replace_the_url_parts() {
        let u = RtmpUrl::parse("rtmp://h/x/y app=ondemand/inst playpath=mp4:a\\20b.mp4").unwrap();
        assert_eq!(u.app, "ondemand/inst");
        assert_eq!(u.stream, "mp4:a b.mp4");
        assert!(u.options.is_empty());
        assert_eq!(RtmpUrl::parse(&u.to_uri()).unwrap(), u);
    }

    #[test]
    fn a_url_without_options_is_as_before() {
        let u = RtmpUrl::parse("rtmp://h/app/stream").unwrap();
        assert!(u.options.is_empty());
        assert_eq!(u.to_uri(), "rtmp://h/app/stream");
    }

    #[test]
    fn a_reconnect_request_keeps_the_options_but_the_tc_url() {
        let u = RtmpUrl::parse("rtmp://h/live/k tcUrl=rtmp://h/live token=t live=1").unwrap();
        let r = u.redirected("rtmp://other/app2").unwrap();
        assert_eq!(
            (r.host.as_str(), r.app.as_str(), r.stream.as_str()),
            ("other", "app2", "k")
        );
        assert_eq!(r.options.tc_url, None);
        assert_eq!(r.options.token.as_deref(), Some("t"));
        assert!(r.options.live);
        // What follows a space in the server's tcUrl is not taken for options.
        let r = u.redirected("rtmp://other/app2 token=evil").unwrap();
        assert_eq!(r.options.token.as_deref(), Some("t"));
    }

    #[test]
    fn conn_builds_arguments_and_objects() {
        let u = RtmpUrl::parse(
            "rtmp://h/a/s conn=S:user conn=B:1 conn=Z: conn=O:1 conn=NN:n:2.5 conn=NO:o:1 conn=NS:k:v\\20w conn=O:0 conn=O:0 conn=N:7",
        )
        .unwrap();
        let args = u.options.connect_args();
        assert_eq!(
            args,
            vec![
                Amf0Value::String("user".into()),
                Amf0Value::Boolean(true),
                Amf0Value::Null,
                Amf0Value::Object(vec![
                    ("n".into(), Amf0Value::Number(2.5)),
                    (
                        "o".into(),
                        Amf0Value::Object(vec![("k".into(), Amf0Value::String("v w".into()))])
                    ),
                ]),
                Amf0Value::Number(7.0),
            ]
        );
        assert_eq!(RtmpUrl::parse(&u.to_uri()).unwrap(), u);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        for (loc, says) in [
            ("rtmp://h/a/s socks=p:1080", "SOCKS"),
            ("rtmp://h/a/s swfVfy=1 swfUrl=x", "SWF verification"),
            ("rtmp://h/a/s playlist=true", "playlist"),
            ("rtmp://h/a/s jtv=abc", "Justin.tv"),
            ("rtmp://h/a/s bogus=1", "unknown option bogus="),
            ("rtmp://h/a/s live", "not an option"),
            ("rtmp://h/a/s buffer=-1", "whole number"),
            ("rtmp://h/a/s token=a\\zz", "two hex digits"),
            ("rtmp://h/a/s conn=O:1 conn=NS:a:b", "not closed"),
            ("rtmp://h/a/s conn=NS:a:b", "inside an object"),
            ("rtmp://h/a/s conn=O:1 conn=S:a conn=O:0", "needs a name"),
            ("rtmp://h/a/s conn=O:0", "closes no object"),
            ("rtmp://h/a/s conn=X:1", "unknown type"),
            ("rtmp://h/a/s conn=N:abc", "not a number"),
        ] {
            let e = RtmpUrl::parse(loc).unwrap_err().to_string();
            assert!(e.contains(says), "{loc}: {e}");
        }
        // Off, they mean nothing.
        let u = RtmpUrl::parse("rtmp://h/a/s swfVfy=0 playlist=no swfAge=30").unwrap();
        assert!(u.options.is_empty());
    }

    #[test]
    fn options_go_into_the_client_configuration_over_the_defaults() {
        let u = RtmpUrl::parse(
            "rtmp://h/vod/mp4:f.mp4 start=2000 stop=5000 buffer=100 timeout=3 tcUrl=rtmp://o/vod pageUrl=http://p swfUrl=http://s.swf token=t conn=S:x",
        )
        .unwrap();
        let mut c = ClientConfig::new(ClientMode::Play, &u);
        u.options.apply_to(&mut c);
        assert_eq!(c.play_start, 2000.0);
        assert_eq!(c.play_duration, 3000.0);
        assert_eq!(c.buffer_ms, 100);
        assert_eq!(c.response_timeout, std::time::Duration::from_secs(3));
        assert_eq!(c.tc_url, "rtmp://o/vod");
        assert_eq!(c.page_url.as_deref(), Some("http://p"));
        assert_eq!(c.swf_url.as_deref(), Some("http://s.swf"));
        assert_eq!(c.secure_token.as_ref().map(|s| s.0.as_str()), Some("t"));
        assert_eq!(c.connect_args, vec![Amf0Value::String("x".into())]);
        assert_eq!(c.fc_subscribe, None);

        let live = RtmpUrl::parse("rtmp://h/live/cam live=1").unwrap();
        let mut c = ClientConfig::new(ClientMode::Play, &live);
        live.options.apply_to(&mut c);
        assert_eq!(c.play_start, -1000.0);
        assert_eq!(c.fc_subscribe.as_deref(), Some("cam"));
    }
}
