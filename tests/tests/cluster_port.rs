//! Strangers cannot exhaust a node's cluster port before authenticating: connections beyond
//! the per-address bound are closed at once, the rest when the handshake time is up; a
//! frame's length prefix makes the node allocate nothing before the peer authenticated (a
//! prefix over the frame limit closes the connection at once); and afterwards a restarted
//! node connects again and a checkout crosses the nodes.

use agora_tests::cluster::Cluster;
use agora_tests::counter;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const HANDSHAKE_MS: u64 = 3_000;
const PER_ADDRESS: usize = 8;
/// A frame as large as the default frame limit (16 MiB): refused before authentication.
const HELD_FRAME: u64 = 16 * 1024 * 1024;
/// What each flooding connection tries to send after the prefix (the reproduction's 15 MiB).
const FLOOD_BYTES: usize = 15 * 1024 * 1024;
/// Bound on waiting for the node to close a connection.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// Reads `s` until the node closes it; the time from `since` when it did, or `None` if it
/// stayed open for `CLOSE_BOUND`.
async fn closed_after(mut s: TcpStream, since: Instant) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(CLOSE_BOUND, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// A process's memory figure from /proc (`VmRSS:` now, `VmHWM:` its peak), in bytes.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("a memory figure")
}

/// Opens `n` idle connections to `addr` at once; when each was closed, from the start.
async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<Option<Duration>> {
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut closing = JoinSet::new();
    for s in streams {
        closing.spawn(closed_after(s, started));
    }
    closing.join_all().await
}

/// One connection that sends a `HELD_FRAME` prefix, then up to `FLOOD_BYTES`, until closed.
async fn flood(addr: SocketAddr) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    if s.write_all(&HELD_FRAME.to_be_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![0x5a; 64 * 1024];
    let mut sent = 0;
    while sent < FLOOD_BYTES {
        match tokio::time::timeout(CLOSE_BOUND, s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            // Closed by the node, or it stopped reading (the frame is held).
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let _ = closed_after(s, Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_exhaust_the_cluster_port_and_the_cluster_keeps_working() {
    let tables = format!(
        "[cluster_connections]\nhandshake_timeout_ms = {HANDSHAKE_MS}\nmax_unauthenticated_per_address = {PER_ADDRESS}\n"
    );
    let mut cluster = Cluster::start_with_tables(2, 50, &tables).await;
    let port = cluster.cluster_addr(0);
    let pid = cluster.nodes[0].pid();

    // Three times the address's bound of idle connections: the excess is closed at once,
    // the rest when the handshake time is up.
    let closed = idle_connections(port, 3 * PER_ADDRESS).await;
    assert!(closed.iter().all(Option::is_some), "left open: {closed:?}");
    let handshake = Duration::from_millis(HANDSHAKE_MS);
    let early = closed
        .iter()
        .flatten()
        .filter(|t| **t < handshake / 2)
        .count();
    let on_time = closed.iter().flatten().filter(|t| **t >= handshake).count();
    assert_eq!(early, 2 * PER_ADDRESS, "closed at once: {closed:?}");
    assert_eq!(on_time, PER_ADDRESS, "closed at the deadline: {closed:?}");

    // A prefix over the frame limit is closed at once.
    let mut huge = TcpStream::connect(port).await.expect("connect");
    let _ = huge.write_all(&u64::MAX.to_be_bytes()).await;
    let huge_closed = closed_after(huge, Instant::now()).await;
    assert!(
        huge_closed.is_some_and(|t| t < handshake / 2),
        "a frame over the limit did not close its connection at once: {huge_closed:?}"
    );

    // The reproduction: connections announcing 16 MiB frames and sending 15 MiB each.
    let before = memory(pid, "VmRSS:").max(memory(pid, "VmHWM:"));
    let mut floods = JoinSet::new();
    for _ in 0..100 {
        floods.spawn(flood(port));
    }
    floods.join_all().await;
    let peak = memory(pid, "VmHWM:");
    eprintln!(
        "node 1: {} MiB resident before the flood, peak {} MiB after",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < before + (64 << 20),
        "the flood grew node 1 from {} to {} MiB",
        before >> 20,
        peak >> 20
    );

    let ops = cluster.ops(0);
    for (name, least) in [
        ("agora_cluster_connections_refused_total", 2 * PER_ADDRESS),
        ("agora_cluster_handshakes_timed_out_total", PER_ADDRESS),
        ("agora_cluster_frames_refused_total", 1),
    ] {
        let n = counter(&ops, name).await;
        assert!(
            n >= least as f64,
            "{name} is {n}, expected at least {least}"
        );
    }

    // Node 2 connects again after a restart, and a checkout crosses the nodes.
    cluster.nodes[1].restart();
    cluster.wait_ready().await;
    cluster.checkout_across(0, 1).await;
}
