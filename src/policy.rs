// SPDX-License-Identifier: MPL-2.0
//! The elements' connection policies as state machines with time passed
//! in, in the manner of the protocol core: each `on_*` call says what
//! happened and when, and returns what to do. No sockets, no sleeps, no
//! GStreamer: every branch is reachable from a unit test (below).
//!
//! - [`Reconnect`]: after a lost connection, when to try again and when to
//!   give up (attempts, doubling backoff, refusals that retrying would only
//!   meet again). Both elements, client mode.
//! - [`SourcePolicy`]: what rtmpsrc's streaming thread does with what the
//!   connection gives, or with a silence: deliver, end (EOS), ping a quiet
//!   server, reconnect, or fail; the publisher-restart and publisher-timeout
//!   deadlines.

use std::time::{Duration, Instant};

use crate::rtmp::error::Error;
use crate::rtmp::session::ClientEvent;

/// The reconnection settings (`reconnect-attempts`, `reconnect-delay`,
/// `reconnect-max-delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectSettings {
    /// Attempts after a loss: -1 for ever, 0 never.
    pub attempts: i32,
    /// The wait before the first attempt; each next one waits twice as long.
    pub first_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
}

impl ReconnectSettings {
    /// Whether a lost connection is reconnected at all.
    pub fn enabled(&self) -> bool {
        self.attempts != 0
    }

    /// The wait before attempt `attempt` (from 1): the first delay, doubling,
    /// at most the maximum (never below the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let d = self
            .first_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        d.min(self.max_delay.max(self.first_delay))
    }
}

/// What to do about a lost connection or a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make attempt `attempt` at `at` (after `delay`).
    Retry {
        /// Which attempt (from 1).
        attempt: u32,
        /// When to make it.
        at: Instant,
        /// How long that is from now.
        delay: Duration,
    },
    /// Stop trying; the stream fails.
    GiveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
        /// The last failure was a refusal (a login, a key, a certificate):
        /// another attempt would meet it again.
        refused: bool,
    },
}

/// The reconnection of one connection: attempts counted from the loss,
/// reset once connected again.
#[derive(Debug, Clone)]
pub struct Reconnect {
    settings: ReconnectSettings,
    /// Attempts made since the connection was lost.
    attempt: u32,
}

impl Reconnect {
    /// A policy with these settings, connected.
    pub fn new(settings: ReconnectSettings) -> Self {
        Reconnect {
            settings,
            attempt: 0,
        }
    }

    /// The settings it follows.
    pub fn settings(&self) -> ReconnectSettings {
        self.settings
    }

    /// Attempts made since the last loss.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn next(&mut self, reason: &Error, now: Instant) -> Step {
        if !crate::net::worth_retrying(reason) {
            return Step::GiveUp {
                attempts: self.attempt,
                reason: reason.to_string(),
                refused: true,
            };
        }
        let max = self.settings.attempts;
        if max == 0 || (max > 0 && self.attempt >= max as u32) {
            return Step::GiveUp {
                attempts: self.attempt,
                reason: reason.to_string(),
                refused: false,
            };
        }
        self.attempt += 1;
        let delay = self.settings.delay(self.attempt);
        Step::Retry {
            attempt: self.attempt,
            at: now + delay,
            delay,
        }
    }

    /// The connection was lost at `now` because of `reason`.
    pub fn on_lost(&mut self, reason: &Error, now: Instant) -> Step {
        self.attempt = 0;
        self.next(reason, now)
    }

    /// Attempt [`attempts`](Self::attempts) failed with `reason` at `now`.
    pub fn on_attempt_failed(&mut self, reason: &Error, now: Instant) -> Step {
        self.next(reason, now)
    }

    /// Connected again: the next loss starts from attempt 1.
    pub fn on_connected(&mut self) {
        self.attempt = 0;
    }
}

/// How often a quiet server is pinged when reconnecting is on, so that a
/// dead route shows (what was sent stays unacknowledged for `timeout`).
pub const PING_WHEN_IDLE: Duration = Duration::from_secs(2);

/// The longest rtmpsrc waits for the next event before it looks at its
/// deadlines again.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// A server waiting for its publisher with no deadline has nothing to look
/// at until one comes (its loop wakes the thread for a connection, and the
/// element for a pause or a stop): it waits this long at most.
const NOTHING_DUE: Duration = Duration::from_secs(3600);

/// What rtmpsrc's settings say about ends, silences and losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSettings {
    /// Server mode: it takes publishers rather than playing from a server.
    pub server: bool,
    /// Silence after which the stream fails (or reconnects); None: never.
    pub idle_timeout: Option<Duration>,
    /// A lost connection ends the stream (EOS) instead of failing it.
    pub eos_on_disconnect: bool,
    /// Client: the wait after StreamEOF for a publisher that comes back;
    /// None: StreamEOF ends the stream.
    pub restart_wait: Option<Duration>,
    /// Server: the publisher leaving ends the stream.
    pub eos_on_unpublish: bool,
    /// Server: the wait for a publisher (the first: an error if none came;
    /// the next: EOS); None: for ever.
    pub publisher_timeout: Option<Duration>,
    /// Client: a lost connection is reconnected (see [`Reconnect`]).
    pub reconnect: bool,
}

/// What to do with an event from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnEvent {
    /// Give it downstream (media or metadata).
    Deliver,
    /// Give it downstream as the first of a new publisher: a fresh time
    /// mapping, DISCONT, and the caps again.
    DeliverAfterRestart,
    /// Nothing to give; wait for the next.
    Skip,
    /// A publisher started (server mode); `restart` when it is not the
    /// first, so the time mapping starts afresh.
    PublisherStarted {
        /// Not the first publisher.
        restart: bool,
    },
    /// The stream is over.
    Eos(String),
}

/// What to do after a wait that brought nothing, or a loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnQuiet {
    /// Keep waiting.
    Wait,
    /// Ping the server (a dead route then shows as a loss).
    Ping,
    /// Reconnect, for this reason.
    Reconnect(String),
    /// The stream is over.
    Eos(String),
    /// The connection was lost (or failed) and is not reconnected: the
    /// stream fails, for this reason.
    Lost(String),
    /// A wait set by the user ran out (idle-timeout, publisher-timeout):
    /// the stream fails; the reason is a sentence.
    TimedOut(String),
}

/// rtmpsrc's streaming decisions, fed what the connection gave and when.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    settings: SourceSettings,
    /// When something last came.
    last_event: Instant,
    /// When the next ping is due, while quiet.
    ping_at: Instant,
    /// Client: waiting until then for a publisher that comes back.
    restart_deadline: Option<Instant>,
    /// Server: waiting until then for a publisher.
    publisher_deadline: Option<Instant>,
    /// Server: publishers seen, and whether one is live now.
    publishers: u64,
    publishing: bool,
}

impl SourcePolicy {
    /// The policy of a stream that starts (connected, or listening) at `now`.
    pub fn new(settings: SourceSettings, now: Instant) -> Self {
        SourcePolicy {
            settings,
            last_event: now,
            ping_at: now + PING_WHEN_IDLE,
            restart_deadline: None,
            publisher_deadline: settings
                .server
                .then_some(settings.publisher_timeout)
                .flatten()
                .map(|t| now + t),
            publishers: 0,
            publishing: false,
        }
    }

    /// Server: whether a publisher is live.
    pub fn publishing(&self) -> bool {
        self.publishing
    }

    /// Server: publishers seen so far.
    pub fn publishers(&self) -> u64 {
        self.publishers
    }

    /// How long to wait for the next event from `now`.
    pub fn wait(&self, now: Instant) -> Duration {
        let waiting = self.settings.server && !self.publishing;
        match self.restart_deadline.or(self.publisher_deadline) {
            // Waiting for a publisher: the deadline is all there is.
            Some(d) if waiting => d.saturating_duration_since(now),
            Some(d) => d.saturating_duration_since(now).min(MAX_WAIT),
            None if waiting => NOTHING_DUE,
            None => MAX_WAIT,
        }
    }

    /// A new connection after a reconnection, at `now`: silence counts
    /// from here.
    pub fn on_reconnected(&mut self, now: Instant) {
        self.last_event = now;
        self.ping_at = now + PING_WHEN_IDLE;
    }

    /// The connection gave `ev` at `now`.
    pub fn on_event(&mut self, ev: &ClientEvent, now: Instant) -> OnEvent {
        self.last_event = now;
        self.ping_at = now + PING_WHEN_IDLE;
        let media = matches!(
            ev,
            ClientEvent::Video { .. } | ClientEvent::Audio { .. } | ClientEvent::Data { .. }
        );
        if self.settings.server {
            match ev {
                ClientEvent::StreamBegin(_) => {
                    let restart = self.publishers > 0;
                    self.publishers += 1;
                    self.publishing = true;
                    self.publisher_deadline = None;
                    return OnEvent::PublisherStarted { restart };
                }
                ClientEvent::StreamEnded { reason } => {
                    self.publishing = false;
                    if self.settings.eos_on_unpublish {
                        return OnEvent::Eos(format!("the publisher left ({reason})"));
                    }
                    self.publisher_deadline = self.settings.publisher_timeout.map(|t| now + t);
                    return OnEvent::Skip;
                }
                _ if media => return OnEvent::Deliver,
                _ => return OnEvent::Skip,
            }
        }
        match ev {
            ClientEvent::StreamEnded { reason } => match self.settings.restart_wait {
                // It may be a publisher that reconnects (nginx sends
                // StreamEOF, then StreamBegin for the next).
                Some(w) => {
                    self.restart_deadline = Some(now + w);
                    OnEvent::Skip
                }
                None => OnEvent::Eos(format!("the stream ended ({reason})")),
            },
            ClientEvent::StreamBegin(_) if self.restart_deadline.is_some() => {
                self.restart_deadline = None;
                OnEvent::PublisherStarted { restart: true }
            }
            _ if media && self.restart_deadline.take().is_some() => OnEvent::DeliverAfterRestart,
            _ if media => OnEvent::Deliver,
            _ => OnEvent::Skip,
        }
    }

    /// A wait ended at `now` with nothing.
    pub fn on_idle(&mut self, now: Instant) -> OnQuiet {
        let s = self.settings;
        if self.restart_deadline.is_some_and(|d| now >= d) {
            return OnQuiet::Eos("no publisher came back in time".into());
        }
        if self.publisher_deadline.is_some_and(|d| now >= d) {
            let secs = s.publisher_timeout.map_or(0, |t| t.as_secs());
            return if self.publishers == 0 {
                OnQuiet::TimedOut(format!(
                    "No publisher came within {secs} s (publisher-timeout)"
                ))
            } else {
                OnQuiet::Eos(format!("no new publisher within {secs} s"))
            };
        }
        // A server without a publisher is waiting, not idle.
        if s.server && !self.publishing {
            self.last_event = now;
            return OnQuiet::Wait;
        }
        let quiet = now.saturating_duration_since(self.last_event);
        if let Some(limit) = s.idle_timeout.filter(|l| quiet >= *l) {
            let why = format!("No data for {} s (idle-timeout)", limit.as_secs());
            return if !s.server && s.reconnect {
                OnQuiet::Reconnect(why)
            } else {
                OnQuiet::TimedOut(why)
            };
        }
        if !s.server && s.reconnect && now >= self.ping_at {
            self.ping_at = now + PING_WHEN_IDLE;
            return OnQuiet::Ping;
        }
        OnQuiet::Wait
    }

    /// The connection ended: closed by the server without ending the
    /// stream (`error` None), or failed with `error`.
    pub fn on_lost(&mut self, error: Option<&Error>) -> OnQuiet {
        let s = self.settings;
        let reason = match error {
            None => "the server closed the connection without ending the stream".to_owned(),
            Some(e) => e.to_string(),
        };
        let lost = error.is_none_or(|e| {
            matches!(
                e.kind(),
                crate::rtmp::ErrorKind::Io | crate::rtmp::ErrorKind::Closed
            )
        });
        if s.eos_on_disconnect && lost {
            return OnQuiet::Eos(reason);
        }
        if !s.server && s.reconnect {
            return OnQuiet::Reconnect(reason);
        }
        OnQuiet::Lost(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::error::{ErrorKind, Refusal};

    const MS: Duration = Duration::from_millis(1);

    fn settings(attempts: i32) -> ReconnectSettings {
        ReconnectSettings {
            attempts,
            first_delay: 500 * MS,
            max_delay: 3000 * MS,
        }
    }

    fn io() -> Error {
        Error::new(ErrorKind::Io, "connection reset")
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = settings(-1);
        let ms = |a| s.delay(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(40)],
            [500, 1000, 2000, 3000, 3000]
        );
        let odd = ReconnectSettings {
            max_delay: 10 * MS,
            ..s
        };
        assert_eq!(odd.delay(3), 500 * MS, "a maximum below the first delay");
    }

    #[test]
    fn attempts_are_counted_from_each_loss_and_end() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(2));
        assert_eq!(
            r.on_lost(&io(), t0),
            Step::Retry {
                attempt: 1,
                at: t0 + 500 * MS,
                delay: 500 * MS
            }
        );
        let t1 = t0 + 600 * MS;
        assert!(matches!(
            r.on_attempt_failed(&io(), t1),
            Step::Retry { attempt: 2, delay, .. } if delay == 1000 * MS
        ));
        assert_eq!(
            r.on_attempt_failed(&io(), t1 + 1200 * MS),
            Step::GiveUp {
                attempts: 2,
                reason: "connection reset".into(),
                refused: false
            }
        );
        // Connected again: the next loss starts over.
        r.on_connected();
        assert!(matches!(
            r.on_lost(&io(), t1),
            Step::Retry { attempt: 1, .. }
        ));
        // For ever.
        let mut r = Reconnect::new(settings(-1));
        r.on_lost(&io(), t0);
        for _ in 0..100 {
            assert!(matches!(r.on_attempt_failed(&io(), t0), Step::Retry { .. }));
        }
        // Never.
        let mut r = Reconnect::new(settings(0));
        assert!(matches!(
            r.on_lost(&io(), t0),
            Step::GiveUp {
                attempts: 0,
                refused: false,
                ..
            }
        ));
    }

    #[test]
    fn a_refusal_ends_it_at_once() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(-1));
        r.on_lost(&io(), t0);
        let refusal = Error::refused(
            Refusal {
                command: "connect",
                code: "NetConnection.Connect.Rejected".into(),
                description: "authfailed".into(),
            },
            "authentication failed",
        );
        assert!(matches!(
            r.on_attempt_failed(&refusal, t0),
            Step::GiveUp {
                attempts: 1,
                refused: true,
                ..
            }
        ));
        // A name the server still holds is worth another try.
        let busy = Error::refused(
            Refusal {
                command: "publish",
                code: "NetStream.Publish.BadName".into(),
                description: String::new(),
            },
            "busy",
        );
        assert!(matches!(
            r.on_attempt_failed(&busy, t0),
            Step::Retry { attempt: 2, .. }
        ));
    }

    fn client(reconnect: bool) -> SourceSettings {
        SourceSettings {
            server: false,
            idle_timeout: None,
            eos_on_disconnect: false,
            restart_wait: None,
            eos_on_unpublish: false,
            publisher_timeout: None,
            reconnect,
        }
    }

    fn video() -> ClientEvent {
        ClientEvent::Video {
            timestamp: 0,
            payload: bytes::Bytes::from_static(&[0x17, 1]),
        }
    }

    fn ended() -> ClientEvent {
        ClientEvent::StreamEnded {
            reason: "server sent StreamEOF".into(),
        }
    }

    #[test]
    fn client_media_is_delivered_and_stream_eof_ends_it() {
        let t0 = Instant::now();
        let mut p = SourcePolicy::new(client(false), t0);
        assert_eq!(p.on_event(&video(), t0), OnEvent::Deliver);
        assert_eq!(p.on_event(&ClientEvent::StreamBegin(1), t0), OnEvent::Skip);
        assert!(matches!(p.on_event(&ended(), t0), OnEvent::Eos(r) if r.contains("StreamEOF")));
    }

    #[test]
    fn a_publisher_restart_is_waited_for_and_resumes_with_discont() {
        let t0 = Instant::now();
        let mut s = client(false);
        s.restart_wait = Some(3000 * MS);
        let mut p = SourcePolicy::new(s, t0);
        assert_eq!(p.on_event(&ended(), t0), OnEvent::Skip);
        // The wait is cut to the deadline.
        assert_eq!(p.wait(t0 + 2800 * MS), 200 * MS);
        assert_eq!(p.on_idle(t0 + 1000 * MS), OnQuiet::Wait);
        assert_eq!(
            p.on_event(&video(), t0 + 1500 * MS),
            OnEvent::DeliverAfterRestart
        );
        assert_eq!(p.on_event(&video(), t0 + 1600 * MS), OnEvent::Deliver);
        // StreamBegin first, then media: the restart is the StreamBegin.
        p.on_event(&ended(), t0 + 2000 * MS);
        assert_eq!(
            p.on_event(&ClientEvent::StreamBegin(1), t0 + 2100 * MS),
            OnEvent::PublisherStarted { restart: true }
        );
        assert_eq!(p.on_event(&video(), t0 + 2200 * MS), OnEvent::Deliver);
        // Nobody came back in time.
        p.on_event(&ended(), t0 + 3000 * MS);
        assert!(matches!(p.on_idle(t0 + 6001 * MS), OnQuiet::Eos(_)));
    }

    #[test]
    fn a_quiet_server_is_pinged_and_idle_timeout_reconnects_or_fails() {
        let t0 = Instant::now();
        let mut s = client(true);
        s.idle_timeout = Some(Duration::from_secs(5));
        let mut p = SourcePolicy::new(s, t0);
        assert_eq!(p.on_idle(t0 + 1000 * MS), OnQuiet::Wait);
        assert_eq!(p.on_idle(t0 + 2000 * MS), OnQuiet::Ping);
        assert_eq!(p.on_idle(t0 + 2500 * MS), OnQuiet::Wait);
        assert_eq!(p.on_idle(t0 + 4000 * MS), OnQuiet::Ping);
        assert!(
            matches!(p.on_idle(t0 + 5000 * MS), OnQuiet::Reconnect(r) if r.contains("idle-timeout"))
        );
        // Media resets the silence.
        p.on_reconnected(t0 + 6000 * MS);
        assert_eq!(p.on_idle(t0 + 7000 * MS), OnQuiet::Wait);
        // Without reconnecting: no pings, and the silence is an error.
        s.reconnect = false;
        let mut p = SourcePolicy::new(s, t0);
        assert_eq!(p.on_idle(t0 + 4000 * MS), OnQuiet::Wait);
        assert!(
            matches!(p.on_idle(t0 + 5000 * MS), OnQuiet::TimedOut(r) if r.contains("idle-timeout"))
        );
    }

    #[test]
    fn losses_end_reconnect_or_fail_as_set() {
        let mut p = SourcePolicy::new(client(true), Instant::now());
        assert!(matches!(p.on_lost(None), OnQuiet::Reconnect(_)));
        assert!(matches!(p.on_lost(Some(&io())), OnQuiet::Reconnect(_)));
        let mut s = client(false);
        let mut p = SourcePolicy::new(s, Instant::now());
        assert!(matches!(p.on_lost(None), OnQuiet::Lost(r) if r.contains("without ending")));
        s.eos_on_disconnect = true;
        let mut p = SourcePolicy::new(s, Instant::now());
        assert!(matches!(p.on_lost(Some(&io())), OnQuiet::Eos(_)));
        // A protocol error is not a disconnection: it fails even then.
        let bad = Error::protocol("garbage");
        assert!(matches!(p.on_lost(Some(&bad)), OnQuiet::Lost(_)));
    }

    fn server() -> SourceSettings {
        SourceSettings {
            server: true,
            ..client(false)
        }
    }

    #[test]
    fn a_server_waits_for_publishers_and_their_successors() {
        let t0 = Instant::now();
        let mut s = server();
        s.publisher_timeout = Some(Duration::from_secs(10));
        let mut p = SourcePolicy::new(s, t0);
        // Listening is not idleness; the timeout is the one deadline.
        assert_eq!(p.wait(t0 + 1000 * MS), 9000 * MS);
        assert_eq!(p.on_idle(t0 + 9000 * MS), OnQuiet::Wait);
        assert_eq!(
            p.on_event(&ClientEvent::StreamBegin(1), t0 + 9500 * MS),
            OnEvent::PublisherStarted { restart: false }
        );
        assert!(p.publishing());
        // A live publisher's silence is looked at often (idle-timeout).
        assert_eq!(p.wait(t0 + 9500 * MS), MAX_WAIT);
        assert_eq!(p.on_event(&video(), t0 + 9600 * MS), OnEvent::Deliver);
        assert_eq!(p.on_event(&ended(), t0 + 20_000 * MS), OnEvent::Skip);
        assert!(!p.publishing());
        // The next one, within the timeout: a restart.
        assert_eq!(
            p.on_event(&ClientEvent::StreamBegin(1), t0 + 25_000 * MS),
            OnEvent::PublisherStarted { restart: true }
        );
        p.on_event(&ended(), t0 + 30_000 * MS);
        // Nobody within the timeout after a publisher: EOS.
        assert!(matches!(p.on_idle(t0 + 40_001 * MS), OnQuiet::Eos(_)));
        // Nobody at all: an error.
        let mut p = SourcePolicy::new(s, t0);
        assert!(
            matches!(p.on_idle(t0 + 10_001 * MS), OnQuiet::TimedOut(r) if r.contains("publisher-timeout"))
        );
        // No publisher-timeout: nothing is due until a publisher comes.
        let p = SourcePolicy::new(server(), t0);
        assert_eq!(p.wait(t0 + 5000 * MS), NOTHING_DUE);
        // eos-on-unpublish.
        let mut s = server();
        s.eos_on_unpublish = true;
        let mut p = SourcePolicy::new(s, t0);
        p.on_event(&ClientEvent::StreamBegin(1), t0);
        assert!(matches!(p.on_event(&ended(), t0), OnEvent::Eos(_)));
    }
}
