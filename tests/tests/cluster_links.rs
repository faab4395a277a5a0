//! How the nodes of a cluster of real `agora node` processes reach and trust each other:
//! TLS sessions when the cluster file asks for them, peers named by DNS host name, a node
//! holding another node's certificate refused at start, and a node outside the cluster file
//! refused without a join token.

use agora_tests::cluster::Cluster;
use agora_tests::{counter, poll_until, wait_for_order, ADMIN_PASSWORD, POLL_TIMEOUT};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_tls_when_the_cluster_file_says_so() {
    let cluster = Cluster::start_with(3, 50, true).await;
    // The saga crosses nodes, so it only finishes if the TLS sessions carry it.
    let (shopper, order_id) = cluster.checkout_across(0, 2).await;
    let follower = shopper.rebased(&cluster.nodes[1].shop_url);
    wait_for_order(&follower, &order_id, &["DELIVERED"]).await;
    let stderr: String = cluster
        .nodes
        .iter()
        .map(|n| n.stderr_tail(20_000))
        .collect();
    assert!(
        !stderr.contains("tls.cert") && !stderr.contains("tls.ca"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_named_by_host_name_are_dialled_by_resolving_it() {
    // `localhost:port` for every address: each node binds its ports on 0.0.0.0, dials its
    // peers and asks their admin endpoints by resolving `localhost`.
    let cluster = Cluster::start_with_host(3, 50, "localhost").await;
    // The saga crosses nodes, so it only finishes if the sessions dialled by name carry it.
    let (shopper, order_id) = cluster.checkout_across(0, 2).await;
    let follower = shopper.rebased(&cluster.nodes[1].shop_url);
    wait_for_order(&follower, &order_id, &["DELIVERED"]).await;
    let ops = cluster.nodes[0]
        .admin_port_client()
        .with_token(agora_tests::cluster::ADMIN_TOKEN);
    // Each member as every node sees it: the peers' views are asked at their admin_addr.
    poll_until("every node's view, asked by name", POLL_TIMEOUT, || {
        let ops = ops.clone();
        async move {
            let r = ops.get("/admin/cluster/members").await;
            let named =
                |m: &Value, key: &str| m[key].as_str().is_some_and(|a| a.starts_with("localhost:"));
            let all = r.body["members"].as_array().is_some_and(|l| {
                l.len() == 3
                    && l.iter().all(|m| {
                        named(m, "cluster_addr")
                            && named(m, "http_addr")
                            && m["seen_by"].as_object().is_some_and(|by| by.len() == 3)
                    })
            });
            if all {
                Ok(())
            } else {
                Err(r.text)
            }
        }
    })
    .await;
}

#[test]
fn a_node_given_another_nodes_certificate_refuses_to_start() {
    use agora_tests::cluster::{ADMIN_TOKEN, CLUSTER_SECRET, JWT_SECRET};
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");
    // Node 2's file names node 1's certificate: valid, signed by the cluster's CA, but not
    // its own.
    let mut toml = format!(
        "cluster_name = \"agora-test\"\nshard_count = 16\nsecret = \"{CLUSTER_SECRET}\"\njwt_secret = \"{JWT_SECRET}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\n[tls]\ncert = \"{tls}/node-1.pem\"\nkey = \"{tls}/node-1.key\"\nca = \"{tls}/ca.pem\"\n"
    );
    let ports = agora_tests::cluster::free_ports(6);
    for id in 1..=2 {
        let p = &ports[3 * (id - 1)..];
        toml.push_str(&format!(
            "\n[[nodes]]\nid = {id}\ncluster_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{}\"\ndata_dir = \"node-{id}\"\n",
            p[0], p[1], p[2]
        ));
    }
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, toml).expect("write cluster file");
    let out = std::process::Command::new(agora_tests::agora_bin())
        .arg("node")
        .arg("--config")
        .arg(&config)
        .args(["--node-id", "2"])
        .env("AGORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run agora");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "node 2 ran with node 1's certificate"
    );
    assert!(
        stderr.contains("does not name node 2") && stderr.contains("node-2.agora-test"),
        "the refusal names the certificate it needs: {stderr}"
    );
    // Peers check the same claim at every session (`identity::prove`, unit-tested), so a
    // modified binary that skipped this check would be refused by them.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_cluster_file_without_a_join_token_is_refused() {
    let mut cluster = Cluster::start(3, 50).await;
    cluster.wait_for_raft_leader().await;
    // It holds the cluster secret (the same file plus its own entry), but no token.
    cluster.start_joining(4, None);
    poll_until("node 4 is told it may not join", POLL_TIMEOUT, || {
        let tail = cluster.nodes[3].stderr_tail(20_000);
        async move {
            if tail.contains("could not join the cluster")
                && tail.contains("presented no join token")
            {
                Ok(())
            } else {
                Err("no refusal logged yet".to_string())
            }
        }
    })
    .await;
    let owners = cluster.owners().await;
    assert_eq!(owners.len(), 16, "{owners:?}");
    assert!(!owners.contains(&4), "node 4 was given shards: {owners:?}");
    let mut refused = 0.0;
    for i in 0..3 {
        let ops = cluster.ops(i);
        refused += counter(&ops, "agora_cluster_joins_refused_total").await;
    }
    assert!(refused >= 1.0, "no node counted the refused join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_minted_offline_from_the_cluster_file_admits_the_node() {
    // What a Kubernetes pod does on scale-up: it holds the cluster file, so it mints its own
    // token (`agora join-token`) instead of asking an admin endpoint.
    let mut cluster = Cluster::start(3, 50).await;
    cluster.wait_for_raft_leader().await;
    let minted = std::process::Command::new(agora_tests::agora_bin())
        .args(["join-token", "--node-id", "4", "--config"])
        .arg(&cluster.config)
        .output()
        .expect("run agora join-token");
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout).expect("utf-8");
    assert!(token.starts_with("agj1.4."), "{token}");
    cluster.start_joining(4, Some(token.trim().to_string()));
    poll_until("node 4 owns shards", POLL_TIMEOUT, || {
        let cluster = &cluster;
        async move {
            let owners = cluster.owners().await;
            if owners.contains(&4) {
                Ok(())
            } else {
                Err(format!("owners {owners:?}"))
            }
        }
    })
    .await;
}

/// A renewed certificate is picked up without a restart: the nodes read their TLS files
/// again every `reload_check_ms`; a usable renewal (here the CA file becoming a bundle of
/// the old and a new authority, the first step of a CA rotation) is used for new sessions,
/// an unusable one (another node's certificate) is refused and the one in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_tls_files_are_used_without_a_restart_and_bad_ones_refused() {
    let files = tempfile::tempdir().expect("temp dir");
    let fixtures = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls"));
    for name in [
        "node-1.pem",
        "node-1.key",
        "node-2.pem",
        "node-2.key",
        "ca.pem",
    ] {
        std::fs::copy(fixtures.join(name), files.path().join(name)).expect("copy a fixture");
    }
    let d = files.path().display();
    let tables = format!(
        "[tls]\ncert = \"{d}/node-{{id}}.pem\"\nkey = \"{d}/node-{{id}}.key\"\nca = \"{d}/ca.pem\"\nreload_check_ms = 1000\n"
    );
    let mut cluster = Cluster::start_with_tables(2, 50, &tables).await;
    let metrics = cluster.ops(0);
    let reloads = |outcome: &'static str| {
        let metrics = metrics.clone();
        async move {
            let name = format!("agora_tls_reloads_total{{outcome=\"{outcome}\"}}");
            agora_tests::counter(&metrics, &name).await
        }
    };
    assert_eq!(reloads("reloaded").await, 0.0);
    let mut bundle = std::fs::read(fixtures.join("ca.pem")).expect("fixture");
    bundle.extend(std::fs::read(fixtures.join("other-ca.pem")).expect("fixture"));
    std::fs::write(files.path().join("ca.pem"), &bundle).expect("write the CA bundle");
    let counted = |outcome: &'static str| {
        poll_until(outcome, POLL_TIMEOUT, move || async move {
            match reloads(outcome).await {
                n if n >= 1.0 => Ok(()),
                n => Err(format!("{outcome} {n}")),
            }
        })
    };
    counted("reloaded").await;
    // A new session (node 2 restarted) is made with the reloaded setting on both sides.
    cluster.nodes[1].restart();
    cluster.wait_ready().await;
    let (shopper, order_id) = cluster.checkout_across(0, 1).await;
    wait_for_order(&shopper, &order_id, &["DELIVERED"]).await;
    // Node 2's certificate where node 1's belongs: refused, the one in use stays.
    std::fs::copy(fixtures.join("node-2.pem"), files.path().join("node-1.pem")).expect("copy");
    counted("refused").await;
    cluster.nodes[1].restart();
    cluster.wait_ready().await;
    let (shopper, order_id) = cluster.checkout_across(1, 0).await;
    wait_for_order(&shopper, &order_id, &["DELIVERED"]).await;
    assert!(
        cluster.nodes[0]
            .stderr_tail(50_000)
            .contains("TLS files changed but cannot be used"),
        "the refusal was not logged"
    );
}
