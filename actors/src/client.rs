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
    /// The node asked does not serve the target's shard now and delivered nothing, so the
    /// ask may be sent again: to `leader` when that node knows who serves it.
    #[error("entity unavailable: {why}")]
    NotServedHere {
        /// Why, for the caller (turned into the 503's detail if no retry succeeds).
        why: String,
        /// The node that serves the shard, as the refusing node knows it.
        leader: Option<u64>,
    },
}

impl AskError {
    /// A refusal that delivered nothing because `me` does not serve the shard now.
    pub fn not_served_here(why: impl Into<String>, leader: Option<u64>) -> Self {
        AskError::NotServedHere {
            why: why.into(),
            leader,
        }
    }
}

/// A change handed to this node's storage that may not be durable yet (from
/// [`EntityClient::ask_early`]). A later ask that depends on it names it
/// ([`EntityClient::ask_after`]): that ask's change is then refused if this one is, and its
/// reply comes only once both are durable.
#[derive(Default)]
pub struct Pending {
    /// The change's ticket on this node; 0 when it is durable already.
    pub ticket: u64,
    /// Keeps this node's next commit waiting until the dependent change is handed over (so
    /// both share one fsync); dropped when it is, or when the caller gives up.
    pub hold: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("ticket", &self.ticket)
            .field("hold", &self.hold.is_some())
            .finish()
    }
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

    /// Asks `to` to run `cmd` and answers as soon as its change is handed to storage, with
    /// the change still [`Pending`] (durable at once where early answers are not offered).
    /// The caller must not tell anyone outside the reply before the change is durable: it
    /// passes it to [`EntityClient::ask_after`] or waits with [`EntityClient::durable`].
    async fn ask_early(&self, to: EntityRef, cmd: Command) -> Result<(Reply, Pending), AskError> {
        Ok((self.ask(to, cmd).await?, Pending::default()))
    }

    /// Like [`EntityClient::ask`], for a command derived from the change `after`: its change
    /// is refused if `after` is, and the reply comes once both are durable.
    async fn ask_after(
        &self,
        to: EntityRef,
        cmd: Command,
        after: Pending,
    ) -> Result<Reply, AskError> {
        self.durable(after).await?;
        self.ask(to, cmd).await
    }

    /// Waits until the change is durable; an error if it was refused or the store failed.
    async fn durable(&self, change: Pending) -> Result<(), AskError> {
        let _ = change;
        Ok(())
    }
}
