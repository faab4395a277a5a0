//! The generic entity actor: hosts one entity of any kind, runs each command against its
//! state, hands changes to the group-commit writer without waiting for the fsync, and sends
//! each reply only once the change it reports is durable.

use super::RuntimeContext;
use crate::store::keys::entity_key;
use crate::store::record::{encode, EntityRecord, FORMAT_VERSION};
use crate::store::writer::{wait_durable, EntityWrite};
use crate::store::{StoreError, WriteOp};
use agora_actors::client::AskError;
use agora_actors::host::EntityState;
use agora_actors::{Command, Ctx, EntityRef, Outcome, Reply};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The reply channel of a request.
pub type ReplyTo = oneshot::Sender<Result<Reply, AskError>>;

/// Messages an entity actor takes.
pub enum EntityMsg {
    /// Run a command. `msg_id` is set for messages from the outbox or outside services.
    Request {
        /// The command.
        cmd: Command,
        /// The message id, for dedup.
        msg_id: Option<String>,
        /// Where the reply goes.
        reply: ReplyTo,
    },
    /// Stop after everything before this message (passivation).
    Stop,
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
    loaded: Option<(EntityState, u64)>,
    last_ticket: u64,
    /// Message ids applied since activation, with the ticket of their write.
    recent: HashMap<String, u64>,
    parked: Vec<(Command, ReplyTo)>,
}

impl EntityHost {
    async fn ensure_loaded(&mut self) -> Result<(), StoreError> {
        if self.loaded.is_none() {
            let rec = self.args.rt.writer.load(self.key.clone()).await?;
            self.loaded = Some(match rec {
                Some(r) => (r.state, r.seq),
                None => (EntityState::empty(self.args.entity.kind), 0),
            });
        }
        Ok(())
    }

    fn respond(&self, reply: ReplyTo, result: Result<Reply, AskError>, ticket: u64) {
        let progress = self.args.rt.writer.progress();
        let fenced = self.args.fenced.clone();
        let done = {
            let p = *progress.borrow();
            p.committed >= ticket || p.failed
        };
        let deliver = move |ok: bool| {
            let r = if !ok || fenced.load(Ordering::Acquire) {
                Err(AskError::Unavailable("store".into()))
            } else {
                result
            };
            let _ = reply.send(r);
        };
        if done {
            let ok = !progress.borrow().failed;
            deliver(ok);
        } else {
            tokio::spawn(async move {
                let ok = wait_durable(progress, ticket).await;
                deliver(ok);
            });
        }
    }

    fn already_applied(&mut self, msg_id: &str) -> Result<bool, StoreError> {
        let committed = self.args.rt.writer.progress().borrow().committed;
        self.recent.retain(|_, t| *t > committed);
        if self.recent.contains_key(msg_id) {
            return Ok(true);
        }
        self.args.rt.store.dedup_seen(&self.key, msg_id)
    }

    async fn request(
        &mut self,
        cmd: Command,
        msg_id: Option<String>,
        reply: ReplyTo,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(e) = self.ensure_loaded().await {
            let _ = reply.send(Err(AskError::Unavailable(e.to_string())));
            return Err(Box::new(e));
        }
        if let Some(id) = &msg_id {
            match self.already_applied(id) {
                Ok(true) => {
                    metrics::counter!("agora_messages_deduplicated_total").increment(1);
                    self.respond(reply, Ok(Reply::Duplicate), self.last_ticket);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = reply.send(Err(AskError::Unavailable(e.to_string())));
                    return Err(Box::new(e));
                }
            }
        }
        let Some((state, seq)) = self.loaded.as_mut() else {
            return Err("entity state missing after load".into());
        };
        let now = self.args.rt.clock.now_ms();
        let me = self.args.entity.clone();
        let mut ctx = Ctx::new(now, &me, *seq + 1, &self.args.rt.domain);
        let parked_cmd = cmd.clone();
        let handled = match state.handle(cmd, &mut ctx) {
            Ok(h) => h,
            Err(e) => {
                self.respond(reply, Err(AskError::Domain(e)), self.last_ticket);
                return Ok(());
            }
        };
        let outbox = ctx.take_outbox();
        if handled.changed || !outbox.is_empty() || msg_id.is_some() {
            *seq += 1;
            let record = EntityRecord {
                format: FORMAT_VERSION,
                seq: *seq,
                epoch: self.args.epoch,
                written_at_ms: now,
                state: state.clone(),
            };
            let record = encode(&record)?;
            let (done, done_rx) = oneshot::channel();
            let state_for_listeners = if self.args.rt.writer.listened(me.kind) {
                Some(state.clone())
            } else {
                None
            };
            let write = EntityWrite {
                shard: self.args.shard,
                epoch: self.args.epoch,
                entity: me.clone(),
                key: self.key.clone(),
                record,
                msg_id: msg_id.clone(),
                outbox,
                state_for_listeners,
                now_ms: now,
                done,
            };
            let ticket = self
                .args
                .rt
                .writer
                .submit(WriteOp::Entity(Box::new(write)))?;
            self.last_ticket = ticket;
            if let Some(id) = msg_id {
                self.recent.insert(id, ticket);
            }
            // A refused write (stale epoch) means another node owns the shard now: fence it,
            // so nothing more is answered from this copy.
            let fenced = self.args.fenced.clone();
            tokio::spawn(async move {
                if let Ok(Err(e)) = done_rx.await {
                    tracing::warn!(error = %e, "write refused; fencing shard");
                    fenced.store(true, Ordering::Release);
                }
            });
            metrics::counter!("agora_entity_writes_total", "kind" => me.kind.name()).increment(1);
        }
        match handled.outcome {
            Outcome::Reply(r) => self.respond(reply, Ok(r), self.last_ticket),
            Outcome::Park => self.parked.push((parked_cmd, reply)),
        }
        if handled.changed {
            self.recheck_parked();
        }
        Ok(())
    }

    /// Re-asks parked reads after a change; answers those whose condition now holds.
    fn recheck_parked(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for (cmd, reply) in parked {
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
            let mut probe = state.clone();
            match probe.handle(cmd.clone(), &mut ctx) {
                Ok(h) => match h.outcome {
                    Outcome::Park => self.parked.push((cmd, reply)),
                    Outcome::Reply(r) => self.respond(reply, Ok(r), self.last_ticket),
                },
                Err(e) => self.respond(reply, Err(AskError::Domain(e)), self.last_ticket),
            }
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

    async fn post_stop(
        &self,
        _me: ActorRef<Self::Msg>,
        host: &mut EntityHost,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("agora_active_entities").decrement(1.0);
        for (_, reply) in host.parked.drain(..) {
            let _ = reply.send(Err(AskError::Unavailable("entity passivated".into())));
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: EntityMsg,
        host: &mut EntityHost,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EntityMsg::Request { cmd, msg_id, reply } => host.request(cmd, msg_id, reply).await,
            EntityMsg::Stop => {
                me.stop(Some("passivated".into()));
                Ok(())
            }
        }
    }
}
