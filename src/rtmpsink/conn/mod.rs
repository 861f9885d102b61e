// SPDX-License-Identifier: MPL-2.0
//! The sink inside `rtmpsink` that owns the connection: FLV tags in (from
//! the muxer or from flvmux), RTMP messages out.
//!
//! It has no properties of its own: the bin hands it a snapshot of its
//! settings as it starts ([`crate::handed`]), and it runs by that.

use gst::glib;

mod backlog;
pub(crate) mod imp;

pub use imp::{ROLE, Settings, StopCommands, UnannouncedCodec, defaults as imp_defaults};

glib::wrapper! {
    pub struct RtmpSinkConn(ObjectSubclass<imp::RtmpSinkConn>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}
