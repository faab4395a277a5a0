//! Product: one catalog entry, keyed by SKU. An admin creates it, updates its details and
//! archives it; an archived product is kept (orders and carts still name it) but is no longer
//! sold, listed or updated.

use crate::command::Reply;
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::{
    valid_text, MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_LEN, MAX_NAME_LEN, MAX_PRICE_MINOR, MAX_TEXT_LEN,
};
use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Free-form attributes (name → value), such as `color` or `brand`; searchable.
    pub attributes: BTreeMap<String, String>,
}

/// The stored state of a product (None until created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    /// The details, once created.
    pub details: Option<ProductDetails>,
    /// When it was created (ms since epoch).
    pub created_at_ms: u64,
    /// When its details last changed (ms since epoch; the creation time until updated).
    pub updated_at_ms: u64,
    /// When it was archived (ms since epoch); `None` while it is sold.
    pub archived_at_ms: Option<u64>,
}

impl ProductState {
    /// Whether the product exists and is sold (created and not archived).
    pub fn is_active(&self) -> bool {
        self.details.is_some() && self.archived_at_ms.is_none()
    }
}

/// A partial update of a product's details: each field present replaces the current value
/// (`attributes` replaces the whole map).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New attributes (replacing all of them).
    pub attributes: Option<BTreeMap<String, String>>,
    /// New unit price.
    pub price: Option<Money>,
}

impl ProductPatch {
    /// Whether the patch changes nothing at all (no field present).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.category.is_none()
            && self.attributes.is_none()
            && self.price.is_none()
    }

    /// `details` with this patch applied.
    pub fn apply_to(&self, details: &ProductDetails) -> ProductDetails {
        let mut d = details.clone();
        if let Some(v) = &self.name {
            d.name = v.clone();
        }
        if let Some(v) = &self.description {
            d.description = v.clone();
        }
        if let Some(v) = &self.category {
            d.category = v.clone();
        }
        if let Some(v) = &self.attributes {
            d.attributes = v.clone();
        }
        if let Some(v) = &self.price {
            d.price = v.clone();
        }
        d
    }
}

/// Commands for a Product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductCommand {
    /// Create the product (admin).
    Create(ProductDetails),
    /// Read it (archived products too: the view says so).
    Get,
    /// Change some of its details (admin); refused once archived.
    Update(ProductPatch),
    /// `Update`, only if the product is still at one of these versions (`ProductView::etag`,
    /// an HTTP `If-Match`): refused with `PreconditionFailed` otherwise, so two admins editing
    /// at once never silently overwrite each other.
    UpdateIfMatch {
        /// The change.
        patch: ProductPatch,
        /// The versions the editor read; any one will do.
        etags: Vec<String>,
    },
    /// Stop selling it (admin); archiving an archived product changes nothing.
    Archive,
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
    /// Last change of the details.
    pub updated_at_ms: u64,
    /// When it was archived, if it was.
    pub archived_at_ms: Option<u64>,
}

impl ProductView {
    /// This version's entity tag (a quoted string, as HTTP's `ETag` carries it): it changes
    /// whenever the details or the archived state do.
    pub fn etag(&self) -> String {
        crate::etag::of(&(&self.details, self.updated_at_ms, self.archived_at_ms))
    }

    /// Whether the product was archived (no longer sold).
    pub fn is_archived(&self) -> bool {
        self.archived_at_ms.is_some()
    }
}

/// Whether `key` is a valid attribute name: 1..=64 of `a-z 0-9 _ -`.
pub fn valid_attribute_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_ATTRIBUTE_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Validates a product's attributes (also used by the edge before it asks).
pub fn validate_attributes(attributes: &BTreeMap<String, String>) -> Result<(), DomainError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (k, v) in attributes {
        if !valid_attribute_key(k) {
            return Err(invalid(
                "attributes",
                format!("names are 1..={MAX_ATTRIBUTE_KEY_LEN} of a-z, 0-9, _ and -"),
            ));
        }
        if v.trim().is_empty() || !valid_text(v, MAX_NAME_LEN) {
            return Err(invalid(
                &format!("attributes.{k}"),
                format!("1..={MAX_NAME_LEN} printable characters"),
            ));
        }
    }
    Ok(())
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
    validate_attributes(&d.attributes)
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
            s.updated_at_ms = ctx.now_ms;
        }
        ProductCommand::Get => {}
        ProductCommand::UpdateIfMatch { patch, etags } => {
            let current = view(s, ctx).map(|v| v.etag());
            if !current.as_ref().is_some_and(|tag| etags.contains(tag)) {
                return Err(DomainError::PreconditionFailed(format!(
                    "product {} changed since it was read (now {})",
                    ctx.me.id,
                    current.as_deref().unwrap_or("gone")
                )));
            }
            return handle(s, ProductCommand::Update(patch), ctx);
        }
        ProductCommand::Update(patch) => {
            let Some(current) = &s.details else {
                return Err(DomainError::NotFound(format!("product {}", ctx.me.id)));
            };
            if s.archived_at_ms.is_some() {
                return Err(DomainError::Conflict(format!(
                    "product {} is archived",
                    ctx.me.id
                )));
            }
            let next = patch.apply_to(current);
            validate(&next)?;
            if &next != current {
                s.details = Some(next);
                s.updated_at_ms = ctx.now_ms;
            }
        }
        ProductCommand::Archive => {
            if s.details.is_none() {
                return Err(DomainError::NotFound(format!("product {}", ctx.me.id)));
            }
            if s.archived_at_ms.is_none() {
                s.archived_at_ms = Some(ctx.now_ms);
            }
        }
    }
    match view(s, ctx) {
        Some(v) => reply(Reply::Product(v)),
        None => Err(DomainError::NotFound(format!("product {}", ctx.me.id))),
    }
}

/// The product as the API shows it, once created.
fn view(s: &ProductState, ctx: &Ctx) -> Option<ProductView> {
    s.details.as_ref().map(|d| ProductView {
        sku: ctx.me.id.clone(),
        details: d.clone(),
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        archived_at_ms: s.archived_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::{EntityKind, EntityRef};

    fn run(
        s: &mut ProductState,
        cmd: ProductCommand,
        now_ms: u64,
    ) -> Result<ProductView, DomainError> {
        let me = EntityRef::new(EntityKind::Product, "SKU-1");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(now_ms, &me, 1, &cfg);
        let mut work = s.clone();
        let r = handle(&mut work, cmd, &mut ctx)?;
        *s = work;
        match r {
            Outcome::Reply(Reply::Product(v)) => Ok(v),
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    fn details() -> ProductDetails {
        ProductDetails {
            name: "Kettle".into(),
            description: "Boils water".into(),
            category: "kitchen".into(),
            price: Money::shop(1_000),
            attributes: BTreeMap::from([("color".to_string(), "red".to_string())]),
        }
    }

    #[test]
    fn an_update_if_match_applies_only_to_the_version_the_editor_read() {
        let mut s = ProductState::default();
        let read = run(&mut s, ProductCommand::Create(details()), 10).unwrap();
        let rename = |name: &str, etags: Vec<String>| ProductCommand::UpdateIfMatch {
            patch: ProductPatch {
                name: Some(name.into()),
                ..ProductPatch::default()
            },
            etags,
        };
        // The first editor wins; its answer carries a new version.
        let first = run(&mut s, rename("Kettle 2", vec![read.etag()]), 20).unwrap();
        assert_ne!(first.etag(), read.etag());
        assert_eq!(first.details.name, "Kettle 2");
        // The second read the same version: refused, and nothing changes.
        let second = run(&mut s, rename("Kettle 3", vec![read.etag()]), 30);
        assert!(
            matches!(second, Err(DomainError::PreconditionFailed(_))),
            "{second:?}"
        );
        let now = run(&mut s, ProductCommand::Get, 40).unwrap();
        assert_eq!(
            (now.details.name.as_str(), now.etag()),
            ("Kettle 2", first.etag())
        );
        // Any one of several tags matches; a product not yet created matches none.
        let third = run(
            &mut s,
            rename("Kettle 4", vec![read.etag(), now.etag()]),
            50,
        );
        assert_eq!(third.unwrap().details.name, "Kettle 4");
        let missing = run(
            &mut ProductState::default(),
            rename("x", vec![read.etag()]),
            60,
        );
        assert!(
            matches!(missing, Err(DomainError::PreconditionFailed(_))),
            "{missing:?}"
        );
    }

    #[test]
    fn update_changes_only_given_fields_and_validates() {
        let mut s = ProductState::default();
        run(&mut s, ProductCommand::Create(details()), 10).unwrap();
        let v = run(
            &mut s,
            ProductCommand::Update(ProductPatch {
                price: Some(Money::shop(2_000)),
                ..ProductPatch::default()
            }),
            20,
        )
        .unwrap();
        assert_eq!(v.details.price.amount_minor, 2_000);
        assert_eq!(v.details.name, "Kettle");
        assert_eq!((v.created_at_ms, v.updated_at_ms), (10, 20));

        let before = s.clone();
        let bad = ProductPatch {
            category: Some("Not A Slug".into()),
            ..ProductPatch::default()
        };
        assert!(matches!(
            run(&mut s, ProductCommand::Update(bad), 30),
            Err(DomainError::Invalid { .. })
        ));
        let bad_attr = ProductPatch {
            attributes: Some(BTreeMap::from([("Bad Key".to_string(), "x".to_string())])),
            ..ProductPatch::default()
        };
        assert!(run(&mut s, ProductCommand::Update(bad_attr), 30).is_err());
        assert_eq!(s, before, "a refused update changes nothing");

        // The same values again: nothing changes, not even the update time.
        let same = ProductPatch {
            price: Some(Money::shop(2_000)),
            ..ProductPatch::default()
        };
        assert_eq!(
            run(&mut s, ProductCommand::Update(same), 40)
                .unwrap()
                .updated_at_ms,
            20
        );
    }

    #[test]
    fn archive_is_idempotent_and_freezes_the_product() {
        let mut s = ProductState::default();
        assert!(matches!(
            run(&mut s, ProductCommand::Archive, 1),
            Err(DomainError::NotFound(_))
        ));
        run(&mut s, ProductCommand::Create(details()), 10).unwrap();
        assert!(s.is_active());
        let v = run(&mut s, ProductCommand::Archive, 20).unwrap();
        assert_eq!(v.archived_at_ms, Some(20));
        assert!(!s.is_active());
        let again = run(&mut s, ProductCommand::Archive, 30).unwrap();
        assert_eq!(
            again.archived_at_ms,
            Some(20),
            "the first archive time stays"
        );
        assert!(matches!(
            run(
                &mut s,
                ProductCommand::Update(ProductPatch {
                    name: Some("New".into()),
                    ..ProductPatch::default()
                }),
                40
            ),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            run(&mut s, ProductCommand::Create(details()), 50),
            Err(DomainError::AlreadyExists(_))
        ));
        assert!(run(&mut s, ProductCommand::Get, 60).unwrap().is_archived());
    }

    #[test]
    fn attribute_limits() {
        let mut d = details();
        d.attributes = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(validate(&d).is_err());
        d.attributes = BTreeMap::from([("brand".to_string(), " ".to_string())]);
        assert!(validate(&d).is_err());
        d.attributes = BTreeMap::from([("brand".to_string(), "Acme\u{0}".to_string())]);
        assert!(validate(&d).is_err());
        d.attributes = BTreeMap::from([("brand".to_string(), "Acme".to_string())]);
        assert!(validate(&d).is_ok());
    }
}
