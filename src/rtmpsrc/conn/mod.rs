// SPDX-License-Identifier: MPL-2.0
//! The source inside `rtmpsrc` that owns the connection: plays the stream
//! and hands each audio, video and metadata message to the demuxer linked
//! to it as a tag stamped in running time, straight (no buffer, no pad
//! push: its streaming thread, or its context's, calls into the demuxer
//! under the demuxer's stream lock).
//!
//! It has no properties of its own: the bin hands it a snapshot of its
//! settings as it starts ([`crate::handed`]), and it runs by that.

use gst::glib;

pub(crate) mod imp;
mod time;

pub(crate) use imp::CAT;
pub use imp::{ROLE, Settings, defaults};

glib::wrapper! {
    pub struct RtmpSrcConn(ObjectSubclass<imp::RtmpSrcConn>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}
