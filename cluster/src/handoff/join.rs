//! Joining the cluster: a node asks to become a voter of the map's group, then takes its
//! share of the shards from the most loaded nodes.

use super::*;

/// Failed moves in a row a joining node tries before it gives up taking its share.
const MOVE_ATTEMPTS: u32 = 5;

/// A node asking to join: its id and cluster address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining node's id.
    pub id: u64,
    /// Its cluster address.
    pub cluster_addr: String,
    /// A join token minted for it (needed unless the admitting node's cluster file lists
    /// it).
    pub token: Option<String>,
}

/// Adds a node to the Raft group as a voter, if this node leads (gateway side).
pub async fn join_locally(
    raft: Option<&Raft>,
    policy: Option<&crate::join_token::JoinPolicy>,
    (now_ms, removed): (u64, &std::collections::BTreeSet<u64>),
    bytes: &[u8],
) -> ProposeAnswer {
    let (Some(raft), Some(policy)) = (raft, policy) else {
        return ProposeAnswer::Failed("no raft group on this node".into());
    };
    // A node out of the group (removed for good) admits no one, even while it still leads:
    // the joiner asks another member.
    if !crate::raft::is_voter_here(raft) {
        return ProposeAnswer::Failed("this node is not a voter of the shard map's group".into());
    }
    let req: JoinRequest = match decode(bytes) {
        Ok(r) => r,
        Err(e) => return ProposeAnswer::Failed(e.to_string()),
    };
    // A removed id stays removed, even for a node its cluster file still lists.
    let admitted = if removed.contains(&req.id) {
        Err(crate::join_token::JoinRefused::Removed(req.id))
    } else {
        policy.admit(req.id, req.token.as_deref(), now_ms)
    };
    if let Err(refused) = admitted {
        tracing::warn!(node = req.id, addr = %req.cluster_addr, reason = %refused, "join refused");
        metrics::counter!("agora_cluster_joins_refused_total").increment(1);
        return ProposeAnswer::Rejected(refused.to_string());
    }
    let node = openraft::BasicNode::new(req.cluster_addr.clone());
    if let Err(e) = raft.add_learner(req.id, node, true).await {
        return match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        };
    }
    let voters: std::collections::BTreeSet<u64> = [req.id].into_iter().collect();
    match raft
        .change_membership(openraft::ChangeMembers::AddVoterIds(voters), true)
        .await
    {
        Ok(_) => {
            tracing::info!(node = req.id, "node joined the raft group");
            ProposeAnswer::Applied(None)
        }
        Err(e) => match e.forward_to_leader() {
            Some(f) => ProposeAnswer::NotLeader(f.leader_id),
            None => ProposeAnswer::Failed(e.to_string()),
        },
    }
}

/// A request to move one of the receiving node's shards to another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveRequest {
    /// The shard.
    pub shard: u32,
    /// Its new owner.
    pub to: u64,
}

impl Handoff {
    /// Joins the Raft group through any connected peer (following the leader), retrying for a
    /// bounded time, then takes this node's share of the shards from the most loaded nodes.
    pub async fn join_and_take_share(
        &self,
        cluster_addr: String,
        token: Option<String>,
    ) -> Result<usize, MoveError> {
        let bytes = encode(&JoinRequest {
            id: self.me,
            cluster_addr,
            token,
        })
        .map_err(|e| MoveError::Failed(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ask = None;
        loop {
            if Instant::now() > deadline {
                return Err(MoveError::Failed(
                    "could not join the raft group in a minute".into(),
                ));
            }
            let target = ask.or_else(|| self.directory.connected_peers().first().copied());
            let Some(target) = target else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let answer = match self
                .call(
                    target,
                    GatewayRpc::Join,
                    bytes.clone(),
                    Duration::from_secs(20),
                )
                .await
            {
                Ok(reply) => {
                    decode::<ProposeAnswer>(&reply).map_err(|e| MoveError::Failed(e.to_string()))?
                }
                Err(e) => ProposeAnswer::Failed(e.to_string()),
            };
            match answer {
                ProposeAnswer::Applied(_) => break,
                ProposeAnswer::NotLeader(leader) => ask = leader,
                ProposeAnswer::Rejected(e) => {
                    // Not admitted: retrying with the same request cannot help.
                    return Err(MoveError::Refused(e));
                }
                ProposeAnswer::Failed(e) => {
                    tracing::debug!(error = %e, "join attempt failed");
                    ask = None;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        if self.replicated {
            // Replicas come to it through placement: the map's leader places some here and
            // each group's leader adds this node as a learner, then as a voter.
            tracing::info!(
                node = self.me,
                "joined the cluster; replicas follow placement"
            );
            return Ok(0);
        }
        // Wait for the agreed map to reach this node, then take a share.
        while self.owner_and_epoch(0)?.1 == 0 {
            if Instant::now() > deadline {
                return Err(MoveError::Failed(
                    "the agreed shard map did not arrive".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut taken = 0;
        let mut failures = 0;
        loop {
            let (shard, from, share) = {
                let map = self
                    .map
                    .read()
                    .map_err(|_| MoveError::Failed("shard map lock poisoned".into()))?;
                let mut owners: Vec<u64> = map.owners.clone();
                owners.sort_unstable();
                owners.dedup();
                let nodes = owners.iter().filter(|o| **o != self.me).count() + 1;
                let share = map.owners.len() / nodes;
                let mine = map.shards_of(self.me).len();
                if mine >= share {
                    break;
                }
                let Some(from) = owners
                    .iter()
                    .copied()
                    .filter(|o| *o != self.me)
                    .max_by_key(|o| (map.shards_of(*o).len(), u64::MAX - o))
                else {
                    break;
                };
                let Some(shard) = map.shards_of(from).last().copied() else {
                    break;
                };
                (shard, from, share)
            };
            if let Err(e) = self.request_move(shard, from).await {
                // A move that failed left the shard where it was (another move may have moved
                // the map on meanwhile): plan again from the map, a few times.
                failures += 1;
                if failures > MOVE_ATTEMPTS {
                    return Err(e);
                }
                tracing::warn!(shard, from, failures, error = %e, "taking a shard failed; planning again");
                tokio::time::sleep(Duration::from_millis(200 * failures as u64)).await;
                continue;
            }
            failures = 0;
            taken += 1;
            // Wait until this node's own map shows the move before choosing the next one.
            let deadline = Instant::now() + AGREEMENT_TIMEOUT;
            while self.owner_and_epoch(shard)?.0 != Some(self.me) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::info!(shard, from, taken, share, "took a shard");
        }
        tracing::info!(taken, "joined and took this node's share");
        Ok(taken)
    }

    /// Asks `from` to move `shard` here, and waits for its answer.
    async fn request_move(&self, shard: u32, from: u64) -> Result<u64, MoveError> {
        let bytes = encode(&MoveRequest { shard, to: self.me })
            .map_err(|e| MoveError::Failed(e.to_string()))?;
        let reply = self
            .call(
                from,
                GatewayRpc::RequestMove,
                bytes,
                Duration::from_secs(60),
            )
            .await?;
        decode::<Result<u64, MoveError>>(&reply).map_err(|e| MoveError::Failed(e.to_string()))?
    }
}
