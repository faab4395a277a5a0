//! Histories without a fixed cap (a shopper's orders, their notifications, a product's
//! review index) kept in bounded
//! records. The owner (the Account, the Inbox) holds the newest entries and a count of the
//! full pages sealed before them ([`Recent`]): at most two pages' worth, and never fewer than
//! one page's once a page is sealed, so a repeat among the newest page's worth is recognised.
//! Each sealed page (`Entry::PAGE_LEN` entries: `ORDER_PAGE_LEN`, `NOTIFICATION_PAGE_LEN`) is
//! an entity of its own (`EntityKind::HistoryPage`, id `<list>:<owner>:<page>`), written once
//! through the outbox and never changed after. Entries are numbered by position from 0
//! (oldest): page `n` holds positions `n * PAGE_LEN ..` and the owner the rest, so a
//! position names the same entry before and after its page is sealed, and a reader walks
//! newest first by position ([`spans`], [`read`]).
//!
//! A page lives on its owner's shard (`EntityRef::shard`), so sealing and reading it stay on
//! one node, but nothing depends on that: a seal is a message like any other, delivered at
//! least once and idempotent (the same entries again change nothing), and a read of a page
//! whose seal is still on its way waits for it (`Outcome::Park`).

use crate::client::{AskError, EntityClient};
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::inbox::{Channel, Notification};
use crate::limits::{NOTIFICATION_PAGE_LEN, ORDER_PAGE_LEN};
use crate::review::ReviewEntry;
use crate::{EntityKind, EntityRef};
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which history a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryList {
    /// A shopper's order ids, kept by their Account.
    Orders,
    /// A shopper's notifications, kept by their Inbox.
    Notifications,
    /// A product's review index, kept by its ReviewBoard.
    Reviews,
}

impl HistoryList {
    /// Every list.
    pub const ALL: [HistoryList; 3] = [
        HistoryList::Orders,
        HistoryList::Notifications,
        HistoryList::Reviews,
    ];

    /// The name used in page ids.
    pub fn name(self) -> &'static str {
        match self {
            HistoryList::Orders => "orders",
            HistoryList::Notifications => "notifications",
            HistoryList::Reviews => "reviews",
        }
    }

    /// The kind of entity that keeps this list's newest entries (keyed by user id, or by
    /// SKU for reviews).
    pub fn owner_kind(self) -> EntityKind {
        match self {
            HistoryList::Orders => EntityKind::Account,
            HistoryList::Notifications => EntityKind::Inbox,
            HistoryList::Reviews => EntityKind::ReviewBoard,
        }
    }
}

/// The page entity holding page `page` of `owner_id`'s `list`.
pub fn page_ref(list: HistoryList, owner_id: &str, page: u64) -> EntityRef {
    EntityRef::new(
        EntityKind::HistoryPage,
        format!("{}:{owner_id}:{page}", list.name()),
    )
}

/// The owner of a page entity's id (`<list>:<owner>:<page>`), or `None` for another id.
pub fn page_owner(page_id: &str) -> Option<EntityRef> {
    let (list, rest) = page_id.split_once(':')?;
    let (owner, page) = rest.rsplit_once(':')?;
    page.parse::<u64>().ok()?;
    let list = HistoryList::ALL.into_iter().find(|l| l.name() == list)?;
    Some(EntityRef::new(list.owner_kind(), owner))
}

/// A sealed page's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageEntries {
    /// Order ids, oldest first.
    Orders(Vec<String>),
    /// Notifications, oldest first.
    Notifications(Vec<Notification>),
    /// Review index entries, oldest first.
    Reviews(Vec<ReviewEntry>),
}

impl PageEntries {
    /// How many entries a sealed page of this list holds.
    pub fn page_len(&self) -> usize {
        match self {
            PageEntries::Orders(_) => String::PAGE_LEN,
            PageEntries::Notifications(_) => Notification::PAGE_LEN,
            PageEntries::Reviews(_) => ReviewEntry::PAGE_LEN,
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        match self {
            PageEntries::Orders(v) => v.len(),
            PageEntries::Notifications(v) => v.len(),
            PageEntries::Reviews(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one history holds: an entry type with its page form and its header (see [`Recent`]).
pub trait Entry: Clone + PartialEq + Serialize + DeserializeOwned {
    /// The list these entries make.
    const LIST: HistoryList;
    /// Entries in a sealed page; the owner keeps at most twice as many itself.
    const PAGE_LEN: usize;
    /// The stored header that carries `Recent::sealed_pages`: an entry no real one equals.
    fn header(sealed_pages: u64) -> Self;
    /// The sealed page count if this entry is a header.
    fn header_pages(&self) -> Option<u64>;
    /// Entries as a page.
    fn into_page(entries: Vec<Self>) -> PageEntries;
    /// A page's entries, if the page is of this list.
    fn from_page(page: PageEntries) -> Option<Vec<Self>>;
}

/// Starts a header: entity ids and event names never hold a NUL character.
const HEADER_MARK: &str = "\u{0}sealed_pages";

impl Entry for String {
    const LIST: HistoryList = HistoryList::Orders;
    const PAGE_LEN: usize = ORDER_PAGE_LEN;

    fn header(sealed_pages: u64) -> Self {
        format!("{HEADER_MARK}:{sealed_pages}")
    }

    fn header_pages(&self) -> Option<u64> {
        self.strip_prefix(HEADER_MARK)?
            .strip_prefix(':')?
            .parse()
            .ok()
    }

    fn into_page(entries: Vec<Self>) -> PageEntries {
        PageEntries::Orders(entries)
    }

    fn from_page(page: PageEntries) -> Option<Vec<Self>> {
        match page {
            PageEntries::Orders(v) => Some(v),
            _ => None,
        }
    }
}

impl Entry for Notification {
    const LIST: HistoryList = HistoryList::Notifications;
    const PAGE_LEN: usize = NOTIFICATION_PAGE_LEN;

    fn header(sealed_pages: u64) -> Self {
        Notification {
            channel: Channel::Email,
            kind: HEADER_MARK.to_string(),
            order_id: String::new(),
            at_ms: sealed_pages,
        }
    }

    fn header_pages(&self) -> Option<u64> {
        (self.kind == HEADER_MARK).then_some(self.at_ms)
    }

    fn into_page(entries: Vec<Self>) -> PageEntries {
        PageEntries::Notifications(entries)
    }

    fn from_page(page: PageEntries) -> Option<Vec<Self>> {
        match page {
            PageEntries::Notifications(v) => Some(v),
            _ => None,
        }
    }
}

/// The newest entries of a history, at most `2 * Entry::PAGE_LEN`, and how many full pages
/// were sealed before them.
///
/// Stored as the list it was before pages existed (format 4: the account's `orders`, the
/// inbox's `items`), so records written before load unchanged: with pages sealed, the list
/// starts with one header entry carrying their count (`Entry::header`); without, it is the
/// plain list, byte for byte. Human-readable forms (JSON for operators) are a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent<T> {
    /// Full pages sealed into `HistoryPage` entities (pages `0..sealed_pages`).
    pub sealed_pages: u64,
    /// The newest entries, oldest first, at most `2 * Entry::PAGE_LEN`.
    pub newest: Vec<T>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self {
            sealed_pages: 0,
            newest: Vec::new(),
        }
    }
}

impl<T: Entry> Recent<T> {
    /// The position of `newest[0]`: every entry before it is in a sealed page.
    pub fn first_recent(&self) -> u64 {
        self.sealed_pages.saturating_mul(T::PAGE_LEN as u64)
    }

    /// How many entries the history holds in all.
    pub fn total(&self) -> u64 {
        self.first_recent().saturating_add(self.newest.len() as u64)
    }

    /// The most entries the owner keeps itself: two pages' worth.
    pub const MAX_NEWEST: usize = 2 * T::PAGE_LEN;

    /// Appends `entry`; beyond `MAX_NEWEST` entries, the oldest `PAGE_LEN` are sealed: sent
    /// to their page entity (of `ctx.me`'s id) and dropped from here.
    pub fn append(&mut self, entry: T, ctx: &mut Ctx) {
        self.newest.push(entry);
        while self.newest.len() > Self::MAX_NEWEST {
            let page: Vec<T> = self.newest.drain(..T::PAGE_LEN).collect();
            let to = page_ref(T::LIST, &ctx.me.id, self.sealed_pages);
            let seal = PageCommand::Seal(T::into_page(page));
            ctx.send(to, "HISTORY_PAGE_SEALED", Command::Page(seal));
            self.sealed_pages += 1;
        }
    }
}

impl<T: Entry> Serialize for Recent<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut st = s.serialize_struct("Recent", 2)?;
            st.serialize_field("sealed_pages", &self.sealed_pages)?;
            st.serialize_field("newest", &self.newest)?;
            return st.end();
        }
        if self.sealed_pages == 0 {
            return s.collect_seq(&self.newest);
        }
        let header = T::header(self.sealed_pages);
        s.collect_seq(std::iter::once(&header).chain(&self.newest))
    }
}

/// The human-readable form of `Recent`.
#[derive(Deserialize)]
struct PlainRecent<T> {
    sealed_pages: u64,
    newest: Vec<T>,
}

impl<'de, T: Entry> Deserialize<'de> for Recent<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let p = PlainRecent::<T>::deserialize(d)?;
            return Ok(Self {
                sealed_pages: p.sealed_pages,
                newest: p.newest,
            });
        }
        let mut newest = Vec::<T>::deserialize(d)?;
        let sealed_pages = match newest.first().and_then(T::header_pages) {
            Some(n) => {
                newest.remove(0);
                n
            }
            None => 0,
        };
        Ok(Self {
            sealed_pages,
            newest,
        })
    }
}

/// A sealed page's state: empty until its seal arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageState {
    /// The page's entries, oldest first, once sealed.
    pub entries: Option<PageEntries>,
}

/// Commands for a HistoryPage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageCommand {
    /// HISTORY_PAGE_SEALED from the owner: the page's `PAGE_LEN` entries. Sealing
    /// again with the same entries changes nothing.
    Seal(PageEntries),
    /// Read the entries; waits (`Outcome::Park`) until the page is sealed.
    Get,
}

/// Handles one command.
pub fn handle(s: &mut PageState, cmd: PageCommand, ctx: &mut Ctx) -> Result<Outcome, DomainError> {
    match cmd {
        PageCommand::Seal(entries) => {
            if entries.len() != entries.page_len() {
                return Err(invalid(
                    "entries",
                    format!("a sealed page holds {} entries", entries.page_len()),
                ));
            }
            match &s.entries {
                None => s.entries = Some(entries),
                Some(held) if *held == entries => {}
                Some(_) => {
                    return Err(DomainError::Conflict(format!(
                        "page {} is already sealed with other entries",
                        ctx.me.id
                    )))
                }
            }
            reply(Reply::Ack)
        }
        PageCommand::Get => match &s.entries {
            Some(entries) => reply(Reply::Page(entries.clone())),
            None => Ok(Outcome::Park),
        },
    }
}

/// Where some positions of a history lie, newest first within the span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// `Recent::newest[from..to]`.
    Recent {
        /// First index (inclusive).
        from: usize,
        /// Last index (exclusive).
        to: usize,
    },
    /// `entries[from..to]` of sealed page `page`.
    Page {
        /// The page number.
        page: u64,
        /// First index (inclusive).
        from: usize,
        /// Last index (exclusive).
        to: usize,
    },
}

/// A window of a history read newest first: its spans, newest first, and the position the
/// next window starts before (`None` when this one reaches the oldest entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Where the entries are, newest first.
    pub spans: Vec<Span>,
    /// The `before` of the next window.
    pub next_before: Option<u64>,
}

/// The entries at positions before `before` (every position when `None`; a `before` past
/// the end counts from the end), at most `limit` of them, of a history of `total` entries
/// in pages of `page_len` whose newest start at position `first_recent`.
pub fn spans(
    total: u64,
    first_recent: u64,
    page_len: usize,
    before: Option<u64>,
    limit: usize,
) -> Window {
    let page_len = page_len.max(1) as u64;
    let end = before.map_or(total, |b| b.min(total));
    let start = end.saturating_sub(limit as u64);
    let mut spans = Vec::new();
    let mut pos = end;
    while pos > start {
        if pos > first_recent {
            let from = start.max(first_recent);
            let index = |p: u64| usize::try_from(p - first_recent).unwrap_or(usize::MAX);
            spans.push(Span::Recent {
                from: index(from),
                to: index(pos),
            });
            pos = from;
        } else {
            let page = (pos - 1) / page_len;
            let page_start = page * page_len;
            let from = start.max(page_start);
            // Both offsets are below `page_len`, a `usize`.
            spans.push(Span::Page {
                page,
                from: (from - page_start) as usize,
                to: (pos - page_start) as usize,
            });
            pos = from;
        }
    }
    Window {
        spans,
        next_before: (start > 0).then_some(start),
    }
}

/// Entries of a history read newest first, and where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestFirst<T> {
    /// The entries, newest first.
    pub items: Vec<T>,
    /// The `before` of the next read; `None` when these reach the oldest entry.
    pub next_before: Option<u64>,
}

/// Reads at most `limit` entries before position `before` (from the newest when `None`) of
/// `owner_id`'s history whose owner answered `head`, asking `client` for sealed pages.
pub async fn read<T: Entry>(
    client: &dyn EntityClient,
    owner_id: &str,
    head: &Recent<T>,
    before: Option<u64>,
    limit: usize,
) -> Result<NewestFirst<T>, AskError> {
    let window = spans(
        head.total(),
        head.first_recent(),
        T::PAGE_LEN,
        before,
        limit,
    );
    let mut items = Vec::new();
    for span in window.spans {
        match span {
            Span::Recent { from, to } => {
                items.extend(
                    head.newest
                        .get(from..to)
                        .unwrap_or_default()
                        .iter()
                        .rev()
                        .cloned(),
                );
            }
            Span::Page { page, from, to } => {
                let to_page = page_ref(T::LIST, owner_id, page);
                let entries = match client.ask(to_page, Command::Page(PageCommand::Get)).await? {
                    Reply::Page(p) => T::from_page(p),
                    _ => None,
                };
                let entries = entries.filter(|e| e.len() == T::PAGE_LEN).ok_or_else(|| {
                    AskError::Unavailable(format!(
                        "history page {page} of {owner_id} is not a page of {}",
                        T::LIST.name()
                    ))
                })?;
                items.extend(
                    entries
                        .get(from..to)
                        .unwrap_or_default()
                        .iter()
                        .rev()
                        .cloned(),
                );
            }
        }
    }
    Ok(NewestFirst {
        items,
        next_before: window.next_before,
    })
}

#[cfg(test)]
mod tests;
