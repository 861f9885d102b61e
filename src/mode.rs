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
}
