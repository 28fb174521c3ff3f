//! The figures a helpline reports on, computed from the `room_event` history only.
//!
//! The bot stores no message content, and statistics do not need any: everything here is
//! derived from the events the bot records (see [`crate::model::EventKind`]). Nothing reads
//! the `room` table, so the figures are the same whether or not rows there were corrected
//! later; the history is the record.
//!
//! # Definitions
//!
//! - **Rooms created**: `created` events.
//! - **Rooms with a client**: rooms with an `entered` event whose role is `client`.
//! - **Rooms closed, by reason**: `closed` events, counted per `close_reason`; every reason
//!   is listed, zeros included, in [`CloseReason::ALL`] order. A `closed` event without a
//!   reason is counted apart ([`Stats::rooms_closed_without_reason`]).
//! - **Staff wait**: per room that got a client, the first client `entered` event's time
//!   minus the first staff `entered` event's time: how long the staff member waited.
//! - **Chat duration**: per room that got a client and closed, the `closed` event's time
//!   minus the first client `entered` event's time.
//! - **Claims expired**: `claim_expired` events, split by their role (`staff`, `client`).
//! - **Kicks**: `kicked` events, whoever was kicked.
//!
//! Percentiles use the nearest-rank method: the p-th percentile of `n` sorted values is the
//! value at rank ⌈p·n/100⌉ (1-based), so it is always one of the measured values (p50 of
//! 1, 2, 3, 4 is 2). Durations are in seconds with microsecond precision; a summary of no
//! values has no percentiles (`null` in JSON, `-` in text), never a made-up 0.
//!
//! # Period
//!
//! [`StatsQuery::since`] selects *rooms*, not events: a room counts if its `created` event
//! is at or after `since`, and then all of its events count, however late; none of an
//! older room's events count, not even those after `since`. So a chat is counted whole or
//! not at all, and its wait and duration are never cut in two at the boundary. Without
//! `since`, every event counts (also those of a room whose `created` event is missing).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SecondsFormat, SubsecRound, Utc};
use entity::room_event;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Serialize, Serializer};

use crate::model::{CloseReason, EventKind, Role, RoomStatus};
use crate::store::{RoomChange, RoomEvent, Store, StoreError};

/// How many `room_event` rows [`load`] reads per query: enough to make the round trips
/// cheap, few enough that a year of history never sits in memory at once.
const PAGE_SIZE: u64 = 10_000;

/// Why a statistics request could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// The start of the period is not a timestamp or date we accept; the message names the
    /// value and both accepted forms, so the operator can fix the command line.
    #[error(
        "{value:?} is neither an RFC 3339 timestamp (e.g. 2026-11-01T08:00:00Z) \
         nor a date YYYY-MM-DD (e.g. 2026-11-01, meaning midnight UTC)"
    )]
    BadSince {
        /// The text that was given.
        value: String,
    },
}

/// Which history the statistics cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsQuery {
    /// Only rooms whose `created` event is at or after this instant (see the module
    /// documentation); `None` covers the whole history.
    pub since: Option<DateTime<Utc>>,
}

/// The statistics of one period: what `helpim-bot stats` prints, and (serialised with
/// `serde_json`) what `--json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The start of the period, as asked; `null` in JSON for the whole history.
    #[serde(serialize_with = "serialize_since")]
    pub since: Option<DateTime<Utc>>,
    /// Rooms created in the period.
    pub rooms_created: u64,
    /// Of those, rooms a client entered: the number of conversations.
    pub rooms_with_client: u64,
    /// `closed` events of those rooms, whatever their reason.
    pub rooms_closed: u64,
    /// `closed` events per reason: every [`CloseReason`] in [`CloseReason::ALL`] order, zeros
    /// included; a JSON object keyed by the contract strings.
    #[serde(serialize_with = "serialize_reasons")]
    pub rooms_closed_by_reason: Vec<(CloseReason, u64)>,
    /// `closed` events that carry no reason (the caller did not give one); counted apart so
    /// that the per-reason counts add up to [`Stats::rooms_closed`] with this.
    pub rooms_closed_without_reason: u64,
    /// How long staff waited for a client, per room that got one.
    pub staff_wait: Summary,
    /// How long a chat lasted, from the client entering to the room closing.
    pub chat_duration: Summary,
    /// Claims that were released because nobody used them in time.
    pub claims_expired: ClaimCounts,
    /// People the bot kicked (over the occupant limit, or without a claim).
    pub kicks: u64,
}

/// Count and nearest-rank percentiles of a set of durations, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// How many durations were measured.
    pub count: u64,
    /// The median (nearest rank); `None` when nothing was measured.
    pub p50_secs: Option<f64>,
    /// The 90th percentile (nearest rank); `None` when nothing was measured.
    pub p90_secs: Option<f64>,
    /// The longest; `None` when nothing was measured.
    pub max_secs: Option<f64>,
}

/// `claim_expired` events, by the role of the claim that expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClaimCounts {
    /// Staff claims nobody used: a staff member was sent to a room and did not come.
    pub staff: u64,
    /// Client claims nobody used: a client was sent to a room and did not come.
    pub client: u64,
    /// All `claim_expired` events, including any without a staff or client role, so that
    /// nothing recorded is silently left out.
    pub total: u64,
}

/// Parses the start of a period: an RFC 3339 timestamp (any offset, converted to UTC) or a
/// plain `YYYY-MM-DD` date, meaning midnight UTC at its start.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, StatsError> {
    let text = s.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    // Exactly ten characters: chrono would also take `2026-1-5`, which is not the
    // documented form and more likely a typo than a date.
    if text.len() == 10
        && let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
    {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(StatsError::BadSince {
        value: s.to_owned(),
    })
}

/// Computes the statistics of `events`, which must be in the order they were recorded (by
/// id), as [`load`] and [`Store::events`] give them: a room's `created` event comes first.
///
/// Pure: only the events' kind, room, time, role and close reason are read.
pub fn compute(events: &[RoomEvent], query: &StatsQuery) -> Stats {
    let mut tally = Tally::new(query);
    for event in events {
        tally.add(event);
    }
    tally.finish()
}

/// Reads the `room_event` history from `store` and computes its statistics.
///
/// The rows are read in id order, a page (10 000 rows) at a time, and folded into running totals,
/// so memory grows with the number of rooms, not of events. Every row is validated like the
/// store does ([`StoreError::BadRow`] names a bad one). With `since`, reading starts at the
/// first `created` event of the period (by the `(kind, at)` index), since a room's events
/// all come after its `created` event. Reading stops at the newest event that existed when it
/// began, so a busy bot cannot keep it going; the pages are separate queries, not one
/// snapshot (a long read transaction would hold up the bot's writes on SQLite), which can
/// only make a room that changes during the read look a step behind.
pub async fn load(store: &Store, query: &StatsQuery) -> Result<Stats, StoreError> {
    load_in_pages(store, query, PAGE_SIZE).await
}

/// [`load`] with a chosen page size, so that tests can cross page boundaries.
async fn load_in_pages(
    store: &Store,
    query: &StatsQuery,
    page_size: u64,
) -> Result<Stats, StoreError> {
    let db = store.connection();
    let mut tally = Tally::new(query);
    // Ids only, here and below: a row that cannot be decoded must not fail the statistics
    // (the pages are decoded one by one, and a bad event is left out and quarantined).
    let newest: Option<i64> = room_event::Entity::find()
        .select_only()
        .column(room_event::Column::Id)
        .order_by_desc(room_event::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    let Some(newest) = newest else {
        return Ok(tally.finish());
    };
    let mut next = match query.since {
        None => i64::MIN,
        Some(since) => {
            // Truncated to microseconds, the stored precision, so that the database never
            // excludes a room that the exact comparison in `Tally::add` includes.
            let first: Option<i64> = room_event::Entity::find()
                .select_only()
                .column(room_event::Column::Id)
                .filter(room_event::Column::Kind.eq(EventKind::Created.as_str()))
                .filter(room_event::Column::At.gte(since.trunc_subsecs(6)))
                .order_by_asc(room_event::Column::Id)
                .into_tuple()
                .one(db)
                .await?;
            match first {
                Some(first) => first,
                None => return Ok(tally.finish()),
            }
        }
    };
    loop {
        let query = room_event::Entity::find()
            .filter(room_event::Column::Id.gte(next))
            .filter(room_event::Column::Id.lte(newest))
            .order_by_asc(room_event::Column::Id)
            .limit(page_size);
        let page = store.decode_events(query).await?;
        let read = page.rows.len() + page.bad.len();
        let last = page
            .rows
            .iter()
            .map(|e| e.id)
            .chain(page.bad.iter().map(|b| b.id))
            .max();
        for event in &page.rows {
            tally.add(event);
        }
        match last {
            Some(last) => next = last.saturating_add(1),
            None => return Ok(tally.finish()),
        }
        if (read as u64) < page_size || next > newest {
            return Ok(tally.finish());
        }
    }
}

/// A human report of `stats`, aligned for a fixed-width font, that an operator can paste
/// into an email. Durations are rounded to the second and written like `4m 05s`.
pub fn render_text(stats: &Stats) -> String {
    /// Width of the label column.
    const LABEL: usize = 24;
    /// Width of a count column.
    const COUNT: usize = 7;
    /// Width of a duration column.
    const DURATION: usize = 12;

    let count = |label: &str, n: u64| format!("{label:<LABEL$}{n:>COUNT$}");
    let summary = |label: &str, s: &Summary| {
        let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), crate::report::duration);
        format!(
            "{label:<LABEL$}{:>COUNT$}{:>DURATION$}{:>DURATION$}{:>DURATION$}",
            s.count,
            secs(s.p50_secs),
            secs(s.p90_secs),
            secs(s.max_secs),
        )
    };

    let mut lines = vec![
        match stats.since {
            Some(since) => format!(
                "helpim-bot statistics: rooms created since {}",
                rfc3339(since)
            ),
            None => "helpim-bot statistics: all rooms".to_owned(),
        },
        String::new(),
        count("Rooms created", stats.rooms_created),
        count("Rooms with a client", stats.rooms_with_client),
        count("Rooms closed", stats.rooms_closed),
    ];
    for (reason, n) in &stats.rooms_closed_by_reason {
        lines.push(count(&format!("  {reason}"), *n));
    }
    if stats.rooms_closed_without_reason > 0 {
        lines.push(count(
            "  (no reason recorded)",
            stats.rooms_closed_without_reason,
        ));
    }
    let claims = stats.claims_expired;
    lines.push(format!(
        "{}  (staff {}, client {})",
        count("Claims expired", claims.total),
        claims.staff,
        claims.client
    ));
    lines.push(count("Kicks", stats.kicks));
    lines.push(String::new());
    lines.push(format!(
        "{:<LABEL$}{:>COUNT$}{:>DURATION$}{:>DURATION$}{:>DURATION$}",
        "", "rooms", "p50", "p90", "max"
    ));
    lines.push(summary("Staff wait for a client", &stats.staff_wait));
    lines.push(summary("Chat duration", &stats.chat_duration));
    lines.push(String::new());
    lines.push("p50/p90: nearest-rank percentiles; durations rounded to the second.".to_owned());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `at` as RFC 3339 in UTC with `Z` and only as many fraction digits as needed: the form
/// [`parse_since`] reads back.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serialises [`Stats::since`] as an RFC 3339 string or `null` (chrono's serde support is
/// not enabled in the workspace, and the format is part of the JSON output's contract).
fn serialize_since<S: Serializer>(
    since: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match since {
        Some(at) => serializer.serialize_str(&rfc3339(*at)),
        None => serializer.serialize_none(),
    }
}

/// Serialises [`Stats::rooms_closed_by_reason`] as an object keyed by the contract strings,
/// in [`CloseReason::ALL`] order.
fn serialize_reasons<S: Serializer>(
    counts: &[(CloseReason, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(counts.iter().map(|(reason, n)| (reason.as_str(), n)))
}

/// What the statistics need to remember about one room while the history streams by.
#[derive(Debug, Default)]
struct Track {
    /// When its people first entered.
    clock: ChatClock,
    /// Whether a `closed` event was seen, so that a duplicate cannot add a second duration.
    closed: bool,
}

/// When a room's staff member and client first entered: what its staff wait and chat
/// duration are measured from. One clock for the statistics (the tally below) and the
/// metrics (each room's writer, [`crate::metrics::Metrics::observe_chat`]), so that both
/// measure alike. Pure, so it is unit-tested without a writer or a database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatClock {
    /// When the staff member first entered.
    staff_entered: Option<DateTime<Utc>>,
    /// When the client first entered.
    client_entered: Option<DateTime<Utc>>,
}

/// What one event completed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChatDurations {
    /// This event was the client's first entry.
    pub client_arrived: bool,
    /// The staff wait that ended with it (the client entered after the staff member).
    pub staff_wait: Option<chrono::TimeDelta>,
    /// The chat that ended with it (the room closed after the client entered).
    pub chat: Option<chrono::TimeDelta>,
}

impl ChatClock {
    /// Whether a writer whose first change is `first` must read the room's history to
    /// know when people entered: only a room that was not `available` has one to read.
    pub fn needs_history(first: &RoomChange) -> bool {
        first.from != RoomStatus::Available
    }

    /// A clock set from a room's recorded history (a room recovered after a restart).
    pub fn from_history(events: &[RoomEvent]) -> ChatClock {
        let mut clock = ChatClock::default();
        for event in events {
            clock.on_event(event.kind, event.role, event.at, false);
        }
        clock
    }

    /// Takes one event into account (`closes`: it is the room's close); returns what it
    /// completed.
    pub fn on_event(
        &mut self,
        kind: EventKind,
        role: Option<Role>,
        at: DateTime<Utc>,
        closes: bool,
    ) -> ChatDurations {
        let mut done = ChatDurations::default();
        if kind == EventKind::Entered {
            match role {
                Some(Role::Staff) if self.staff_entered.is_none() => self.staff_entered = Some(at),
                Some(Role::Client) if self.client_entered.is_none() => {
                    self.client_entered = Some(at);
                    done.client_arrived = true;
                    done.staff_wait = self.staff_entered.map(|staff| at - staff);
                }
                _ => {}
            }
        }
        if closes {
            done.chat = self.client_entered.map(|client| at - client);
        }
        done
    }

    /// Takes one committed change into account; returns what it completed.
    pub fn on_commit(&mut self, change: &RoomChange) -> ChatDurations {
        let closes = change.to == RoomStatus::Closed && change.from != RoomStatus::Closed;
        self.on_event(change.kind, change.role, change.at, closes)
    }
}

/// Running totals over a history read in order, shared by [`compute`] (a slice) and
/// [`load`] (pages), so that both give the same figures by construction.
#[derive(Debug)]
struct Tally {
    /// The start of the period, if any.
    since: Option<DateTime<Utc>>,
    /// The rooms that count, by room id.
    rooms: HashMap<i64, Track>,
    /// `created` events of rooms that count.
    rooms_created: u64,
    /// Rooms a client entered.
    rooms_with_client: u64,
    /// `closed` events per reason, indexed like [`CloseReason::ALL`].
    closed_by_reason: Vec<u64>,
    /// `closed` events without a reason.
    closed_without_reason: u64,
    /// Staff waits, in microseconds.
    staff_waits: Vec<i64>,
    /// Chat durations, in microseconds.
    chat_durations: Vec<i64>,
    /// `claim_expired` events.
    claims_expired: ClaimCounts,
    /// `kicked` events.
    kicks: u64,
}

impl Tally {
    /// Empty totals for `query`'s period.
    fn new(query: &StatsQuery) -> Tally {
        Tally {
            since: query.since,
            rooms: HashMap::new(),
            rooms_created: 0,
            rooms_with_client: 0,
            closed_by_reason: vec![0; CloseReason::ALL.len()],
            closed_without_reason: 0,
            staff_waits: Vec::new(),
            chat_durations: Vec::new(),
            claims_expired: ClaimCounts::default(),
            kicks: 0,
        }
    }

    /// Counts `event`, if its room is in the period.
    fn add(&mut self, event: &RoomEvent) {
        let track = if event.kind == EventKind::Created {
            if self.since.is_some_and(|since| event.at < since) {
                return;
            }
            self.rooms_created += 1;
            self.rooms.entry(event.room_id).or_default()
        } else if self.since.is_none() {
            self.rooms.entry(event.room_id).or_default()
        } else {
            match self.rooms.get_mut(&event.room_id) {
                Some(track) => track,
                None => return,
            }
        };
        let closes = event.kind == EventKind::Closed && !track.closed;
        let done = track
            .clock
            .on_event(event.kind, event.role, event.at, closes);
        if done.client_arrived {
            self.rooms_with_client += 1;
        }
        if let Some(wait) = done.staff_wait {
            self.staff_waits.push(micros(wait));
        }
        if let Some(chat) = done.chat {
            self.chat_durations.push(micros(chat));
        }
        match (event.kind, event.role) {
            (EventKind::Closed, _) => {
                match event.close_reason {
                    Some(reason) => {
                        let index = CloseReason::ALL
                            .iter()
                            .position(|r| *r == reason)
                            .expect("CloseReason::ALL lists every reason");
                        self.closed_by_reason[index] += 1;
                    }
                    None => self.closed_without_reason += 1,
                }
                track.closed = true;
            }
            (EventKind::ClaimExpired, role) => {
                self.claims_expired.total += 1;
                match role {
                    Some(Role::Staff) => self.claims_expired.staff += 1,
                    Some(Role::Client) => self.claims_expired.client += 1,
                    _ => {}
                }
            }
            (EventKind::Kicked, _) => self.kicks += 1,
            _ => {}
        }
    }

    /// The statistics of everything counted.
    fn finish(self) -> Stats {
        let rooms_closed = self.closed_by_reason.iter().sum::<u64>() + self.closed_without_reason;
        Stats {
            since: self.since,
            rooms_created: self.rooms_created,
            rooms_with_client: self.rooms_with_client,
            rooms_closed,
            rooms_closed_by_reason: CloseReason::ALL
                .iter()
                .copied()
                .zip(self.closed_by_reason)
                .collect(),
            rooms_closed_without_reason: self.closed_without_reason,
            staff_wait: Summary::of(self.staff_waits),
            chat_duration: Summary::of(self.chat_durations),
            claims_expired: self.claims_expired,
            kicks: self.kicks,
        }
    }
}

/// A duration in microseconds (the stored precision; saturating, which no real history
/// reaches).
fn micros(duration: chrono::TimeDelta) -> i64 {
    duration.num_microseconds().unwrap_or(i64::MAX)
}

impl Summary {
    /// The summary of `micros` (durations in microseconds, in any order).
    fn of(mut micros: Vec<i64>) -> Summary {
        micros.sort_unstable();
        let secs = |v: Option<&i64>| v.map(|&us| us as f64 / 1_000_000.0);
        Summary {
            count: micros.len() as u64,
            p50_secs: secs(nearest_rank(&micros, 50)),
            p90_secs: secs(nearest_rank(&micros, 90)),
            max_secs: secs(micros.last()),
        }
    }
}

/// The `percent`-th percentile of `sorted` by the nearest-rank method: the value at 1-based
/// rank ⌈percent·n/100⌉ (at least 1); `None` for no values.
fn nearest_rank<T>(sorted: &[T], percent: usize) -> Option<&T> {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clock_measures_waits_and_chats_for_statistics_and_metrics() {
        use chrono::TimeDelta;
        let t0 = chrono::Utc::now();
        let at = |secs: i64| t0 + TimeDelta::seconds(secs);
        let mut clock = ChatClock::default();
        let staff = clock.on_event(EventKind::Entered, Some(Role::Staff), at(0), false);
        assert_eq!(staff, ChatDurations::default());
        let client = clock.on_event(EventKind::Entered, Some(Role::Client), at(90), false);
        assert!(client.client_arrived);
        assert_eq!(client.staff_wait, Some(TimeDelta::seconds(90)));
        let again = clock.on_event(EventKind::Entered, Some(Role::Client), at(95), false);
        assert_eq!(
            again,
            ChatDurations::default(),
            "only the first entry counts"
        );
        let closed = clock.on_event(EventKind::Closed, None, at(690), true);
        assert_eq!(closed.chat, Some(TimeDelta::seconds(600)));

        // A client before any staff member: no wait to measure.
        let mut early = ChatClock::default();
        let client = early.on_event(EventKind::Entered, Some(Role::Client), at(0), false);
        assert!(client.client_arrived && client.staff_wait.is_none());
    }
    use crate::model::RoomStatus;
    use crate::store::{NewRoom, RoomChange};
    use chrono::{Duration, TimeZone};

    /// 2026-11-02 09:00:00 UTC plus `secs` (fractions kept to the microsecond).
    fn t(secs: f64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
            + Duration::microseconds((secs * 1_000_000.0).round() as i64)
    }

    /// Builds a history event by event, numbering them in order like the database does.
    /// The statuses are plausible but irrelevant: statistics do not read them.
    #[derive(Default)]
    struct History {
        events: Vec<RoomEvent>,
    }

    impl History {
        fn push(
            &mut self,
            room_id: i64,
            kind: EventKind,
            at: f64,
            role: Option<Role>,
            close_reason: Option<CloseReason>,
        ) -> &mut Self {
            let (from, to) = match (kind, role) {
                (EventKind::Created, _) => (None, RoomStatus::Available),
                (EventKind::Entered, Some(Role::Staff)) => {
                    (Some(RoomStatus::Available), RoomStatus::StaffWaiting)
                }
                (EventKind::Closed, _) => (Some(RoomStatus::Chatting), RoomStatus::Closed),
                _ => (Some(RoomStatus::Chatting), RoomStatus::Chatting),
            };
            self.events.push(RoomEvent {
                id: self.events.len() as i64 + 1,
                room_id,
                kind,
                from_status: from,
                to_status: to,
                at: t(at),
                nick: None,
                role,
                detail: String::new(),
                close_reason,
            });
            self
        }
        fn created(&mut self, room: i64, at: f64) -> &mut Self {
            self.push(room, EventKind::Created, at, None, None)
        }
        fn entered(&mut self, room: i64, at: f64, role: Role) -> &mut Self {
            self.push(room, EventKind::Entered, at, Some(role), None)
        }
        fn closed(&mut self, room: i64, at: f64, reason: CloseReason) -> &mut Self {
            self.push(room, EventKind::Closed, at, None, Some(reason))
        }
        /// A complete chat in `room`: created at `at`, staff in 10 s later, client `wait`
        /// seconds after that, closed `duration` seconds after the client came.
        fn chat(&mut self, room: i64, at: f64, wait: f64, duration: f64) -> &mut Self {
            let client = at + 10.0 + wait;
            self.created(room, at)
                .entered(room, at + 10.0, Role::Staff)
                .entered(room, client, Role::Client)
                .closed(room, client + duration, CloseReason::Completed)
        }
    }

    fn all() -> StatsQuery {
        StatsQuery::default()
    }

    fn reasons(counts: &[(CloseReason, u64)]) -> Vec<(CloseReason, u64)> {
        CloseReason::ALL
            .iter()
            .map(|reason| {
                let n = counts
                    .iter()
                    .find(|(r, _)| r == reason)
                    .map_or(0, |(_, n)| *n);
                (*reason, n)
            })
            .collect()
    }

    fn summary(count: u64, p50: f64, p90: f64, max: f64) -> Summary {
        Summary {
            count,
            p50_secs: Some(p50),
            p90_secs: Some(p90),
            max_secs: Some(max),
        }
    }

    const EMPTY: Summary = Summary {
        count: 0,
        p50_secs: None,
        p90_secs: None,
        max_secs: None,
    };

    /// The mixed history the figure and text tests share.
    fn mixed() -> History {
        let mut h = History::default();
        h.chat(1, 0.0, 30.25, 600.0)
            .chat(2, 1.0, 60.0, 1200.0)
            .chat(3, 2.0, 300.0, 2400.0);
        // Staff came, no client: no wait, no duration.
        h.created(4, 3.0)
            .entered(4, 100.0, Role::Staff)
            .push(4, EventKind::ClaimExpired, 200.0, Some(Role::Client), None)
            .closed(4, 1000.0, CloseReason::NoClient);
        // Nobody came.
        h.created(5, 4.0)
            .push(5, EventKind::StaffClaimed, 5.0, Some(Role::Staff), None)
            .push(5, EventKind::ClaimExpired, 65.0, Some(Role::Staff), None)
            .closed(5, 5000.0, CloseReason::Shutdown);
        // An intruder in room 2, an extra person in room 3, a rejoin in room 1: not waits.
        h.push(2, EventKind::Kicked, 500.0, Some(Role::Intruder), None)
            .push(3, EventKind::Entered, 600.0, None, None)
            .push(1, EventKind::Left, 620.0, Some(Role::Client), None)
            .push(1, EventKind::Rejoined, 630.0, Some(Role::Client), None);
        // Still open.
        h.created(6, 7000.0);
        h
    }

    #[test]
    fn every_figure_of_a_mixed_history() {
        let stats = compute(&mixed().events, &all());
        assert_eq!(
            stats,
            Stats {
                since: None,
                rooms_created: 6,
                rooms_with_client: 3,
                rooms_closed: 5,
                rooms_closed_by_reason: reasons(&[
                    (CloseReason::Completed, 3),
                    (CloseReason::NoClient, 1),
                    (CloseReason::Shutdown, 1),
                ]),
                rooms_closed_without_reason: 0,
                staff_wait: summary(3, 60.0, 300.0, 300.0),
                chat_duration: summary(3, 1200.0, 2400.0, 2400.0),
                claims_expired: ClaimCounts {
                    staff: 1,
                    client: 1,
                    total: 2,
                },
                kicks: 1,
            }
        );
    }

    #[test]
    fn reasons_are_listed_in_contract_order_with_zeros() {
        let stats = compute(&mixed().events, &all());
        let order: Vec<_> = stats
            .rooms_closed_by_reason
            .iter()
            .map(|(r, _)| *r)
            .collect();
        assert_eq!(order, CloseReason::ALL);
        assert_eq!(stats.rooms_closed_by_reason[2], (CloseReason::Timeout, 0));
    }

    #[test]
    fn nearest_rank_percentiles_on_known_sets() {
        let four = [1, 2, 3, 4];
        assert_eq!(nearest_rank(&four, 50), Some(&2));
        assert_eq!(nearest_rank(&four, 90), Some(&4));
        let one = [7];
        assert_eq!(nearest_rank(&one, 50), Some(&7));
        assert_eq!(nearest_rank(&one, 90), Some(&7));
        let ten: Vec<i32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(&5));
        assert_eq!(nearest_rank(&ten, 90), Some(&9));
        let eleven: Vec<i32> = (1..=11).collect();
        assert_eq!(nearest_rank(&eleven, 50), Some(&6));
        assert_eq!(nearest_rank(&eleven, 90), Some(&10));
        assert_eq!(nearest_rank::<i32>(&[], 50), None);
    }

    #[test]
    fn a_summary_sorts_and_keeps_sub_second_precision() {
        let s = Summary::of(vec![4_000_000, 1_500_000, 3_000_001, 2_000_000]);
        assert_eq!(s, summary(4, 2.0, 4.0, 4.0));
        let s = Summary::of(vec![1_500_000, 250_000]);
        assert_eq!(s, summary(2, 0.25, 1.5, 1.5));
        let s = Summary::of(vec![30_000_001]);
        assert_eq!(s.p50_secs, Some(30.000001));
    }

    #[test]
    fn an_empty_history_has_zero_counts_and_no_percentiles() {
        let stats = compute(&[], &all());
        assert_eq!(
            stats,
            Stats {
                since: None,
                rooms_created: 0,
                rooms_with_client: 0,
                rooms_closed: 0,
                rooms_closed_by_reason: reasons(&[]),
                rooms_closed_without_reason: 0,
                staff_wait: EMPTY,
                chat_duration: EMPTY,
                claims_expired: ClaimCounts::default(),
                kicks: 0,
            }
        );
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["staff_wait"]["p50_secs"], serde_json::Value::Null);
        assert_eq!(json["since"], serde_json::Value::Null);
    }

    #[test]
    fn rooms_without_a_client_give_no_wait_and_no_duration() {
        let mut h = History::default();
        h.created(1, 0.0)
            .entered(1, 10.0, Role::Staff)
            .closed(1, 70.0, CloseReason::NoClient);
        h.created(2, 0.0).closed(2, 90.0, CloseReason::Shutdown);
        let stats = compute(&h.events, &all());
        assert_eq!(stats.rooms_with_client, 0);
        assert_eq!(stats.staff_wait, EMPTY);
        assert_eq!(stats.chat_duration, EMPTY);
        assert_eq!(stats.rooms_closed, 2);
    }

    #[test]
    fn a_chat_still_going_has_a_wait_but_no_duration() {
        let mut h = History::default();
        h.created(1, 0.0)
            .entered(1, 10.0, Role::Staff)
            .entered(1, 25.5, Role::Client);
        let stats = compute(&h.events, &all());
        assert_eq!(stats.staff_wait, summary(1, 15.5, 15.5, 15.5));
        assert_eq!(stats.chat_duration, EMPTY);
        assert_eq!(stats.rooms_closed, 0);
    }

    #[test]
    fn only_the_first_staff_and_client_entries_count() {
        let mut h = History::default();
        h.created(1, 0.0)
            .entered(1, 10.0, Role::Staff)
            .entered(1, 20.0, Role::Staff)
            .entered(1, 40.0, Role::Client)
            .entered(1, 100.0, Role::Client)
            .closed(1, 160.0, CloseReason::Completed);
        let stats = compute(&h.events, &all());
        assert_eq!(stats.rooms_with_client, 1);
        assert_eq!(stats.staff_wait, summary(1, 30.0, 30.0, 30.0));
        assert_eq!(stats.chat_duration, summary(1, 120.0, 120.0, 120.0));
    }

    #[test]
    fn a_closed_event_without_reason_is_counted_apart() {
        let mut h = History::default();
        h.created(1, 0.0)
            .push(1, EventKind::Closed, 5.0, None, None);
        let stats = compute(&h.events, &all());
        assert_eq!(stats.rooms_closed, 1);
        assert_eq!(stats.rooms_closed_without_reason, 1);
        assert_eq!(stats.rooms_closed_by_reason, reasons(&[]));
        assert!(render_text(&stats).contains("  (no reason recorded)        1\n"));
    }

    #[test]
    fn a_claim_expiry_without_role_counts_in_the_total_only() {
        let mut h = History::default();
        h.created(1, 0.0)
            .push(1, EventKind::ClaimExpired, 5.0, None, None);
        let stats = compute(&h.events, &all());
        assert_eq!(
            stats.claims_expired,
            ClaimCounts {
                staff: 0,
                client: 0,
                total: 1
            }
        );
    }

    #[test]
    fn since_selects_rooms_by_their_created_event_and_keeps_them_whole() {
        let mut h = History::default();
        // Room 1 is created before the period and chats into it: left out entirely.
        h.created(1, 0.0).entered(1, 10.0, Role::Staff).push(
            1,
            EventKind::Kicked,
            50.0,
            Some(Role::Intruder),
            None,
        );
        // Room 2 is created exactly at the start: in.
        h.created(2, 100.0)
            .entered(2, 110.0, Role::Staff)
            .entered(1, 120.0, Role::Client)
            .closed(1, 300.0, CloseReason::Completed);
        // Room 2 chats, with events interleaved with room 1's.
        h.entered(2, 170.0, Role::Client)
            .push(2, EventKind::Kicked, 180.0, Some(Role::Intruder), None)
            .closed(2, 400.0, CloseReason::Completed);

        let query = StatsQuery {
            since: Some(t(100.0)),
        };
        let stats = compute(&h.events, &query);
        assert_eq!(stats.since, Some(t(100.0)));
        assert_eq!(stats.rooms_created, 1);
        assert_eq!(stats.rooms_with_client, 1);
        assert_eq!(stats.rooms_closed, 1);
        assert_eq!(stats.staff_wait, summary(1, 60.0, 60.0, 60.0));
        assert_eq!(stats.chat_duration, summary(1, 230.0, 230.0, 230.0));
        assert_eq!(stats.kicks, 1);

        // One microsecond later, room 2 is out too.
        let later = StatsQuery {
            since: Some(t(100.000001)),
        };
        assert_eq!(compute(&h.events, &later).rooms_created, 0);

        // Without `since`, both rooms count.
        let stats = compute(&h.events, &all());
        assert_eq!(stats.rooms_created, 2);
        assert_eq!(stats.staff_wait, summary(2, 60.0, 110.0, 110.0));
        assert_eq!(stats.kicks, 2);
    }

    #[test]
    fn parse_since_takes_rfc3339_and_plain_dates() {
        assert_eq!(
            parse_since("2026-11-01").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-01T08:30:00Z").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 8, 30, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-01T09:30:00.25+01:00").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 8, 30, 0).unwrap() + Duration::milliseconds(250)
        );
        assert_eq!(
            parse_since(" 2026-11-01 ").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn parse_since_errors_name_the_value_and_both_forms() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-1-5",
            "01-11-2026",
            "2026-11-01T08:30:00",
            "2026-11-01 08:30",
        ] {
            let err = parse_since(bad).unwrap_err();
            assert_eq!(
                err,
                StatsError::BadSince {
                    value: bad.to_owned()
                }
            );
            let text = err.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("RFC 3339"), "{text}");
            assert!(text.contains("YYYY-MM-DD"), "{text}");
        }
    }

    #[test]
    fn the_text_report_is_aligned() {
        let mut stats = compute(&mixed().events, &all());
        stats.since = Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        let expected = "\
helpim-bot statistics: rooms created since 2026-11-01T00:00:00Z

Rooms created                 6
Rooms with a client           3
Rooms closed                  5
  completed                   3
  no_client                   1
  timeout                     0
  lost                        0
  shutdown                    1
  error                       0
Claims expired                2  (staff 1, client 1)
Kicks                         1

                          rooms         p50         p90         max
Staff wait for a client       3      1m 00s      5m 00s      5m 00s
Chat duration                 3     20m 00s     40m 00s     40m 00s

p50/p90: nearest-rank percentiles; durations rounded to the second.
";
        assert_eq!(render_text(&stats), expected);
    }

    #[test]
    fn the_text_report_of_nothing_shows_dashes() {
        let text = render_text(&compute(&[], &all()));
        assert!(
            text.starts_with("helpim-bot statistics: all rooms\n"),
            "{text}"
        );
        assert!(
            text.contains("Staff wait for a client       0           -           -           -\n"),
            "{text}"
        );
    }

    #[test]
    fn json_uses_contract_strings_in_contract_order() {
        let mut stats = compute(&mixed().events, &all());
        stats.since = Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        let json = serde_json::to_string_pretty(&stats).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["since"], "2026-11-01T00:00:00Z");
        assert_eq!(value["rooms_closed_by_reason"]["completed"], 3);
        assert_eq!(value["rooms_closed_by_reason"]["timeout"], 0);
        assert_eq!(value["staff_wait"]["p90_secs"], 300.0);
        assert_eq!(value["claims_expired"]["staff"], 1);
        let positions: Vec<_> = CloseReason::ALL
            .iter()
            .map(|r| json.find(&format!("\"{r}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{json}");
    }

    /// `load` reads in pages; with tiny pages, every page boundary falls somewhere in the
    /// history, and the result must still be what `compute` gives on the whole history.
    #[tokio::test]
    async fn load_in_pages_matches_compute_on_the_whole_history() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let base = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
        let mut rooms = Vec::new();
        for i in 0..5_i64 {
            let room = store
                .create_room(&NewRoom {
                    jid: format!("helpim-{i}@conference.localhost"),
                    password: "pw".to_owned(),
                    bot_jid: "bot@localhost".to_owned(),
                    at: base + Duration::seconds(i),
                })
                .await
                .unwrap();
            rooms.push(room.id);
        }
        let step = |room_id, kind, from, to, secs: i64, role| RoomChange {
            role,
            close_reason: (to == RoomStatus::Closed).then_some(CloseReason::Completed),
            ..RoomChange::new(room_id, kind, from, to, base + Duration::seconds(secs))
        };
        use RoomStatus as S;
        for (i, &id) in rooms.iter().enumerate() {
            let i = i as i64;
            for change in [
                step(
                    id,
                    EventKind::Entered,
                    S::Available,
                    S::StaffWaiting,
                    10 + i,
                    Some(Role::Staff),
                ),
                step(
                    id,
                    EventKind::Entered,
                    S::StaffWaiting,
                    S::Chatting,
                    40 + 7 * i,
                    Some(Role::Client),
                ),
                step(
                    id,
                    EventKind::Kicked,
                    S::Chatting,
                    S::Chatting,
                    50 + i,
                    Some(Role::Intruder),
                ),
                step(
                    id,
                    EventKind::Closed,
                    S::Chatting,
                    S::Closed,
                    100 + 60 * i,
                    None,
                ),
            ] {
                store.apply(&change).await.unwrap();
            }
        }
        let mut events = Vec::new();
        for &id in &rooms {
            events.extend(store.events(id).await.unwrap());
        }
        events.sort_by_key(|e| e.id);
        for since in [
            None,
            Some(base + Duration::seconds(2)),
            Some(base + Duration::days(1)),
        ] {
            let query = StatsQuery { since };
            let expected = compute(&events, &query);
            for page_size in [1, 2, 3, 7, 1_000] {
                let loaded = load_in_pages(&store, &query, page_size).await.unwrap();
                assert_eq!(loaded, expected, "since {since:?}, page size {page_size}");
            }
        }
        let everything = load(&store, &all()).await.unwrap();
        assert_eq!(everything.rooms_created, 5);
        assert_eq!(everything.kicks, 5);
        assert_eq!(everything.staff_wait.count, 5);
    }
}
