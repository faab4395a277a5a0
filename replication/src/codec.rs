//! Group records as stored and sent: a format byte, then bincode 2, always decoded with a
//! size limit so a bad length prefix can never make the node allocate without bound.

use crate::ReplicationError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Format version written before every stored group record.
const FORMAT: u8 = 1;

/// The largest record or RPC decoded (a batch of appended entries, or a snapshot chunk).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ReplicationError> {
    let mut out = vec![FORMAT];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| ReplicationError::Codec(e.to_string()))?;
    Ok(out)
}

/// Decodes a record; a wrong format byte, garbage or an oversized length is an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ReplicationError> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => bincode::serde::decode_from_slice(body, config())
            .map(|(v, _)| v)
            .map_err(|e| ReplicationError::Codec(e.to_string())),
        Some((f, _)) => Err(ReplicationError::Codec(format!(
            "replication record format {f} is not {FORMAT}"
        ))),
        None => Err(ReplicationError::Codec("empty replication record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let v = (7u32, vec![1u8, 2, 3], "x".to_string());
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u32, Vec<u8>, String)>(&bytes).unwrap(), v);
        assert!(decode::<(u32, Vec<u8>, String)>(&[]).is_err());
        assert!(decode::<(u32, Vec<u8>, String)>(&[9, 1, 2]).is_err());
        assert!(decode::<(u32, Vec<u8>, String)>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_allocating() {
        // A Vec<u8> whose varint length claims u64::MAX bytes.
        let mut bytes = vec![FORMAT, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
