//! The operator: does the harness's chores (moves, join tokens, removals) through a random
//! node's admin endpoint, and records when a removed node has left the shard map's group.

use super::{now_ms, History, LoadSwitch, Op, Outcome, Request, Session, Shown, ADMIN_PORT};
use crate::seed::Stream;
use rand::Rng;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// What the harness asks the operator to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chore {
    /// Move a shard to a node (with replicated shards: hand it the shard's lead).
    Move(u32, u64),
    /// Mint a join token for a node about to join; it goes to the `Minted` list.
    MintJoinToken(u64),
    /// Remove a node from the cluster for good.
    Remove(u64),
}

/// Chores the harness asks the operator to do, in order.
pub type ChoreQueue = Rc<RefCell<std::collections::VecDeque<Chore>>>;

/// Join tokens the operator minted: (node, token), for the harness to start the node with.
pub type Minted = Rc<RefCell<Vec<(u64, String)>>>;

/// The operator: does the harness's chores through a random node's admin endpoint.
pub async fn operator(
    seed: u64,
    nodes: Vec<u64>,
    history: History,
    (chores, minted): (ChoreQueue, Minted),
    load: LoadSwitch,
) -> turmoil::Result {
    let mut s = Session::new(
        "operator".into(),
        nodes,
        Stream::new(seed, "client-operator"),
        history,
    );
    s.token = Some(crate::host::ADMIN_TOKEN.into());
    let mut removed = Vec::new();
    while load.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = chores.borrow_mut().pop_front();
        match next {
            Some(Chore::Move(shard, to)) => move_shard(&mut s, shard, to).await,
            Some(Chore::MintJoinToken(node)) => match mint_join_token(&mut s, node).await {
                Some(token) => minted.borrow_mut().push((node, token)),
                // Asked again after the next pause (a node down, a partition).
                None => chores.borrow_mut().push_back(Chore::MintJoinToken(node)),
            },
            Some(Chore::Remove(node)) => match send_removal(&mut s, node).await {
                Outcome::Ok => removed.push(node),
                Outcome::Unknown => chores.borrow_mut().push_back(Chore::Remove(node)),
                Outcome::Fail => {}
            },
            None => {}
        }
    }
    for node in removed {
        wait_out_of_map_group(&mut s, node).await;
    }
    Ok(())
}

/// The kind of the operator's record that a removed node (`quantity`) left the shard map's
/// group.
pub const MAP_GROUP_LEFT: &str = "map-group-left";

/// While the cluster heals: asks the other nodes until one says the removed `node` is no
/// longer a voter of the shard map's group, and records it (`MAP_GROUP_LEFT`).
async fn wait_out_of_map_group(s: &mut Session, node: u64) {
    loop {
        if s.nodes[s.node] == node {
            s.node = (s.node + 1) % s.nodes.len();
        }
        let request = Request::new("map-group-voters", "GET", "/admin/cluster/replicas".into())
            .port(ADMIN_PORT)
            .quantity(node);
        let (outcome, answer) = s.send(request).await;
        let voters: Option<Vec<u64>> = answer
            .filter(|_| outcome == Outcome::Ok)
            .and_then(|a| serde_json::from_value(a.body.get("map_voters")?.clone()).ok());
        if voters.is_some_and(|v| !v.is_empty() && !v.contains(&node)) {
            let at_ms = now_ms();
            s.history.borrow_mut().push(Op {
                client: s.name.clone(),
                kind: MAP_GROUP_LEFT,
                invoke_ms: at_ms,
                end_ms: at_ms,
                outcome: Outcome::Ok,
                status: 200,
                key: None,
                order_id: None,
                sku: None,
                quantity: node,
                status_seen: None,
                replayed: false,
                shown: Shown::Nothing,
                refused_why: None,
            });
            return;
        }
        s.node = s.rng.random_range(0..s.nodes.len());
        s.pause(300, 700).await;
    }
}

/// Moves `shard` to node `to`; with replicated shards a move is a leader transfer, made by
/// the shard's leader: a refusal that names it is sent there once.
async fn move_shard(s: &mut Session, shard: u32, to: u64) {
    let request = || {
        Request::new("move", "POST", format!("/admin/shards/{shard}/move"))
            .port(ADMIN_PORT)
            .body(json!({ "to": to }))
            .quantity(u64::from(shard))
    };
    let (_, answer) = s.send(request()).await;
    let leader = answer
        .as_ref()
        .filter(|a| a.status == 409)
        .and_then(|a| a.body.get("leader"))
        .and_then(Value::as_u64);
    if let Some(i) = leader.and_then(|l| s.nodes.iter().position(|n| *n == l)) {
        s.node = i;
        let _ = s.send(request()).await;
    }
}

/// A join token for `node`, if the node asked could mint one.
async fn mint_join_token(s: &mut Session, node: u64) -> Option<String> {
    let request = Request::new(
        "mint-join-token",
        "POST",
        "/admin/cluster/join-tokens".into(),
    )
    .port(ADMIN_PORT)
    .body(json!({ "node_id": node }))
    .quantity(node);
    let (outcome, answer) = s.send(request).await;
    let token = answer.filter(|_| outcome == Outcome::Ok).and_then(|a| {
        a.body
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if token.is_none() {
        s.node = s.rng.random_range(0..s.nodes.len());
    }
    token
}

/// Asks a random node to remove `node` for good (202; 409 while too few members would
/// remain): a removal racing another reaches a node whose map may not have the first yet.
async fn send_removal(s: &mut Session, node: u64) -> Outcome {
    s.node = s.rng.random_range(0..s.nodes.len());
    let request = Request::new(
        "remove-node",
        "POST",
        format!("/admin/cluster/members/{node}/remove"),
    )
    .port(ADMIN_PORT)
    .body(json!({}))
    .quantity(node);
    s.send(request).await.0
}
