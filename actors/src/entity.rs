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

/// `deliver_at_ms` of a message due as soon as its change is durable, whatever the clock.
pub const DUE_AT_ONCE: u64 = 0;

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

    /// Sends `cmd` to `to` once this change is durable. The message is due at once on any
    /// node's clock: stamped with this node's time, a relay on a node whose clock is behind
    /// (a replicated shard's next leader) would hold it back by the skew, and a later
    /// message (a cancel's release) could overtake it.
    pub fn send(&mut self, to: EntityRef, topic: &str, cmd: Command) {
        self.push(
            Destination::Entity(to),
            DUE_AT_ONCE,
            topic,
            Body::Command(cmd),
        );
    }

    /// Sends `cmd` to this entity itself at `at_ms`: a durable timer.
    pub fn timer(&mut self, at_ms: u64, topic: &str, cmd: Command) {
        let me = self.me.clone();
        self.push(Destination::Entity(me), at_ms, topic, Body::Command(cmd));
    }

    /// Calls an outside service once this change is durable (due at once, as `send`).
    pub fn call(&mut self, topic: &str, call: ExternalCall) {
        self.push(
            Destination::External,
            DUE_AT_ONCE,
            topic,
            Body::External(call),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::StockCommand;
    use crate::EntityKind;

    #[test]
    fn messages_sent_now_are_due_on_any_clock_and_timers_at_their_time() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Order, "o-1");
        let stock = EntityRef::new(EntityKind::StockItem, "SKU");
        let now_ms = 1_767_225_652_535;
        let mut ctx = Ctx::new(now_ms, &me, 1, &cfg);
        ctx.send(stock, "ORDER_PLACED", Command::Stock(StockCommand::Get));
        ctx.timer(
            now_ms + 900_000,
            "RESERVATION_EXPIRY",
            Command::Stock(StockCommand::Get),
        );
        let out = ctx.take_outbox();
        // A node whose clock is 22 s behind the sender's still finds the message due.
        let behind_ms = now_ms - 22_000;
        assert!(out[0].deliver_at_ms <= behind_ms);
        assert_eq!(out[0].deliver_at_ms, DUE_AT_ONCE);
        assert_eq!(out[1].deliver_at_ms, now_ms + 900_000);
    }
}
