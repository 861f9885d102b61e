// SPDX-License-Identifier: MPL-2.0
//! Taking a publisher (rtmpsrc mode=server): one at a time; a second one
//! is refused, or takes over when asked. What the publisher sends becomes
//! the same events a playing client gives, framed by `StreamBegin` and
//! `StreamEnded`, so that the element treats both modes alike.

use std::time::Instant;

use mio::Token;

use super::{Hooks, Peer, Shared, lock};
use crate::rtmp::idmap::IdMap;
use crate::rtmp::session::{ClientEvent, ServerEvent};

#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// A second publisher of the stream replaces the first (true) or is
    /// refused with NetStream.Publish.BadName (false).
    pub takeover: bool,
}

pub(super) struct PublishRole {
    options: PublishOptions,
    /// The publishing connection and its message stream.
    active: Option<(Token, u32)>,
}

/// Hands `e`, read at `at`, to the element; true when so much waits for
/// it that the publisher must not be read until it catches up (see
/// `next_event`). Nobody is woken: the streaming thread takes events
/// between the loop's steps, whichever thread runs them.
fn push(shared: &Shared, e: ClientEvent, at: Instant) -> bool {
    let mut inner = lock(&shared.inner);
    inner.events.push(e, at);
    let pause = inner.events.bytes > crate::net::MAX_QUEUED_BYTES;
    inner.reading_paused |= pause;
    pause
}

impl PublishRole {
    pub fn new(options: PublishOptions) -> Self {
        PublishRole {
            options,
            active: None,
        }
    }

    fn end_active(&mut self, shared: &Shared, reason: &str) {
        if self.active.take().is_some() {
            push(
                shared,
                ClientEvent::StreamEnded {
                    reason: reason.to_owned(),
                },
                Instant::now(),
            );
        }
    }

    pub fn start_publisher(
        &mut self,
        token: Token,
        stream_id: u32,
        peers: &mut IdMap<Token, Peer>,
        shared: &Shared,
        _hooks: &Hooks,
        now: Instant,
    ) -> Result<(), String> {
        if let Some((current, _)) = self.active
            && current != token
        {
            if !self.options.takeover {
                if let Some(p) = peers.get_mut(&token) {
                    p.session
                        .reject_stream(
                            stream_id,
                            "NetStream.Publish.BadName",
                            "the stream is already being published",
                        )
                        .ok();
                }
                return Err("publish refused: the stream is already being published".into());
            }
            if let Some(old) = peers.get_mut(&current) {
                old.close_with("a new publisher took over the stream", now);
            }
            self.end_active(shared, "a new publisher took over the stream");
        }
        let Some(p) = peers.get_mut(&token) else {
            return Err("gone".into());
        };
        p.session
            .accept_publish(stream_id)
            .map_err(|e| format!("protocol error: {e}"))?;
        self.active = Some((token, stream_id));
        push(shared, ClientEvent::StreamBegin(stream_id), Instant::now());
        Ok(())
    }

    /// What a connection sent; only the active publisher's media counts.
    pub fn on_event(
        &mut self,
        token: Token,
        ev: ServerEvent,
        peers: &mut IdMap<Token, Peer>,
        shared: &Shared,
        now: Instant,
    ) {
        let Some((active, sid)) = self.active else {
            return;
        };
        if active != token {
            return;
        }
        let e = match ev {
            ServerEvent::Audio {
                stream_id,
                timestamp,
                payload,
            } if stream_id == sid => ClientEvent::Audio { timestamp, payload },
            ServerEvent::Video {
                stream_id,
                timestamp,
                payload,
            } if stream_id == sid => ClientEvent::Video { timestamp, payload },
            ServerEvent::Data {
                stream_id,
                timestamp,
                data,
            } if stream_id == sid => ClientEvent::Data { timestamp, data },
            ServerEvent::Unpublished { stream_id } | ServerEvent::StreamDeleted { stream_id }
                if stream_id == sid =>
            {
                self.end_active(shared, "the publisher stopped publishing");
                if let Some(p) = peers.get_mut(&token) {
                    p.close_with("stopped publishing", now);
                }
                return;
            }
            _ => return,
        };
        // `now`: when this step's reads began, microseconds ago (a clock
        // read per message is a cost every publisher's frames pay).
        if push(shared, e, now)
            && let Some(p) = peers.get_mut(&token)
        {
            // The pipeline is behind: stop reading until it catches up,
            // so that TCP slows the publisher down.
            p.read_paused = true;
        }
    }

    pub fn on_closed(&mut self, token: Token, reason: &str, shared: &Shared, _now: Instant) {
        if self.active.is_some_and(|(t, _)| t == token) {
            self.end_active(shared, reason);
        }
    }
}
