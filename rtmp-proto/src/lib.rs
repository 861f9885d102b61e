// SPDX-License-Identifier: MPL-2.0
//! The sans-IO RTMP core: no GStreamer, no sockets, no clock. Bytes go in
//! (`feed`), events and bytes to send come out, time is passed in.
//!
//! See the crate's README for what it is for, and
//! `examples/in_memory.rs` for a client and a server session driven in
//! memory with no socket.

#![deny(missing_docs)]

pub mod amf0;
pub mod amf3;
pub mod auth;
pub mod chunk;
pub mod codec;
pub mod error;
pub mod flv;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod idmap;
pub mod limits;
pub mod message;
mod reader;
pub mod secure_token;
pub mod session;
pub mod url;
pub mod url_options;

pub use error::{Error, ErrorKind, Result};
pub use limits::{AmfLimits, Limits};
