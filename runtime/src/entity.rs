//! The generic entity actor: hosts one entity of any kind, runs each command against its
//! state, hands changes to the group-commit writer without waiting for the fsync, and sends
//! each reply only once the change it reports is durable. Relayed messages may come in
//! batches: all of a batch's effects are stored in one write. A batch may arrive before its
//! senders' changes are durable (early delivery on this node): its write then names them,
//! and is refused with them; an entity whose change was refused drops its state from memory
//! and reloads what is durable.

use super::RuntimeContext;
use agora_actors::client::{AskError, Pending};
use agora_actors::host::{EntityState, HeldState};
use agora_actors::{Command, Ctx, DomainError, EntityRef, OutboxMessage, Outcome, Reply};
use agora_store::cascade::CascadeHold;
use agora_store::keys::entity_key;
use agora_store::record::encode_entity_record;
use agora_store::writer::{wait_durable, EntityWrite, Refusal};
use agora_store::{StoreError, WriteOp, Writer};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where a request's reply goes.
pub enum ReplyTo {
    /// Sent once the change it reports is durable.
    Durable(oneshot::Sender<Result<Reply, AskError>>),
    /// Sent as soon as the change is handed to the writer, with it still pending (for a
    /// caller on this node that makes its own change depend on it). Refusals still wait.
    Early(oneshot::Sender<Result<(Reply, Pending), AskError>>),
}

impl ReplyTo {
    /// Answers with an error at once.
    pub fn fail(self, e: AskError) {
        match self {
            Self::Durable(tx) => drop(tx.send(Err(e))),
            Self::Early(tx) => drop(tx.send(Err(e))),
        }
    }
}

/// Per-message results of a batch.
pub type BatchResults = Vec<Result<(), DomainError>>;

/// The reply channel of a batch.
pub type BatchReplyTo = oneshot::Sender<Result<BatchResults, AskError>>;

/// A reply channel that can be answered with an error.
pub trait Refusable {
    /// Answers with `e` at once.
    fn refuse(self, e: AskError);
}

impl Refusable for ReplyTo {
    fn refuse(self, e: AskError) {
        self.fail(e)
    }
}

impl Refusable for BatchReplyTo {
    fn refuse(self, e: AskError) {
        drop(self.send(Err(e)))
    }
}

/// What a message dropped before its entity took it answers: it took no effect.
pub const NOT_DELIVERED: &str =
    "the entity stopped before it took the message (its shard stopped here or it passivated): it took no effect";

/// A message's reply channel until its entity takes the message. Dropped before that (the
/// message waited in a mailbox of a shard or an entity that stopped: a lead that moved, a
/// passivation, a failed entity), it answers `NotServedHere`: nothing was applied, so the
/// router sends the message again to the shard's leader instead of answering 503. Once taken,
/// a reply dropped unanswered leaves the outcome unknown, as before.
pub struct UntilTaken<R: Refusable>(Option<R>);

impl<R: Refusable> UntilTaken<R> {
    /// Guards `reply` until its entity takes the message.
    pub fn new(reply: R) -> Self {
        Self(Some(reply))
    }

    /// The entity takes the message: the reply channel, unguarded.
    pub fn take(mut self) -> Option<R> {
        self.0.take()
    }
}

impl<R: Refusable> Drop for UntilTaken<R> {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            reply.refuse(AskError::not_served_here(NOT_DELIVERED, None));
        }
    }
}

/// One relayed message of a batch.
#[derive(Debug)]
pub struct BatchItem {
    /// The command.
    pub cmd: Command,
    /// The message id, for dedup.
    pub msg_id: String,
    /// The ticket of the sender's change when it was not yet durable at sending (an early
    /// delivery on this node), 0 when it was.
    pub sender: u64,
    /// For an early delivery: dropped once this entity has handed over its change, so the
    /// writer's commit can take it along (see `store::cascade`).
    pub hold: Option<CascadeHold>,
}

impl BatchItem {
    /// A message whose sender's change is durable (from another node, or a stored row).
    pub fn durable(cmd: Command, msg_id: String) -> Self {
        Self {
            cmd,
            msg_id,
            sender: 0,
            hold: None,
        }
    }
}

/// Messages an entity actor takes.
pub enum EntityMsg {
    /// Run a command. `msg_id` is set for messages from the outbox or outside services.
    Request {
        /// The command.
        cmd: Command,
        /// The message id, for dedup.
        msg_id: Option<String>,
        /// A change of this node the command was derived from (ticket 0: none, or durable):
        /// this command's change is refused if it is, and the reply waits for both.
        after: Pending,
        /// Where the reply goes.
        reply: UntilTaken<ReplyTo>,
    },
    /// Run relayed messages in order, storing their effects in one write.
    Batch {
        /// The messages. Those whose senders' changes are not yet durable make the batch's
        /// write depend on them: it is refused if any of them is.
        items: Vec<BatchItem>,
        /// Where the per-message results go.
        reply: UntilTaken<BatchReplyTo>,
    },
    /// Stop after everything before this message (passivation).
    Stop,
}

impl EntityMsg {
    /// Answers a message that was never delivered with `e` (a stop is dropped).
    pub fn refuse(self, e: AskError) {
        match self {
            EntityMsg::Request { reply, .. } => {
                if let Some(r) = reply.take() {
                    r.fail(e)
                }
            }
            EntityMsg::Batch { reply, .. } => {
                if let Some(r) = reply.take() {
                    r.refuse(e)
                }
            }
            EntityMsg::Stop => {}
        }
    }
}

/// Start arguments.
pub struct EntityArgs {
    /// Which entity.
    pub entity: EntityRef,
    /// Its shard.
    pub shard: u32,
    /// The owner's epoch for the shard.
    pub epoch: u64,
    /// Set when the shard was fenced (a newer owner exists): answer nothing from memory.
    pub fenced: Arc<AtomicBool>,
    /// Shared runtime.
    pub rt: RuntimeContext,
}

/// The actor.
pub struct EntityActor;

/// The actor's state.
pub struct EntityHost {
    args: EntityArgs,
    key: Vec<u8>,
    loaded: Option<(HeldState, u64)>,
    /// The ticket a reply about the state in memory waits for (its latest change).
    last_ticket: u64,
    /// Message ids applied since activation, with the ticket of their write.
    recent: HashMap<String, u64>,
    /// Reads waiting for a condition, with the change each was derived from.
    parked: Vec<(Command, ReplyTo, u64)>,
}

/// The effect of applying one command.
struct Applied {
    outcome: Outcome,
    changed: bool,
    outbox: Vec<OutboxMessage>,
}

/// Why a change (and the change `after` it was derived from, 0 for none) did not become
/// durable, if it did not. Refused because this copy of its shard may not write it, it took
/// no effect and may go again (`NotServedHere`, which routers resend to the shard's owner);
/// refused with what it was derived from, it took no effect and cannot go again as it was; a
/// store failure, a round that timed out or a fenced copy leave its outcome unknown.
fn failed_change(
    writer: &Writer,
    [ticket, after]: [u64; 2],
    stored: bool,
    fenced: bool,
) -> Option<AskError> {
    let own = writer.refusal(ticket);
    let derived_from = (after > 0).then(|| writer.refusal(after)).flatten();
    let unknown = [own, derived_from].contains(&Some(Refusal::Unknown));
    match (own, derived_from) {
        _ if !stored || unknown => Some(AskError::Unavailable(OUTCOME_UNKNOWN.into())),
        (None, None) if fenced => Some(AskError::Unavailable(OUTCOME_UNKNOWN.into())),
        (None, None) => None,
        (Some(Refusal::NotHere), None) => Some(AskError::not_served_here(TOOK_NO_EFFECT, None)),
        _ => Some(AskError::Unavailable(TOOK_NO_EFFECT.into())),
    }
}

/// A change refused before anything was written.
pub const TOOK_NO_EFFECT: &str =
    "the change was refused before it was committed (the shard's lead moved): it took no effect; retry";

/// A change whose outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "the change's outcome is unknown (the shard's lead moved while \
     it was being committed, or the store failed): it may have taken effect; retry with the same \
     Idempotency-Key, or read before you retry";

impl EntityHost {
    async fn ensure_loaded(&mut self) -> Result<(), StoreError> {
        if self.last_ticket > 0 && self.args.rt.writer.was_refused(self.last_ticket) {
            // A change of ours was refused (it was derived from a message whose sender's
            // change was refused): forget everything since the last durable state.
            tracing::info!(entity = %self.args.entity, "a change was refused; reloading");
            metrics::counter!("agora_entity_reloads_total").increment(1);
            self.loaded = None;
            self.recent.clear();
            self.last_ticket = 0;
            for (_, reply, _) in self.parked.drain(..) {
                reply.fail(AskError::Unavailable("entity reloaded".into()));
            }
        }
        if self.loaded.is_none() {
            let rec = self.args.rt.writer.load(self.key.clone()).await?;
            let (state, seq) = match rec {
                Some(r) => (r.state, r.seq),
                None => (EntityState::empty(self.args.entity.kind), 0),
            };
            let held = HeldState::new(state).map_err(|e| StoreError::Codec(e.to_string()))?;
            self.loaded = Some((held, seq));
        }
        Ok(())
    }

    /// Sends `result` once everything up to `ticket` is durable (an error if the store failed
    /// or the shard was fenced meanwhile).
    fn respond<T: Send + 'static>(
        &self,
        reply: oneshot::Sender<Result<T, AskError>>,
        result: Result<T, AskError>,
        ticket: u64,
    ) {
        self.respond_after(reply, result, ticket, 0);
    }

    /// Like `respond`, also waiting for the change `after` this one was derived from (an
    /// error if it was refused).
    fn respond_after<T: Send + 'static>(
        &self,
        reply: oneshot::Sender<Result<T, AskError>>,
        result: Result<T, AskError>,
        ticket: u64,
        after: u64,
    ) {
        let writer = self.args.rt.writer.clone();
        let progress = writer.progress();
        let fenced = self.args.fenced.clone();
        let changes = [ticket, after];
        let ticket = ticket.max(after);
        let done =
            {
                let p = *progress.borrow();
                p.committed >= ticket || p.failed
            } || agora_seams::planted::is_planted(agora_seams::planted::Bug::AckBeforeDurable);
        let deliver = move |stored: bool| {
            let failed = failed_change(&writer, changes, stored, fenced.load(Ordering::Acquire));
            let _ = reply.send(match failed {
                Some(e) => Err(e),
                None => result,
            });
        };
        if done {
            let ok = !progress.borrow().failed;
            deliver(ok);
        } else {
            // The runtime's clock: simulated time in the simulator.
            let waiting = tokio::time::Instant::now();
            tokio::spawn(async move {
                let ok = wait_durable(progress, ticket).await;
                metrics::histogram!("agora_entity_durable_wait_seconds")
                    .record(waiting.elapsed().as_secs_f64());
                deliver(ok);
            });
        }
    }

    /// Answers a request: a durable reply once `ticket` (and `after`) are durable; an early
    /// one at once with the change pending, unless it is an error or this copy is fenced.
    /// `hold` keeps the writer's commit open for the caller's dependent change (taken before
    /// the change was handed over, so the commit cannot start without it).
    fn answer(
        &self,
        reply: ReplyTo,
        result: Result<Reply, AskError>,
        (ticket, after): (u64, u64),
        hold: Option<CascadeHold>,
    ) {
        match reply {
            ReplyTo::Durable(tx) => self.respond_after(tx, result, ticket, after),
            ReplyTo::Early(tx) if !self.args.rt.writer.early_answers() => {
                // Replicated shards: a change counts only once a majority holds it.
                self.answer_when_durable(tx, result, ticket, after);
            }
            ReplyTo::Early(tx) => {
                let writer = &self.args.rt.writer;
                let ticket = ticket.max(after);
                let unusable = self.args.fenced.load(Ordering::Acquire)
                    || writer.was_refused(ticket)
                    || (after > 0 && writer.was_refused(after));
                match result {
                    Ok(r) if !unusable => {
                        let pending = if writer.is_durable(ticket) {
                            Pending::default()
                        } else {
                            let hold = hold.unwrap_or_else(|| writer.hold_commit());
                            Pending {
                                ticket,
                                hold: Some(Box::new(hold)),
                            }
                        };
                        let _ = tx.send(Ok((r, pending)));
                    }
                    result => self.answer_when_durable(tx, result, ticket, after),
                }
            }
        }
    }

    /// Answers an early caller once `ticket` (and `after`) are durable, with nothing
    /// pending.
    fn answer_when_durable(
        &self,
        tx: oneshot::Sender<Result<(Reply, Pending), AskError>>,
        result: Result<Reply, AskError>,
        ticket: u64,
        after: u64,
    ) {
        let (inner, rx) = oneshot::channel();
        self.respond_after(inner, result, ticket, after);
        tokio::spawn(async move {
            let r = rx
                .await
                .unwrap_or_else(|_| Err(AskError::Unavailable("the entity stopped".into())));
            let _ = tx.send(r.map(|r| (r, Pending::default())));
        });
    }

    /// Whether `msg_id` took effect here already. `sender` is the ticket of the sender's
    /// change if it was not durable when the message was sent (0 otherwise).
    fn already_applied(&mut self, msg_id: &str, sender: u64) -> Result<bool, StoreError> {
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::SkipDedup) {
            return Ok(false);
        }
        let committed = self.args.rt.writer.progress().borrow().committed;
        self.recent.retain(|_, t| *t > committed);
        if self.recent.contains_key(msg_id) {
            return Ok(true);
        }
        if sender > 0 && !self.args.rt.writer.is_durable(sender) {
            // Whatever took this message was written after its sender's change, and tickets
            // become durable in order, so no mark of it is on disk yet: every copy that took
            // effect is in `recent` (a host reloads only once its writes are durable).
            metrics::counter!("agora_dedup_disk_reads_skipped_total").increment(1);
            return Ok(false);
        }
        self.args.rt.store.dedup_seen(&self.key, msg_id)
    }

    /// Runs one command on the state; a change (or an emitted message) takes the next seq.
    fn apply(&mut self, cmd: Command, now: u64) -> Result<Applied, DomainError> {
        let (state, seq) = self
            .loaded
            .as_mut()
            .ok_or_else(|| DomainError::NotFound("entity state not loaded".into()))?;
        let me = self.args.entity.clone();
        let mut ctx = Ctx::new(now, &me, *seq + 1, &self.args.rt.domain);
        let handled = state.handle(cmd, &mut ctx)?;
        let outbox = ctx.take_outbox();
        if handled.changed || !outbox.is_empty() {
            *seq += 1;
        }
        Ok(Applied {
            outcome: handled.outcome,
            changed: handled.changed,
            outbox,
        })
    }

    /// Hands the current state, consumed message ids and emitted messages to the writer.
    fn persist(
        &mut self,
        msg_ids: Vec<String>,
        outbox: Vec<OutboxMessage>,
        mut after: Vec<u64>,
        now: u64,
    ) -> Result<(), ActorProcessingErr> {
        let Some((state, seq)) = self.loaded.as_ref() else {
            return Err("entity state missing after load".into());
        };
        let me = self.args.entity.clone();
        let record = encode_entity_record(*seq, self.args.epoch, now, state.encoded())?;
        let state_for_listeners = if self.args.rt.writer.listened(me.kind) {
            Some(state.state().clone())
        } else {
            None
        };
        if self.last_ticket > 0 {
            // The state written includes every earlier change of ours.
            after.push(self.last_ticket);
        }
        let write = EntityWrite {
            shard: self.args.shard,
            epoch: self.args.epoch,
            entity: me.clone(),
            key: self.key.clone(),
            record,
            msg_ids: msg_ids.clone(),
            outbox,
            after,
            state_for_listeners,
            now_ms: now,
            // Replies follow commit progress; a refusal for a stale epoch fences the shard.
            done: None,
            fence: Some(self.args.fenced.clone()),
        };
        let ticket = self
            .args
            .rt
            .writer
            .submit(WriteOp::Entity(Box::new(write)))?;
        self.last_ticket = ticket;
        for id in msg_ids {
            self.recent.insert(id, ticket);
        }
        metrics::counter!("agora_entity_writes_total", "kind" => me.kind.name()).increment(1);
        Ok(())
    }

    fn request(
        &mut self,
        cmd: Command,
        msg_id: Option<String>,
        after: Pending,
        reply: ReplyTo,
    ) -> Result<(), ActorProcessingErr> {
        // Released once this command's change (if any) is handed over.
        let Pending {
            ticket: after,
            hold: _hold,
        } = after;
        if let Some(id) = &msg_id {
            match self.already_applied(id, 0) {
                Ok(true) => {
                    metrics::counter!("agora_messages_deduplicated_total").increment(1);
                    self.answer(reply, Ok(Reply::Duplicate), (self.last_ticket, after), None);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    reply.fail(AskError::Unavailable(e.to_string()));
                    return Err(Box::new(e));
                }
            }
        }
        let now = self.args.rt.clock.now_ms();
        let parked_cmd = cmd.clone();
        let applied = match self.apply(cmd, now) {
            Ok(a) => a,
            Err(e) => {
                self.answer(
                    reply,
                    Err(AskError::Domain(e)),
                    (self.last_ticket, after),
                    None,
                );
                return Ok(());
            }
        };
        // An early answer's caller will hand over a change derived from this one: the commit
        // that takes this one waits for it.
        let early_hold =
            matches!(reply, ReplyTo::Early(_)).then(|| self.args.rt.writer.hold_commit());
        if applied.changed || !applied.outbox.is_empty() || msg_id.is_some() {
            let derived_from = if after > 0 { vec![after] } else { Vec::new() };
            self.persist(
                msg_id.into_iter().collect(),
                applied.outbox,
                derived_from,
                now,
            )?;
        }
        match applied.outcome {
            Outcome::Reply(r) => self.answer(reply, Ok(r), (self.last_ticket, after), early_hold),
            Outcome::Park => self.parked.push((parked_cmd, reply, after)),
        }
        if applied.changed {
            self.recheck_parked();
        }
        Ok(())
    }

    fn batch(
        &mut self,
        items: Vec<BatchItem>,
        reply: BatchReplyTo,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.args.rt.clock.now_ms();
        let mut results = Vec::with_capacity(items.len());
        let mut ids = Vec::with_capacity(items.len());
        let mut outbox = Vec::new();
        let mut changed = false;
        let mut after: Vec<u64> = items.iter().map(|i| i.sender).filter(|t| *t > 0).collect();
        after.sort_unstable();
        after.dedup();
        // Released after the write is handed over, so the writer's commit waits for it.
        let mut holds = Vec::new();
        for BatchItem {
            cmd,
            msg_id: id,
            sender,
            hold,
        } in items
        {
            holds.extend(hold);
            let seen = match self.already_applied(&id, sender) {
                Ok(seen) => seen || ids.contains(&id),
                Err(e) => {
                    let _ = reply.send(Err(AskError::Unavailable(e.to_string())));
                    return Err(Box::new(e));
                }
            };
            if seen {
                metrics::counter!("agora_messages_deduplicated_total").increment(1);
                results.push(Ok(()));
                continue;
            }
            match self.apply(cmd, now) {
                Ok(a) => {
                    changed |= a.changed;
                    outbox.extend(a.outbox);
                    ids.push(id);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !ids.is_empty() {
            self.persist(ids, outbox, after, now)?;
        }
        drop(holds);
        self.respond(reply, Ok(results), self.last_ticket);
        if changed {
            self.recheck_parked();
        }
        Ok(())
    }

    /// Re-asks parked reads after a change; answers those whose condition now holds.
    fn recheck_parked(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for (cmd, reply, after) in parked {
            let Some((state, seq)) = self.loaded.as_mut() else {
                return;
            };
            let me = self.args.entity.clone();
            let mut ctx = Ctx::new(
                self.args.rt.clock.now_ms(),
                &me,
                *seq + 1,
                &self.args.rt.domain,
            );
            match state.probe(cmd.clone(), &mut ctx) {
                Ok(outcome) => match outcome {
                    Outcome::Park => self.parked.push((cmd, reply, after)),
                    Outcome::Reply(r) => self.answer(reply, Ok(r), (self.last_ticket, after), None),
                },
                Err(e) => self.answer(
                    reply,
                    Err(AskError::Domain(e)),
                    (self.last_ticket, after),
                    None,
                ),
            }
        }
    }
}

impl Drop for EntityHost {
    /// However the entity ends (passivated, failed, or killed with its shard, which skips
    /// `post_stop`), it is no longer active, and its parked reads changed nothing: their senders may ask again (the shard's new leader, or this
    /// entity started again).
    fn drop(&mut self) {
        metrics::gauge!("agora_active_entities").decrement(1.0);
        for (_, reply, _) in self.parked.drain(..) {
            reply.fail(AskError::not_served_here("entity stopped", None));
        }
    }
}

impl Actor for EntityActor {
    type Msg = EntityMsg;
    type State = EntityHost;
    type Arguments = EntityArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: EntityArgs,
    ) -> Result<EntityHost, ActorProcessingErr> {
        let key = entity_key(args.shard, &args.entity);
        metrics::gauge!("agora_active_entities").increment(1.0);
        Ok(EntityHost {
            args,
            key,
            loaded: None,
            last_ticket: 0,
            recent: HashMap::new(),
            parked: Vec::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: EntityMsg,
        host: &mut EntityHost,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(msg, EntityMsg::Stop) {
            me.stop(Some("passivated".into()));
            return Ok(());
        }
        // The state is loaded while the message still answers for itself: an entity stopped
        // here (its shard stopped, which kills it mid-await) refuses it as never delivered.
        let loaded = host.ensure_loaded().await;
        // Taking a message's reply channel: from here on it may take effect, and nothing
        // below awaits, so the message is handled whole or not at all.
        if let Err(e) = loaded {
            msg.refuse(AskError::Unavailable(e.to_string()));
            return Err(Box::new(e));
        }
        if let Some((node, log)) = &host.args.rt.served_log {
            log.served(*node, host.args.shard, host.args.epoch);
        }
        match msg {
            EntityMsg::Request {
                cmd,
                msg_id,
                after,
                reply,
            } => match reply.take() {
                Some(reply) => host.request(cmd, msg_id, after, reply),
                None => Ok(()),
            },
            EntityMsg::Batch { items, reply } => match reply.take() {
                Some(reply) => host.batch(items, reply),
                None => Ok(()),
            },
            EntityMsg::Stop => Ok(()),
        }
    }
}

// Entity messages stay on their node (only the Gateway is remotable).
impl ractor::Message for EntityMsg {}
