// SPDX-License-Identifier: MPL-2.0
//! `rtmpsrc`: plays an RTMP stream and gives H.264 and AAC (and the legacy
//! FLV audio codecs) on `video` and `audio` sometimes pads.
//!
//! A bin: an internal live source owns the connection and hands FLV tags in
//! running time to an internal demuxer, which adds the pads when the stream
//! tells what it carries.

use gst::glib;
use gst::prelude::*;

mod conn;
pub(crate) mod demux;
mod imp;

glib::wrapper! {
    pub struct RtmpSrc(ObjectSubclass<imp::RtmpSrc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy, gst::URIHandler;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Above rtmp2src (primary + 1), so that playbin picks this one.
    gst::Element::register(
        Some(plugin),
        "rtmpsrc",
        gst::Rank::PRIMARY + 2,
        RtmpSrc::static_type(),
    )
}
