//! The shard groups' transport: a group's Raft request travels to the peer's gateway as a
//! `GatewayRpc::Group` call over the same connections as every other node-to-node message,
//! and the gateway hands it to its node's `Groups`.

use crate::directory::{Directory, GatewayRpc, PeerCallError};
use agora_replication::network::{GroupTransport, TransportError};
use agora_replication::NodeId;
use async_trait::async_trait;
use std::time::Duration;

/// Carries group requests through the node's directory of peers.
#[derive(Clone)]
pub struct DirectoryTransport {
    directory: Directory,
}

impl DirectoryTransport {
    /// Over `directory`'s gateways.
    pub fn new(directory: Directory) -> Self {
        Self { directory }
    }
}

#[async_trait]
impl GroupTransport for DirectoryTransport {
    fn connected(&self, to: NodeId) -> bool {
        self.directory.gateway(to).is_some()
    }

    async fn call(
        &self,
        to: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let gateway = self
            .directory
            .gateway(to)
            .ok_or(TransportError::Unreachable(to))?;
        gateway
            .call(GatewayRpc::Group, request, timeout)
            .await
            .map_err(|e| match e {
                PeerCallError::Timeout => TransportError::Call {
                    node: to,
                    reason: "timed out".into(),
                },
                PeerCallError::Failed(reason) => TransportError::Call { node: to, reason },
            })
    }
}
