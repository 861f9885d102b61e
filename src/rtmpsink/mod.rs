// SPDX-License-Identifier: MPL-2.0
//! `rtmpsink`: publishes H.264 and AAC (or MP3) elementary streams, or FLV
//! from flvmux, to an RTMP server.
//!
//! A bin: request pads `video` and `audio` feed an internal muxer that
//! interleaves by DTS and makes FLV tags, which an internal sink sends as
//! RTMP messages. A request pad `sink` takes FLV (flvmux, a file) straight
//! to that sink.

use gst::glib;
use gst::prelude::*;

mod conn;
mod imp;
pub(crate) mod mux;

glib::wrapper! {
    pub struct RtmpSink(ObjectSubclass<imp::RtmpSink>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy, gst::URIHandler;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Above rtmp2sink (primary + 1), so that rtmp:// URIs pick this one.
    gst::Element::register(
        Some(plugin),
        "rtmpsink",
        gst::Rank::PRIMARY + 2,
        RtmpSink::static_type(),
    )
}
