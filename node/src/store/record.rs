//! What is stored: versioned records with the entity's sequence number and the shard epoch.

use agora_actors::host::EntityState;
use agora_actors::OutboxMessage;
use serde::{Deserialize, Serialize};

/// Format version of records written by this build. 2: carts hold the lines of checkouts in
/// flight, products have attributes and can be archived. 3: applied-message marks live in
/// the entities table beside their entity (no separate dedup table); outbox keys are
/// `seq | shard`; accounts hold sign-in security (lockout, refresh token hashes) and a fuller
/// profile; inboxes hold the contact, and notification calls carry the rendered message.
/// Review boards are a new entity kind (command and state variant); orders carry the chosen shipping and their refunds,
/// accounts their wallet top-ups.
pub const FORMAT_VERSION: u16 = 3;

/// An entity's stored state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityRecord {
    /// Format version.
    pub format: u16,
    /// The entity's sequence number: one more for every stored change.
    pub seq: u64,
    /// The shard epoch it was written under.
    pub epoch: u64,
    /// When it was written (ms since epoch).
    pub written_at_ms: u64,
    /// The state.
    pub state: EntityState,
}

/// An outbox row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Format version.
    pub format: u16,
    /// The shard epoch it was written under.
    pub epoch: u64,
    /// The message.
    pub message: OutboxMessage,
}

/// A message that could not be delivered and will not be retried.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Format version.
    pub format: u16,
    /// When it was given up (ms since epoch).
    pub at_ms: u64,
    /// Why.
    pub reason: String,
    /// The message.
    pub message: OutboxMessage,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes any record with bincode 2.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, super::StoreError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| super::StoreError::Codec(e.to_string()))
}

/// Decodes any record; a record from a newer format is refused, never misread.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, super::StoreError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|e| super::StoreError::Codec(e.to_string()))
}
