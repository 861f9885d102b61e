// SPDX-License-Identifier: MPL-2.0
//! RTMP for GStreamer: elements that speak elementary streams, over a
//! sans-IO protocol core in [`rtmp`] and the socket drivers in [`net`].

pub mod caps;
mod common;
mod handed;
mod latency;
pub mod mode;
pub mod net;
pub mod policy;
/// The protocol core, its own crate (`rtmp-proto/`).
pub use rtmp_proto as rtmp;
#[cfg(test)]
mod harness_tests;
pub mod rtmpsink;
pub mod rtmpsrc;
mod security;
mod shared;
mod sync;

// The plugin is named `rtmp` in a file `libgstrtmp.so`, so that it shadows
// Debian's librtmp plugin of the same basename (see the README, "Using
// the plugin").
fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    latency::init();
    rtmpsink::register(plugin)?;
    rtmpsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    rtmp,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "unpublished",
    env!("BUILD_REL_DATE")
);
