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
/// accounts their wallet top-ups. 4: a card is held by the gateway's reference
/// (`Method::Card`: token, last four digits, fingerprint), never by its number; format 3's
/// raw numbers are replaced at start by the migration in `migrate`.
pub const FORMAT_VERSION: u16 = 4;

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

/// The largest record decoded: a length prefix claiming more (a corrupt record) is refused
/// before anything is allocated for it.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes any record with bincode 2.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, super::StoreError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| super::StoreError::Codec(e.to_string()))
}

/// Encodes an `EntityRecord` around a state already encoded (as `HeldState` holds it): the
/// same bytes as encoding the whole record, without copying the state to build one.
pub fn encode_entity_record(
    seq: u64,
    epoch: u64,
    written_at_ms: u64,
    state: &[u8],
) -> Result<Vec<u8>, super::StoreError> {
    // A struct encodes as its fields in order, so the header fields as a tuple followed by
    // the state's own encoding is the record's encoding.
    let mut out = Vec::with_capacity(32 + state.len());
    bincode::serde::encode_into_std_write(
        (FORMAT_VERSION, seq, epoch, written_at_ms),
        &mut out,
        config(),
    )
    .map_err(|e| super::StoreError::Codec(e.to_string()))?;
    out.extend_from_slice(state);
    Ok(out)
}

/// Decodes any record; a record from a newer format is refused, never misread.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, super::StoreError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|e| super::StoreError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::history::Recent;
    use agora_actors::host::HeldState;
    use agora_actors::inbox::{Channel, InboxState, Notification};

    #[test]
    fn a_record_around_a_held_encoding_is_the_record_encoded_whole() {
        let state = EntityState::Inbox(InboxState {
            items: Recent {
                sealed_pages: 0,
                newest: vec![Notification {
                    channel: Channel::Email,
                    kind: "ORDER_PLACED".into(),
                    order_id: "o-1".into(),
                    at_ms: 7,
                }],
            },
            ..InboxState::default()
        });
        let held = HeldState::new(state.clone()).unwrap();
        let whole = encode(&EntityRecord {
            format: FORMAT_VERSION,
            seq: 300,
            epoch: 2,
            written_at_ms: 1_700_000_000_000,
            state,
        })
        .unwrap();
        let built = encode_entity_record(300, 2, 1_700_000_000_000, held.encoded()).unwrap();
        assert_eq!(built, whole);
        let back: EntityRecord = decode(&built).unwrap();
        assert_eq!((back.seq, back.epoch), (300, 2));
        assert_eq!(&back.state, held.state());
    }
}
