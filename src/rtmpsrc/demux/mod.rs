// SPDX-License-Identifier: MPL-2.0
//! The demuxer inside `rtmpsrc`: FLV tags in, H.264/HEVC and AAC/MP3/G.711/
//! PCM out on `video` and `audio` sometimes pads.

use gst::glib;

mod caps;
mod imp;
mod joins;
mod lanes;

pub use imp::Tag;

glib::wrapper! {
    pub struct RtmpSrcDemux(ObjectSubclass<imp::RtmpSrcDemux>) @extends gst::Element, gst::Object;
}
