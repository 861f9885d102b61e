// SPDX-License-Identifier: MPL-2.0
//! The muxer inside `rtmpsink`: H.264, AAC and MP3 buffers in, FLV tags
//! out, interleaved by DTS on the threads that bring the frames (no thread
//! of its own). Not registered as an element of its own.

use gst::glib;

mod imp;

glib::wrapper! {
    pub struct RtmpSinkMux(ObjectSubclass<imp::RtmpSinkMux>) @extends gst::Element, gst::Object;
}

impl RtmpSinkMux {
    /// Frames written so far: (video, audio).
    pub fn frame_counts(&self) -> (u64, u64) {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().frame_counts()
    }

    /// Pad to socket, per kind: `video-latency-p50` and so on (see
    /// crate::latency).
    pub fn write_latencies(&self, s: &mut gst::StructureRef) {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().write_latencies(s)
    }

    /// rtmpsink's `latency`: added to the latency reported downstream.
    pub fn set_latency(&self, latency: gst::ClockTime) {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().set_latency(latency)
    }

    /// rtmpsink's `interleave`: false sends each frame as soon as it comes.
    pub fn set_interleave(&self, on: bool) {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().set_interleave(on)
    }

    /// `measure-latency`: stamps arrivals on the pads, and times them.
    pub fn set_measure_latency(&self, on: bool) {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().set_measure_latency(on)
    }
}
