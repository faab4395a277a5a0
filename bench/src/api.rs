//! Talking to Agora over HTTP: the client, logins, the bench catalog and shoppers set up
//! before the timed part, and the node's Prometheus counters.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::sync::Arc;

/// Categories of the bench catalog, each with a word its products' names contain.
const CATEGORIES: [(&str, &str); 6] = [
    ("books", "novel"),
    ("tea", "oolong"),
    ("toys", "kite"),
    ("garden", "spade"),
    ("kitchen", "kettle"),
    ("music", "vinyl"),
];

/// Stock received per bench SKU (the most one receive may move).
const STOCK_PER_SKU: u64 = 1_000_000;

/// One product of the bench catalog.
#[derive(Debug, Clone)]
pub struct CatalogItem {
    /// SKU.
    pub sku: String,
    /// Category.
    pub category: String,
    /// A word its name contains (for searches).
    pub word: String,
}

/// Where the shop API and admin endpoint are.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL of the shop API (`http://host:port`).
    pub api_base: String,
    /// Base URL of the admin endpoint.
    pub admin_base: String,
    /// The seeded admin's password.
    pub admin_password: String,
    /// The node's process id, when it runs on this machine and is known.
    pub node_pid: Option<u32>,
    /// The other nodes of a self-started cluster: shop API base, admin base, pid.
    pub peers: Vec<(String, String, u32)>,
}

/// Everything the scenarios share: client, URLs, catalog, shoppers' tokens.
#[derive(Debug)]
pub struct World {
    /// The HTTP client (one connection pool).
    pub client: reqwest::Client,
    /// `…/api/v1`.
    pub api: String,
    /// `…/api/v1` of every node (the first is `api`): shoppers spread over the edges.
    pub apis: Vec<String>,
    /// Every node's admin endpoint (counters are summed over them).
    pub admins: Vec<String>,
    /// The admin's bearer token.
    pub admin_token: String,
    /// The bench catalog.
    pub catalog: Vec<CatalogItem>,
    /// Bearer tokens of the registered shoppers.
    pub users: Vec<String>,
    /// A tag unique to this run (in SKUs, emails and idempotency keys).
    pub tag: String,
    /// The checkout request body (succeeding card).
    pub checkout_body: String,
}

impl World {
    /// The edge shopper (or request) `k` talks to.
    pub fn api_for(&self, k: usize) -> &str {
        self.apis
            .get(k % self.apis.len().max(1))
            .unwrap_or(&self.api)
    }
}

/// An answer: status and body bytes.
pub type Answer = (u16, Vec<u8>);

/// A client with a pool large enough for `conns` connections.
pub fn client(conns: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(conns.max(8) * 2)
        .tcp_nodelay(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// POSTs a JSON body, with an optional bearer token and idempotency key.
pub async fn post(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
    key: Option<&str>,
) -> reqwest::Result<Answer> {
    let mut rb = c
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.bytes().await?.to_vec()))
}

/// How long the setup asks again after a 503.
const SETUP_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// POSTs like `post` (no idempotency key), asking again while the answer is 503: retryable
/// by contract (a peer not connected yet just after a cluster starts, a shard changing
/// hands), for at most `SETUP_RETRY_FOR`.
async fn post_retrying_unavailable(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
) -> reqwest::Result<Answer> {
    let deadline = tokio::time::Instant::now() + SETUP_RETRY_FOR;
    loop {
        let answer = post(c, url, token, body.clone(), None).await?;
        if answer.0 != 503 || tokio::time::Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// GETs a URL, with an optional bearer token.
pub async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Result<Answer> {
    let mut rb = c.get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.bytes().await?.to_vec()))
}

/// The body as JSON (Null when it is not).
pub fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Logs in and returns the access token.
pub async fn login(
    c: &reqwest::Client,
    api: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let body = json!({"email": email, "password": password}).to_string();
    let (s, b) = post(c, &format!("{api}/auth/login"), None, body, None).await?;
    if s != 200 {
        bail!(
            "login of {email} answered {s}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    Ok(json_of(&b)["access_token"]
        .as_str()
        .context("login answer without access_token")?
        .to_string())
}

/// Runs `job(0..n)`, `parallel` at a time, and returns the results in index order.
async fn in_parallel<T, F, Fut>(n: usize, parallel: usize, job: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for _ in 0..parallel.clamp(1, n.max(1)) {
        let (next, job) = (next.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(got);
                }
                got.push((i, job(i).await?));
            }
        }));
    }
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for w in workers {
        for (i, t) in w.await?? {
            slots[i] = Some(t);
        }
    }
    slots
        .into_iter()
        .map(|t| t.context("a parallel job left its result out"))
        .collect()
}

/// Creates `n` stocked products in six categories, `parallel` at a time, each with a
/// description of at least `description_bytes` (a larger catalogue for the rebuild).
async fn setup_catalog(
    c: &reqwest::Client,
    api: &str,
    admin_token: &str,
    tag: &str,
    n: usize,
    shape: CatalogShape,
) -> anyhow::Result<Vec<CatalogItem>> {
    let (c, api, admin_token, tag) = (
        c.clone(),
        api.to_string(),
        admin_token.to_string(),
        tag.to_string(),
    );
    in_parallel(n, shape.parallel, move |i| {
        let (c, api, admin_token, tag) = (c.clone(), api.clone(), admin_token.clone(), tag.clone());
        async move { create_product(&c, &api, &admin_token, &tag, i, shape.description_bytes).await }
    })
    .await
}

/// How the bench catalogue is made.
#[derive(Debug, Clone, Copy)]
pub struct CatalogShape {
    /// Products created at once.
    pub parallel: usize,
    /// Least length of each description, bytes (within the API's limit).
    pub description_bytes: usize,
}

impl Default for CatalogShape {
    fn default() -> Self {
        Self {
            parallel: 8,
            description_bytes: 0,
        }
    }
}

/// Creates product `i` of the bench catalogue and receives its stock.
async fn create_product(
    c: &reqwest::Client,
    api: &str,
    admin_token: &str,
    tag: &str,
    i: usize,
    description_bytes: usize,
) -> anyhow::Result<CatalogItem> {
    let (category, word) = CATEGORIES[i % CATEGORIES.len()];
    let sku = format!("BENCH-{tag}-{i:03}");
    let mut description = format!("A {word} for load tests");
    let filler = " with a long description";
    let limit = agora_actors::limits::MAX_TEXT_LEN.min(description_bytes);
    while description.len() + filler.len() <= limit {
        description.push_str(filler);
    }
    let product = json!({"sku": sku, "name": format!("Bench {word} {i}"),
        "description": description, "category": category,
        "price": {"amount_minor": 1000 + i as u64 * 100, "currency": "INR"}});
    let (s, b) = post_retrying_unavailable(
        c,
        &format!("{api}/products"),
        Some(admin_token),
        product.to_string(),
    )
    .await?;
    // The SKU is this run's own (its tag), so "already exists" is an earlier attempt of
    // ours that answered 503 after all (a retryable outcome the node could not confirm
    // in time) and took effect.
    let ours = s == 409 && json_of(&b)["type"] == "/problems/already-exists";
    if s != 201 && !ours {
        bail!(
            "creating product {sku} answered {s}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    let qty = json!({ "quantity": STOCK_PER_SKU }).to_string();
    let url = format!("{api}/inventory/{sku}/receive");
    let (s, b) = post_retrying_unavailable(c, &url, Some(admin_token), qty).await?;
    if s != 200 {
        bail!(
            "receiving stock of {sku} answered {s}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    Ok(CatalogItem {
        sku,
        category: category.into(),
        word: word.into(),
    })
}

/// Registers and logs in `n` shoppers, `parallel` at a time (password hashing is costly).
async fn register_users(
    c: &reqwest::Client,
    api: &str,
    tag: &str,
    n: usize,
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    let (c, api, tag) = (c.clone(), api.to_string(), tag.to_string());
    in_parallel(n, parallel, move |u| {
        let (c, api, tag) = (c.clone(), api.clone(), tag.clone());
        async move {
            let email = format!("bench-{tag}-{u}@example.com");
            let body = json!({"email": email, "password": "bench-password", "name": "Bench"});
            let (s, b) = post(&c, &format!("{api}/users"), None, body.to_string(), None).await?;
            if s != 201 && s != 200 {
                bail!(
                    "registering {email} answered {s}: {}",
                    String::from_utf8_lossy(&b)
                );
            }
            login(&c, &api, &email, "bench-password").await
        }
    })
    .await
}

/// Logs in as admin, creates the bench catalog and registers `users` shoppers.
pub async fn setup(
    ep: &Endpoint,
    conns: usize,
    products: usize,
    users: usize,
) -> anyhow::Result<World> {
    setup_shaped(ep, conns, products, users, CatalogShape::default()).await
}

/// `setup` with the catalogue made as `shape` says.
pub async fn setup_shaped(
    ep: &Endpoint,
    conns: usize,
    products: usize,
    users: usize,
    shape: CatalogShape,
) -> anyhow::Result<World> {
    let client = client(conns)?;
    let api = format!("{}/api/v1", ep.api_base.trim_end_matches('/'));
    // A cluster seeds its admin in the background once its nodes are up: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let admin_token = loop {
        match login(&client, &api, "admin@agora.local", &ep.admin_password).await {
            Ok(t) => break t,
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let tag = format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()) << 32);
    let catalog = setup_catalog(&client, &api, &admin_token, &tag, products.max(1), shape).await?;
    let users = register_users(&client, &api, &tag, users, 4).await?;
    let checkout_body = json!({"payment": {"method": "card", "card_number": "4242424242424242"},
        "shipping_address": {"name": "Bench", "line1": "1 Load St", "city": "Pune",
            "postal_code": "411001", "country": "IN"}})
    .to_string();
    let mut apis = vec![api.clone()];
    let mut admins = vec![ep.admin_base.trim_end_matches('/').to_string()];
    for (peer_api, peer_admin, _) in &ep.peers {
        apis.push(format!("{}/api/v1", peer_api.trim_end_matches('/')));
        admins.push(peer_admin.trim_end_matches('/').to_string());
    }
    Ok(World {
        client,
        api,
        apis,
        admins,
        admin_token,
        catalog,
        users,
        tag,
        checkout_body,
    })
}

/// The node's counters we read: durable commits (each one fsync), entity writes, commit
/// time and size, active entities.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeCounters {
    /// `agora_store_commits_total`.
    pub commits: f64,
    /// `agora_entity_writes_total`, summed over kinds.
    pub entity_writes: f64,
    /// `agora_store_commit_seconds_sum`: time spent committing.
    pub commit_seconds: f64,
    /// `agora_store_batch_ops_sum`: operations written by the commits.
    pub batch_ops: f64,
    /// `agora_active_entities` (a gauge).
    pub active_entities: f64,
}

/// Sums every series of `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads the node's counters from its admin endpoint.
pub async fn counters(c: &reqwest::Client, admin: &str) -> anyhow::Result<NodeCounters> {
    let (s, body) = get(c, &format!("{admin}/metrics"), None).await?;
    if s != 200 {
        bail!("{admin}/metrics answered {s}");
    }
    let text = String::from_utf8_lossy(&body);
    Ok(NodeCounters {
        commits: metric_sum(&text, "agora_store_commits_total"),
        entity_writes: metric_sum(&text, "agora_entity_writes_total"),
        commit_seconds: metric_sum(&text, "agora_store_commit_seconds_sum"),
        batch_ops: metric_sum(&text, "agora_store_batch_ops_sum"),
        active_entities: metric_sum(&text, "agora_active_entities"),
    })
}

/// A listing query for `item`: by category, by word, or both (chosen by `pick`).
pub fn listing_query(item: &CatalogItem, pick: usize) -> String {
    match pick % 3 {
        0 => format!("category={}", item.category),
        1 => format!("q={}", item.word),
        _ => format!("q={}&category={}", item.word, item.category),
    }
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_labelled_series_and_ignores_lookalikes() {
        let text = "# TYPE agora_entity_writes_total counter\n\
            agora_entity_writes_total{kind=\"Cart\"} 3\n\
            agora_entity_writes_total{kind=\"Order\"} 4.5\n\
            agora_entity_writes_total_other 100\n\
            agora_store_commits_total 7\n";
        assert_eq!(metric_sum(text, "agora_entity_writes_total"), 7.5);
        assert_eq!(metric_sum(text, "agora_store_commits_total"), 7.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }
}
