//! The operator console in a real browser: headless Chromium (Debian's `chromium` package)
//! opens `/console` on a two-node cluster's admin port and the test reads the DOM it
//! rendered: the shard grid shows every shard with its owner, and the entity inspector
//! draws an order's saga as a timeline of its statuses in order, and the recent operations
//! list a move with its progress. Without the token the
//! page shows only the token form. A screenshot is taken too. With replicated shards the
//! grid shows each shard's leader and replicas. A dead letter's row offers Replay and
//! Discard only when the node enables mutations.
//!
//! The browser tests are `#[ignore]`d so that the README's test command works on a fresh
//! machine without a browser; CI installs Chromium and runs them with
//! `cargo test -p agora-tests --test console -- --ignored`, where a missing browser fails.

use agora_tests::cluster::{Cluster, ADMIN_TOKEN};
use agora_tests::dead_letters::{top_up_message, write_dead_letters};
use agora_tests::operations::run_operation;
use agora_tests::{
    card, history_statuses, poll_until, wait_for_order, AgoraProcess, Client, ServerOptions,
    CARD_OK,
};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one browser run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the console may take to show what is asked of it (retrying the browser).
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails (never skips) when the browser is missing: CI installs it in `.ci/run`.
fn chromium() -> &'static Path {
    let path = Path::new(CHROMIUM);
    assert!(
        path.is_file(),
        "{CHROMIUM} is missing: the console tests need headless Chromium; install it with \
         `apt-get install -y chromium` (Debian's package; .ci/run does this)"
    );
    path
}

/// Runs headless Chromium on `url` with `args` (such as `--dump-dom`); answers its stdout.
async fn browse(url: &str, args: &[String]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=10000",
        "--window-size=1280,1800",
    ])
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("start {CHROMIUM}: {e}"))?;
    let out = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("chromium ran longer than {BROWSER_TIMEOUT:?} on {url}"))?
        .map_err(|e| format!("chromium on {url}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("chromium exited with {}: {err}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The DOM Chromium rendered for `url`.
async fn dom(url: &str) -> Result<String, String> {
    browse(url, &["--dump-dom".to_string()]).await
}

/// The values of `attr="…"` in `html`, in document order.
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The part of `html` from the element with `id` to the end of its list.
fn list_with_id<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let end = html[start..].find("</ol>")?;
    Some(&html[start..start + end])
}

/// `(shard, value of attr)` for every cell of the shard grid in `html`.
fn grid(html: &str, attr: &str) -> Vec<(u64, u64)> {
    attr_values(html, "data-shard")
        .iter()
        .zip(attr_values(html, attr))
        .filter_map(|(s, v)| Some((s.parse().ok()?, v.parse().ok()?)))
        .collect()
}

/// The DOM of `url` once its shard grid shows `expected` as `(shard, value of attr)`; an
/// error naming both otherwise.
async fn grid_shows(url: &str, attr: &str, expected: &[(u64, u64)]) -> Result<String, String> {
    let html = dom(url).await?;
    let shown = grid(&html, attr);
    if shown == expected {
        Ok(html)
    } else {
        Err(format!("{attr}: shown {shown:?}, expected {expected:?}"))
    }
}

/// `(shard, owner)` for every shard, as the admin API says.
async fn shard_owners(ops: &Client) -> Vec<(u64, u64)> {
    let r = ops.get("/admin/cluster/shards").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = r.body["shards"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|s| Some((s["shard"].as_u64()?, s["owner"].as_u64()?)))
        .collect()
}

/// Places an order with a card and waits until it is delivered; answers its id and its
/// status history as the shop API shows it.
async fn delivered_order(cluster: &Cluster) -> (String, Vec<String>) {
    let admin = cluster.admin().await;
    let sku = admin.stocked_product(1_250, 10).await;
    let (shopper, _) = cluster.client(0).new_user().await;
    shopper.add_to_cart(&sku, 2).await;
    let order_id = shopper.place_order(card(CARD_OK)).await;
    let order = wait_for_order(&shopper, &order_id, &["DELIVERED"]).await;
    let history = history_statuses(&order);
    assert!(history.len() >= 3, "a delivered order's history: {order}");
    (order_id, history)
}

/// The admin URL of the node that stores `kind/id` (the inspector reads the owner's store).
async fn owner_admin_url(cluster: &Cluster, kind: &str, id: &str) -> String {
    let ops = cluster.ops(0);
    let r = ops.get(&format!("/admin/entities/{kind}/{id}")).await;
    let owner = match r.status {
        200 => 1,
        421 => r.body["owner"].as_u64().unwrap_or(1),
        other => panic!("GET /admin/entities/{kind}/{id}: {other} {}", r.text),
    };
    cluster.nodes[owner as usize - 1].admin_url.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs headless Chromium (apt-get install chromium): .ci/run runs it with --ignored"]
async fn the_console_shows_every_shard_with_its_owner_and_an_orders_saga_in_order() {
    chromium();
    let began = Instant::now();
    let cluster = Cluster::start(2, 100).await;
    let node1 = &cluster.nodes[0].admin_url;
    let ops = cluster.ops(0);
    let owners = shard_owners(&ops).await;
    assert!(owners.iter().any(|(_, o)| *o == 2), "both nodes own shards");

    // The console's own admin route needs the token like every other.
    let anon = cluster.nodes[0].admin_port_client();
    assert_eq!(anon.get("/admin/console/settings").await.status, 401);
    let settings = ops.get("/admin/console/settings").await;
    assert_eq!(settings.body["mutations"], true, "{}", settings.text);

    // Without the token, the page shows the token form and none of the cluster.
    let anonymous = dom(&format!("{node1}/console")).await;
    let anonymous = anonymous.unwrap_or_else(|e| panic!("{e}"));
    assert!(anonymous.contains("id=\"login-form\""), "{anonymous}");
    assert!(!anonymous.contains("data-shard="), "{anonymous}");
    assert!(
        anonymous.contains("<main id=\"app\" data-state=\"loading\" hidden"),
        "{anonymous}"
    );

    // The grid: every shard, each with its owner, once the page has loaded the map.
    let url = format!("{node1}/console#token={ADMIN_TOKEN}");
    poll_until(
        "the console's grid shows every shard with its owner",
        CONSOLE_TIMEOUT,
        || {
            let (url, owners) = (url.clone(), owners.clone());
            async move { grid_shows(&url, "data-owner", &owners).await.map(drop) }
        },
    )
    .await;

    // The inspector, driven by the fragment: the order's timeline lists its statuses in
    // the order the shop API's history has them.
    let (order_id, history) = delivered_order(&cluster).await;
    let owner_url = owner_admin_url(&cluster, "order", &order_id).await;
    let url = format!("{owner_url}/console#token={ADMIN_TOKEN}&kind=order&id={order_id}");
    let html = poll_until(
        "the inspector draws the order's timeline",
        CONSOLE_TIMEOUT,
        || {
            let (url, history, order_id) = (url.clone(), history.clone(), order_id.clone());
            async move {
                let html = dom(&url).await?;
                let steps = list_with_id(&html, "timeline")
                    .map(|list| attr_values(list, "data-status"))
                    .unwrap_or_default();
                if steps == history && html.contains(&order_id) {
                    Ok(html)
                } else {
                    Err(format!("timeline {steps:?}, history {history:?}"))
                }
            }
        },
    )
    .await;
    assert!(
        html.contains("data-field=\"sequence\""),
        "the record's sequence is shown"
    );
    assert!(
        html.contains("id=\"applied\""),
        "the applied messages are listed"
    );
    // The test cluster enables mutations: drain, move and remove are offered.
    assert!(
        html.contains("<section id=\"operations\">"),
        "operations are offered"
    );
    assert!(
        html.contains("<button id=\"drain\" type=\"button\">"),
        "drain is offered"
    );
    // The live charts are drawn from /metrics, each a line of at least one sample.
    let charts = attr_values(&html, "data-chart");
    assert_eq!(charts, ["throughput", "p99", "commit", "backlog"], "charts");
    let lines = attr_values(&html, "points");
    assert!(
        lines.len() == 4 && lines.iter().all(|l| l.contains(',')),
        "every chart has a line: {lines:?}"
    );

    // A move through the admin API: the console lists the operation, its progress and
    // how it ended.
    let shard = shard_owners(&ops).await.into_iter().find(|(_, o)| *o == 1);
    let (shard, _) = shard.expect("node 1 owns a shard");
    let path = format!("/admin/shards/{shard}/move");
    let moved = run_operation(&ops, &path, &json!({"to": 2}), "move").await;
    let id = moved["id"].as_str().unwrap_or_default().to_string();
    let url = format!("{node1}/console#token={ADMIN_TOKEN}");
    poll_until("the console lists the move", CONSOLE_TIMEOUT, || {
        let (url, id) = (url.clone(), id.clone());
        async move {
            let html = dom(&url).await?;
            let row = html
                .find(&format!("data-operation=\"{id}\""))
                .map(|at| &html[at..])
                .and_then(|row| row.find("</tr>").map(|end| &row[..end]))
                .ok_or("no row for the move")?;
            let shown = row.contains("data-state=\"succeeded\"")
                && row.contains("1 of 1 shards")
                && row.contains("<progress");
            shown.then_some(()).ok_or(format!("the move's row: {row}"))
        }
    })
    .await;

    screenshot(&url).await;
    eprintln!("the console test took {:?}", began.elapsed());
}

/// Takes a screenshot of `url` and checks it is a PNG with something on it.
async fn screenshot(url: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let png = dir.path().join("console.png");
    let arg = format!("--screenshot={}", png.display());
    browse(url, &[arg]).await.unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1280x1800 page compresses to a few kB; the console with its grid, charts and
    // timeline is far larger.
    assert!(
        bytes.len() > 30_000,
        "a screenshot of {} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("AGORA_CONSOLE_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
}

#[test]
fn attribute_values_come_out_in_document_order() {
    let html = r#"<ol id="timeline"><li data-status="A"></li><li data-status="B"></li></ol>"#;
    let list = list_with_id(html, "timeline").unwrap_or_default();
    assert_eq!(attr_values(list, "data-status"), ["A", "B"]);
}

/// `(shard, leader)` for every shard group, as node 1's admin API says.
async fn group_leaders(ops: &Client) -> Vec<(u64, u64)> {
    let r = ops.get("/admin/cluster/replicas").await;
    let groups = r.body["groups"].as_array().cloned().unwrap_or_default();
    let mut leaders: Vec<(u64, u64)> = groups
        .iter()
        .filter_map(|g| Some((g["shard"].as_u64()?, g["leader"].as_u64()?)))
        .collect();
    leaders.sort_unstable();
    leaders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs headless Chromium (apt-get install chromium): .ci/run runs it with --ignored"]
async fn with_replicated_shards_the_grid_shows_each_shards_leader_and_replicas() {
    chromium();
    let cluster = Cluster::start_replicated(3, 100, 3).await;
    let ops = cluster.ops(0);
    let url = format!("{}/console#token={ADMIN_TOKEN}", cluster.nodes[0].admin_url);
    let html = poll_until(
        "the grid shows every group's leader",
        CONSOLE_TIMEOUT,
        || {
            let (url, ops) = (url.clone(), ops.clone());
            async move {
                let leaders = group_leaders(&ops).await;
                if leaders.len() != 16 {
                    return Err(format!("groups with a leader: {leaders:?}"));
                }
                grid_shows(&url, "data-leader", &leaders).await
            }
        },
    )
    .await;
    let replicas = attr_values(&html, "data-replicas");
    assert_eq!(replicas.len(), 16, "{html}");
    for holders in replicas {
        assert_eq!(holders.split(',').count(), 3, "three replicas: {holders}");
    }
    assert!(html.contains("Replicated (placement version"), "{html}");
    // A replicated node is not drained (the endpoint refuses): no drain button.
    assert!(
        html.contains("<button id=\"drain\" type=\"button\" hidden"),
        "{html}"
    );
}

/// The cells of the row of dead letter `id` in the console's DOM, if it is drawn.
fn dead_letter_row(html: &str, id: u64) -> Option<&str> {
    let at = html.find(&format!("data-dead-letter=\"{id}\""))?;
    let row = &html[at..];
    row.find("</tr>").map(|end| &row[..end])
}

/// Node `ops`'s only dead letter's id.
async fn only_dead_letter(ops: &Client) -> u64 {
    let r = ops.get("/admin/dead-letters").await;
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", r.text);
    items[0]["id"].as_u64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs headless Chromium (apt-get install chromium): .ci/run runs it with --ignored"]
async fn the_dead_letters_view_offers_replay_and_discard_only_with_mutations() {
    chromium();
    let email = agora_tests::unique_email();
    let message = || vec![top_up_message("console-replay#1.0", &email, 700)];

    // A node with mutations enabled (the test clusters enable them).
    let mut cluster = Cluster::start(1, 100).await;
    cluster.nodes[0].kill9();
    let data_dir = cluster.nodes[0].data_dir().to_path_buf();
    write_dead_letters(&data_dir, "account not found", message()).await;
    cluster.nodes[0].restart();
    cluster.wait_ready().await;
    let ops = cluster.ops(0);
    let id = only_dead_letter(&ops).await;
    let url = format!("{}/console#token={ADMIN_TOKEN}", cluster.nodes[0].admin_url);
    poll_until(
        "the dead letter with Replay and Discard",
        CONSOLE_TIMEOUT,
        || {
            let url = url.clone();
            async move {
                let html = dom(&url).await?;
                let row = dead_letter_row(&html, id).ok_or("no row for the dead letter")?;
                let offered = row.contains(&format!("data-replay=\"{id}\""))
                    && row.contains(&format!("data-discard=\"{id}\""))
                    && row.contains(">Replay</button>");
                offered.then_some(()).ok_or(format!("the row: {row}"))
            }
        },
    )
    .await;

    // A node without mutations lists it with neither button.
    let opts = ServerOptions {
        env: vec![("AGORA_ADMIN_TOKEN".into(), ADMIN_TOKEN.into())],
        ..Default::default()
    };
    let mut dev = AgoraProcess::start(opts);
    dev.kill9();
    write_dead_letters(dev.data_dir(), "account not found", message()).await;
    dev.restart();
    let ops = dev.admin_port_client().with_token(ADMIN_TOKEN);
    poll_until(
        "the dev node lists its dead letters",
        CONSOLE_TIMEOUT,
        || {
            let ops = ops.clone();
            async move {
                match ops
                    .try_send(ops.req(reqwest::Method::GET, "/admin/dead-letters"))
                    .await
                {
                    Ok(r) if r.status == 200 => Ok(()),
                    other => Err(format!("{:?}", other.map(|r| r.status))),
                }
            }
        },
    )
    .await;
    let id = only_dead_letter(&ops).await;
    let url = format!("{}/console#token={ADMIN_TOKEN}", dev.admin_url);
    poll_until("the dead letter without buttons", CONSOLE_TIMEOUT, || {
        let url = url.clone();
        async move {
            let html = dom(&url).await?;
            let row = dead_letter_row(&html, id).ok_or("no row for the dead letter")?;
            let bare = !row.contains("data-replay") && !row.contains("<button");
            bare.then_some(()).ok_or(format!("the row: {row}"))
        }
    })
    .await;
}
