// SPDX-License-Identifier: MPL-2.0
//! The enums of properties both elements share: `mode` and `scheme`.

use gst::glib;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtmpMode")]
pub enum RtmpMode {
    /// Connect to a server (nginx-rtmp, YouTube, Twitch, FFmpeg...).
    #[default]
    #[enum_value(name = "Client: connect to an RTMP server", nick = "client")]
    Client = 0,
    /// Listen on the location's address: rtmpsrc takes a publisher (OBS,
    /// FFmpeg), rtmpsink serves players.
    #[enum_value(
        name = "Server: listen on the location's address for publishers (rtmpsrc) or players (rtmpsink)",
        nick = "server"
    )]
    Server = 1,
}

/// The `scheme` property both elements share (rtmp2's, under a type name
/// of our own so that both plugins load in one process).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtmpUrlScheme")]
pub enum UrlScheme {
    /// `rtmp://`: TCP, port 1935 unless given.
    #[default]
    #[enum_value(name = "rtmp://: TCP, port 1935 unless given", nick = "rtmp")]
    Rtmp = 0,
    /// `rtmps://`: TLS, port 443 unless given.
    #[enum_value(name = "rtmps://: TLS, port 443 unless given", nick = "rtmps")]
    Rtmps = 1,
}

impl From<UrlScheme> for crate::rtmp::url::Scheme {
    fn from(s: UrlScheme) -> Self {
        match s {
            UrlScheme::Rtmp => Self::Rtmp,
            UrlScheme::Rtmps => Self::Rtmps,
        }
    }
}

impl From<crate::rtmp::url::Scheme> for UrlScheme {
    fn from(s: crate::rtmp::url::Scheme) -> Self {
        match s {
            crate::rtmp::url::Scheme::Rtmp => Self::Rtmp,
            crate::rtmp::url::Scheme::Rtmps => Self::Rtmps,
        }
    }
}
