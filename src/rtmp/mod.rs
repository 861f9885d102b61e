//! The sans-IO RTMP core: no GStreamer, no sockets, no clock. Bytes go in
//! (`feed`), events and bytes to send come out, time is passed in.

pub mod amf0;
pub mod amf3;
pub mod auth;
pub mod chunk;
pub mod error;
pub mod flv;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod limits;
pub mod message;
mod reader;
pub mod session;
pub mod url;

pub use error::{Error, ErrorKind, Result};
pub use limits::{AmfLimits, Limits};
