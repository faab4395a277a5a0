//! Replicated shards on three real `agora node` processes (`replication_factor = 3`): a
//! node killed with SIGKILL under a stream of checkouts loses nothing it acknowledged, its
//! shards are served by the other replicas without anyone restarting it, and every saga in
//! flight finishes.

use agora_tests::cluster::{Cluster, Shoppers, ADMIN_TOKEN};
use agora_tests::{poll_until, ADMIN_EMAIL, ADMIN_PASSWORD, POLL_TIMEOUT};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_over_without_losing_an_acknowledged_order() {
    let mut cluster = Cluster::start_replicated(3, 50, 3).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    // Products on the shards of every node.
    let mut skus = Vec::new();
    for _ in 0..6 {
        skus.push(admin.stocked_product(1_000, 40).await);
    }
    cluster.wait_for_raft_leader().await;
    poll_until("node 3 serves some shards", POLL_TIMEOUT, || {
        let cluster = &cluster;
        async move {
            let o = cluster.owners().await;
            if o.len() == 16 && o.contains(&3) {
                Ok(())
            } else {
                Err(format!("owners {o:?}"))
            }
        }
    })
    .await;

    // Replicated shards are not moved or drained: their groups elect who serves them.
    let ops = cluster.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
    let refused = ops
        .post("/admin/shards/0/move", &serde_json::json!({"to": 2}))
        .await
        .expect_status(409, "a move of a replicated shard");
    refused.assert_problem("move of a replicated shard");
    ops.post("/admin/cluster/members/1/drain", &serde_json::json!({}))
        .await
        .expect_status(409, "a drain with replicated shards");

    let shoppers = Shoppers::start(
        (0..2).map(|i| cluster.client(i)).collect(),
        skus.clone(),
        10,
    )
    .await;
    poll_until("some checkouts are acknowledged", POLL_TIMEOUT, || {
        let n = shoppers.acknowledged();
        async move {
            if n >= 3 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        }
    })
    .await;

    let killed_at = Instant::now();
    cluster.nodes[2].kill9();
    // Nobody restarts node 3: the other replicas serve its shards.
    let reader = cluster.client(0);
    agora_tests::cluster::all_served(&reader, &skus).await;
    let served_again = killed_at.elapsed();
    let unavailable = shoppers
        .unavailable
        .load(std::sync::atomic::Ordering::SeqCst);
    let acked = shoppers.finish().await;
    eprintln!(
        "every SKU served {served_again:?} after the kill; {unavailable} checkout answers were 503 (retried); {} acknowledged",
        acked.len()
    );
    // The new leaders claim their shards in the map, for nodes outside the groups.
    poll_until("the map names the new leaders", POLL_TIMEOUT, || {
        let cluster = &cluster;
        async move {
            let after = cluster.owners().await;
            if after.len() == 16 && !after.contains(&3) {
                Ok(())
            } else {
                Err(format!("owners {after:?}"))
            }
        }
    })
    .await;
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &skus, 40, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_was_replaced_is_rebuilt_from_its_peers() {
    let mut cluster = Cluster::start_replicated(3, 50, 3).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let mut skus = Vec::new();
    for _ in 0..6 {
        skus.push(admin.stocked_product(1_000, 40).await);
    }
    let shoppers =
        Shoppers::start((0..2).map(|i| cluster.client(i)).collect(), skus.clone(), 4).await;
    let acked = shoppers.finish().await;

    // Node 3's disk is lost: it comes back empty under its id.
    cluster.nodes[2].kill9();
    let data = cluster.node_data_dir(2);
    std::fs::remove_dir_all(&data).expect("delete node 3's data dir");
    cluster.nodes[2].restart();
    cluster.wait_ready().await;
    // Then node 1 dies: every shard's majority is now nodes 2 and 3, so whatever node 3
    // holds was rebuilt from its peers.
    cluster.nodes[0].kill9();
    let reader = cluster.client(1);
    agora_tests::cluster::all_served(&reader, &skus).await;
    let admin = admin.rebased(&cluster.nodes[1].shop_url);
    let acked: Vec<_> = acked
        .into_iter()
        .map(|(c, id)| (c.rebased(&cluster.nodes[1].shop_url), id))
        .collect();
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &skus, 40, &acked).await;
}

/// How many shards the map gives each node, by node id.
async fn owned_per_node(cluster: &Cluster) -> std::collections::BTreeMap<u64, usize> {
    let mut per = std::collections::BTreeMap::new();
    for owner in cluster.owners().await {
        *per.entry(owner).or_default() += 1;
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_ends_balanced() {
    let mut cluster = Cluster::start_replicated(3, 50, 3).await;
    let admin = cluster
        .client(0)
        .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let mut skus = Vec::new();
    for _ in 0..4 {
        skus.push(admin.stocked_product(1_000, 60).await);
    }
    let shoppers =
        Shoppers::start(vec![cluster.client(0), cluster.client(0)], skus.clone(), 40).await;
    for i in [2, 1] {
        let status = cluster.nodes[i].terminate();
        assert!(
            status.success(),
            "node {} exits 0 on SIGTERM, got {status:?}",
            i + 1
        );
        cluster.nodes[i].restart();
        cluster.wait_ready().await;
    }
    let unavailable = shoppers
        .unavailable
        .load(std::sync::atomic::Ordering::SeqCst);
    let acked = shoppers.finish().await;
    eprintln!(
        "rolling restart: {unavailable} checkout answers were 503 (retried), {} acknowledged",
        acked.len()
    );
    // Leaders spread again: each node serves 5 or 6 of the 16 shards.
    poll_until("the leaders are balanced", POLL_TIMEOUT, || {
        let cluster = &cluster;
        async move {
            let per = owned_per_node(cluster).await;
            let (min, max) = (per.values().min().copied(), per.values().max().copied());
            match (per.len(), min, max) {
                (3, Some(min), Some(max)) if max - min <= 1 => Ok(()),
                _ => Err(format!("shards per node {per:?}")),
            }
        }
    })
    .await;
    agora_tests::cluster::assert_acknowledged_units_sold_once(&admin, &skus, 60, &acked).await;
}
