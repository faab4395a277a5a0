//! Cursor pagination of the lists that grow without a cap (orders, notifications, reviews):
//! `limit` and an opaque `cursor` in, `items` and `next_cursor` out. A cursor is the hex
//! text of a version byte, the list's tag and the position to continue from (big-endian
//! `u64`s); clients only hand back what they were given, and anything else is a 400.

use crate::problem::Problem;
use agora_actors::hex;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 100;

/// The cursor format this build writes and reads.
const CURSOR_VERSION: u8 = 1;
/// The longest cursor text accepted (a version, a tag and two `u64`s, in hex).
const MAX_CURSOR_LEN: usize = 2 * (2 + 2 * 8);

/// The list a cursor walks: a cursor from one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorList {
    /// `GET /api/v1/orders`: the position to read before.
    Orders,
    /// `GET /api/v1/notifications`: the position to read before.
    Notifications,
    /// `GET /api/v1/products/{sku}/reviews`: the last review's creation time and id.
    Reviews,
}

impl CursorList {
    fn tag(self) -> u8 {
        match self {
            CursorList::Orders => b'o',
            CursorList::Notifications => b'n',
            CursorList::Reviews => b'r',
        }
    }
}

/// Checks `limit`: absent is `DEFAULT_LIMIT`, otherwise 1..=`MAX_LIMIT` (a 422 naming it).
pub fn limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Problem::invalid("limit", format!("1..={MAX_LIMIT}"))),
    }
}

/// The cursor that continues `list` from `values`.
pub fn encode<const N: usize>(list: CursorList, values: [u64; N]) -> String {
    let mut bytes = vec![CURSOR_VERSION, list.tag()];
    for v in values {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    hex::encode(&bytes)
}

/// The values of a cursor of `list`; a 400 naming `cursor` for anything this build did not
/// give out for that list.
pub fn decode<const N: usize>(list: CursorList, cursor: &str) -> Result<[u64; N], Problem> {
    let bad = || {
        Problem::bad_request("cursor: not a cursor of this list; use a next_cursor as given")
            .with("field", "cursor")
    };
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let bytes = hex::decode(cursor).ok_or_else(bad)?;
    let (head, rest) = bytes.split_at_checked(2).ok_or_else(bad)?;
    if head != [CURSOR_VERSION, list.tag()] || rest.len() != 8 * N {
        return Err(bad());
    }
    let mut values = [0u64; N];
    for (v, chunk) in values.iter_mut().zip(rest.chunks_exact(8)) {
        *v = u64::from_be_bytes(chunk.try_into().map_err(|_| bad())?);
    }
    Ok(values)
}

/// The page size and the position to read before, of a list walked by position.
pub fn by_position(
    list: CursorList,
    limit_param: Option<usize>,
    cursor: Option<&str>,
) -> Result<(usize, Option<u64>), Problem> {
    let n = limit(limit_param)?;
    let before = match cursor {
        Some(c) => Some(decode::<1>(list, c)?[0]),
        None => None,
    };
    Ok((n, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn a_cursor_round_trips_only_in_its_own_list() {
        let c = encode(CursorList::Orders, [230]);
        assert_eq!(decode::<1>(CursorList::Orders, &c).unwrap(), [230]);
        assert!(decode::<1>(CursorList::Notifications, &c).is_err());
        let r = encode(CursorList::Reviews, [u64::MAX, 7]);
        assert_eq!(decode::<2>(CursorList::Reviews, &r).unwrap(), [u64::MAX, 7]);
        assert!(decode::<1>(CursorList::Reviews, &r).is_err());
    }

    #[test]
    fn a_malformed_cursor_is_a_400_naming_it() {
        let good = encode(CursorList::Orders, [5]);
        let long = "0".repeat(10_000);
        for bad in [
            "",
            "zz",
            "abc",
            "0",
            &good[..good.len() - 2],
            &format!("{good}00"),
            &good.replace("01", "02"),
            "\u{e9}\u{e9}",
            &long,
        ] {
            let p = decode::<1>(CursorList::Orders, bad).unwrap_err();
            assert_eq!(p.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(p.extra["field"], "cursor");
        }
    }

    #[test]
    fn limits_default_and_stay_in_range() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        for bad in [0, MAX_LIMIT + 1, usize::MAX] {
            let p = limit(Some(bad)).unwrap_err();
            assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(p.extra["field"], "limit");
        }
        assert_eq!(
            by_position(CursorList::Orders, None, None).unwrap(),
            (DEFAULT_LIMIT, None)
        );
    }
}
