//! Secrets an attacker could know or guess: a cluster node refuses example and weak
//! secrets, and the shop's token key is its own secret, never derived from the node-to-node
//! one (a token signed with the old derivation is refused).

use agora_http_edge::auth::{JwtKey, JwtKeys};
use agora_tests::agora_bin;
use agora_tests::cluster::{Cluster, CLUSTER_SECRET, JWT_SECRET};
use sha2::Digest;
use std::process::{Command, Stdio};

#[test]
fn a_node_refuses_the_example_file_unless_told_the_risk() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-config/examples/three-nodes.toml"
    );
    let out = Command::new(agora_bin())
        .args(["node", "--config", example, "--node-id", "1"])
        .env("AGORA_ADMIN_PASSWORD", "x")
        .stdin(Stdio::null())
        .output()
        .expect("run agora");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a node started with the example secrets"
    );
    assert!(
        stderr.contains("is an example value") && stderr.contains("--insecure-example-secrets"),
        "the refusal names the problem and the way out: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_a_key_derived_from_the_cluster_secret_is_refused() {
    let cluster = Cluster::start(1, 1_000).await;
    cluster.wait_ready().await;
    // What earlier versions used as the token key: anyone who knew the cluster secret
    // could sign admin tokens with it.
    let derived = sha2::Sha256::digest(format!("agora-jwt:agora-test:{CLUSTER_SECRET}"));
    // The token names the real key's id, so only the key itself differs.
    let kid: String = sha2::Sha256::digest(JWT_SECRET.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let forged = JwtKeys::rotating(
        JwtKey {
            kid,
            secret: derived.to_vec(),
        },
        Vec::new(),
        600,
    )
    .issue("forger", "admin", now)
    .expect("sign");
    let product = serde_json::json!({
        "sku": "FORGED-1", "name": "Forged", "description": "", "category": "books",
        "price_minor": 100, "currency": "INR"
    });
    let r = cluster
        .client(0)
        .with_token(&forged)
        .post("/api/v1/products", &product)
        .await;
    assert_eq!(
        r.status, 401,
        "a forged admin token was accepted: {}",
        r.text
    );
}
