//! The one narrow way into the entities, used by the HTTP edge and the simulator's clients:
//! it runs the same over one node, a cluster or the simulator.

use crate::command::{Command, Reply};
use crate::error::DomainError;
use crate::ids::EntityRef;
use async_trait::async_trait;

/// Why an ask did not get an answer from the entity's logic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AskError {
    /// The entity refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The owning shard is not reachable now (moving, crashed, store failed); retry later.
    #[error("entity unavailable: {0}")]
    Unavailable(String),
    /// Too much in flight; retry later.
    #[error("overloaded")]
    Overloaded,
    /// No answer in time; the command may or may not have taken effect.
    #[error("timed out")]
    Timeout,
}

/// Sends commands to entities and waits for their replies.
#[async_trait]
pub trait EntityClient: Send + Sync + 'static {
    /// Asks `to` to run `cmd`; the reply comes after any change it made is durable.
    async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError>;
    /// Asks `to` to run `cmd` as message `msg_id`: the entity records the id with its change,
    /// so a repeat of the same id takes effect once (it is answered `Reply::Duplicate`).
    async fn ask_once(
        &self,
        to: EntityRef,
        cmd: Command,
        msg_id: String,
    ) -> Result<Reply, AskError>;
}
