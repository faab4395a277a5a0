//! Record format 3 → 4: raw card numbers (`Method::LegacyCardNumber`) in entity states,
//! outbox and dead-letter messages and replication log entries are replaced with the
//! gateway's card references, in one transaction that also records format 4.
//!
//! The rewrite is a pure function of each row and of the card references, which the gateway
//! makes deterministically (the same number gives the same reference on every node), so every
//! replica of a shard that migrates its own rows holds the same bytes afterwards, and a log
//! entry applied after the migration writes the same rows everywhere.

use crate::record::{self, DeadLetter, EntityRecord, OutboxRecord, FORMAT_VERSION};
use crate::{keys, StoreError, DEAD_LETTERS, ENTITIES, GROUP_LOG, META, OUTBOX};
use agora_actors::card::CardRef;
use agora_actors::legacy::{message_method_mut, state_method_mut};
use agora_actors::payment::Method;
use redb::{ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};

/// The record format whose card numbers this migration replaces.
pub const FROM_FORMAT: u16 = 3;
/// Metadata name of the store's record format (big-endian u16).
pub const META_STORE_FORMAT: &str = "store_format";

/// Gives the card reference of a raw card number.
pub type Tokenise<'a> = dyn FnMut(&str) -> Result<CardRef, StoreError> + 'a;

/// What a row of a shard table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A row of the entities table (a record, or an applied-message mark).
    Entity,
    /// An outbox row.
    Outbox,
}

/// Rewrites one row (kind, key, value): the new value, or `None` when it holds no number.
pub type RowRewrite<'a> =
    dyn FnMut(RowKind, &[u8], &[u8]) -> Result<Option<Vec<u8>>, StoreError> + 'a;

/// Rewrites a replication log entry's rows with the given row rewrite: the new entry, or
/// `None` when none of its rows changed (the replication crate knows the entry's encoding).
pub type LogRewrite = dyn Fn(&[u8], &mut RowRewrite) -> Result<Option<Vec<u8>>, StoreError>;

/// Replaces a raw card number in `method` (if any) through `tokenise`.
fn tokenise_method(
    method: Option<&mut Method>,
    tokenise: &mut Tokenise,
) -> Result<bool, StoreError> {
    match method {
        Some(m) => m.tokenise_legacy(tokenise),
        None => Ok(false),
    }
}

/// The record `value` (of type `T`, whose method and format `parts` finds) with its card
/// number replaced and its format moved on, or `None` when it holds none.
fn rewrite_record<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &[u8],
    tokenise: &mut Tokenise,
    parts: fn(&mut T) -> (Option<&mut Method>, &mut u16),
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut r: T = record::decode(value)?;
    let (method, format) = parts(&mut r);
    if !tokenise_method(method, tokenise)? {
        return Ok(None);
    }
    *format = FORMAT_VERSION;
    record::encode(&r).map(Some)
}

/// The row `value` at `key` with its card number replaced, or `None` when it holds none.
pub fn rewrite_row(
    kind: RowKind,
    key: &[u8],
    value: &[u8],
    tokenise: &mut Tokenise,
) -> Result<Option<Vec<u8>>, StoreError> {
    match kind {
        RowKind::Entity if keys::is_dedup_key(key) => Ok(None),
        RowKind::Entity => rewrite_record(value, tokenise, |r: &mut EntityRecord| {
            (state_method_mut(&mut r.state), &mut r.format)
        }),
        RowKind::Outbox => rewrite_record(value, tokenise, |r: &mut OutboxRecord| {
            (message_method_mut(&mut r.message), &mut r.format)
        }),
    }
}

/// Rows to write back, as (key, value).
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Rewrites one row of a known table (key, value): the new value, or `None`.
type TableRewrite<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Option<Vec<u8>>, StoreError> + 'a;

/// Rows to write back: by key, per table.
#[derive(Default)]
struct Changes {
    entities: Rows,
    outbox: Rows,
    group_log: Rows,
    dead_letters: Vec<(u64, Vec<u8>)>,
}

impl Changes {
    fn len(&self) -> usize {
        self.entities.len() + self.outbox.len() + self.group_log.len() + self.dead_letters.len()
    }
}

/// The rows of `table` that `rewrite` changes.
fn changed_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    rewrite: &mut TableRewrite,
) -> Result<Rows, StoreError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if let Some(new) = rewrite(k.value(), v.value())? {
            out.push((k.value().to_vec(), new));
        }
    }
    Ok(out)
}

/// The tables a pass reads (of a read or a write transaction).
struct Tables<'a, B, D> {
    entities: &'a B,
    outbox: &'a B,
    group_log: &'a B,
    dead_letters: &'a D,
}

/// Every row of `t` that holds a raw card number, rewritten through `tokenise`.
fn changes<B, D>(
    t: &Tables<B, D>,
    tokenise: &mut Tokenise,
    log: &LogRewrite,
) -> Result<Changes, StoreError>
where
    B: ReadableTable<&'static [u8], &'static [u8]>,
    D: ReadableTable<u64, &'static [u8]>,
{
    let mut row = |kind, k: &[u8], v: &[u8]| rewrite_row(kind, k, v, tokenise);
    let entities = changed_in(t.entities, &mut |k, v| row(RowKind::Entity, k, v))?;
    let outbox = changed_in(t.outbox, &mut |k, v| row(RowKind::Outbox, k, v))?;
    let group_log = changed_in(t.group_log, &mut |_, v| log(v, &mut row))?;
    let mut out = Changes {
        entities,
        outbox,
        group_log,
        dead_letters: Vec::new(),
    };
    for r in t.dead_letters.iter()? {
        let (k, v) = r?;
        let rewritten = rewrite_record(v.value(), tokenise, |d: &mut DeadLetter| {
            (message_method_mut(&mut d.message), &mut d.format)
        })?;
        if let Some(d) = rewritten {
            out.dead_letters.push((k.value(), d));
        }
    }
    Ok(out)
}

/// What a format-3 store holds of raw card numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyCards {
    /// Rows holding one (records, messages, log entries).
    pub rows: usize,
    /// The distinct numbers (to exchange for references before migrating).
    pub numbers: BTreeSet<String>,
}

/// The raw card numbers `store` holds (read only).
pub fn legacy_cards(store: &crate::Store, log: &LogRewrite) -> Result<LegacyCards, StoreError> {
    let tx = store.db().begin_read()?;
    let (entities, outbox) = (tx.open_table(ENTITIES)?, tx.open_table(OUTBOX)?);
    let (group_log, dead_letters) = (tx.open_table(GROUP_LOG)?, tx.open_table(DEAD_LETTERS)?);
    let tables = Tables {
        entities: &entities,
        outbox: &outbox,
        group_log: &group_log,
        dead_letters: &dead_letters,
    };
    let mut numbers = BTreeSet::new();
    let mut collect = |n: &str| {
        numbers.insert(n.to_string());
        Ok(CardRef {
            token: String::new(),
            last4: String::new(),
            fingerprint: String::new(),
        })
    };
    let rows = changes(&tables, &mut collect, log)?.len();
    Ok(LegacyCards { rows, numbers })
}

/// Migrates `store` to format 4 in one transaction: every row holding a raw card number is
/// rewritten with its reference from `cards`, progress is logged (k of N), no number may
/// remain (checked before the commit), and format 4 is recorded. Answers the rows rewritten.
pub fn migrate_cards(
    store: &crate::Store,
    cards: &BTreeMap<String, CardRef>,
    log: &LogRewrite,
) -> Result<usize, StoreError> {
    let mut by_number = |n: &str| {
        cards
            .get(n)
            .cloned()
            .ok_or_else(|| StoreError::Codec("a card number has no reference".into()))
    };
    let tx = store.db().begin_write()?;
    let done = {
        let mut entities = tx.open_table(ENTITIES)?;
        let mut outbox = tx.open_table(OUTBOX)?;
        let mut group_log = tx.open_table(GROUP_LOG)?;
        let mut dead_letters = tx.open_table(DEAD_LETTERS)?;
        let tables = Tables {
            entities: &entities,
            outbox: &outbox,
            group_log: &group_log,
            dead_letters: &dead_letters,
        };
        let found = changes(&tables, &mut by_number, log)?;
        let total = found.len();
        let mut k = 0usize;
        let mut progress = || {
            k += 1;
            if k == total || k.is_multiple_of(1_000) {
                tracing::info!(k, of = total, "format 4 migration: card numbers replaced");
            }
        };
        for (key, v) in &found.entities {
            entities.insert(key.as_slice(), v.as_slice())?;
            progress();
        }
        for (key, v) in &found.outbox {
            outbox.insert(key.as_slice(), v.as_slice())?;
            progress();
        }
        for (key, v) in &found.group_log {
            group_log.insert(key.as_slice(), v.as_slice())?;
            progress();
        }
        for (key, v) in &found.dead_letters {
            dead_letters.insert(*key, v.as_slice())?;
            progress();
        }
        let tables = Tables {
            entities: &entities,
            outbox: &outbox,
            group_log: &group_log,
            dead_letters: &dead_letters,
        };
        let mut refuse = |_: &str| -> Result<CardRef, StoreError> {
            Err(StoreError::Codec(
                "a raw card number remains after the format 4 migration".into(),
            ))
        };
        changes(&tables, &mut refuse, log)?;
        total
    };
    tx.open_table(META)?
        .insert(META_STORE_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
    tx.commit()?;
    Ok(done)
}
