//! The failure detector: a heartbeat to every connected peer's gateway every 250 ms. A peer
//! heard from within 1 s is up, within 3 s suspect, otherwise (or without a session) down.
//! The router fails fast for shards of a down node instead of waiting for a call timeout.

use super::directory::Directory;
use super::directory::GatewayRpc;
use super::envelope::encode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How often each peer is asked.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Heard from within this: up.
const UP_WITHIN: Duration = Duration::from_secs(1);
/// Heard from within this (and not up): suspect.
const SUSPECT_WITHIN: Duration = Duration::from_secs(3);

/// What this node thinks of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Answering heartbeats.
    Up,
    /// Late: missed heartbeats for over a second.
    Suspect,
    /// No session, or silent for over three seconds.
    Down,
}

impl PeerStatus {
    /// Lower-case name for operators.
    pub fn name(self) -> &'static str {
        match self {
            PeerStatus::Up => "up",
            PeerStatus::Suspect => "suspect",
            PeerStatus::Down => "down",
        }
    }
}

/// When each peer last answered.
#[derive(Clone, Default)]
pub struct Liveness {
    heard: Arc<Mutex<HashMap<u64, Instant>>>,
    directory: Option<Directory>,
}

impl Liveness {
    /// Starts heartbeating the connected peers.
    pub fn start(directory: Directory) -> Self {
        let live = Self {
            heard: Arc::default(),
            directory: Some(directory.clone()),
        };
        let heard = live.heard.clone();
        tokio::spawn(async move {
            loop {
                for peer in directory.connected_peers() {
                    let Some(gw) = directory.gateway(peer) else {
                        continue;
                    };
                    let heard = heard.clone();
                    tokio::spawn(async move {
                        let Ok(ask) = encode(&u64::MAX) else { return };
                        if gw
                            .call(GatewayRpc::CatalogSince, ask, Duration::from_secs(1))
                            .await
                            .is_ok()
                        {
                            if let Ok(mut h) = heard.lock() {
                                h.insert(peer, Instant::now());
                            }
                        }
                    });
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        live
    }

    /// The status of `peer`. A single node (no detector) sees nobody.
    pub fn status(&self, peer: u64) -> PeerStatus {
        let Some(directory) = &self.directory else {
            return PeerStatus::Down;
        };
        if directory.gateway(peer).is_none() {
            return PeerStatus::Down;
        }
        let last = self.heard.lock().ok().and_then(|h| h.get(&peer).copied());
        match last.map(|t| t.elapsed()) {
            Some(e) if e <= UP_WITHIN => PeerStatus::Up,
            Some(e) if e <= SUSPECT_WITHIN => PeerStatus::Suspect,
            // Connected but never heard yet: give a new session the benefit of the doubt.
            None => PeerStatus::Suspect,
            Some(_) => PeerStatus::Down,
        }
    }
}
