//! Runs one connection through one phase of a scenario: a [`Behaviour`] (a small synchronous state
//! machine) decides what to send on a timer and in answer to packets; the driver does the I/O, answers
//! Engine.IO pings, and stops when the behaviour is finished or an outside future completes.
//!
//! Ticks use the [`pacer`], not tokio's millisecond timer, so sends leave close to their scheduled time.
//! The read future is pinned across the select loop and only re-created after it yields a frame, because
//! a WebSocket read is not cancel-safe; writes happen between polls of it, in the same task.
//!
//! [`Connection`] is what a scenario needs from a connection, so the same scenario runs over WebSocket
//! ([`Conn`], driven here) or long-polling ([`crate::polling::PollingConn`]).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use crate::conn::{self, Conn, Incoming};
use crate::outbox::Outbox;
use crate::target::Target;
use crate::{ConnError, clock, pacer};

/// A Socket.IO connection to `/` that scenarios open and drive, whatever transport carries it.
pub trait Connection: Send + Sized + 'static {
    /// TCP connections one of them holds, so a run can check it has the file descriptors.
    const SOCKETS: usize;

    /// The target's URL as reports name it (its scheme tells the transport).
    fn url(target: &Target) -> String;

    /// Connects and joins `/`, all within `timeout`.
    fn open(target: &Target, timeout: Duration) -> impl Future<Output = Result<Self, ConnError>> + Send;

    /// Drives `behaviour` until it is finished or `until` completes; an error means the connection is gone.
    fn drive<B, F>(
        &mut self,
        behaviour: &mut B,
        until: F,
    ) -> impl Future<Output = Result<Outcome, ConnError>> + Send
    where
        B: Behaviour + Send,
        F: Future<Output = ()> + Send;

    /// Disconnects cleanly (Socket.IO DISCONNECT, then the transport's close), as a client leaving a page
    /// does; dropping the connection instead is the abrupt way (the server sees EOF or a ping timeout).
    fn close(self) -> impl Future<Output = Result<(), ConnError>> + Send;
}

impl Connection for Conn {
    const SOCKETS: usize = 1;

    fn url(target: &Target) -> String {
        target.url()
    }

    fn open(target: &Target, timeout: Duration) -> impl Future<Output = Result<Self, ConnError>> + Send {
        // The inherent functions of the same names (they take precedence over the trait's).
        Conn::open(target, timeout)
    }

    fn drive<B, F>(
        &mut self,
        behaviour: &mut B,
        until: F,
    ) -> impl Future<Output = Result<Outcome, ConnError>> + Send
    where
        B: Behaviour + Send,
        F: Future<Output = ()> + Send,
    {
        Conn::drive(self, behaviour, until)
    }

    fn close(self) -> impl Future<Output = Result<(), ConnError>> + Send {
        Conn::close(self)
    }
}

/// What a connection does in one phase. Times are [`clock`] nanoseconds.
pub trait Behaviour {
    /// When [`Behaviour::on_tick`] should next run; `None` waits for packets only. A time in the past
    /// runs it at once.
    fn next_tick(&self) -> Option<u64> {
        None
    }

    /// The tick is due: queue what to send.
    fn on_tick(&mut self, _now: u64, _out: &mut Outbox) {}

    /// A Socket.IO packet arrived (its text, Engine.IO `4` stripped).
    fn on_message(&mut self, text: &[u8], now: u64, out: &mut Outbox);

    /// Whether this phase is over for the connection.
    fn finished(&self) -> bool {
        false
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The behaviour said it was finished.
    Finished,
    /// The outside future completed first (a stop or a start signal).
    Interrupted,
}

/// Only answers pings; the phase ends when the outside future completes.
#[derive(Debug, Default)]
pub struct Hold;

impl Behaviour for Hold {
    fn on_message(&mut self, _text: &[u8], _now: u64, _out: &mut Outbox) {}
}

impl Conn {
    /// Drives `behaviour` until it is finished or `until` completes; an error means the connection is gone.
    pub async fn drive<B, F>(&mut self, behaviour: &mut B, until: F) -> Result<Outcome, ConnError>
    where
        B: Behaviour,
        F: Future<Output = ()>,
    {
        let (reader, writer, out) = self.parts();
        let mut until = pin!(until);
        let mut sleep = pacer::Sleep::new(u64::MAX);
        loop {
            let incoming = {
                let mut read = pin!(conn::read_incoming(reader));
                loop {
                    out.flush(writer).await?;
                    if behaviour.finished() {
                        return Ok(Outcome::Finished);
                    }
                    let tick = behaviour.next_tick();
                    if let Some(at) = tick {
                        sleep.reset(at);
                    }
                    tokio::select! {
                        biased;
                        () = &mut until => return Ok(Outcome::Interrupted),
                        incoming = &mut read => break incoming?,
                        () = &mut sleep, if tick.is_some() => behaviour.on_tick(clock::now_ns(), out),
                    }
                }
            };
            match incoming {
                Incoming::Message(text) => behaviour.on_message(&text, clock::now_ns(), out),
                Incoming::Ping => out.push(b"3"),
                Incoming::WsPing(payload) => conn::pong_frame(writer, payload).await?,
                Incoming::Open | Incoming::Other => {}
            }
        }
    }
}

/// One request with ack id 0 (e.g. `join`): sent at once, finished when answered or timed out.
#[derive(Debug)]
pub struct Call {
    packet: Vec<u8>,
    timeout: u64,
    sent_at: Option<u64>,
    answered: bool,
    timed_out: bool,
}

impl Call {
    /// A call of the pre-encoded Engine.IO text `packet` (ack id 0), allowed `timeout` nanoseconds.
    pub fn new(packet: Vec<u8>, timeout: u64) -> Self {
        Self { packet, timeout, sent_at: None, answered: false, timed_out: false }
    }

    /// Whether the ack came in time.
    pub fn answered(&self) -> bool {
        self.answered
    }
}

impl Behaviour for Call {
    fn next_tick(&self) -> Option<u64> {
        match self.sent_at {
            None => Some(0),
            Some(at) => Some(at.saturating_add(self.timeout)),
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Outbox) {
        match self.sent_at {
            None => {
                out.push(&self.packet);
                self.sent_at = Some(now);
            }
            Some(at) => self.timed_out = now >= at.saturating_add(self.timeout),
        }
    }

    fn on_message(&mut self, text: &[u8], _now: u64, _out: &mut Outbox) {
        if self.sent_at.is_some() && crate::wire::ack_id(text) == Some(0) {
            self.answered = true;
        }
    }

    fn finished(&self) -> bool {
        self.answered || self.timed_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sends_once_then_waits_for_its_ack_or_the_timeout() {
        let mut call = Call::new(b"420[\"join\",\"r\"]".to_vec(), 100);
        let mut out = Outbox::default();
        assert_eq!(call.next_tick(), Some(0));
        call.on_tick(10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(call.next_tick(), Some(110));
        call.on_message(b"31[]", 20, &mut out);
        assert!(!call.finished());
        call.on_message(b"30[]", 30, &mut out);
        assert!(call.finished() && call.answered());

        let mut late = Call::new(b"420[]".to_vec(), 100);
        late.on_tick(0, &mut out);
        late.on_tick(100, &mut out);
        assert!(late.finished() && !late.answered());
    }
}
