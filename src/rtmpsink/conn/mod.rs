// SPDX-License-Identifier: MPL-2.0
//! The sink inside `rtmpsink` that owns the connection: FLV tags in (from
//! the muxer or from flvmux), RTMP messages out.

use gst::glib;

mod backlog;
mod imp;

pub use imp::{ROLE, Settings, StopCommands, defaults as imp_defaults};

glib::wrapper! {
    pub struct RtmpSinkConn(ObjectSubclass<imp::RtmpSinkConn>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

impl RtmpSinkConn {
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
