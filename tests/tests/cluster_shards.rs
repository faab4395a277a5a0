//! The shard map of a three-node cluster of real `agora node` processes: agreed through
//! Raft and kept when its leader is lost; shards moving under load, drained on SIGTERM and
//! taken on by a joining node without losing or repeating anything; and an owner that was
//! paused or restored from an old backup never serving a shard that moved away.

use agora_tests::cluster::Cluster;
use agora_tests::{poll_until, POLL_TIMEOUT};
use serde_json::json;
use std::time::{Duration, Instant};

/// What one node reports of the shard map and its Raft group.
#[derive(Debug, Clone, PartialEq)]
struct RaftView {
    leader: u64,
    term: u64,
    epoch: u64,
    owners: Vec<u64>,
}

/// Asks node `i` (0-based) for its shard map and Raft status; `Err` until it knows a leader.
async fn raft_view(cluster: &Cluster, i: usize) -> Result<RaftView, String> {
    let ops = cluster.ops(i);
    let r = ops
        .try_send(ops.req(reqwest::Method::GET, "/admin/cluster/shards"))
        .await
        .map_err(|e| format!("node {}: {e}", i + 1))?;
    if r.status != 200 {
        return Err(format!("node {} answered {}: {}", i + 1, r.status, r.text));
    }
    let leader = r.body["raft"]["leader"]
        .as_u64()
        .ok_or_else(|| format!("node {} knows no leader: {}", i + 1, r.body["raft"]))?;
    let term = r.body["raft"]["term"]
        .as_u64()
        .ok_or_else(|| format!("node {} reports no term: {}", i + 1, r.body["raft"]))?;
    if !r.body["raft"]["last_applied"].is_u64() {
        return Err(format!(
            "node {} applied nothing: {}",
            i + 1,
            r.body["raft"]
        ));
    }
    let owners = r.body["shards"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["owner"].as_u64()).collect())
        .unwrap_or_default();
    Ok(RaftView {
        leader,
        term,
        epoch: r.body["epoch"].as_u64().unwrap_or_default(),
        owners,
    })
}

/// What every node in `nodes` (0-based) reports, if they all report the same.
async fn agreement(cluster: &Cluster, nodes: &[usize]) -> Result<RaftView, String> {
    let mut views = Vec::new();
    for i in nodes {
        views.push(raft_view(cluster, *i).await?);
    }
    match views.split_first() {
        Some((first, rest)) if rest.iter().all(|v| v == first) => Ok(first.clone()),
        _ => Err(format!("views differ: {views:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_map_is_agreed_through_raft_and_survives_losing_the_leader() {
    let mut cluster = Cluster::start(3, 100).await;
    // The static spread of 16 shards over nodes 1..=3, at epoch 1.
    let spread: Vec<u64> = (0..16).map(|s| s % 3 + 1).collect();

    let first = poll_until(
        "all three nodes agree on a raft leader",
        POLL_TIMEOUT,
        || agreement(&cluster, &[0, 1, 2]),
    )
    .await;
    assert_eq!((first.epoch, &first.owners), (1, &spread), "{first:?}");

    // kill -9 the leader: the two others elect another one and keep the same map.
    let killed = usize::try_from(first.leader - 1).expect("a node index");
    cluster.nodes[killed].kill9();
    let others: Vec<usize> = (0..3).filter(|i| *i != killed).collect();
    let second = poll_until("the two survivors elect a new leader", POLL_TIMEOUT, || {
        let (cluster, others, first) = (&cluster, &others, &first);
        async move {
            let v = agreement(cluster, others).await?;
            if v.leader != first.leader && v.term > first.term {
                Ok(v)
            } else {
                Err(format!("still {v:?}"))
            }
        }
    })
    .await;
    assert_eq!((second.epoch, &second.owners), (1, &spread), "{second:?}");

    // The killed node comes back and follows the group again.
    cluster.nodes[killed].restart();
    cluster.wait_ready().await;
    let third = poll_until("the restarted node rejoins the group", POLL_TIMEOUT, || {
        agreement(&cluster, &[0, 1, 2])
    })
    .await;
    assert_eq!((third.epoch, &third.owners), (1, &spread), "{third:?}");
    assert!(third.term >= second.term, "{third:?} after {second:?}");
}

/// A product stored on node 1, its shard, and shoppers buying it through every node.
struct Bought {
    admin: agora_tests::http::Client,
    sku: String,
    shard: u64,
    shoppers: agora_tests::cluster::Shoppers,
}

/// Stores a product on node 1 (40 in stock) and starts six shoppers buying it through every
/// node.
async fn bought_on_node_1(cluster: &Cluster) -> Bought {
    let admin = cluster.admin().await;
    let (sku, shard) = cluster.product_stored_on(&admin, 0, "product", 40).await;
    let shoppers = agora_tests::cluster::Shoppers::start(
        (0..3).map(|i| cluster.client(i)).collect(),
        vec![sku.clone()],
        6,
    )
    .await;
    Bought {
        admin,
        sku,
        shard,
        shoppers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moves_to_another_node_under_load_without_losing_or_repeating_anything() {
    let cluster = Cluster::start(3, 50).await;
    let ops1 = cluster.ops(0);
    let Bought {
        admin,
        sku,
        shard,
        shoppers,
    } = bought_on_node_1(&cluster).await;
    let started = Instant::now();
    let moved = agora_tests::operations::run_operation(
        &ops1,
        &format!("/admin/shards/{shard}/move"),
        &json!({"to": 2}),
        "move",
    )
    .await;
    assert_eq!(moved["result"]["epoch"], 2, "{moved}");
    assert_eq!(moved["progress"]["done"], 1, "{moved}");
    let (moved_in, unavailable) = (
        started.elapsed(),
        shoppers
            .unavailable
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    let acked = shoppers.finish().await;
    eprintln!("shard {shard} moved in {moved_in:?}; {unavailable} checkout answers were 503 (retried), {} acknowledged", acked.len());

    // The product now lives on node 2; node 1 names the new owner.
    let ops2 = cluster.ops(1);
    // Followers apply the agreed map within a heartbeat or two.
    let r = poll_until("node 2 serves the moved product", POLL_TIMEOUT, || {
        let ops2 = ops2.clone();
        let sku = sku.clone();
        async move {
            let r = ops2.get(&format!("/admin/entities/product/{sku}")).await;
            if r.status == 200 {
                Ok(r)
            } else {
                Err(r.text)
            }
        }
    })
    .await;
    assert_eq!(
        r.body["state"]["Product"]["details"]["price"]["amount_minor"], 1_000,
        "{}",
        r.text
    );
    let r = ops1.get(&format!("/admin/entities/product/{sku}")).await;
    assert_eq!(
        (r.status, r.body["owner"].as_u64()),
        (421, Some(2)),
        "{}",
        r.text
    );
    let shards = ops1
        .get("/admin/cluster/shards")
        .await
        .expect_status(200, "shards");
    assert_eq!(shards.body["epoch"], 2, "{}", shards.text);

    // Every acknowledged order finishes, once, and stock is conserved.
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &[sku], 40, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_moves_of_one_shard_at_once_run_one_after_the_other_and_lose_nothing() {
    let cluster = Cluster::start(3, 50).await;
    let ops1 = cluster.ops(0);
    let Bought {
        admin,
        sku,
        shard,
        shoppers,
    } = bought_on_node_1(&cluster).await;

    // An operator asks node 1 to move the shard to node 2 and, at once, to node 3.
    let path = format!("/admin/shards/{shard}/move");
    let (body2, body3) = (json!({"to": 2}), json!({"to": 3}));
    let (to2, to3) = tokio::join!(ops1.post(&path, &body2), ops1.post(&path, &body3));
    let ids = [
        agora_tests::operations::accepted(&to2, "move", "move to node 2"),
        agora_tests::operations::accepted(&to3, "move", "move to node 3"),
    ];
    let mut ended = Vec::new();
    for id in &ids {
        ended.push(agora_tests::operations::finished(&ops1, id).await);
    }
    let acked = shoppers.finish().await;

    // One move won; the other waited for its turn and was then refused: the shard was no
    // longer node 1's to move (it did not race the first, freezing and thawing the shard).
    let won: Vec<&serde_json::Value> = ended.iter().filter(|o| o["state"] == "succeeded").collect();
    assert_eq!(won.len(), 1, "exactly one move wins: {ended:?}");
    let owner = won[0]["to"].as_u64().expect("the winner names its target");
    let lost = ended
        .iter()
        .find(|o| o["state"] != "succeeded")
        .expect("the other move ended");
    assert_eq!(lost["state"], "failed", "{lost}");
    let detail = lost["problem"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("is owned by node {owner}")),
        "the second move must find the shard moved, not race the first: {lost}"
    );
    assert_eq!(
        won[0]["result"]["epoch"], 2,
        "one move, one epoch: {}",
        won[0]
    );

    // Every acknowledged order finishes, once, and stock is conserved.
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &[sku], 40, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_drains_its_shards_first_and_nothing_is_lost() {
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster.admin().await;
    let skus = [
        admin.stocked_product(1_000, 30).await,
        admin.stocked_product(1_500, 30).await,
    ];
    cluster.wait_for_raft_leader().await;

    let shoppers = agora_tests::cluster::Shoppers::start(
        (0..2).map(|i| cluster.client(i)).collect(),
        skus.to_vec(),
        8,
    )
    .await;
    let started = Instant::now();
    let status = cluster.nodes[2].terminate();
    let drained_in = started.elapsed();
    assert!(status.success(), "a drained node exits 0, got {status:?}");
    let unavailable = shoppers
        .unavailable
        .load(std::sync::atomic::Ordering::SeqCst);
    let acked = shoppers.finish().await;
    eprintln!("node 3 drained and exited in {drained_in:?}; {unavailable} checkout answers were 503 (retried), {} acknowledged", acked.len());

    let owners = cluster.owners().await;
    assert_eq!(owners.len(), 16, "{owners:?}");
    assert!(
        owners.iter().all(|o| *o != 3),
        "node 3 still owns shards: {owners:?}"
    );
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &skus, 30, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_under_load_and_takes_its_share() {
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster.admin().await;
    let skus = vec![
        admin.stocked_product(1_000, 30).await,
        admin.stocked_product(1_500, 30).await,
    ];
    let ops1 = cluster.ops(0);
    cluster.wait_for_raft_leader().await;
    let shoppers = agora_tests::cluster::Shoppers::start(
        (0..3).map(|i| cluster.client(i)).collect(),
        skus.clone(),
        8,
    )
    .await;
    let started = Instant::now();
    cluster.join_node().await;
    let ops4 = cluster.ops(3);
    poll_until(
        "node 4 owns its share of the 16 shards",
        Duration::from_secs(60),
        || {
            let ops1 = ops1.clone();
            async move {
                let r = ops1.get("/admin/cluster/shards").await;
                let owned = r.body["shards"]
                    .as_array()
                    .map_or(0, |s| s.iter().filter(|x| x["owner"] == 4).count());
                if owned >= 4 {
                    Ok(())
                } else {
                    Err(format!("node 4 owns {owned}: {}", r.text))
                }
            }
        },
    )
    .await;
    let took = started.elapsed();
    let unavailable = shoppers
        .unavailable
        .load(std::sync::atomic::Ordering::SeqCst);
    let acked = shoppers.finish().await;
    eprintln!(
        "node 4 joined and took its share in {took:?}; {unavailable} checkout answers were 503 (retried), {} orders acknowledged meanwhile",
        acked.len()
    );

    // Node 4 serves entities it now owns, and every node lists the whole catalog.
    poll_until("node 4's own map shows the moves", POLL_TIMEOUT, || {
        let ops4 = ops4.clone();
        async move {
            let r = ops4.get("/admin/cluster/shards").await;
            if r.body["epoch"].as_u64() >= Some(5) {
                Ok(())
            } else {
                Err(r.text)
            }
        }
    })
    .await;
    let shopper4 = cluster.client(3);
    for sku in &skus {
        shopper4
            .get(&format!("/api/v1/products/{sku}"))
            .await
            .expect_status(200, "product via node 4");
    }
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &skus, 30, &acked).await;
}

/// Sends a signal to a process (STOP or CONT).
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{sig} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_through_a_move_cannot_get_the_old_owner_to_serve_or_write_the_shard() {
    let cluster = Cluster::start(3, 50).await;
    let admin = cluster.admin().await;
    let ops1 = cluster.ops(0);
    // A stock item stored on node 1, and its shard.
    let (sku, shard) = cluster.product_stored_on(&admin, 0, "stock", 10).await;
    let before = admin.inventory(&sku).await;

    // Node 3 sleeps through the move: its shard map still names node 1.
    let pid3 = cluster.nodes[2].pid();
    signal(pid3, "STOP");
    let moved = ops1
        .post(&format!("/admin/shards/{shard}/move"), &json!({"to": 2}))
        .await;
    let id = agora_tests::operations::accepted(&moved, "move", "move while node 3 sleeps");
    let moved = agora_tests::operations::finished(&ops1, &id).await;
    signal(pid3, "CONT");
    assert_eq!(
        moved["state"], "succeeded",
        "move while node 3 sleeps: {moved}"
    );

    // Node 3 routes stock writes with its stale map; whatever it answers, the old owner never
    // serves or stores them: each write lands exactly once, on the new owner.
    let received = receive_one_by_one(&admin.rebased(&cluster.nodes[2].shop_url), &sku, 20).await;
    let r = ops1.get(&format!("/admin/entities/stock/{sku}")).await;
    assert_eq!(
        (r.status, r.body["owner"].as_u64()),
        (421, Some(2)),
        "node 1 must hold nothing for the moved shard: {}",
        r.text
    );
    let after = poll_until(
        "the new owner shows every acknowledged receive",
        POLL_TIMEOUT,
        || {
            let admin = admin.clone();
            let sku = sku.clone();
            async move {
                let r = admin.get(&format!("/api/v1/inventory/{sku}")).await;
                if r.status == 200 {
                    Ok(agora_tests::Inventory::from_json(&r.body))
                } else {
                    Err(r.text)
                }
            }
        },
    )
    .await;
    assert_eq!(
        after.available,
        before.available + received,
        "before {before:?}, after {after:?}, {received} acknowledged"
    );
    eprintln!("{received} of 20 writes through the node that slept were acknowledged; the rest were refused (503)");
}

/// Receives `times` single units of `sku` through `via`; returns how many were acknowledged
/// (200). Each may be refused (503), never answered otherwise.
async fn receive_one_by_one(via: &agora_tests::Client, sku: &str, times: usize) -> u64 {
    let mut received = 0;
    for _ in 0..times {
        let r = via
            .post(
                &format!("/api/v1/inventory/{sku}/receive"),
                &json!({"quantity": 1}),
            )
            .await;
        match r.status {
            200 => received += 1,
            503 => {}
            s => panic!("a receive through {} answered {s}: {}", via.base, r.text),
        }
    }
    received
}

/// Copies directory `from` into `to` (created), with `cp -a`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
}

/// An operator restores node 3 from a backup taken before one of its shards moved away: its
/// stored shard map still gives it that shard, and its disk still holds the shard's rows.
/// It must serve no shard until its map has caught up with the group's (a stale map would
/// put the shard on two nodes), then drop the stale copy; every write through it lands once,
/// on the new owner. Found by the simulator (seed 3006): a node whose disk failed while the
/// map moved one of its shards came back serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_old_backup_never_serves_a_shard_that_moved_away() {
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster.admin().await;
    // A stock item stored on node 3, and its shard.
    let (sku, shard) = cluster.product_stored_on(&admin, 2, "stock", 10).await;

    // The backup, taken while node 3 is down.
    cluster.nodes[2].kill9();
    let data = cluster.node_data_dir(2);
    let backup = tempfile::tempdir().expect("temp dir");
    copy_dir(&data, &backup.path().join("data"));
    cluster.nodes[2].restart();
    cluster.wait_ready().await;

    // The shard moves to node 2; then node 3's disk goes back to the backup.
    let ops3 = cluster.ops(2);
    agora_tests::operations::run_operation(
        &ops3,
        &format!("/admin/shards/{shard}/move"),
        &json!({"to": 2}),
        "move",
    )
    .await;
    let before = admin.inventory(&sku).await;
    cluster.nodes[2].kill9();
    std::fs::remove_dir_all(&data).expect("remove node 3's data");
    copy_dir(&backup.path().join("data"), &data);
    cluster.nodes[2].restart();

    // Writes through node 3's own edge from its first moment: each is refused (503) or lands
    // once, on node 2.
    let received = receive_one_by_one(&admin.rebased(&cluster.nodes[2].shop_url), &sku, 20).await;
    cluster.wait_ready().await;
    let ops3 = cluster.ops(2);
    agora_tests::wait_for_counter(
        &ops3,
        "agora_orphan_shard_copies_dropped_total",
        1.0,
        "the restored node drops its stale copy of the moved shard",
    )
    .await;
    let after = admin.inventory(&sku).await;
    assert_eq!(
        after.available,
        before.available + received,
        "before {before:?}, after {after:?}, {received} acknowledged through node 3"
    );
    eprintln!("{received} of 20 writes through the restored node were acknowledged");
}
