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
    bincode::serde::decode_from_slice(bytes, config())
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
}
