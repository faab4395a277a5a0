//! A three-node cluster of real `agora node` processes: the full order flow through each
//! node's edge with entities spread over all three, catalog listings that include every
//! node's products, a killed node whose shards fail fast while the others keep working, a
//! long order history listed alike from every node, and reviews written through every node
//! listed alike from every node.

use agora_tests::cluster::Cluster;
use agora_tests::{
    card, counter, poll_until, wait_for_order, wallet, ADMIN_EMAIL, ADMIN_PASSWORD, CARD_OK,
    POLL_TIMEOUT,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_through_every_node_with_entities_on_all_three() {
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let skus = [
        admin.stocked_product(1_000, 50).await,
        admin.stocked_product(2_500, 50).await,
        admin.stocked_product(700, 50).await,
    ];

    // Every node lists every product (catalog facts are pulled from the owning nodes).
    for i in 0..3 {
        let c = cluster.client(i);
        for sku in &skus {
            poll_until(
                &format!("node {} lists {sku} with stock", i + 1),
                POLL_TIMEOUT,
                || {
                    let c = c.clone();
                    let sku = sku.clone();
                    async move {
                        let r = c.get(&format!("/api/v1/products?q={sku}")).await;
                        if r.body["items"][0]["available"] == json!(50) {
                            Ok(())
                        } else {
                            Err(r.text)
                        }
                    }
                },
            )
            .await;
        }
    }

    // A shopper on each node buys all three products; another node follows the order.
    let mut orders = Vec::new();
    for i in 0..3 {
        let (shopper, _) = cluster.client(i).new_user().await;
        for sku in &skus {
            shopper.add_to_cart(sku, 1).await;
        }
        let order_id = shopper.place_order(card(CARD_OK)).await;
        let follower = shopper.rebased(&cluster.nodes[(i + 1) % 3].shop_url);
        orders.push((follower, order_id));
    }
    for (follower, order_id) in &orders {
        let order = wait_for_order(follower, order_id, &["DELIVERED"]).await;
        assert_eq!(order["lines"].as_array().map(Vec::len), Some(3), "{order}");
    }
    for sku in &skus {
        let inv = admin.inventory(sku).await;
        assert_eq!(
            (inv.available, inv.reserved, inv.sold),
            (47, 0, 3),
            "{sku}: {inv:?}"
        );
    }

    // Entities live on all three nodes: each stored entity writes, and each served remote calls.
    for node in &cluster.nodes {
        let a = node.admin_port_client();
        assert!(
            counter(&a, "agora_entity_writes_total").await > 0.0,
            "node {} stored nothing",
            node.shop_url
        );
        assert!(
            counter(&a, "agora_cluster_remote_calls_total").await > 0.0,
            "node {} never routed to a peer",
            node.shop_url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_fast_and_recovers_everything_on_restart() {
    let mut cluster = Cluster::start(3, 100).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    // Products spread over the shards of all nodes.
    let mut skus = Vec::new();
    for _ in 0..12 {
        skus.push(admin.stocked_product(1_000, 10).await);
    }
    let (shopper, _) = cluster.client(0).new_user().await;
    shopper.add_to_cart(&skus[0], 1).await;
    let order_id = shopper.place_order(card(CARD_OK)).await;
    wait_for_order(&shopper, &order_id, &["DELIVERED"]).await;

    cluster.nodes[2].kill9();
    let reader = cluster.client(0);
    // Wait (bounded) until node 1 has noticed node 3 is gone: some SKU answers 503.
    poll_until("node 1 notices node 3 is down", POLL_TIMEOUT, || {
        let reader = reader.clone();
        let skus = skus.clone();
        async move {
            for sku in &skus {
                if reader.get(&format!("/api/v1/products/{sku}")).await.status == 503 {
                    return Ok(());
                }
            }
            Err("every SKU still answers".to_string())
        }
    })
    .await;
    // Now every request answers within 2 s: 200 for shards elsewhere, 503 for node 3's.
    let (mut ok, mut unavailable) = (0, 0);
    for sku in &skus {
        let started = Instant::now();
        let r = reader.get(&format!("/api/v1/products/{sku}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "GET {sku} took {:?}",
            started.elapsed()
        );
        match r.status {
            200 => ok += 1,
            503 => {
                assert!(
                    r.retry_after.is_some(),
                    "503 without Retry-After: {}",
                    r.text
                );
                unavailable += 1
            }
            s => panic!("GET {sku} answered {s}: {}", r.text),
        }
    }
    assert!(
        ok > 0 && unavailable > 0,
        "expected both live and unavailable shards, got {ok} ok and {unavailable} unavailable"
    );

    cluster.nodes[2].restart();
    cluster.wait_ready().await;
    agora_tests::cluster::all_served(&reader, &skus).await;
    let order = shopper.order(&order_id).await;
    assert_eq!(order["status"], "DELIVERED", "{order}");
    let inv = admin.inventory(&skus[0]).await;
    assert_eq!((inv.available, inv.sold), (9, 1), "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_needs_its_token_and_shows_members_shards_and_entities() {
    use agora_tests::cluster::ADMIN_TOKEN;
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let sku = admin.stocked_product(1_000, 5).await;
    let anon = cluster.nodes[0].admin_port_client();
    let r = anon.get("/admin/cluster/members").await;
    assert_eq!(r.status, 401, "{}", r.text);
    r.assert_problem("admin without token");
    let wrong = anon.with_token("not-the-token-at-all");
    assert_eq!(wrong.get("/admin/cluster/members").await.status, 401);
    // The admin API's contract is open: it holds no data.
    let doc = anon.get("/admin/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert_eq!(
        doc.body["paths"]["/admin/cluster/members"]["get"]["operationId"], "list_members",
        "{}",
        doc.text
    );

    let ops = anon.with_token(ADMIN_TOKEN);
    // Every peer answers heartbeats: up (suspect only until the first heartbeat lands), as
    // this node sees it and as each of the three does (`seen_by`, asked of every peer).
    let members = poll_until(
        "every member is up as every node sees it",
        POLL_TIMEOUT,
        || {
            let ops = ops.clone();
            async move {
                let r = ops.get("/admin/cluster/members").await;
                let seen_up_by_all = |m: &Value| {
                    m["seen_by"].as_object().is_some_and(|by| {
                        by.len() == 3 && ["1", "2", "3"].iter().all(|n| by[*n] == "up")
                    })
                };
                let all_up = r.body["members"].as_array().is_some_and(|l| {
                    l.len() == 3 && l.iter().all(|m| m["status"] == "up" && seen_up_by_all(m))
                });
                if all_up {
                    Ok(r)
                } else {
                    Err(r.text)
                }
            }
        },
    )
    .await;
    let list = members.body["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let local = ops.get("/admin/cluster/members?local=true").await;
    assert!(
        local.body["members"][0].get("seen_by").is_none(),
        "{}",
        local.text
    );
    let total_shards: u64 = list.iter().filter_map(|m| m["shards"].as_u64()).sum();
    assert_eq!(total_shards, 16, "{}", members.text);

    let shards = ops
        .get("/admin/cluster/shards")
        .await
        .expect_status(200, "shards");
    assert_eq!(shards.body["epoch"], 1);
    assert_eq!(shards.body["shards"].as_array().map(Vec::len), Some(16));

    // Exactly one node stores the product; the others name it.
    let mut found = 0;
    for node in &cluster.nodes {
        let r = node
            .admin_port_client()
            .with_token(ADMIN_TOKEN)
            .get(&format!("/admin/entities/product/{sku}"))
            .await;
        match r.status {
            200 => {
                found += 1;
                assert_eq!(
                    r.body["state"]["Product"]["details"]["price"]["amount_minor"], 1_000,
                    "{}",
                    r.text
                );
                assert!(r.body["seq"].as_u64() >= Some(1), "{}", r.text);
                // Times in RFC 3339 with milliseconds, as in the shop API.
                let written = r.body["written_at"].as_str().unwrap_or_default();
                let rfc3339 =
                    written.len() == 24 && written.as_bytes()[10] == b'T' && written.ends_with('Z');
                assert!(rfc3339, "{}", r.text);
            }
            421 => assert!(r.body["owner"].as_u64().is_some(), "{}", r.text),
            s => panic!("entity inspection answered {s}: {}", r.text),
        }
    }
    assert_eq!(found, 1);
    assert_eq!(ops.get("/admin/entities/nonsense/x").await.status, 404);
    assert!(ops
        .get("/admin/dead-letters")
        .await
        .expect_status(200, "dead letters")
        .body["items"]
        .is_array());
    // A drain goes to the node that drains; another node names it.
    let r = ops.post("/admin/cluster/members/3/drain", &json!({})).await;
    assert_eq!(r.status, 421, "{}", r.text);
    assert!(r.body["admin_addr"].is_string(), "{}", r.text);
}

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
    use agora_tests::cluster::ADMIN_TOKEN;
    let ops = cluster.nodes[i].admin_port_client().with_token(ADMIN_TOKEN);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moves_to_another_node_under_load_without_losing_or_repeating_anything() {
    use agora_tests::cluster::ADMIN_TOKEN;
    let cluster = Cluster::start(3, 50).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let ops1 = cluster.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
    // A product stored on node 1, and its shard.
    let (sku, shard) = cluster.product_stored_on(&admin, 0, "product", 40).await;

    // Shoppers keep buying it through every node while the shard moves.
    let shoppers = agora_tests::cluster::Shoppers::start(
        (0..3).map(|i| cluster.client(i)).collect(),
        vec![sku.clone()],
        6,
    )
    .await;
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
    let ops2 = cluster.nodes[1].admin_port_client().with_token(ADMIN_TOKEN);
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
async fn a_node_stopped_with_sigterm_drains_its_shards_first_and_nothing_is_lost() {
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
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
    use agora_tests::cluster::ADMIN_TOKEN;
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let skus = vec![
        admin.stocked_product(1_000, 30).await,
        admin.stocked_product(1_500, 30).await,
    ];
    let ops1 = cluster.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
    cluster.wait_for_raft_leader().await;
    let shoppers = agora_tests::cluster::Shoppers::start(
        (0..3).map(|i| cluster.client(i)).collect(),
        skus.clone(),
        8,
    )
    .await;
    let started = Instant::now();
    cluster.join_node().await;
    let ops4 = cluster.nodes[3].admin_port_client().with_token(ADMIN_TOKEN);
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
    use agora_tests::cluster::ADMIN_TOKEN;
    let cluster = Cluster::start(3, 50).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let ops1 = cluster.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
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
    use agora_tests::cluster::ADMIN_TOKEN;
    let mut cluster = Cluster::start(3, 50).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
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
    let ops3 = cluster.nodes[2].admin_port_client().with_token(ADMIN_TOKEN);
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
    let ops3 = cluster.nodes[2].admin_port_client().with_token(ADMIN_TOKEN);
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

/// A shopper's order history longer than its account keeps (older orders sealed into page
/// entities on the account's shard) lists the same from every node, each order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_order_history_lists_the_same_from_every_node() {
    const ORDERS: usize = 160;
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let sku = admin.stocked_product(100, ORDERS as u64).await;
    let (shopper, _) = cluster.client(0).new_user().await;
    let mut placed = std::collections::BTreeSet::new();
    for _ in 0..ORDERS {
        shopper.add_to_cart(&sku, 1).await;
        placed.insert(shopper.place_order(wallet()).await);
    }
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|o| o["order_id"].as_str().expect("order_id").to_string())
            .collect()
    };
    let first = poll_until("every order listed", POLL_TIMEOUT, || async {
        let listed = ids(shopper.walk("/api/v1/orders", 100).await);
        if listed.len() >= ORDERS {
            Ok(listed)
        } else {
            Err(format!("{} of {ORDERS} listed", listed.len()))
        }
    })
    .await;
    let distinct: std::collections::BTreeSet<String> = first.iter().cloned().collect();
    assert_eq!(first.len(), ORDERS, "each order once");
    assert_eq!(distinct, placed);
    for node in &cluster.nodes {
        let via = shopper.rebased(&node.shop_url);
        let listed = ids(via.walk("/api/v1/orders", 30).await);
        assert_eq!(
            listed, first,
            "node {} lists another history",
            node.shop_url
        );
    }
}

/// Reviews written through every node (each review slot lives on its board's shard,
/// wherever the writer is) read back at once from another node, and list the same from
/// every node by cursor, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_written_through_every_node_list_the_same_from_every_node() {
    const BUYERS: u64 = 5;
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let sku = admin.stocked_product(100, BUYERS).await;
    let path = format!("/api/v1/products/{sku}/reviews");
    let nodes = cluster.nodes.len();
    for i in 0..BUYERS {
        let at = i as usize % nodes;
        let (buyer, _) = cluster.client(at).new_user().await;
        buyer.add_to_cart(&sku, 1).await;
        let order_id = buyer.place_order(wallet()).await;
        wait_for_order(&buyer, &order_id, &["DELIVERED"]).await;
        let body = json!({"rating": 5, "title": format!("review {i}")});
        let r = poll_until(
            "the slot to learn of the delivery",
            POLL_TIMEOUT,
            || async {
                let r = buyer.post(&path, &body).await;
                if r.status == 403 {
                    Err(r.text)
                } else {
                    Ok(r)
                }
            },
        )
        .await;
        let r = r.expect_status(201, "a review");
        assert_eq!(r.body["id"], i + 1, "{}", r.text);
        let other = cluster.client((at + 1) % nodes);
        let page = other
            .get(&format!("{path}?limit=1"))
            .await
            .expect_status(200, "list reviews")
            .body;
        assert_eq!(
            page["items"][0]["id"],
            i + 1,
            "read at once elsewhere: {page}"
        );
        assert_eq!(page["count"], i + 1, "{page}");
    }
    for node in 0..nodes {
        let listed: Vec<u64> = cluster
            .client(node)
            .walk(&path, 2)
            .await
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .collect();
        assert_eq!(listed, [5, 4, 3, 2, 1], "node {node}");
    }
}
