// SPDX-License-Identifier: MPL-2.0
//! `rtmp[s]://[user:pass@]host[:port]/app[/instance]/stream[?query]`
//!
//! The app/stream split follows FFmpeg and librtmp, which servers are
//! configured around: the app is the first path segment, or the first two
//! when a third follows ("app/instance"); the rest, query included, is the
//! stream. A stream that starts with a type prefix ("mp4:dir/file") keeps
//! the app to one segment. Without a stream, the query stays on the app.
//! After a space, librtmp's options may follow (see [`crate::url_options`]).

use std::fmt;

use super::error::{Error, Result};
use super::url_options::UrlOptions;

/// Plain RTMP or RTMP over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `rtmp://`, TCP port 1935 by default.
    Rtmp,
    /// `rtmps://`, TLS, port 443 by default.
    Rtmps,
}

impl Scheme {
    /// The port used when the URL gives none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Rtmp => 1935,
            Scheme::Rtmps => 443,
        }
    }

    /// The scheme as it is written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Rtmp => "rtmp",
            Scheme::Rtmps => "rtmps",
        }
    }
}

/// An `rtmp[s]://` URL split as servers expect it. `Debug` and `Display`
/// show it with the password and stream key hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmp` or `rtmps`.
    pub scheme: Scheme,
    /// The user name before `@`, %-decoded.
    pub user: Option<String>,
    /// The password after `user:`, %-decoded.
    pub password: Option<String>,
    /// Host name or address; IPv6 without brackets.
    pub host: String,
    /// The port given in the URL, if any.
    pub explicit_port: Option<u16>,
    /// The application (first path segment, or two: "app/instance"), with
    /// its query if it has one.
    pub app: String,
    /// Stream name (key), with its query if it has one.
    pub stream: String,
    /// librtmp's options, written after the URL and a space (boxed: most
    /// URLs have none).
    pub options: Box<UrlOptions>,
}

impl RtmpUrl {
    /// Parses `s`, and librtmp's options after its first space if any
    /// (`app=` and `playpath=` among them replace the app and the stream);
    /// a clear error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Self> {
        let (s, options) = match s.split_once(' ') {
            Some((url, rest)) => (url, Some(UrlOptions::parse(rest)?)),
            None => (s, None),
        };
        let mut url = Self::parse_url(s)?;
        if let Some(o) = options {
            if let Some(app) = o.app {
                url.app = app;
            }
            if let Some(path) = o.playpath {
                url.stream = path;
            }
            url.options = Box::new(o.options);
        }
        Ok(url)
    }

    fn parse_url(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::malformed(format!("invalid RTMP URL: {why}"));
        let (scheme, rest) = match s.split_once("://") {
            Some((sch, rest)) if sch.eq_ignore_ascii_case("rtmp") => (Scheme::Rtmp, rest),
            Some((sch, rest)) if sch.eq_ignore_ascii_case("rtmps") => (Scheme::Rtmps, rest),
            Some((sch, _)) => {
                return Err(Error::unsupported(format!(
                    "URL scheme '{sch}' is not supported; use rtmp:// or rtmps://"
                )));
            }
            None => return Err(bad("it must start with rtmp:// or rtmps://")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(percent_decode(a)?), Some(percent_decode(b)?)),
                None => (Some(percent_decode(u)?), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
            let host = &r[..end];
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after IPv6 address")),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        check_host(host)?;
        let explicit_port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("port '{p}' is not a number from 0 to 65535")))?,
            ),
            None => None,
        };
        let (app, stream) = split_path(path);
        Ok(RtmpUrl {
            scheme,
            user,
            password,
            host: host.to_owned(),
            explicit_port,
            app,
            stream,
            options: Box::default(),
        })
    }

    /// Whether the URL, perhaps put together from parts, is one `parse`
    /// would give: an error names what is wrong (a host with a space).
    pub fn check(&self) -> Result<()> {
        check_host(&self.host)
    }

    /// The port to connect to: the URL's, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.explicit_port.unwrap_or(self.scheme.default_port())
    }

    /// "host:port" for connecting, with brackets around IPv6.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port())
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The tcUrl sent in `connect`: scheme, host, port as given, app.
    pub fn tc_url(&self) -> String {
        let port = self
            .explicit_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "{}://{}{}/{}",
            self.scheme.as_str(),
            self.bracketed_host(),
            port,
            self.app
        )
    }

    /// Where a server's reconnect request sends us: `tc_url` resolved
    /// against our own tcUrl (absolute `rtmp://host/app`, network-path
    /// `//host/app`, absolute-path `/app`, or relative `app`), with the
    /// same stream. Credentials go along only to the same host.
    pub fn redirected(&self, tc_url: &str) -> Result<RtmpUrl> {
        let ours = self.tc_url();
        let absolute = if tc_url.contains("://") {
            tc_url.to_owned()
        } else if let Some(rest) = tc_url.strip_prefix("//") {
            format!("{}://{rest}", self.scheme.as_str())
        } else if tc_url.starts_with('/') {
            let port = self
                .explicit_port
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!(
                "{}://{}{port}{tc_url}",
                self.scheme.as_str(),
                self.bracketed_host()
            )
        } else {
            // Relative: replaces the last segment of our tcUrl's path.
            let base = match ours.rfind('/') {
                Some(i) if i > ours.find("://").map_or(0, |s| s + 2) => &ours[..=i],
                _ => &ours[..],
            };
            format!(
                "{}{}{tc_url}",
                base,
                if base.ends_with('/') { "" } else { "/" }
            )
        };
        // A tcUrl is a URL alone: what follows a space in it is no option.
        let mut url = RtmpUrl::parse_url(&absolute)?;
        // The tcUrl's whole path is the application.
        let app = match (url.app.is_empty(), url.stream.is_empty()) {
            (_, true) => url.app.clone(),
            (true, false) => url.stream.clone(),
            (false, false) => format!("{}/{}", url.app, url.stream),
        };
        url.app = app.trim_end_matches('/').to_owned();
        url.stream = self.stream.clone();
        // Our options go along, but for the tcUrl the server just gave.
        url.options = self.options.clone();
        url.options.tc_url = None;
        if url.host == self.host && url.port() == self.port() && url.user.is_none() {
            url.user = self.user.clone();
            url.password = self.password.clone();
        }
        Ok(url)
    }

    /// The URL written out whole, credentials included (%-encoded where
    /// they need it), for a `location` property to show: `parse` of it
    /// gives this URL back. An app and stream that the path would split
    /// otherwise (set apart, a `/` in the stream of a one-segment app) or
    /// that hold a space are written as `app=` and `playpath=` options.
    pub fn to_uri(&self) -> String {
        let mut s = format!("{}://", self.scheme.as_str());
        if let Some(user) = &self.user {
            s.push_str(&percent_encode(user));
            if let Some(pw) = &self.password {
                s.push(':');
                s.push_str(&percent_encode(pw));
            }
            s.push('@');
        }
        s.push_str(&self.bracketed_host());
        if let Some(p) = self.explicit_port {
            s.push_str(&format!(":{p}"));
        }
        let mut path = String::new();
        if !self.app.is_empty() || !self.stream.is_empty() {
            path.push('/');
            path.push_str(&self.app);
        }
        if !self.stream.is_empty() {
            path.push('/');
            path.push_str(&self.stream);
        } else if self.app.contains('/') {
            // "app/inst/": without the slash, "inst" would read as the
            // stream.
            path.push('/');
        }
        let (app, stream) = split_path(&path);
        if path.contains(' ') || app != self.app || stream != self.stream {
            // A space would end the URL, or the path would split the
            // other way (parts set apart, `app=`): they go as librtmp's
            // options.
            crate::url_options::write_parts(&self.app, &self.stream, &mut s);
        } else {
            s.push_str(&path);
        }
        self.options.write_to(&mut s);
        s
    }

    /// The stream name with any query cut off.
    pub fn stream_name(&self) -> &str {
        self.stream.split('?').next().unwrap_or_default()
    }

    /// The URL with the password and stream key hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        let user = match &self.user {
            Some(u) if self.password.is_some() => format!("{u}:***@"),
            Some(u) => format!("{u}@"),
            None => String::new(),
        };
        let port = self
            .explicit_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        // No stream (a server's location, or a mistake an error shows):
        // no slash for it either.
        let stream = match self.stream.is_empty() {
            true => String::new(),
            false => format!("/{}", redact_key(&self.stream)),
        };
        format!(
            "{}://{}{}{}/{}{}",
            self.scheme.as_str(),
            user,
            self.bracketed_host(),
            port,
            redact_query(&self.app),
            stream
        )
    }
}

/// `app?token=abc&user=x` as `app?token=***&user=***`: tokens that
/// platforms put in the application's query stay out of logs.
pub fn redact_query(s: &str) -> String {
    let Some((head, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => kv.to_owned(),
        })
        .collect();
    format!("{head}?{}", masked.join("&"))
}

/// Shows a few leading characters of a stream key and hides the rest, so
/// that logs tell keys apart without giving them away.
pub fn redact_key(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let shown: String = key.chars().take(2).collect();
    format!("{shown}***")
}

impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn check_host(host: &str) -> Result<()> {
    if host.is_empty() {
        return Err(Error::malformed("invalid RTMP URL: no host"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "[]@/?#\\".contains(c))
    {
        return Err(Error::malformed(
            "invalid RTMP URL: the host has characters no host name or address has",
        ));
    }
    Ok(())
}

fn split_path(path: &str) -> (String, String) {
    let path = path.strip_prefix('/').unwrap_or(path);
    // A query right after the app belongs to the app; a stream may follow
    // it ("app?token=x/stream", as some CDNs hand out).
    let first_end = path.find(['/', '?']).unwrap_or(path.len());
    if path[first_end..].starts_with('?') {
        return match path[first_end..].find('/') {
            Some(i) => (
                path[..first_end + i].to_owned(),
                path[first_end + i + 1..].to_owned(),
            ),
            None => (path.to_owned(), String::new()),
        };
    }
    if first_end == path.len() {
        return (path.to_owned(), String::new());
    }
    let first = &path[..first_end];
    let after = &path[first_end + 1..];
    let second_end = after.find('/');
    let query_at = after.find('?');
    match second_end {
        Some(i) if query_at.is_none_or(|q| q > i) && !after[..i].contains(':') => (
            format!("{first}/{}", &after[..i]),
            after[i + 1..].to_owned(),
        ),
        _ => (first.to_owned(), after.to_owned()),
    }
}

/// %-encodes what a user or password cannot hold as is in a URL's
/// userinfo (the delimiters, `%` and anything outside printable ASCII).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String> {
    let out = hex_unescape(s, b'%')
        .ok_or_else(|| Error::malformed("invalid RTMP URL: bad %-escape in user or password"))?;
    String::from_utf8(out)
        .map_err(|_| Error::malformed("invalid RTMP URL: user or password is not UTF-8"))
}

/// `s` with every `marker` and the two hex digits after it (`%20`, or
/// librtmp's `\20`) made the byte they name; None if one is not followed
/// by two hex digits.
pub(crate) fn hex_unescape(s: &str, marker: u8) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == marker {
            let hex = s.get(i + 1..i + 3)?;
            // Two hex digits, not a sign and one (from_str_radix takes "+1").
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RtmpUrl {
        RtmpUrl::parse(s).unwrap()
    }

    #[test]
    fn splits() {
        let u = p("rtmp://localhost/live/key");
        assert_eq!(
            (u.app.as_str(), u.stream.as_str(), u.port()),
            ("live", "key", 1935)
        );
        assert_eq!(u.tc_url(), "rtmp://localhost/live");

        let u = p("rtmp://a.b:1936/app/inst/key?token=x/y");
        assert_eq!(
            (u.app.as_str(), u.stream.as_str()),
            ("app/inst", "key?token=x/y")
        );
        assert_eq!(u.stream_name(), "key");
        assert_eq!(u.tc_url(), "rtmp://a.b:1936/app/inst");

        let u = p("rtmp://h/live/key?secret=1");
        assert_eq!(
            (u.app.as_str(), u.stream.as_str()),
            ("live", "key?secret=1")
        );

        let u = p("rtmp://h/vod/mp4:dir/file.mp4");
        assert_eq!(
            (u.app.as_str(), u.stream.as_str()),
            ("vod", "mp4:dir/file.mp4")
        );

        let u = p("rtmp://h/app?auth=1");
        assert_eq!((u.app.as_str(), u.stream.as_str()), ("app?auth=1", ""));

        let u = p("rtmp://h/app");
        assert_eq!((u.app.as_str(), u.stream.as_str()), ("app", ""));

        let u = p("rtmp://h/app?token=t0/key?x=1");
        assert_eq!(
            (u.app.as_str(), u.stream.as_str()),
            ("app?token=t0", "key?x=1")
        );
        assert_eq!(u.tc_url(), "rtmp://h/app?token=t0");

        let u = p("rtmps://user:p%40ss@[::1]/live/abcdef");
        assert_eq!(u.scheme, Scheme::Rtmps);
        assert_eq!(u.host, "::1");
        assert_eq!(u.port(), 443);
        assert_eq!(u.host_port(), "[::1]:443");
        assert_eq!(u.user.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.tc_url(), "rtmps://[::1]/live");

        let u = p("rtmp://[2001:db8::1]:1940/a/b/c/d");
        assert_eq!(
            (u.port(), u.app.as_str(), u.stream.as_str()),
            (1940, "a/b", "c/d")
        );
    }

    #[test]
    fn written_out_parses_back() {
        for s in [
            "rtmp://localhost/live/key",
            "rtmp://a.b:1936/app/inst/key?token=x/y",
            "rtmps://user:p%40ss@[::1]/live/abcdef",
            "rtmps://us%3Aer:p%3Aw%2Fx%20%C3%A9@h:443/live/k",
            "rtmp://u@h/a",
            "rtmp://h/vod/mp4:dir/file.mp4",
            "rtmp://h/app?auth=1",
            "rtmp://h/app?token=t0/key?x=1",
            "rtmp://[2001:db8::1]:1940/a/b/c/d",
            "rtmp://0.0.0.0:0",
            "rtmp://h:0/live",
            "rtmp://h/app/inst/",
            "rtmp://h/\0/h/",
        ] {
            let u = p(s);
            assert_eq!(p(&u.to_uri()), u, "{s} -> {}", u.to_uri());
        }
        assert_eq!(p("RTMP://h/a/b").to_uri(), "rtmp://h/a/b");
        assert_eq!(
            p("rtmps://us%3Aer:p%40ss@[::1]:1/live/k").to_uri(),
            "rtmps://us%3Aer:p%40ss@[::1]:1/live/k"
        );
    }

    #[test]
    fn reconnect_requests_resolve_against_our_tc_url() {
        let u = p("rtmp://user:pw@a.example:1936/live/key?t=1");
        let r = u.redirected("rtmp://b.example/other").unwrap();
        assert_eq!(r.tc_url(), "rtmp://b.example/other");
        assert_eq!((r.stream.as_str(), r.user.as_deref()), ("key?t=1", None));
        let r = u.redirected("//[::1]:1940/app/inst").unwrap();
        assert_eq!(r.tc_url(), "rtmp://[::1]:1940/app/inst");
        assert_eq!(r.stream, "key?t=1");
        let r = u.redirected("/moved").unwrap();
        assert_eq!(r.tc_url(), "rtmp://a.example:1936/moved");
        assert_eq!(
            (r.user.as_deref(), r.password.as_deref()),
            (Some("user"), Some("pw"))
        );
        let r = u.redirected("sibling").unwrap();
        assert_eq!(r.tc_url(), "rtmp://a.example:1936/sibling");
        assert_eq!(r.stream, "key?t=1");
        let r = p("rtmps://a.example/live/k")
            .redirected("//b.example/x/")
            .unwrap();
        assert_eq!(r.tc_url(), "rtmps://b.example/x");
        assert!(u.redirected("http://b.example/x").is_err());
    }

    #[test]
    fn secrets_stay_hidden() {
        let u = p("rtmp://h/app?token=abcdef&k=1");
        assert_eq!(u.redacted(), "rtmp://h/app?token=***&k=***");
        assert_eq!(p("rtmp://h:1935/").redacted(), "rtmp://h:1935/");
        let u = p("rtmp://bob:hunter2@h:1935/live/supersecretkey?x=1");
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(
            shown.contains("rtmp://bob:***@h:1935/live/su***"),
            "{shown}"
        );
    }

    #[test]
    fn errors() {
        for (s, words) in [
            ("http://h/a/b", "scheme 'http'"),
            ("h/a/b", "must start"),
            ("rtmp:///a/b", "no host"),
            ("rtmp://h:99999/a", "port '99999'"),
            ("rtmp://[::1/a", "unclosed"),
            ("rtmp://u%zz@h/a", "%-escape"),
            ("rtmp://h\u{16}]x:1/a", "no host name"),
            ("rtmp://a b/live/k", "ends at its first space"),
        ] {
            let e = RtmpUrl::parse(s).unwrap_err();
            assert!(e.reason().contains(words), "{s}: {e}");
        }
    }
}
