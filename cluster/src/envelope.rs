//! The versioned envelope an entity message travels in between nodes (serde + bincode 2).
//! A message that fails to decode becomes an error reply, never a panic.

use agora_actors::client::AskError;
use agora_actors::{Command, DomainError, EntityRef, Reply};
use serde::{Deserialize, Serialize};

/// Envelope format version.
pub const ENVELOPE_VERSION: u16 = 1;

/// What an envelope carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Payload {
    /// One command (an edge request, or a relayed message with its id).
    Request {
        /// The command.
        cmd: Command,
        /// The message id, for dedup.
        msg_id: Option<String>,
    },
    /// Relayed messages for one entity, stored in one write.
    Batch(Vec<(Command, String)>),
}

/// A message for an entity on another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version.
    pub version: u16,
    /// The sending node.
    pub from_node: u64,
    /// The node it is meant for (the owner in the sender's shard map).
    pub to_node: u64,
    /// The target entity.
    pub target: EntityRef,
    /// The target's shard.
    pub shard: u32,
    /// The shard-map epoch the sender routed under.
    pub epoch: u64,
    /// Correlates logs across nodes.
    pub correlation: u64,
    /// Give up after this time (ms since epoch).
    pub deadline_ms: u64,
    /// The message.
    pub payload: Payload,
}

/// What comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReplyPayload {
    /// The reply to a request.
    Reply(Reply),
    /// Per-message results of a batch.
    Batch(Vec<Result<(), DomainError>>),
}

/// A reply on the wire.
pub type WireReply = Result<ReplyPayload, AskError>;

/// The most one decoded cluster message may allocate. Messages arrive in frames of at most
/// `cluster_connections.max_frame_bytes` (16 MiB by default; a handoff's whole shard travels
/// in one), and decoding may allocate a few times a frame's bytes (containers of small
/// items), hence the margin; a length prefix claiming more is refused before anything is
/// allocated for it.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes any wire value.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AskError> {
    bincode::serde::encode_to_vec(v, config())
        .map_err(|e| AskError::Unavailable(format!("cannot encode: {e}")))
}

/// Decodes any wire value; garbage is an error, never a panic.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, AskError> {
    decode_within::<T, MAX_MESSAGE_BYTES>(bytes)
}

/// Decodes a wire value of at most `LIMIT` bytes.
fn decode_within<T: for<'de> Deserialize<'de>, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, AskError> {
    bincode::serde::decode_from_slice(bytes, config().with_limit::<LIMIT>())
        .map(|(v, _)| v)
        .map_err(|e| AskError::Unavailable(format!("cannot decode a cluster message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::stock::StockCommand;
    use agora_actors::EntityKind;

    #[test]
    fn envelopes_round_trip_and_garbage_is_an_error() {
        let e = Envelope {
            version: ENVELOPE_VERSION,
            from_node: 1,
            to_node: 2,
            target: EntityRef::new(EntityKind::StockItem, "S"),
            shard: 3,
            epoch: 1,
            correlation: 9,
            deadline_ms: 10,
            payload: Payload::Request {
                cmd: Command::Stock(StockCommand::Get),
                msg_id: None,
            },
        };
        let back: Envelope = decode(&encode(&e).unwrap()).unwrap();
        assert_eq!(back.target, e.target);
        assert!(decode::<Envelope>(&[0xff, 0x00, 0x13]).is_err());
        let r: WireReply = Err(AskError::Overloaded);
        let back: WireReply = decode(&encode(&r).unwrap()).unwrap();
        assert_eq!(back.unwrap_err(), AskError::Overloaded);
    }

    #[test]
    fn a_message_over_the_limit_is_refused() {
        let bytes = encode(&vec![7u8; 1000]).unwrap();
        assert!(decode_within::<Vec<u8>, 2000>(&bytes).is_ok());
        assert!(decode_within::<Vec<u8>, 500>(&bytes).is_err());
        // A length prefix claiming u64::MAX bytes is refused, not allocated.
        let mut huge = vec![253u8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&huge).is_err());
        assert!(decode::<String>(&huge).is_err());
    }
}
