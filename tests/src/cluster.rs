//! A local cluster of real `agora node` processes on free ports, for the cluster tests.

use crate::{AgoraProcess, Client, ServerOptions, ADMIN_EMAIL, ADMIN_PASSWORD, STARTUP_TIMEOUT};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The node-to-node secret of the test clusters.
pub const CLUSTER_SECRET: &str = "a96d2f04b7e15c83d9f0e6a1b4c7582f";
/// The admin token of the test clusters.
pub const ADMIN_TOKEN: &str = "7e3b9d15c0a84f26b1e8d4a9c3f07b52";
/// The access-token signing key of the test clusters (its own secret, not the node one).
pub const JWT_SECRET: &str = "c41f9a7e2d0b86354ea1f7c9d28b3e60";

/// A running cluster: one `AgoraProcess` per node, sharing one cluster file.
pub struct Cluster {
    /// The nodes, index `i` is node id `i + 1`.
    pub nodes: Vec<AgoraProcess>,
    /// The cluster file.
    pub config: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var("AGORA_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Ok(empty) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, empty).keep();
                eprintln!("keeping the cluster's temp dir {}", kept.display());
            }
        }
    }
}

/// Free loopback ports for a cluster file, chosen below the kernel's ephemeral range (where
/// outgoing connections take their local ports, so none can take one of these between this
/// check and the node's bind), at random so parallel tests rarely pick the same, and each
/// checked by binding it. Falls back to ports the kernel picks when there is no room below
/// the ephemeral range.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ephemeral_from: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_from);
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n && high > low + 1_000 && tries < 10_000 {
        tries += 1;
        let pick = low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", pick)) {
            held.push(l);
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").expect("bind a free port"));
    }
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Cluster {
    /// Starts `n` nodes with fast courier legs and waits until every node is ready and the
    /// admin account is seeded.
    pub async fn start(n: usize, courier_leg_ms: u64) -> Cluster {
        Self::start_with(n, courier_leg_ms, false).await
    }

    /// Like `start`, with TLS between the nodes (test certificates in `tests/fixtures/tls`)
    /// when `tls` is set.
    pub async fn start_with(n: usize, courier_leg_ms: u64, tls: bool) -> Cluster {
        Self::start_configured(n, courier_leg_ms, tls, 1, ("", "", "127.0.0.1")).await
    }

    /// Like `start`, each shard's data on `factor` nodes.
    pub async fn start_replicated(n: usize, courier_leg_ms: u64, factor: usize) -> Cluster {
        Self::start_configured(n, courier_leg_ms, false, factor, ("", "", "127.0.0.1")).await
    }

    /// Like `start_replicated`, with `settings` (top-level lines of the cluster file) added.
    pub async fn start_replicated_with(
        n: usize,
        courier_leg_ms: u64,
        factor: usize,
        settings: &str,
    ) -> Cluster {
        Self::start_configured(
            n,
            courier_leg_ms,
            false,
            factor,
            (settings, "", "127.0.0.1"),
        )
        .await
    }

    /// Like `start`, with `tables` (TOML tables such as `[cluster_connections]`) added to
    /// the cluster file.
    pub async fn start_with_tables(n: usize, courier_leg_ms: u64, tables: &str) -> Cluster {
        Self::start_configured(n, courier_leg_ms, false, 1, ("", tables, "127.0.0.1")).await
    }

    /// Like `start`, every node's addresses written as `host:port` (a host name such as
    /// `localhost`: the node binds the port on 0.0.0.0, peers resolve the name).
    pub async fn start_with_host(n: usize, courier_leg_ms: u64, host: &str) -> Cluster {
        Self::start_configured(n, courier_leg_ms, false, 1, ("", "", host)).await
    }

    async fn start_configured(
        n: usize,
        courier_leg_ms: u64,
        tls: bool,
        factor: usize,
        (settings, tables, host): (&str, &str, &str),
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("agora-cluster-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(3 * n);
        let mut toml = format!(
            "cluster_name = \"agora-test\"\nshard_count = 16\nsecret = \"{CLUSTER_SECRET}\"\njwt_secret = \"{JWT_SECRET}\"\nadmin_token = \"{ADMIN_TOKEN}\"\nadmin_mutations = true\nreplication_factor = {factor}\n{settings}\n\n[tuning]\ncourier_leg_ms = {courier_leg_ms}\n"
        );
        if tls {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");
            let _ = write!(toml, "\n[tls]\ncert = \"{dir}/node-{{id}}.pem\"\nkey = \"{dir}/node-{{id}}.key\"\nca = \"{dir}/ca.pem\"\n");
        }
        let _ = write!(toml, "\n{tables}\n");
        for i in 0..n {
            let _ = write!(
                toml,
                "\n[[nodes]]\nid = {}\ncluster_addr = \"{host}:{}\"\nhttp_addr = \"{host}:{}\"\nadmin_addr = \"{host}:{}\"\ndata_dir = \"node-{}/data\"\n",
                i + 1,
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2],
                i + 1
            );
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).expect("write cluster file");
        let nodes = (0..n)
            .map(|i| {
                let opts = ServerOptions {
                    cluster_node: Some((config.clone(), i as u64 + 1)),
                    ..Default::default()
                };
                AgoraProcess::start_in(opts, dir.path().join(format!("node-{}", i + 1)))
            })
            .collect();
        let c = Cluster { nodes, config, dir };
        c.wait_ready().await;
        c
    }

    /// Waits until every running node answers /readyz 200 and the admin can log in.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for node in &self.nodes {
            let admin = node.admin_port_client();
            loop {
                let ready = admin
                    .try_send(admin.req(reqwest::Method::GET, "/readyz"))
                    .await
                    .map(|r| r.status == 200)
                    .unwrap_or(false);
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} never became ready:\n{}",
                    node.shop_url,
                    node.stderr_tail(3000)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let first = self.nodes[0].client();
        loop {
            let r = first.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
            if r.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the admin account was never seeded (last login answer {})",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts one more node with `--join` and a join token minted for it by node 1's admin
    /// endpoint: its cluster file is the first one plus its own entry (the running nodes keep
    /// theirs). Returns once it prints its addresses.
    pub async fn join_node(&mut self) {
        let id = self.nodes.len() as u64 + 1;
        let token = self.mint_join_token(id).await;
        self.start_joining(id, Some(token));
    }

    /// Starts node `id` with `--join` (and `token`, if any): its cluster file is the first
    /// one plus its own entry.
    pub fn start_joining(&mut self, id: u64, token: Option<String>) {
        self.start_joining_edited(id, token, |toml| toml);
    }

    /// Mints a join token for node `id` through node 1's admin endpoint.
    pub async fn mint_join_token(&self, id: u64) -> String {
        let ops = self.ops(0);
        let minted = ops
            .post(
                "/admin/cluster/join-tokens",
                &serde_json::json!({ "node_id": id }),
            )
            .await
            .expect_status(200, "mint a join token");
        minted.str_field("token")
    }

    /// Like `start_joining`, with the joining node's copy of the cluster file passed through
    /// `edit` first (to give it, say, another node's certificate).
    pub fn start_joining_edited(
        &mut self,
        id: u64,
        token: Option<String>,
        edit: impl FnOnce(String) -> String,
    ) {
        let ports = free_ports(3);
        let mut toml = edit(std::fs::read_to_string(&self.config).expect("read cluster file"));
        let _ = write!(
            toml,
            "\n[[nodes]]\nid = {id}\ncluster_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{}\"\ndata_dir = \"node-{id}/data\"\n",
            ports[0], ports[1], ports[2]
        );
        let config = self.dir.path().join(format!("cluster-with-{id}.toml"));
        std::fs::write(&config, toml).expect("write cluster file");
        let opts = ServerOptions {
            cluster_node: Some((config, id)),
            join: true,
            join_token: token,
            ..Default::default()
        };
        self.nodes.push(AgoraProcess::start_in(
            opts,
            self.dir.path().join(format!("node-{id}")),
        ));
    }

    /// The owner of each shard in the agreed map, as node 1 reports it.
    pub async fn owners(&self) -> Vec<u64> {
        let ops = self.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
        let shards = ops
            .get("/admin/cluster/shards")
            .await
            .expect_status(200, "shards");
        let shards = shards.body["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        shards.iter().filter_map(|s| s["owner"].as_u64()).collect()
    }

    /// The admin stocks a product through node `stocked_on`, and a new shopper on node
    /// `bought_on` (0-based) checks one out (201): the shopper and the order id.
    pub async fn checkout_across(&self, stocked_on: usize, bought_on: usize) -> (Client, String) {
        let admin = self
            .client(stocked_on)
            .login_as(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await;
        let sku = admin.stocked_product(1_000, 5).await;
        let (shopper, _) = self.client(bought_on).new_user().await;
        shopper.add_to_cart(&sku, 1).await;
        let order_id = shopper.place_order(crate::card(crate::CARD_OK)).await;
        (shopper, order_id)
    }

    /// Node `i`'s cluster address (0-based), as the cluster file names it.
    pub fn cluster_addr(&self, i: usize) -> std::net::SocketAddr {
        let toml = std::fs::read_to_string(&self.config).expect("read cluster file");
        toml.lines()
            .filter_map(|l| l.strip_prefix("cluster_addr = "))
            .nth(i)
            .and_then(|a| a.trim_matches('"').parse().ok())
            .expect("a cluster_addr per node")
    }

    /// Node `i`'s data dir (0-based), as the cluster file names it.
    pub fn node_data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}/data", i + 1))
    }

    /// A new stocked product whose `kind` entity (`product` or `stock`) is stored on node `i`
    /// (0-based), and its shard: products are created until one lands there.
    pub async fn product_stored_on(
        &self,
        admin: &Client,
        i: usize,
        kind: &str,
        stock: u64,
    ) -> (String, u64) {
        let ops = self.nodes[i].admin_port_client().with_token(ADMIN_TOKEN);
        for _ in 0..40 {
            let sku = admin.stocked_product(1_000, stock).await;
            let r = ops.get(&format!("/admin/entities/{kind}/{sku}")).await;
            if r.status == 200 {
                return (sku, r.body["shard"].as_u64().unwrap_or_default());
            }
        }
        panic!("no {kind} of 40 new products landed on node {}", i + 1)
    }

    /// A client of node `i`'s shop API (0-based).
    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].client()
    }

    /// The seeded admin, logged in through node 1's shop API.
    pub async fn admin(&self) -> Client {
        self.client(0)
            .login_as(crate::ADMIN_EMAIL, crate::ADMIN_PASSWORD)
            .await
    }

    /// A client of node `i`'s admin port (0-based), with the admin token.
    pub fn ops(&self, i: usize) -> Client {
        self.nodes[i].admin_port_client().with_token(ADMIN_TOKEN)
    }
}

/// Shoppers that keep buying while something happens to the cluster (a move, a drain), and
/// what they were acknowledged.
pub struct Shoppers {
    /// Answers that were not definite (503), each retried with the same key.
    pub unavailable: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(Client, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shoppers {
    /// One shopper per client, each buying one unit of the SKUs in turn, at most `rounds`
    /// times. A 503 leaves a checkout's outcome unknown, so it is retried with the same key
    /// until the answer is definite, as a real client would.
    pub async fn start(clients: Vec<Client>, skus: Vec<String>, rounds: usize) -> Shoppers {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let unavailable = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (i, client) in clients.into_iter().enumerate() {
            let (shopper, _) = client.new_user().await;
            let (stop, acked, skus, unavailable) = (
                stop.clone(),
                acked.clone(),
                skus.clone(),
                unavailable.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < rounds {
                    n += 1;
                    let sku = &skus[n % skus.len()];
                    let added = shopper
                        .post(
                            "/api/v1/cart/items",
                            &serde_json::json!({"sku": sku, "quantity": 1}),
                        )
                        .await;
                    if added.status != 200 {
                        continue;
                    }
                    let key = format!("shopper-{i}-{n}");
                    for _attempt in 0..100 {
                        let r = shopper
                            .checkout(
                                Some(&key),
                                &crate::checkout_body(crate::card(crate::CARD_OK)),
                            )
                            .await;
                        match r.status {
                            201 => {
                                acked
                                    .lock()
                                    .expect("acked lock")
                                    .push((shopper.clone(), r.str_field("order_id")));
                                break;
                            }
                            // Out of stock; or the cart emptied by the previous order's
                            // checkout arriving late (carts are cleared asynchronously).
                            409 => break,
                            422 if r.body["type"] == "/problems/empty-cart" => break,
                            503 => {
                                unavailable.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(100)).await
                            }
                            s => panic!("checkout answered {s}: {}", r.text),
                        }
                    }
                }
            }));
        }
        Shoppers {
            unavailable,
            stop,
            acked,
            tasks,
        }
    }

    /// How many checkouts were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acked.lock().map_or(0, |a| a.len())
    }

    /// Stops the shoppers and returns the acknowledged orders (client and order id).
    pub async fn finish(self) -> Vec<(Client, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("shopper task");
        }
        let acked = self.acked.lock().expect("acked lock").clone();
        acked
    }
}

impl Cluster {
    /// Waits until node 1 reports a Raft leader (moves and drains need one).
    pub async fn wait_for_raft_leader(&self) {
        let ops = self.nodes[0].admin_port_client().with_token(ADMIN_TOKEN);
        crate::poll_until("a raft leader", crate::POLL_TIMEOUT, || {
            let ops = ops.clone();
            async move {
                let r = ops.get("/admin/cluster/shards").await;
                if r.body["raft"]["leader"].is_u64() {
                    Ok(())
                } else {
                    Err(r.text)
                }
            }
        })
        .await;
    }
}

/// Every acknowledged order reaches DELIVERED (within a minute: an outside answer lost in a
/// node change is recovered by the entity's retry timer), no stock stays reserved, each SKU
/// still accounts for its `stock`, and the units sold are exactly the acknowledged units.
pub async fn assert_acknowledged_units_sold_once(
    admin: &Client,
    skus: &[String],
    stock: u64,
    acked: &[(Client, String)],
) {
    assert!(!acked.is_empty(), "no checkout was acknowledged");
    let mut units = 0;
    for (shopper, order_id) in acked {
        let order = crate::wait_for_order_within(
            shopper,
            order_id,
            &["DELIVERED"],
            Duration::from_secs(60),
        )
        .await;
        // A cart may hold two units when the previous checkout had not emptied it: count units.
        units += order["lines"].as_array().map_or(0, |l| {
            l.iter().filter_map(|x| x["quantity"].as_u64()).sum::<u64>()
        });
    }
    let mut sold = 0;
    for sku in skus {
        // A checkout refused for another line releases its reservation by a compensating
        // message, which may still be on its way (reservations otherwise expire after 15
        // minutes, so a lost release is never masked here).
        let inv = crate::poll_until(
            &format!("{sku} has nothing reserved"),
            crate::POLL_TIMEOUT,
            || async {
                let inv = admin.inventory(sku).await;
                if inv.reserved == 0 {
                    Ok(inv)
                } else {
                    Err(format!("{inv:?}"))
                }
            },
        )
        .await;
        assert_eq!(
            (inv.accounted(), inv.reserved),
            (stock, 0),
            "{sku}: {inv:?}"
        );
        sold += inv.sold;
    }
    assert_eq!(
        sold, units,
        "every acknowledged unit sold once, nothing else"
    );
}

/// Waits (bounded) until every SKU of `skus` answers 200 through `reader`.
pub async fn all_served(reader: &Client, skus: &[String]) {
    for sku in skus {
        crate::poll_until(&format!("{sku} is served"), crate::POLL_TIMEOUT, || {
            let reader = reader.clone();
            let sku = sku.clone();
            async move {
                let r = reader.get(&format!("/api/v1/products/{sku}")).await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.text)
                }
            }
        })
        .await;
    }
}
