//! Product: one catalog entry, keyed by SKU.

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::{valid_text, MAX_NAME_LEN, MAX_PRICE_MINOR, MAX_TEXT_LEN};
use crate::money::Money;
use serde::{Deserialize, Serialize};

/// A product's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    /// Display name.
    pub name: String,
    /// Long description.
    pub description: String,
    /// Category slug.
    pub category: String,
    /// Unit price.
    pub price: Money,
}

/// The stored state of a product (None until created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    /// The details, once created.
    pub details: Option<ProductDetails>,
    /// When it was created (ms since epoch).
    pub created_at_ms: u64,
}

/// Commands for a Product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductCommand {
    /// Create the product (admin).
    Create(ProductDetails),
    /// Read it.
    Get,
}

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    /// The SKU.
    pub sku: String,
    /// Details.
    pub details: ProductDetails,
    /// Creation time.
    pub created_at_ms: u64,
}

/// Validates product details (also used by the edge before it asks).
pub fn validate(d: &ProductDetails) -> Result<(), DomainError> {
    if d.name.trim().is_empty() || !valid_text(&d.name, MAX_NAME_LEN) {
        return Err(invalid(
            "name",
            format!("1..={MAX_NAME_LEN} printable characters"),
        ));
    }
    if !valid_text(&d.description, MAX_TEXT_LEN) {
        return Err(invalid(
            "description",
            format!("at most {MAX_TEXT_LEN} characters"),
        ));
    }
    let cat_ok = !d.category.is_empty()
        && d.category.len() <= 64
        && d.category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !cat_ok {
        return Err(invalid("category", "1..=64 of a-z, 0-9 and -"));
    }
    if d.price.currency != crate::money::SHOP_CURRENCY {
        return Err(invalid(
            "price.currency",
            format!("must be {}", crate::money::SHOP_CURRENCY),
        ));
    }
    if d.price.amount_minor == 0 || d.price.amount_minor > MAX_PRICE_MINOR {
        return Err(invalid(
            "price.amount_minor",
            format!("must be 1..={MAX_PRICE_MINOR}"),
        ));
    }
    Ok(())
}

/// Handles one command.
pub fn handle(
    s: &mut ProductState,
    cmd: ProductCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        ProductCommand::Create(d) => {
            validate(&d)?;
            if s.details.is_some() {
                return Err(DomainError::AlreadyExists(format!("product {}", ctx.me.id)));
            }
            s.details = Some(d);
            s.created_at_ms = ctx.now_ms;
        }
        ProductCommand::Get => {}
    }
    match &s.details {
        Some(d) => reply(Reply::Product(ProductView {
            sku: ctx.me.id.clone(),
            details: d.clone(),
            created_at_ms: s.created_at_ms,
        })),
        None => Err(DomainError::NotFound(format!("product {}", ctx.me.id))),
    }
}
