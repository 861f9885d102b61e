// SPDX-License-Identifier: MPL-2.0
//! Sans-IO RTMP sessions: [`ClientSession`] publishes or plays,
//! [`ServerSession`] serves one connection. Both take bytes (`feed`) and
//! time (`handle_timeout`), give events (`poll_event`) and bytes to send
//! (`send_buf` / `advance`), and never touch a socket or a clock.

mod client;
mod connection;
mod server;

pub use client::{
    ClientConfig, ClientEvent, ClientMode, ClientSession, ClientState, EnhancedCaps, Stage,
    StopCommands,
};
pub use connection::{Connection, ConnectionStats};
pub use server::{ServerConfig, ServerEvent, ServerSession};

/// Chunk stream ids we send on (FFmpeg's choice, which servers are used to).
pub mod csid {
    /// Protocol control (chunk size, acknowledgements, user control).
    pub const CONTROL: u32 = 2;
    /// NetConnection commands (connect, createStream...).
    pub const COMMAND: u32 = 3;
    /// Audio messages.
    pub const AUDIO: u32 = 4;
    /// Data (metadata) messages.
    pub const DATA: u32 = 5;
    /// Video messages.
    pub const VIDEO: u32 = 6;
    /// NetStream commands (publish, play, onStatus...).
    pub const STREAM_COMMAND: u32 = 8;
}

/// The chunk size we send with unless told otherwise: large chunks cost
/// less CPU per byte on both ends, and every server in use accepts them.
pub const DEFAULT_OUT_CHUNK_SIZE: u32 = 4096;

#[cfg(test)]
mod tests;
