//! The shard-map state machine: the agreed `ShardMap`, the last applied log id and the
//! membership, persisted in `raft_meta` after every applied batch, and published to
//! whoever follows the map once durable.

use super::storage::{self, decode, encode, read_meta, RaftStoreError, KEY_SNAPSHOT, KEY_STATE};
use super::types::{Entry, MapCommand, MapOutcome, MapRecord, NodeId, TypeConfig, TOO_FEW_MEMBERS};
use crate::shard_map::{ReplicaRecord, ShardMap};
use agora_actors::seams::BlockingPool;
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::Database;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::watch;

/// What the state machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapState {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// The agreed shard map, once initialized.
    pub map: Option<MapRecord>,
    /// Where replicated shards' replicas should be, and the nodes removed for good.
    pub replicas: ReplicaRecord,
}

/// The state as nodes before replica placement stored it (read, then upgraded).
#[derive(Deserialize)]
struct MapStateV1 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    map: Option<MapRecord>,
}

/// Decodes a stored or streamed state, upgrading one written before replica placement.
fn decode_state(bytes: &[u8]) -> Result<MapState, RaftStoreError> {
    decode::<MapState>(bytes).or_else(|e| match decode::<MapStateV1>(bytes) {
        Ok(v1) => Ok(MapState {
            last_applied: v1.last_applied,
            membership: v1.membership,
            map: v1.map,
            replicas: ReplicaRecord::default(),
        }),
        Err(_) => Err(e),
    })
}

/// Why a placement is refused, if it is: every shard needs distinct replicas, all of them
/// voters of the group and none removed.
fn placement_problem(state: &MapState, replicas: &[Vec<NodeId>]) -> Option<String> {
    if let Some(m) = &state.map {
        if m.owners.len() != replicas.len() {
            return Some(format!(
                "a placement of {} shards for a map of {}",
                replicas.len(),
                m.owners.len()
            ));
        }
    }
    let voters: std::collections::BTreeSet<NodeId> =
        state.membership.membership().voter_ids().collect();
    for (shard, nodes) in replicas.iter().enumerate() {
        let distinct: std::collections::BTreeSet<&NodeId> = nodes.iter().collect();
        if nodes.is_empty() || distinct.len() != nodes.len() {
            return Some(format!("shard {shard} needs distinct replicas"));
        }
        if let Some(n) = nodes
            .iter()
            .find(|n| !voters.contains(n) || state.replicas.removed.contains(n))
        {
            return Some(format!("shard {shard}: node {n} is not a member"));
        }
    }
    None
}

impl MapState {
    /// Applies one command (a pure function of the state and the command).
    pub fn apply_command(&mut self, cmd: &MapCommand) -> MapOutcome {
        match cmd {
            MapCommand::Initialize(rec) => match &self.map {
                Some(m) => MapOutcome::Unchanged { epoch: m.epoch },
                None if rec.owners.is_empty() => {
                    MapOutcome::Rejected("a shard map needs at least one shard".into())
                }
                None => {
                    self.map = Some(rec.clone());
                    MapOutcome::Applied { epoch: rec.epoch }
                }
            },
            MapCommand::MoveAt { shard, to, epoch } => match &self.map {
                Some(m) if m.epoch != *epoch => MapOutcome::Rejected(format!(
                    "the map moved on (epoch {} after {epoch}) while shard {shard} was being handed off",
                    m.epoch
                )),
                _ => self.apply_command(&MapCommand::Move {
                    shard: *shard,
                    to: *to,
                }),
            },
            MapCommand::AbortMove { shard: _, epoch } => match &mut self.map {
                None => MapOutcome::Rejected("no shard map yet".into()),
                Some(m) if m.epoch == *epoch => {
                    m.epoch += 1;
                    MapOutcome::Applied { epoch: m.epoch }
                }
                Some(m) => MapOutcome::Unchanged { epoch: m.epoch },
            },
            MapCommand::Move { shard, to } => {
                let is_member = self.membership.membership().voter_ids().any(|id| id == *to);
                let Some(m) = &mut self.map else {
                    return MapOutcome::Rejected("no shard map yet".into());
                };
                let Some(owner) = m.owners.get_mut(*shard as usize) else {
                    return MapOutcome::Rejected(format!("no shard {shard}"));
                };
                if !is_member {
                    return MapOutcome::Rejected(format!("node {to} is not a member"));
                }
                if *owner == *to {
                    return MapOutcome::Unchanged { epoch: m.epoch };
                }
                *owner = *to;
                m.epoch += 1;
                MapOutcome::Applied { epoch: m.epoch }
            }
            MapCommand::Place { version, replicas } => self.place(*version, replicas),
            MapCommand::RemoveNode { node } => self.remove_node(*node),
            MapCommand::RemoveNodeKeeping {
                node,
                min_remaining,
            } => match self.members_remaining_without(*node) {
                _ if self.replicas.removed.contains(node) => self.remove_node(*node),
                remaining if remaining < *min_remaining => MapOutcome::Rejected(format!(
                    "{TOO_FEW_MEMBERS}: removing node {node} leaves {remaining} members for \
                     {min_remaining} replicas of each shard"
                )),
                _ => self.remove_node(*node),
            },
        }
    }

    /// Marks `node` removed for good.
    fn remove_node(&mut self, node: NodeId) -> MapOutcome {
        let epoch = self.map.as_ref().map_or(0, |m| m.epoch);
        if self.replicas.removed.insert(node) {
            MapOutcome::Applied { epoch }
        } else {
            MapOutcome::Unchanged { epoch }
        }
    }

    /// How many voters of the map's group, not removed, remain once `node` is gone.
    fn members_remaining_without(&self, node: NodeId) -> usize {
        self.membership
            .membership()
            .voter_ids()
            .filter(|id| *id != node && !self.replicas.removed.contains(id))
            .count()
    }

    /// Agrees a new placement over version `version` (see `MapCommand::Place`).
    fn place(&mut self, version: u64, replicas: &[Vec<NodeId>]) -> MapOutcome {
        let epoch = self.map.as_ref().map_or(0, |m| m.epoch);
        if version != self.replicas.version {
            return MapOutcome::Rejected(format!(
                "the placement moved on (version {} after {version})",
                self.replicas.version
            ));
        }
        if let Some(problem) = placement_problem(self, replicas) {
            return MapOutcome::Rejected(problem);
        }
        if self.replicas.replicas == replicas {
            return MapOutcome::Unchanged { epoch };
        }
        self.replicas.replicas = replicas.to_vec();
        self.replicas.version += 1;
        MapOutcome::Applied { epoch }
    }

    /// The map nodes follow: the agreed owners and placement.
    fn published(&self) -> Option<ShardMap> {
        let mut map = ShardMap::from(self.map.clone()?);
        map.replicas = self.replicas.clone();
        Some(map)
    }

    /// Applies one log entry.
    fn apply_entry(&mut self, entry: &Entry) -> MapOutcome {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => MapOutcome::NotACommand,
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                MapOutcome::NotACommand
            }
            EntryPayload::Normal(cmd) => self.apply_command(cmd),
        }
    }
}

/// A snapshot as stored: its meta and its data (an encoded `MapState`).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine.
pub struct StateMachine {
    db: Arc<Database>,
    pool: Arc<dyn BlockingPool>,
    state: MapState,
    published: watch::Sender<Option<ShardMap>>,
    snapshots_built: u64,
}

fn sm_write_err(e: RaftStoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_err(e: RaftStoreError) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    /// Opens the state machine persisted in `db` (empty when there is none).
    pub fn open(db: Arc<Database>, pool: Arc<dyn BlockingPool>) -> Result<Self, RaftStoreError> {
        storage::create_tables(&db)?;
        let state = match storage::read_raw(&db, KEY_STATE)? {
            Some(bytes) => decode_state(&bytes)?,
            None => MapState::default(),
        };
        let (published, _) = watch::channel(state.published());
        Ok(Self {
            db,
            pool,
            state,
            published,
            snapshots_built: 0,
        })
    }

    /// The current state.
    pub fn state(&self) -> &MapState {
        &self.state
    }

    /// Follows the agreed map (`None` until one is applied); each value is durable.
    pub fn subscribe(&self) -> watch::Receiver<Option<ShardMap>> {
        self.published.subscribe()
    }

    /// Persists the state (and, when given, a snapshot) in one durable transaction, then
    /// publishes the map if it changed.
    async fn persist(&mut self, snapshot: Option<Vec<u8>>) -> Result<(), RaftStoreError> {
        let bytes = encode(&self.state)?;
        let db = self.db.clone();
        storage::run(&self.pool, move || {
            let mut values = vec![(KEY_STATE, bytes)];
            if let Some(s) = snapshot {
                values.push((KEY_SNAPSHOT, s));
            }
            storage::write_meta(&db, &values)
        })
        .await?;
        let map = self.state.published();
        self.published.send_if_modified(|old| {
            if *old == map {
                false
            } else {
                *old = map;
                true
            }
        });
        Ok(())
    }
}

/// Builds snapshots of the state machine as it was when the builder was made.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    pool: Arc<dyn BlockingPool>,
    state: MapState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = encode(&self.state).map_err(snapshot_err)?;
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.state.last_applied.map_or(0, |l| l.index),
                self.seq
            ),
        };
        let stored = encode(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(snapshot_err)?;
        let db = self.db.clone();
        storage::run(&self.pool, move || {
            storage::write_meta(&db, &[(KEY_SNAPSHOT, stored)])
        })
        .await
        .map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MapOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let outcomes: Vec<MapOutcome> = entries
            .into_iter()
            .map(|e| self.state.apply_entry(&e))
            .collect();
        if !outcomes.is_empty() {
            self.persist(None).await.map_err(sm_write_err)?;
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            pool: self.pool.clone(),
            state: self.state.clone(),
            seq: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let read_err = |e: RaftStoreError| -> StorageError<NodeId> {
            StorageIOError::read_snapshot(Some(meta.signature()), &e).into()
        };
        let mut state = decode_state(&data).map_err(read_err)?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let stored = encode(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(snapshot_err)?;
        self.state = state;
        self.persist(Some(stored)).await.map_err(snapshot_err)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = self.db.clone();
        let stored: Option<StoredSnapshot> =
            storage::run(&self.pool, move || read_meta(&db, KEY_SNAPSHOT))
                .await
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::Inline;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: log_id(index),
            payload,
        }
    }

    fn members() -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
            .collect();
        Membership::new(vec![nodes.keys().copied().collect::<BTreeSet<_>>()], nodes)
    }

    fn spread() -> MapRecord {
        MapRecord::from(&ShardMap::spread(6, &[1, 2, 3]))
    }

    fn open(path: &std::path::Path) -> StateMachine {
        let db = Arc::new(Database::create(path).unwrap());
        StateMachine::open(db, Arc::new(Inline)).unwrap()
    }

    #[tokio::test]
    async fn initialize_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(&dir.path().join("sm.redb"));
        let mut follow = sm.subscribe();
        assert_eq!(*follow.borrow_and_update(), None);
        let other = MapRecord {
            epoch: 1,
            owners: vec![3; 6],
        };
        let out = sm
            .apply(vec![
                entry(1, EntryPayload::Membership(members())),
                entry(2, EntryPayload::Normal(MapCommand::Initialize(spread()))),
                entry(3, EntryPayload::Normal(MapCommand::Initialize(other))),
                entry(4, EntryPayload::Blank),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                MapOutcome::NotACommand,
                MapOutcome::Applied { epoch: 1 },
                MapOutcome::Unchanged { epoch: 1 },
                MapOutcome::NotACommand,
            ]
        );
        assert_eq!(sm.state().map, Some(spread()));
        assert!(follow.has_changed().unwrap());
        assert_eq!(*follow.borrow(), Some(ShardMap::spread(6, &[1, 2, 3])));
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(4)));
        assert_eq!(membership.log_id(), &Some(log_id(1)));
    }

    #[test]
    fn a_move_at_an_old_epoch_never_applies_after_its_abort() {
        let mut st = MapState {
            membership: StoredMembership::new(Some(log_id(1)), members()),
            ..MapState::default()
        };
        st.apply_command(&MapCommand::Initialize(spread()));
        let e = spread().epoch;
        let abort = MapCommand::AbortMove { shard: 0, epoch: e };
        let late = MapCommand::MoveAt {
            shard: 0,
            to: 2,
            epoch: e,
        };
        assert_eq!(
            st.apply_command(&abort),
            MapOutcome::Applied { epoch: e + 1 }
        );
        assert!(matches!(st.apply_command(&late), MapOutcome::Rejected(_)));
        assert_eq!(
            st.apply_command(&abort),
            MapOutcome::Unchanged { epoch: e + 1 }
        );
        // In the other order the move wins and the abort changes nothing.
        let e = e + 1;
        let on_time = MapCommand::MoveAt {
            shard: 0,
            to: 2,
            epoch: e,
        };
        assert_eq!(
            st.apply_command(&on_time),
            MapOutcome::Applied { epoch: e + 1 }
        );
        let abort = MapCommand::AbortMove { shard: 0, epoch: e };
        assert_eq!(
            st.apply_command(&abort),
            MapOutcome::Unchanged { epoch: e + 1 }
        );
    }

    #[test]
    fn move_bumps_the_epoch_and_refuses_nonsense() {
        let mut st = MapState {
            membership: StoredMembership::new(Some(log_id(1)), members()),
            ..MapState::default()
        };
        assert!(matches!(
            st.apply_command(&MapCommand::Move { shard: 0, to: 2 }),
            MapOutcome::Rejected(_)
        ));
        st.apply_command(&MapCommand::Initialize(spread()));
        assert_eq!(st.map.as_ref().and_then(|m| m.owners.first()), Some(&1));
        assert_eq!(
            st.apply_command(&MapCommand::Move { shard: 0, to: 2 }),
            MapOutcome::Applied { epoch: 2 }
        );
        assert_eq!(
            st.apply_command(&MapCommand::Move { shard: 4, to: 3 }),
            MapOutcome::Applied { epoch: 3 }
        );
        let map = st.map.clone().unwrap();
        assert_eq!(map.epoch, 3);
        assert_eq!(map.owners, vec![2, 2, 3, 1, 3, 3]);
        // Already there: nothing changes.
        assert_eq!(
            st.apply_command(&MapCommand::Move { shard: 0, to: 2 }),
            MapOutcome::Unchanged { epoch: 3 }
        );
        // No such shard, or not a member: refused, the map is untouched.
        assert!(matches!(
            st.apply_command(&MapCommand::Move { shard: 6, to: 2 }),
            MapOutcome::Rejected(_)
        ));
        assert!(matches!(
            st.apply_command(&MapCommand::Move { shard: 1, to: 9 }),
            MapOutcome::Rejected(_)
        ));
        assert_eq!(st.map, Some(map));
    }

    #[tokio::test]
    async fn the_state_survives_reopening_and_snapshots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        let expected = {
            let mut sm = open(&path);
            sm.apply(vec![
                entry(1, EntryPayload::Membership(members())),
                entry(2, EntryPayload::Normal(MapCommand::Initialize(spread()))),
                entry(
                    3,
                    EntryPayload::Normal(MapCommand::Move { shard: 1, to: 3 }),
                ),
            ])
            .await
            .unwrap();
            let mut builder = sm.get_snapshot_builder().await;
            let snap = builder.build_snapshot().await.unwrap();
            assert_eq!(snap.meta.last_log_id, Some(log_id(3)));
            sm.state().clone()
        };
        assert_eq!(expected.map.as_ref().map(|m| m.epoch), Some(2));

        let mut sm = open(&path);
        assert_eq!(sm.state(), &expected);
        let published: Option<ShardMap> = sm.subscribe().borrow().clone();
        assert_eq!(published, expected.map.clone().map(ShardMap::from));
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(3)));

        // A fresh node installs the snapshot and holds the same state, durably.
        let fresh_path = dir.path().join("fresh.redb");
        {
            let mut fresh = open(&fresh_path);
            fresh
                .install_snapshot(&snap.meta, snap.snapshot)
                .await
                .unwrap();
            assert_eq!(fresh.state(), &expected);
        }
        let mut fresh = open(&fresh_path);
        assert_eq!(fresh.state(), &expected);
        assert!(fresh.get_current_snapshot().await.unwrap().is_some());
    }

    #[test]
    fn a_removal_that_would_leave_too_few_members_is_refused_where_it_is_agreed() {
        let mut st = MapState {
            membership: StoredMembership::new(Some(log_id(1)), members()),
            ..MapState::default()
        };
        st.apply_command(&MapCommand::Initialize(spread()));
        let keeping = |node, min_remaining| MapCommand::RemoveNodeKeeping {
            node,
            min_remaining,
        };
        // Three members, two must remain: the first removal passes, a second racing it
        // (checked against a map that had not applied the first) is refused here.
        assert_eq!(
            st.apply_command(&keeping(3, 2)),
            MapOutcome::Applied { epoch: 1 }
        );
        let refused = st.apply_command(&keeping(2, 2));
        assert!(
            matches!(&refused, MapOutcome::Rejected(why) if why.starts_with(TOO_FEW_MEMBERS)),
            "{refused:?}"
        );
        assert!(!st.replicas.removed.contains(&2));
        // Repeating an accepted removal changes nothing and is not refused.
        assert_eq!(
            st.apply_command(&keeping(3, 2)),
            MapOutcome::Unchanged { epoch: 1 }
        );
        // Forced, it passes.
        assert_eq!(
            st.apply_command(&MapCommand::RemoveNode { node: 2 }),
            MapOutcome::Applied { epoch: 1 }
        );
        assert_eq!(st.replicas.removed, [2, 3].into_iter().collect());
    }

    #[test]
    fn a_placement_applies_over_its_version_only_and_names_members_only() {
        let mut st = MapState {
            membership: StoredMembership::new(Some(log_id(1)), members()),
            ..MapState::default()
        };
        st.apply_command(&MapCommand::Initialize(spread()));
        let good: Vec<Vec<NodeId>> = (0..6).map(|s| vec![1 + s % 3, 1 + (s + 1) % 3]).collect();
        let place = |version, replicas: &Vec<Vec<NodeId>>| MapCommand::Place {
            version,
            replicas: replicas.clone(),
        };
        assert_eq!(
            st.apply_command(&place(0, &good)),
            MapOutcome::Applied { epoch: 1 }
        );
        assert_eq!(st.replicas.version, 1);
        // A balancer that read version 0 lost the race: refused, nothing changes.
        let other: Vec<Vec<NodeId>> = (0..6).map(|_| vec![2, 3]).collect();
        assert!(matches!(
            st.apply_command(&place(0, &other)),
            MapOutcome::Rejected(_)
        ));
        assert_eq!(st.replicas.replicas, good);
        // Wrong shard count, duplicates, strangers: refused.
        for bad in [
            vec![vec![1]; 5],
            (0..6).map(|_| vec![1, 1]).collect(),
            (0..6).map(|_| vec![1, 9]).collect(),
            (0..6).map(|_| vec![]).collect(),
        ] {
            assert!(matches!(
                st.apply_command(&place(1, &bad)),
                MapOutcome::Rejected(_)
            ));
        }
        // A removed node may no longer be placed.
        let remove = MapCommand::RemoveNode { node: 3 };
        assert_eq!(st.apply_command(&remove), MapOutcome::Applied { epoch: 1 });
        assert_eq!(
            st.apply_command(&remove),
            MapOutcome::Unchanged { epoch: 1 }
        );
        assert!(matches!(
            st.apply_command(&place(1, &other)),
            MapOutcome::Rejected(_)
        ));
        let without_3: Vec<Vec<NodeId>> = (0..6).map(|_| vec![1, 2]).collect();
        assert_eq!(
            st.apply_command(&place(1, &without_3)),
            MapOutcome::Applied { epoch: 1 }
        );
        let published = st.published().unwrap();
        assert_eq!(published.replicas.replicas, without_3);
        assert!(published.replicas.removed.contains(&3));
    }

    #[test]
    fn a_state_stored_before_placement_is_upgraded() {
        #[derive(Serialize)]
        struct Old {
            last_applied: Option<LogId<NodeId>>,
            membership: StoredMembership<NodeId, BasicNode>,
            map: Option<MapRecord>,
        }
        let old = Old {
            last_applied: Some(log_id(7)),
            membership: StoredMembership::new(Some(log_id(1)), members()),
            map: Some(spread()),
        };
        let state = decode_state(&encode(&old).unwrap()).unwrap();
        assert_eq!(state.last_applied, Some(log_id(7)));
        assert_eq!(state.map, Some(spread()));
        assert_eq!(state.replicas, ReplicaRecord::default());
        assert!(decode_state(b"\x01garbage").is_err());
    }
}
