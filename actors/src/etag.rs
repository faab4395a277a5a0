//! Entity tags: the version of what an editor read, compared when it edits (HTTP `ETag` and
//! `If-Match`).

use serde::Serialize;

/// The tag of `version` (plain data: strings, numbers, sorted maps), as a quoted string.
pub fn of<T: Serialize>(version: &T) -> String {
    // Serialising plain data cannot fail; were it to, every version would share one tag and
    // an `If-Match` would simply never refuse.
    let bytes = serde_json::to_vec(version).unwrap_or_default();
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes))
}
