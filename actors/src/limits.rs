//! Limits on every input, shared by the domain and the edge.

/// Longest accepted SKU.
pub const MAX_SKU_LEN: usize = 64;
/// Longest accepted short text (names, cities, categories).
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted long text (descriptions).
pub const MAX_TEXT_LEN: usize = 4000;
/// Largest quantity of one SKU in a cart line or an order line.
pub const MAX_LINE_QUANTITY: u32 = 100;
/// Most distinct lines in a cart.
pub const MAX_CART_LINES: usize = 50;
/// Largest quantity received or written off in one call.
pub const MAX_STOCK_MOVE: u64 = 1_000_000;
/// Largest unit price in minor units (10 million in major units).
pub const MAX_PRICE_MINOR: u64 = 1_000_000_000;
/// Largest amount of money in one charge, refund or sum of them, in minor units: above any
/// order (`MAX_CART_LINES` lines of `MAX_LINE_QUANTITY` at `MAX_PRICE_MINOR`, plus shipping),
/// and small enough that adding a few thousand of them never overflows a `u64`.
pub const MAX_AMOUNT_MINOR: u64 = 10_000_000_000_000;
const _: () =
    assert!(MAX_AMOUNT_MINOR > MAX_PRICE_MINOR * MAX_LINE_QUANTITY as u64 * MAX_CART_LINES as u64);
/// Most attributes on one product.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest attribute name (1..=64 of `a-z 0-9 _ -`).
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
/// Most saved addresses on a profile.
pub const MAX_SAVED_ADDRESSES: usize = 5;
/// Longest saved-address label.
pub const MAX_ADDRESS_LABEL_LEN: usize = 40;
/// Longest review title.
pub const MAX_REVIEW_TITLE_LEN: usize = 120;
/// Longest review text.
pub const MAX_REVIEW_BODY_LEN: usize = 4000;
/// Order ids in one sealed page of a shopper's order history; the account keeps at most two
/// pages' worth of the newest itself (100, as many as it kept before pages). Nothing is
/// dropped: older ids live in page entities (`history`).
pub const ORDER_PAGE_LEN: usize = 50;
/// Notifications in one sealed page of an inbox's history; the inbox keeps at most two
/// pages' worth of the newest itself (50, as many as it kept before pages).
pub const NOTIFICATION_PAGE_LEN: usize = 25;

/// Entries of a product's review index in one sealed page; the board keeps at most two
/// pages' worth of the newest itself. Nothing is dropped: older entries live in page
/// entities (`history`), the reviews themselves in their slots (`review_slot`).
pub const REVIEW_PAGE_LEN: usize = 100;

/// Whether `sku` is a valid SKU: 1..=64 of `A-Z a-z 0-9 - _ .`.
pub fn valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= MAX_SKU_LEN
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `s` is acceptable free text: at most `max` characters, no control characters
/// other than newline and tab.
pub fn valid_text(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}
