//! The shard actor: owns the entities of one shard on this node. It activates an entity on
//! its first message, passivates it when idle, and restarts it (state reloaded from the
//! store) when it fails. A passivating entity's new messages wait until it has stopped, so
//! two copies of one entity never run at once. Requests to an entity already active skip the
//! shard actor: they go straight to the entity's mailbox through the shard's `HotEntities`.

use super::entity::{EntityActor, EntityArgs, EntityMsg};
use super::RuntimeContext;
use agora_actors::client::AskError;
use agora_actors::EntityRef;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Messages a shard takes.
pub enum ShardMsg {
    /// Deliver a request or a batch to an entity of this shard.
    Deliver {
        /// The entity.
        to: EntityRef,
        /// What to deliver (`Request` or `Batch`).
        msg: EntityMsg,
    },
    /// Passivate idle entities.
    Tick,
    /// Report counts.
    Stats(tokio::sync::oneshot::Sender<ShardStats>),
    /// Stop every entity and hold new messages (handoff); answered once all have stopped.
    Freeze(tokio::sync::oneshot::Sender<()>),
    /// Resume after a freeze: deliver what was held.
    Thaw,
    /// Hand back what was held while frozen, and stop.
    Release(tokio::sync::oneshot::Sender<Vec<(EntityRef, EntityMsg)>>),
}

/// A shard's counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardStats {
    /// Active entities.
    pub active: usize,
    /// Entities stopping.
    pub stopping: usize,
}

/// Start arguments.
pub struct ShardArgs {
    /// The shard number.
    pub shard: u32,
    /// The epoch this node owns it under.
    pub epoch: u64,
    /// Shared runtime.
    pub rt: RuntimeContext,
    /// The shard's active entities, for senders that skip the shard actor.
    pub hot: Arc<HotEntities>,
}

/// The actor.
pub struct ShardActor;

/// An active entity as a direct sender sees it.
struct Hot {
    actor: ActorRef<EntityMsg>,
    /// When it last got a message (ms), for passivation.
    touch: Arc<AtomicU64>,
}

/// A shard's active entities, readable by senders without a message to the shard actor. The
/// shard actor adds an entity once it has sent it its first message (so a direct message
/// never overtakes one the shard actor holds for it) and removes it before telling it to stop
/// (under the write lock, so a direct message is either in the mailbox before the stop or
/// goes through the shard actor, which holds it until the entity has stopped).
#[derive(Default)]
pub struct HotEntities {
    entities: RwLock<HashMap<EntityRef, Hot>>,
    /// Set when the shard was fenced (a newer owner exists).
    fenced: Arc<AtomicBool>,
}

impl HotEntities {
    /// Sends `msg` to `to` if it is active here and the shard is not fenced; gives the message
    /// back otherwise (for the shard actor).
    pub fn try_send(&self, to: &EntityRef, msg: EntityMsg, now_ms: u64) -> Option<EntityMsg> {
        if self.fenced.load(Ordering::Acquire) {
            return Some(msg);
        }
        let entities = self.entities.read().unwrap_or_else(|p| p.into_inner());
        let Some(hot) = entities.get(to) else {
            return Some(msg);
        };
        hot.touch.store(now_ms, Ordering::Relaxed);
        match hot.actor.send_message(msg) {
            Ok(()) => None,
            Err(ractor::MessagingErr::SendErr(msg)) => Some(msg),
            // The message is gone with its reply port: the caller sees the failure.
            Err(_) => None,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<EntityRef, Hot>> {
        self.entities.write().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, entity: EntityRef, actor: ActorRef<EntityMsg>, touch: Arc<AtomicU64>) {
        self.write().insert(entity, Hot { actor, touch });
    }

    fn remove(&self, entity: &EntityRef) {
        self.write().remove(entity);
    }

    fn clear(&self) {
        self.write().clear();
    }
}

struct Active {
    actor: ActorRef<EntityMsg>,
    /// When it last got a message (ms); direct senders update it too.
    touch: Arc<AtomicU64>,
}

/// Who waits for a freeze to finish, and the messages held meanwhile.
type Frozen = (
    Vec<tokio::sync::oneshot::Sender<()>>,
    Vec<(EntityRef, EntityMsg)>,
);

/// The shard's state.
pub struct ShardState {
    args: ShardArgs,
    fenced: Arc<AtomicBool>,
    active: HashMap<EntityRef, Active>,
    stopping: HashMap<EntityRef, Vec<EntityMsg>>,
    by_actor: HashMap<ActorId, EntityRef>,
    /// Set while frozen for a handoff: who waits for the freeze, and the held messages.
    frozen: Option<Frozen>,
}

impl ShardState {
    async fn activate(
        &mut self,
        me: &ActorRef<ShardMsg>,
        entity: EntityRef,
    ) -> Result<ActorRef<EntityMsg>, ActorProcessingErr> {
        let args = EntityArgs {
            entity: entity.clone(),
            shard: self.args.shard,
            epoch: self.args.epoch,
            fenced: self.fenced.clone(),
            rt: self.args.rt.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, EntityActor, args, me.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), entity.clone());
        metrics::counter!("agora_entity_activations_total", "kind" => entity.kind.name())
            .increment(1);
        Ok(actor)
    }

    async fn deliver(
        &mut self,
        me: &ActorRef<ShardMsg>,
        to: EntityRef,
        p: EntityMsg,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, held)) = self.frozen.as_mut() {
            held.push((to, p));
            return Ok(());
        }
        if let Some(buffer) = self.stopping.get_mut(&to) {
            buffer.push(p);
            return Ok(());
        }
        let now = self.args.rt.clock.now_ms();
        let (actor, fresh) = match self.active.get_mut(&to) {
            Some(a) => {
                a.touch.store(now, Ordering::Relaxed);
                (a.actor.clone(), None)
            }
            None => {
                if self.active.len() >= self.args.rt.max_active_per_shard {
                    self.passivate_least_recent();
                }
                let actor = self.activate(me, to.clone()).await?;
                let touch = Arc::new(AtomicU64::new(now));
                self.active.insert(
                    to.clone(),
                    Active {
                        actor: actor.clone(),
                        touch: touch.clone(),
                    },
                );
                (actor, Some(touch))
            }
        };
        if let Err(e) = actor.send_message(p) {
            // The actor is gone; the reply port was inside the message and is dropped, so the
            // caller sees the failure and retries.
            tracing::debug!(error = %e, "entity mailbox closed");
        }
        if let Some(touch) = fresh {
            // Only now may senders skip the shard actor: its first message is in the mailbox.
            self.args.hot.insert(to, actor, touch);
        }
        Ok(())
    }

    /// At the cap: passivates the least recently used eighth of the active entities (a
    /// stopping entity finishes what its mailbox holds first).
    fn passivate_least_recent(&mut self) {
        let mut by_age: Vec<(u64, EntityRef)> = self
            .active
            .iter()
            .map(|(e, a)| (a.touch.load(Ordering::Relaxed), e.clone()))
            .collect();
        let n = (by_age.len() / 8).max(1).min(by_age.len());
        if n < by_age.len() {
            by_age.select_nth_unstable(n);
        }
        by_age.truncate(n);
        metrics::counter!("agora_entity_evictions_total").increment(n as u64);
        for (_, e) in by_age {
            self.stop(e);
        }
    }

    /// Stops an active entity; messages for it wait until it has stopped.
    fn stop(&mut self, e: EntityRef) {
        // First out of the direct path, so nothing reaches its mailbox after the stop.
        self.args.hot.remove(&e);
        if let Some(a) = self.active.remove(&e) {
            if a.actor.send_message(EntityMsg::Stop).is_ok() {
                self.stopping.insert(e, Vec::new());
                metrics::counter!("agora_entity_passivations_total").increment(1);
            }
        }
    }

    fn passivate_idle(&mut self) {
        let now = self.args.rt.clock.now_ms();
        let idle_ms = self.args.rt.passivate_after.as_millis() as u64;
        let idle: Vec<EntityRef> = self
            .active
            .iter()
            .filter(|(_, a)| now.saturating_sub(a.touch.load(Ordering::Relaxed)) >= idle_ms)
            .map(|(e, _)| e.clone())
            .collect();
        for e in idle {
            self.stop(e);
        }
    }

    async fn on_exit(
        &mut self,
        me: &ActorRef<ShardMsg>,
        cell: &ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entity) = self.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if self
            .active
            .get(&entity)
            .is_some_and(|a| a.actor.get_id() == cell.get_id())
        {
            self.args.hot.remove(&entity);
            self.active.remove(&entity);
        }
        if let Some(buffer) = self.stopping.remove(&entity) {
            for p in buffer {
                self.deliver(me, entity.clone(), p).await?;
            }
        }
        self.answer_freeze_if_quiet();
        Ok(())
    }

    fn answer_freeze_if_quiet(&mut self) {
        if self.active.is_empty() && self.stopping.is_empty() {
            if let Some((waiters, _)) = self.frozen.as_mut() {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    fn freeze(&mut self, waiter: tokio::sync::oneshot::Sender<()>) {
        self.args.hot.clear();
        let frozen = self.frozen.get_or_insert_with(|| (Vec::new(), Vec::new()));
        frozen.0.push(waiter);
        let active: Vec<EntityRef> = self.active.keys().cloned().collect();
        for e in active {
            if let Some(a) = self.active.remove(&e) {
                if a.actor.send_message(EntityMsg::Stop).is_ok() {
                    self.stopping.insert(e, Vec::new());
                }
            }
        }
        self.answer_freeze_if_quiet();
    }
}

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        Ok(ShardState {
            fenced: args.hot.fenced.clone(),
            args,
            active: HashMap::new(),
            stopping: HashMap::new(),
            by_actor: HashMap::new(),
            frozen: None,
        })
    }

    async fn post_stop(
        &self,
        _me: ActorRef<ShardMsg>,
        s: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        s.args.hot.clear();
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<ShardMsg>,
        msg: ShardMsg,
        s: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Deliver { to, msg } => {
                if s.fenced.load(std::sync::atomic::Ordering::Acquire) {
                    let why = format!("shard {} is fenced", s.args.shard);
                    msg.refuse(AskError::not_served_here(why, None));
                    return Ok(());
                }
                s.deliver(&me, to, msg).await
            }
            ShardMsg::Tick => {
                s.passivate_idle();
                Ok(())
            }
            ShardMsg::Stats(tx) => {
                let _ = tx.send(ShardStats {
                    active: s.active.len(),
                    stopping: s.stopping.len(),
                });
                Ok(())
            }
            ShardMsg::Freeze(waiter) => {
                s.freeze(waiter);
                Ok(())
            }
            ShardMsg::Thaw => {
                if let Some((_, held)) = s.frozen.take() {
                    for (to, msg) in held {
                        s.deliver(&me, to, msg).await?;
                    }
                }
                Ok(())
            }
            ShardMsg::Release(tx) => {
                let held = s.frozen.take().map(|(_, held)| held).unwrap_or_default();
                let _ = tx.send(held);
                me.stop(Some("handed off".into()));
                Ok(())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<ShardMsg>,
        evt: SupervisionEvent,
        s: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => s.on_exit(&me, &cell).await,
            SupervisionEvent::ActorFailed(cell, err) => {
                let entity = s.by_actor.get(&cell.get_id()).cloned();
                tracing::error!(shard = s.args.shard, entity = ?entity, error = %err, "entity failed; it restarts from the store on its next message");
                metrics::counter!("agora_entity_failures_total").increment(1);
                s.on_exit(&me, &cell).await
            }
            _ => Ok(()),
        }
    }
}

// Shard messages stay on their node (only the Gateway is remotable).
impl ractor::Message for ShardMsg {}
