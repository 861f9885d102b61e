// SPDX-License-Identifier: MPL-2.0
//! The source inside `rtmpsrc` that owns the connection: plays the stream
//! and gives each audio, video and metadata message as an FLV tag, time
//! stamped in running time.

use gst::glib;

mod imp;

pub use imp::{ROLE, Settings, defaults};

glib::wrapper! {
    pub struct RtmpSrcConn(ObjectSubclass<imp::RtmpSrcConn>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

impl RtmpSrcConn {
    pub fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().settings()
    }

    pub fn stats(&self) -> gst::Structure {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().stats()
    }

    pub fn request_reconnect(&self, tc_url: Option<String>, why: String) -> u32 {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().request_reconnect(tc_url, why)
    }
}
