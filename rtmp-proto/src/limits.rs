// SPDX-License-Identifier: MPL-2.0
//! Every quantity a peer controls is bounded here. The defaults are generous
//! enough for 4K keyframes and chatty servers, small enough that a hostile
//! peer cannot make one connection hold more than tens of MiB.

/// Bounds on AMF decoding (commands, metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmfLimits {
    /// Nesting of objects/arrays inside each other.
    pub max_depth: u32,
    /// Values decoded in one message, counting every nested value.
    pub max_elements: u32,
    /// Bytes of string data materialised in one message (AMF3 string
    /// references could otherwise multiply a short input).
    pub max_string_bytes: u32,
}

impl Default for AmfLimits {
    fn default() -> Self {
        AmfLimits {
            max_depth: 32,
            max_elements: 65_536,
            max_string_bytes: 4 << 20,
        }
    }
}

/// Bounds on the chunk stream and on message decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted (the wire format allows 16 MiB - 1).
    pub max_message_size: u32,
    /// Chunk streams that may have a partly received message at once.
    pub max_chunk_streams: u32,
    /// Bytes reserved for all partly received messages together.
    pub max_reassembly_bytes: u64,
    /// Largest command or data (AMF) message.
    pub max_command_size: u32,
    /// AMF decoding bounds for commands and metadata.
    pub amf: AmfLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 0xFF_FFFF,
            max_chunk_streams: 64,
            max_reassembly_bytes: 64 << 20,
            max_command_size: 1 << 20,
            amf: AmfLimits::default(),
        }
    }
}
