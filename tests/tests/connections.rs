//! Slow and idle clients cannot exhaust the shop API: connections beyond the per-address
//! bound are closed at once, a half-sent request is closed after the idle time, and the
//! admin endpoint answers throughout.

use agora_tests::{AgoraProcess, ServerOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PER_ADDRESS: usize = 8;

/// Waits (at most `bound`) for the server to close `s`; true if it did.
async fn closed_by_server(s: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(bound, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 4xx answer to the half-sent request would also end it: keep reading.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_bounded_and_the_admin_port_stays_reachable() {
    let node = AgoraProcess::start(ServerOptions {
        env: vec![
            (
                "AGORA_MAX_CONNECTIONS_PER_ADDRESS".into(),
                PER_ADDRESS.to_string(),
            ),
            ("AGORA_IDLE_TIMEOUT_MS".into(), "1500".into()),
        ],
        ..ServerOptions::fast()
    });
    let addr = node.shop_url.trim_start_matches("http://").to_string();
    // The address's quota, each holding a half-sent request line.
    let mut slow = Vec::new();
    for _ in 0..PER_ADDRESS {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /api/v1/pro").await.expect("write");
        slow.push(s);
    }
    // One more from the same address is closed at once, without an answer.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    let _ = extra
        .write_all(b"GET /api/v1/products HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert!(
        closed_by_server(&mut extra, Duration::from_secs(10)).await,
        "a connection beyond the per-address bound was kept open"
    );
    // The admin endpoint has its own listener.
    let health = node.admin_port_client().get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text);
    // The half-sent requests are closed once they have sent nothing for the idle time.
    for s in &mut slow {
        assert!(
            closed_by_server(s, Duration::from_secs(20)).await,
            "a half-sent request was kept open past the idle time"
        );
    }
    // Their slots are free again.
    let r = node.client().get("/api/v1/products").await;
    assert_eq!(r.status, 200, "{}", r.text);
}
