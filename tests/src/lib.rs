//! Black-box test harness for Agora: starts real `agora` processes on free
//! ports, talks HTTP to them, and offers polling helpers with deadlines.
//!
//! Environment knobs:
//! - `AGORA_BIN`: path of the `agora` binary (default: `<target>/debug/agora`).
//! - `AGORA_TEST_RUST_LOG`: `RUST_LOG` for the spawned servers (default `warn`).
//! - `AGORA_KEEP_TMP=1`: keep the temp dirs (data, stdout/stderr logs) after the test.

pub mod cluster;
pub mod dead_letters;
pub mod operations;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use reqwest::Method;
pub use serde_json::{json, Value};

/// Password given to the server through `AGORA_ADMIN_PASSWORD`.
pub const ADMIN_PASSWORD: &str = "admin-test-password-1";
/// Email of the admin account the server seeds on first start.
pub const ADMIN_EMAIL: &str = "admin@agora.local";
/// Password used for every user the tests register.
pub const USER_PASSWORD: &str = "correct-horse-battery";
/// Card number that the simulated gateway approves.
pub const CARD_OK: &str = "4242424242424242";
/// Card number that the simulated gateway declines.
pub const CARD_DECLINED: &str = "4000000000000002";
/// Card number that fails with insufficient funds.
pub const CARD_INSUFFICIENT: &str = "4000000000009995";
/// Card number for which the gateway never answers.
pub const CARD_NEVER_ANSWERS: &str = "4000000000000119";
/// Balance (minor units) of the wallet of a freshly registered account.
pub const INITIAL_WALLET_BALANCE: u64 = 500_000;
/// Default deadline for polling helpers.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a server may take to print its addresses after being spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Every order status of the contract.
pub const ALL_ORDER_STATUSES: &[&str] = &[
    "PENDING",
    "STOCK_RESERVED",
    "AWAITING_PAYMENT",
    "PAYMENT_PROCESSING",
    "CONFIRMED",
    "SHIPPED",
    "DELIVERED",
    "PAYMENT_FAILED",
    "RETURNED",
    "CANCELLED",
    "EXPIRED",
    "REFUND_PENDING",
    "REFUNDED",
];
/// Order statuses after which nothing more happens to an order.
pub const TERMINAL_ORDER_STATUSES: &[&str] = &["DELIVERED", "CANCELLED", "EXPIRED", "REFUNDED"];

/// Command-line options for one `agora dev` process.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Run as `agora node --config FILE --node-id ID` (a cluster member) instead of `agora dev`.
    pub cluster_node: Option<(PathBuf, u64)>,
    /// With `cluster_node`: pass `--join` (a node joining a running cluster).
    pub join: bool,
    /// With `join`: the join token to present (`--join-token`).
    pub join_token: Option<String>,
    /// `--reservation-ttl-ms`, server default when `None`.
    pub reservation_ttl_ms: Option<u64>,
    /// `--payment-timeout-ms`, server default when `None`.
    pub payment_timeout_ms: Option<u64>,
    /// `--courier-leg-ms`, server default when `None`.
    pub courier_leg_ms: Option<u64>,
    /// Keep the shop API's rate limits on (off unless a test is about them:
    /// `AGORA_NO_RATE_LIMITS=true` is set otherwise).
    pub rate_limits: bool,
    /// More command-line arguments (`agora dev` only).
    pub extra_args: Vec<String>,
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// The binary to run; `agora_bin()` when `None` (an upgrade test starts an older build
    /// first).
    pub bin: Option<PathBuf>,
}

impl ServerOptions {
    /// Options with fast courier legs (100 ms) and server defaults otherwise.
    pub fn fast() -> Self {
        ServerOptions {
            courier_leg_ms: Some(100),
            ..Default::default()
        }
    }

    /// Sets `--reservation-ttl-ms`.
    pub fn reservation_ttl_ms(mut self, ms: u64) -> Self {
        self.reservation_ttl_ms = Some(ms);
        self
    }

    /// Sets `--payment-timeout-ms`.
    pub fn payment_timeout_ms(mut self, ms: u64) -> Self {
        self.payment_timeout_ms = Some(ms);
        self
    }

    /// Sets `--courier-leg-ms`.
    pub fn courier_leg_ms(mut self, ms: u64) -> Self {
        self.courier_leg_ms = Some(ms);
        self
    }

    /// Keeps the rate limits on.
    pub fn with_rate_limits(mut self) -> Self {
        self.rate_limits = true;
        self
    }

    /// Adds command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// Path of the `agora` binary: `$AGORA_BIN`, else `<target>/debug/agora` next to the test exe.
pub fn agora_bin() -> PathBuf {
    let path = match std::env::var_os("AGORA_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            // <target>/debug/deps/<test-exe>  ->  <target>/debug/agora
            let debug_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable lives in <target>/debug/deps");
            debug_dir.join(format!("agora{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !path.is_file() {
        panic!(
            "agora binary not found at {}: build it first: cargo build -p agora-node",
            path.display()
        );
    }
    path
}

/// A running (or killed) `agora dev` process with its own temp data dir; killed on drop.
pub struct AgoraProcess {
    child: Option<Child>,
    tmp: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    opts: ServerOptions,
    starts: u32,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    /// Base URL of the shop API listener, e.g. `http://127.0.0.1:41234`.
    pub shop_url: String,
    /// Base URL of the admin listener (healthz, readyz, metrics).
    pub admin_url: String,
}

impl AgoraProcess {
    /// Spawns a server with its data in `root/data` (the caller keeps `root`), and waits
    /// until it prints its addresses.
    pub fn start_in(opts: ServerOptions, root: PathBuf) -> Self {
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut p = AgoraProcess {
            child: None,
            tmp: None,
            data_dir,
            opts,
            starts: 0,
            stderr_path: PathBuf::new(),
            stdout_path: PathBuf::new(),
            shop_url: String::new(),
            admin_url: String::new(),
        };
        p.spawn();
        p
    }

    /// Spawns a server on a fresh temp data dir and waits until it prints its addresses.
    pub fn start(opts: ServerOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("agora-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut p = AgoraProcess {
            child: None,
            tmp: Some(tmp),
            data_dir,
            opts,
            starts: 0,
            stderr_path: PathBuf::new(),
            stdout_path: PathBuf::new(),
            shop_url: String::new(),
            admin_url: String::new(),
        };
        p.spawn();
        p
    }

    /// The data directory the server uses (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    /// Kills the server with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL agora");
            child.wait().expect("reap agora");
        }
    }

    /// Sends SIGTERM (a graceful stop: a cluster member drains first) and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        child.wait().expect("reap agora")
    }

    /// Starts the server again on the same data dir (new ports); kills it first if running.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops the server (SIGTERM) and starts `bin` (`agora_bin()` when `None`) on its data.
    pub fn upgrade_to(&mut self, bin: Option<PathBuf>) {
        self.terminate();
        self.opts.bin = bin;
        self.spawn();
    }

    /// An unauthenticated client for the shop API.
    pub fn client(&self) -> Client {
        Client::new(&self.shop_url)
    }

    /// An unauthenticated client for the admin listener.
    pub fn admin_port_client(&self) -> Client {
        Client::new(&self.admin_url)
    }

    /// Logs in as the seeded admin and returns an authenticated shop client.
    pub async fn admin(&self) -> Client {
        self.client().login_as(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Last `max_bytes` of the server's stderr log (all starts of this process object).
    pub fn stderr_tail(&self, max_bytes: u64) -> String {
        tail_of(&self.stderr_path, max_bytes)
    }

    fn spawn(&mut self) {
        let bin = self.opts.bin.clone().unwrap_or_else(agora_bin);
        self.starts += 1;
        let root = self
            .data_dir
            .parent()
            .expect("data dir has a parent")
            .to_path_buf();
        self.stderr_path = root.join("stderr.log");
        self.stdout_path = root.join("stdout.log");
        let mut stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open stderr log");
        writeln!(stderr, "==== agora start #{} ====", self.starts).ok();

        let mut cmd = Command::new(&bin);
        if let Some((config, id)) = &self.opts.cluster_node {
            cmd.arg("node")
                .arg("--config")
                .arg(config)
                .arg("--node-id")
                .arg(id.to_string());
            if self.opts.join {
                cmd.arg("--join");
            }
            if let Some(token) = &self.opts.join_token {
                cmd.arg("--join-token").arg(token);
            }
        } else {
            cmd.arg("dev")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--http-addr")
                .arg("127.0.0.1:0")
                .arg("--admin-addr")
                .arg("127.0.0.1:0");
        }
        if let Some(ms) = self.opts.reservation_ttl_ms {
            cmd.arg("--reservation-ttl-ms").arg(ms.to_string());
        }
        if let Some(ms) = self.opts.payment_timeout_ms {
            cmd.arg("--payment-timeout-ms").arg(ms.to_string());
        }
        if let Some(ms) = self.opts.courier_leg_ms {
            cmd.arg("--courier-leg-ms").arg(ms.to_string());
        }
        cmd.args(&self.opts.extra_args);
        if !self.opts.rate_limits {
            cmd.env("AGORA_NO_RATE_LIMITS", "true");
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let log = std::env::var("AGORA_TEST_RUST_LOG").unwrap_or_else(|_| "warn".to_string());
        cmd.env("AGORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        // Read stdout in a thread forever (so the pipe never fills), copy it to a
        // log file and forward the lines to us.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let stdout_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .expect("open stdout log");
        std::thread::Builder::new()
            .name("agora-stdout".into())
            .spawn(move || {
                let mut log = stdout_log;
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            log.write_all(&buf).ok();
                            let line = String::from_utf8_lossy(&buf).into_owned();
                            let _ = tx.send(line);
                        }
                    }
                }
            })
            .expect("spawn stdout thread");

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut shop = None;
        let mut admin = None;
        let mut seen = String::new();
        while shop.is_none() || admin.is_none() {
            let now = Instant::now();
            if now >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agora did not print its 'shop API:' and 'admin:' lines within {:?}\nstdout so far:\n{seen}\nstderr tail:\n{}",
                    STARTUP_TIMEOUT,
                    tail_of(&self.stderr_path, 4000)
                );
            }
            match rx.recv_timeout(deadline - now) {
                Ok(line) => {
                    seen.push_str(&line);
                    if shop.is_none() && line.contains("shop API:") {
                        shop = first_base_url(&line);
                    } else if admin.is_none() && line.contains("admin:") {
                        admin = first_base_url(&line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "agora exited ({status:?}) before printing its addresses\nstdout:\n{seen}\nstderr tail:\n{}",
                        tail_of(&self.stderr_path, 4000)
                    );
                }
            }
        }
        self.shop_url = shop.expect("shop url");
        self.admin_url = admin.expect("admin url");
        self.child = Some(child);
    }
}

impl Drop for AgoraProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agora stderr tail ({}) ----\n{}\n---- end of agora stderr ----",
                self.stderr_path.display(),
                self.stderr_tail(6000)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var("AGORA_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("keeping agora temp dir {}", tmp.keep().display());
            }
        }
    }
}

fn tail_of(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("<no log at {}>", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// First `http://host:port` token of a line, reduced to scheme + host + port.
pub fn first_base_url(line: &str) -> Option<String> {
    let token = line
        .split_whitespace()
        .find(|t| t.starts_with("http://") || t.starts_with("https://"))?;
    let (scheme, rest) = token.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// A decoded HTTP response: status, content type and body (parsed as JSON when possible).
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status code.
    pub status: u16,
    /// Value of the `content-type` header ("" when absent).
    pub content_type: String,
    /// Body parsed as JSON, `Value::Null` when it is not JSON.
    pub body: Value,
    /// Raw body text (lossy UTF-8).
    pub text: String,
    /// Value of the `retry-after` header, when present.
    pub retry_after: Option<String>,
    /// Every header of the answer.
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics (showing the body) unless the status is `code`; returns `self` for chaining.
    #[track_caller]
    pub fn expect_status(self, code: u16, ctx: &str) -> Self {
        assert_eq!(
            self.status, code,
            "{ctx}: expected HTTP {code}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// True when the content type is `application/problem+json`.
    pub fn is_problem_json(&self) -> bool {
        self.content_type
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/problem+json"))
    }

    /// Panics unless this is a well-formed problem document matching the HTTP status.
    #[track_caller]
    pub fn assert_problem(&self, ctx: &str) {
        assert!(
            self.is_problem_json(),
            "{ctx}: error response (HTTP {}) must have content-type application/problem+json, got {:?}; body {}",
            self.status,
            self.content_type,
            self.text
        );
        for field in ["type", "title", "detail"] {
            assert!(
                self.body.get(field).is_some_and(Value::is_string),
                "{ctx}: problem document lacks string field {field:?}: {}",
                self.text
            );
        }
        assert_eq!(
            self.body.get("status").and_then(Value::as_u64),
            Some(u64::from(self.status)),
            "{ctx}: problem document 'status' must equal the HTTP status {}: {}",
            self.status,
            self.text
        );
    }

    /// String field of the JSON body, panicking if absent.
    #[track_caller]
    pub fn str_field(&self, field: &str) -> String {
        self.body
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("response lacks string field {field:?}: {}", self.text))
            .to_string()
    }
}

/// HTTP client bound to one base URL, with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Bearer token sent with every request, if any.
    pub token: Option<String>,
}

impl Client {
    /// A client for `base` without a token (30 s request timeout, no proxy, no retries).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .retry(reqwest::retry::never())
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("build reqwest client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// Same client with the given bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Same token, pointed at another base URL (e.g. after a restart on new ports).
    pub fn rebased(&self, base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// Same base URL, without any token.
    pub fn anonymous(&self) -> Self {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// A request builder for `path` (relative to the base URL) with the token attached.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request; transport errors are returned.
    pub async fn try_send(&self, rb: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            content_type,
            body,
            text,
            retry_after,
            headers,
        })
    }

    /// Sends a request; panics on transport errors.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        self.try_send(rb)
            .await
            .unwrap_or_else(|e| panic!("HTTP request to {} failed: {e:?}", self.base))
    }

    /// Sends a request over a raw socket, writing the body while already reading the answer.
    ///
    /// For oversized bodies: a server may answer 413 and close before reading the whole body,
    /// which makes hyper's client report a write error instead of the response.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> std::io::Result<Resp> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, a)| a)
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        let (mut rd, mut wr) = stream.into_split();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let writer = tokio::spawn(async move {
            // Errors are expected when the server stops reading early.
            if wr.write_all(head.as_bytes()).await.is_ok() && wr.write_all(&body).await.is_ok() {
                let _ = wr.flush().await;
            }
            wr
        });
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let read_result = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if parse_http_response(&buf, false).is_some() {
                            return Ok(());
                        }
                    }
                    // A reset after (part of) the answer arrived: use what we have.
                    Err(_) if !buf.is_empty() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        writer.abort();
        match read_result {
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no complete HTTP response within 30 s",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        parse_http_response(&buf, true).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "incomplete HTTP response: {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(500)])
                ),
            )
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    /// POST `path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.req(Method::POST, path).json(body)).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// POST /api/v1/users.
    pub async fn register(&self, email: &str, password: &str, name: &str) -> Resp {
        self.post(
            "/api/v1/users",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    /// POST /api/v1/auth/login.
    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs in (asserting 200) and returns a client carrying the access token.
    pub async fn login_as(&self, email: &str, password: &str) -> Client {
        let r = self
            .login(email, password)
            .await
            .expect_status(200, &format!("login as {email}"));
        assert_eq!(
            r.body.get("token_type").and_then(Value::as_str),
            Some("Bearer"),
            "login response token_type: {}",
            r.text
        );
        self.anonymous().with_token(&r.str_field("access_token"))
    }

    /// Registers a fresh user (unique email) and logs in; returns (client, email).
    pub async fn new_user(&self) -> (Client, String) {
        let email = unique_email();
        let r = self.register(&email, USER_PASSWORD, "Test User").await;
        let r = r.expect_status(201, &format!("register {email}"));
        r.str_field("user_id");
        assert_eq!(
            r.header("location"),
            Some("/api/v1/me"),
            "a new account's Location"
        );
        (self.login_as(&email, USER_PASSWORD).await, email)
    }

    /// Admin: creates a product (asserting 201) in category `test`.
    pub async fn create_product(&self, sku: &str, price_minor: u64) -> Value {
        let r = self
            .post(
                "/api/v1/products",
                &json!({
                    "sku": sku,
                    "name": format!("Test product {sku}"),
                    "description": "created by agora-tests",
                    "category": "test",
                    "price": {"amount_minor": price_minor, "currency": "INR"},
                }),
            )
            .await
            .expect_status(201, &format!("create product {sku}"));
        assert_eq!(
            r.header("location"),
            Some(format!("/api/v1/products/{sku}").as_str()),
            "a created product is named in Location"
        );
        r.body
    }

    /// Admin: receives `qty` units of stock (asserting 200).
    pub async fn receive(&self, sku: &str, qty: u64) -> Inventory {
        let r = self
            .post(
                &format!("/api/v1/inventory/{sku}/receive"),
                &json!({ "quantity": qty }),
            )
            .await
            .expect_status(200, &format!("receive {qty} x {sku}"));
        Inventory::from_json(&r.body)
    }

    /// Admin: creates a product with a unique SKU and `stock` units; returns the SKU.
    pub async fn stocked_product(&self, price_minor: u64, stock: u64) -> String {
        let sku = unique_sku();
        self.create_product(&sku, price_minor).await;
        if stock > 0 {
            let inv = self.receive(&sku, stock).await;
            assert_eq!(
                inv.available, stock,
                "fresh product {sku}: available after receiving {stock}: {inv:?}"
            );
        }
        sku
    }

    /// Admin: GET /api/v1/inventory/{sku} (asserting 200 and the on_hand invariant). A 503
    /// (its shard changing hands: retryable by contract) is asked again, within a bound.
    pub async fn inventory(&self, sku: &str) -> Inventory {
        let path = format!("/api/v1/inventory/{sku}");
        let r = poll_until(&format!("inventory of {sku}"), POLL_TIMEOUT, || async {
            let r = self.get(&path).await;
            if r.status == 503 {
                Err(r.text)
            } else {
                Ok(r)
            }
        })
        .await
        .expect_status(200, &format!("inventory of {sku}"));
        let inv = Inventory::from_json(&r.body);
        assert_eq!(
            inv.on_hand,
            inv.available + inv.reserved,
            "inventory invariant on_hand == available + reserved broken for {sku}: {}",
            r.text
        );
        inv
    }

    /// POST /api/v1/cart/items (asserting 200); returns the cart.
    pub async fn add_to_cart(&self, sku: &str, qty: u64) -> Value {
        self.post("/api/v1/cart/items", &json!({"sku": sku, "quantity": qty}))
            .await
            .expect_status(200, &format!("add {qty} x {sku} to cart"))
            .body
    }

    /// GET /api/v1/cart (asserting 200).
    pub async fn cart(&self) -> Value {
        self.get("/api/v1/cart")
            .await
            .expect_status(200, "get cart")
            .body
    }

    /// POST /api/v1/orders with an idempotency key (None: header omitted).
    pub async fn checkout(&self, key: Option<&str>, body: &Value) -> Resp {
        self.send(self.checkout_request(key, body)).await
    }

    /// The request builder for a checkout (for concurrent or fallible sends).
    pub fn checkout_request(&self, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let rb = self.req(Method::POST, "/api/v1/orders").json(body);
        match key {
            Some(k) => rb.header("Idempotency-Key", k),
            None => rb,
        }
    }

    /// Checks out with a fresh idempotency key, asserting 201; returns the order id.
    pub async fn place_order(&self, payment: Value) -> String {
        let key = unique_key();
        let r = self
            .checkout(Some(&key), &checkout_body(payment))
            .await
            .expect_status(201, "checkout");
        let status = r.str_field("status");
        assert!(
            ALL_ORDER_STATUSES.contains(&status.as_str()),
            "checkout returned unknown status {status:?}: {}",
            r.text
        );
        r.str_field("order_id")
    }

    /// GET /api/v1/orders/{id} (asserting 200).
    pub async fn order(&self, order_id: &str) -> Value {
        self.get(&format!("/api/v1/orders/{order_id}"))
            .await
            .expect_status(200, &format!("get order {order_id}"))
            .body
    }

    /// Every item of the list at `path` (a path without a query), newest first, walked
    /// `limit` at a time by following `next_cursor` (asserting 200 and a page of at most
    /// `limit` items each time).
    pub async fn walk(&self, path: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut url = format!("{path}?limit={limit}");
        loop {
            let r = self
                .get(&url)
                .await
                .expect_status(200, &format!("GET {url}"));
            let page = r
                .body
                .get("items")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("GET {url} lacks an items array: {}", r.text));
            assert!(
                page.len() <= limit,
                "GET {url}: {} items, more than limit={limit}",
                page.len()
            );
            items.extend(page.iter().cloned());
            match r.body.get("next_cursor") {
                Some(Value::String(c)) => url = format!("{path}?limit={limit}&cursor={c}"),
                Some(Value::Null) => return items,
                other => panic!("GET {url}: next_cursor must be a string or null, got {other:?}"),
            }
        }
    }

    /// GET /api/v1/orders (asserting 200), every page; returns the items, newest first.
    pub async fn orders(&self) -> Vec<Value> {
        self.walk("/api/v1/orders", 100).await
    }

    /// GET /api/v1/notifications (asserting 200), every page; returns the items, newest first.
    pub async fn notifications(&self) -> Vec<Value> {
        self.walk("/api/v1/notifications", 100).await
    }
}

/// Parses a raw HTTP/1.1 response; `None` while incomplete (`at_eof`: the connection ended).
pub fn parse_http_response(buf: &[u8], at_eof: bool) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-type" => content_type = v.to_string(),
            "content-length" => content_length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let bytes: Vec<u8> = if chunked {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = rest[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size_str = String::from_utf8_lossy(&rest[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                break;
            }
            if rest.len() < pos + size {
                return None;
            }
            out.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        out
    } else if let Some(len) = content_length {
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if at_eof {
        rest.to_vec()
    } else {
        return None;
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some(Resp {
        status,
        content_type,
        body,
        text,
        retry_after: None,
        headers: reqwest::header::HeaderMap::new(),
    })
}

/// Stock figures of one SKU as reported by the inventory API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inventory {
    /// Units physically in the warehouse (available + reserved).
    pub on_hand: u64,
    /// Units held by orders awaiting payment.
    pub reserved: u64,
    /// Units that can still be bought.
    pub available: u64,
    /// Units sold (paid).
    pub sold: u64,
}

impl Inventory {
    /// Parses `{on_hand, reserved, available, sold}`, panicking on missing fields.
    pub fn from_json(v: &Value) -> Self {
        let f = |name: &str| {
            v.get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("inventory lacks unsigned field {name:?}: {v}"))
        };
        Inventory {
            on_hand: f("on_hand"),
            reserved: f("reserved"),
            available: f("available"),
            sold: f("sold"),
        }
    }

    /// available + reserved + sold (must equal received − written off).
    pub fn accounted(&self) -> u64 {
        self.available + self.reserved + self.sold
    }
}

/// Polls `f` every 50 ms until it returns `Ok`, panicking after `timeout` with the last `Err` text.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Status string of an order JSON ("" when missing).
pub fn status_of(order: &Value) -> &str {
    order.get("status").and_then(Value::as_str).unwrap_or("")
}

/// Statuses in an order's history, in order.
pub fn history_statuses(order: &Value) -> Vec<String> {
    order
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter_map(|e| e.get("status").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls GET order until its status is in `wanted`; fails fast if it ends in another terminal status.
pub async fn wait_for_order(client: &Client, order_id: &str, wanted: &[&str]) -> Value {
    wait_for_order_within(client, order_id, wanted, POLL_TIMEOUT).await
}

/// Like [`wait_for_order`] with an explicit deadline.
pub async fn wait_for_order_within(
    client: &Client,
    order_id: &str,
    wanted: &[&str],
    timeout: Duration,
) -> Value {
    let what = format!("order {order_id} to reach one of {wanted:?}");
    poll_until(&what, timeout, || async {
        let r = client.get(&format!("/api/v1/orders/{order_id}")).await;
        if r.status != 200 {
            return Err(format!("HTTP {} {}", r.status, r.text));
        }
        let status = status_of(&r.body).to_string();
        if wanted.contains(&status.as_str()) {
            return Ok(r.body);
        }
        if TERMINAL_ORDER_STATUSES.contains(&status.as_str()) {
            panic!(
                "order {order_id} reached terminal status {status} while waiting for {wanted:?}: {}",
                r.text
            );
        }
        Err(format!("status {status}; order {}", r.text))
    })
    .await
}

/// Polls the caller's notifications until `order_id` has every kind in `kinds`; returns its kinds.
pub async fn wait_for_notifications(
    client: &Client,
    order_id: &str,
    kinds: &[&str],
) -> Vec<String> {
    let what = format!("notifications {kinds:?} for order {order_id}");
    poll_until(&what, POLL_TIMEOUT, || async {
        let items = client.notifications().await;
        let have: Vec<String> = items
            .iter()
            .filter(|n| n.get("order_id").and_then(Value::as_str) == Some(order_id))
            .filter_map(|n| n.get("kind").and_then(Value::as_str).map(String::from))
            .collect();
        if kinds.iter().all(|k| have.iter().any(|h| h == k)) {
            Ok(have)
        } else {
            Err(format!("kinds so far {have:?}"))
        }
    })
    .await
}

/// Polls the cart until it holds no line for `sku`; returns the cart.
pub async fn wait_for_cart_without(client: &Client, sku: &str) -> Value {
    let what = format!("cart to lose its {sku} line after checkout");
    poll_until(&what, POLL_TIMEOUT, || async {
        let cart = client.cart().await;
        if cart_quantity(&cart, sku) == 0 {
            Ok(cart)
        } else {
            Err(cart.to_string())
        }
    })
    .await
}

/// Quantity of `sku` in a cart JSON (0 when absent).
pub fn cart_quantity(cart: &Value, sku: &str) -> u64 {
    cart.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|l| l.get("sku").and_then(Value::as_str) == Some(sku))
        .filter_map(|l| l.get("quantity").and_then(Value::as_u64))
        .sum()
}

/// Polls inventory (admin client) until `pred` holds; returns the last figures.
pub async fn wait_for_inventory<P>(admin: &Client, sku: &str, what: &str, pred: P) -> Inventory
where
    P: Fn(&Inventory) -> bool,
{
    let desc = format!("inventory of {sku}: {what}");
    poll_until(&desc, POLL_TIMEOUT, || async {
        let inv = admin.inventory(sku).await;
        if pred(&inv) {
            Ok(inv)
        } else {
            Err(format!("{inv:?}"))
        }
    })
    .await
}

/// Polls GET /api/v1/products/{sku} until it shows `available`; returns the product.
pub async fn wait_for_product_available(shop: &Client, sku: &str, available: u64) -> Value {
    let what = format!("product {sku} to show available == {available}");
    poll_until(&what, POLL_TIMEOUT, || async {
        let r = shop.get(&format!("/api/v1/products/{sku}")).await;
        if r.status == 200 && r.body["available"] == available {
            Ok(r.body)
        } else {
            Err(format!("HTTP {} {}", r.status, r.text))
        }
    })
    .await
}

/// `{method: "card", card_number}`.
pub fn card(number: &str) -> Value {
    json!({"method": "card", "card_number": number})
}

/// Waits (bounded by `POLL_TIMEOUT`) until counter `name` on `c`'s `/metrics` reaches
/// `at_least`; `what` names the wait in a timeout's message.
pub async fn wait_for_counter(c: &Client, name: &str, at_least: f64, what: &str) {
    poll_until(what, POLL_TIMEOUT, || async move {
        match counter(c, name).await {
            n if n >= at_least => Ok(()),
            n => Err(format!("{name} is {n}")),
        }
    })
    .await;
}

/// Sum of one counter (every label set) in the Prometheus text of `c`'s `/metrics`.
pub async fn counter(c: &Client, name: &str) -> f64 {
    let r = c.get("/metrics").await;
    r.text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `{method: "upi", vpa}`.
pub fn upi(vpa: &str) -> Value {
    json!({"method": "upi", "vpa": vpa})
}

/// `{method: "wallet"}`.
pub fn wallet() -> Value {
    json!({"method": "wallet"})
}

/// A valid shipping address.
pub fn shipping_address() -> Value {
    json!({
        "name": "Asha Rao",
        "line1": "12 MG Road",
        "city": "Bengaluru",
        "postal_code": "560001",
        "country": "IN",
    })
}

/// A checkout body with the given payment and a valid shipping address.
pub fn checkout_body(payment: Value) -> Value {
    json!({"payment": payment, "shipping_address": shipping_address()})
}

fn short_uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()
}

/// A fresh SKU `T-<12 uppercase hex chars>`.
pub fn unique_sku() -> String {
    format!("T-{}", short_uuid())
}

/// A fresh email address.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// A fresh idempotency key.
pub fn unique_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

/// Counts of each value in an iterator (handy for status histograms in messages).
pub fn histogram<I: IntoIterator<Item = String>>(items: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// base64url without padding (for crafting JWTs in tests).
pub fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// Decodes base64url (padding optional); `None` on invalid input.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        })
    };
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// A JWT `header.payload.signature` with HS256 header and a random (unknown to the server) signature.
pub fn forged_jwt(claims: &Value) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64url(claims.to_string().as_bytes());
    let sig = b64url(uuid::Uuid::new_v4().as_bytes());
    let sig2 = b64url(uuid::Uuid::new_v4().as_bytes());
    format!("{header}.{payload}.{sig}{sig2}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base_url_parsing() {
        assert_eq!(
            first_base_url("  shop API:  http://127.0.0.1:4567/api/v1/products").as_deref(),
            Some("http://127.0.0.1:4567")
        );
        assert_eq!(
            first_base_url("  admin:     http://127.0.0.1:99/healthz").as_deref(),
            Some("http://127.0.0.1:99")
        );
        assert_eq!(first_base_url("admin: none"), None);
    }

    #[test]
    fn http_response_parsing() {
        let raw = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/problem+json\r\ncontent-length: 2\r\n\r\n{}";
        let r = parse_http_response(raw, false).expect("complete");
        assert_eq!(
            (r.status, r.content_type.as_str(), r.text.as_str()),
            (413, "application/problem+json", "{}")
        );
        assert!(parse_http_response(&raw[..raw.len() - 1], false).is_none());
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked, false).expect("chunked").text,
            "{}"
        );
    }

    #[test]
    fn base64url_roundtrip() {
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(b64url_decode(&b64url(&data)).as_deref(), Some(&data[..]));
        }
    }
}
