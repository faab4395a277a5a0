//! A three-node cluster of real `agora node` processes: the full order flow through each
//! node's edge with entities spread over all three, catalog listings that include every
//! node's products, a killed node whose shards fail fast while the others keep working, the
//! admin endpoint's view, a long order history listed alike from every node, and reviews
//! written through every node listed alike from every node. (The shard map and shards moving
//! between nodes: `cluster_shards.rs`.)

use agora_tests::cluster::Cluster;
use agora_tests::{card, counter, poll_until, wait_for_order, wallet, CARD_OK, POLL_TIMEOUT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_through_every_node_with_entities_on_all_three() {
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster.admin().await;
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
    let admin = cluster.admin().await;
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
    let admin = cluster.admin().await;
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

/// A shopper's order history longer than its account keeps (older orders sealed into page
/// entities on the account's shard) lists the same from every node, each order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_order_history_lists_the_same_from_every_node() {
    const ORDERS: usize = 160;
    let cluster = Cluster::start(3, 100).await;
    let admin = cluster.admin().await;
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
    let admin = cluster.admin().await;
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
