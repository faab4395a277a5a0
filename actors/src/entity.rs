//! What a handler sees (`Ctx`) and what it answers (`Outcome`).

use crate::command::{Command, Reply};
use crate::ids::EntityRef;
use crate::message::{Body, Destination, ExternalCall, OutboxMessage};

/// Timing settings of the domain (durations in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// How long a stock reservation holds before the order expires.
    pub reservation_ttl_ms: u64,
    /// How long an order waits for the gateway's answer before failing the payment.
    pub payment_timeout_ms: u64,
    /// Starting wallet balance of a new account, in minor units.
    pub initial_wallet_minor: u64,
    /// Lockout after failed logins.
    pub lockout: crate::session::LockoutPolicy,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            reservation_ttl_ms: 15 * 60 * 1000,
            payment_timeout_ms: 5 * 60 * 1000,
            initial_wallet_minor: 500_000,
            lockout: crate::session::LockoutPolicy::default(),
        }
    }
}

/// The context of one command: the time, who is handling it, and the outbox it may write to.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Current time, ms since epoch (from the `Clock` seam).
    pub now_ms: u64,
    /// The entity handling the command.
    pub me: &'a EntityRef,
    /// The sequence number this change will be stored under.
    pub seq: u64,
    /// Domain timing settings.
    pub config: &'a DomainConfig,
    outbox: Vec<OutboxMessage>,
}

impl<'a> Ctx<'a> {
    /// A context for one command.
    pub fn new(now_ms: u64, me: &'a EntityRef, seq: u64, config: &'a DomainConfig) -> Self {
        Self {
            now_ms,
            me,
            seq,
            config,
            outbox: Vec::new(),
        }
    }

    fn push(&mut self, to: Destination, at: u64, topic: &str, body: Body) {
        let id = format!("{}#{}.{}", self.me, self.seq, self.outbox.len());
        self.outbox.push(OutboxMessage {
            id,
            from: self.me.clone(),
            to,
            deliver_at_ms: at,
            topic: topic.to_string(),
            body,
        });
    }

    /// Sends `cmd` to `to` once this change is durable.
    pub fn send(&mut self, to: EntityRef, topic: &str, cmd: Command) {
        let now = self.now_ms;
        self.push(Destination::Entity(to), now, topic, Body::Command(cmd));
    }

    /// Sends `cmd` to this entity itself at `at_ms`: a durable timer.
    pub fn timer(&mut self, at_ms: u64, topic: &str, cmd: Command) {
        let me = self.me.clone();
        self.push(Destination::Entity(me), at_ms, topic, Body::Command(cmd));
    }

    /// Calls an outside service once this change is durable.
    pub fn call(&mut self, topic: &str, call: ExternalCall) {
        let now = self.now_ms;
        self.push(Destination::External, now, topic, Body::External(call));
    }

    /// The messages written so far.
    pub fn outbox(&self) -> &[OutboxMessage] {
        &self.outbox
    }

    /// Takes the messages written, leaving none.
    pub fn take_outbox(&mut self) -> Vec<OutboxMessage> {
        std::mem::take(&mut self.outbox)
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Reply now (once the change, if any, is durable).
    Reply(Reply),
    /// Keep the request and ask again after each change: a read that waits for a condition.
    Park,
}

/// Shorthand for `Ok(Outcome::Reply(r))`.
pub fn reply(r: Reply) -> Result<Outcome, crate::DomainError> {
    Ok(Outcome::Reply(r))
}
