// SPDX-License-Identifier: MPL-2.0
//! The `mode` property both elements share.

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
