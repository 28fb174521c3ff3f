//! The bot's Prometheus metrics: one process-wide registry that the actors update and the
//! HTTP listener encodes (OpenMetrics text, see [`crate::http`]).
//!
//! Names start with `helpim_`, use base units (seconds) and counters end in `_total`. No
//! label ever carries a room JID, a nick or any other free text: every label value comes
//! from a closed set (a [`RoomStatus`], a [`CloseReason`], a [`Role`], a [`KickReason`]),
//! so the number of series is bounded whatever people do.
//!
//! Where each metric is observed:
//! - the per-room writer ([`crate::actors::writer`]) sees every committed [`RoomChange`]:
//!   transitions, closes, the presence-to-commit latency, staff waits and chat durations
//!   ([`ChatClock`](crate::stats::ChatClock)), pending writes and write retries;
//! - the room actor: kicks, by their [`KickReason`], when the machine decides them;
//! - the supervisor and [`crate::app`]: reconnects; through [`crate::readiness`], the XMPP
//!   session, the lease and recovery;
//! - the pool: rooms created and failed creations;
//! - at scrape time, from the database ([`Metrics::refresh`]): rooms by status, ready rooms
//!   beside their target, and claims and claim expiries (the web application claims rooms in
//!   its own process, so the `room_event` history is the only place the bot can see them).
//!
//! Also `helpim_bad_rows`, read from the store's quarantine at scrape time.
//!
//! The registry is process-wide ([`metrics`]) rather than passed down: the room actor
//! starts its writer without knowing about metrics, and one bot runs per process.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use entity::{room, room_event};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::model::{CloseReason, EventKind, KickReason, Role, RoomStatus};
use crate::stats::ChatDurations;
use crate::store::{RoomChange, Store, StoreError};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of the presence-to-commit latency, in seconds: fine below 20 ms, where the
/// goals of the performance work lie (p99 at most 10 ms), coarse up to a database outage.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of how long staff wait for a client, in seconds (up to two hours).
const STAFF_WAIT_BUCKETS: [f64; 12] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0, 7200.0,
];

/// Buckets of how long a chat lasts, from the client's entry to the close, in seconds.
const CHAT_BUCKETS: [f64; 11] = [
    60.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 10800.0,
];

/// Labels of a status transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The status before.
    pub from: &'static str,
    /// The status after.
    pub to: &'static str,
}

/// A `reason` label from a closed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason's contract string.
    pub reason: &'static str,
}

/// A `role` label (`staff` or `client`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// The role's contract string.
    pub role: &'static str,
}

/// A `kind` label: a room event kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The event kind's contract string.
    pub kind: &'static str,
}

/// A `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status's contract string.
    pub status: &'static str,
}

/// Every metric of the bot, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `helpim_transitions_total{from,to}`: committed status changes (from ≠ to).
    pub transitions: Family<TransitionLabels, Counter>,
    /// `helpim_closes_total{reason}`: rooms closed, by close reason.
    pub closes: Family<ReasonLabel, Counter>,
    /// `helpim_kicks_total{reason}`: people the bot kicked.
    pub kicks: Family<ReasonLabel, Counter>,
    /// `helpim_coalesced_events_total{kind}`: nick changes and kicks recorded together with
    /// others of their window ([`crate::lifecycle::COALESCE_WINDOW`]) instead of one row each.
    pub coalesced: Family<KindLabel, Counter>,
    /// `helpim_bans_total`: JIDs a room had the server keep out after repeated kicks
    /// ([`crate::lifecycle::BAN_AFTER`]).
    pub bans: Counter,
    /// `helpim_claims_total{role}`: claims made (by the web application or the CLI).
    pub claims: Family<RoleLabel, Counter>,
    /// `helpim_claim_expiries_total{role}`: claims released because nobody used them.
    pub claim_expiries: Family<RoleLabel, Counter>,
    /// `helpim_staff_wait_seconds`: from the staff member's entry to the client's.
    pub staff_wait: Histogram,
    /// `helpim_chat_duration_seconds`: from the client's entry to the room's close.
    pub chat_duration: Histogram,
    /// `helpim_presence_to_commit_seconds`: from the bot handling a person's presence to
    /// the commit of the resulting row.
    pub presence_to_commit: Histogram,
    /// `helpim_pending_writes`: room changes queued and not yet committed.
    pub pending_writes: Gauge,
    /// `helpim_bad_rows`: rows the bot cannot decode, skipped until they are corrected
    /// ([`crate::quarantine`]).
    pub bad_rows: Gauge,
    /// `helpim_write_retries_total`: database writes retried after a transient failure.
    pub write_retries: Counter,
    /// `helpim_write_conflicts_total`: changes dropped because the row disagreed.
    pub write_conflicts: Counter,
    /// `helpim_write_failures_total`: changes the database refused for good (the room was
    /// closed `error`).
    pub write_failures: Counter,
    /// `helpim_xmpp_session_up`: 1 while the XMPP session is online.
    pub xmpp_session_up: Gauge,
    /// `helpim_reconnects_total`: new XMPP sessions after the first.
    pub reconnects: Counter,
    /// `helpim_lease_held`: 1 while this process holds (and renews) the bot JID's lease.
    pub lease_held: Gauge,
    /// `helpim_recovery_done`: 1 once the recorded rooms are accounted for after start-up.
    pub recovery_done: Gauge,
    /// `helpim_rooms{status}`: this bot's rooms that are not closed, by status.
    pub rooms: Family<StatusLabel, Gauge>,
    /// `helpim_pool_ready_rooms`: rooms available and unclaimed.
    pub pool_ready: Gauge,
    /// `helpim_pool_target_ready_rooms`: `pool.available`.
    pub pool_target: Gauge,
    /// `helpim_pool_max_rooms`: `pool.max_rooms`.
    pub pool_max: Gauge,
    /// `helpim_rooms_created_total`: rooms configured and recorded as available.
    pub rooms_created: Counter,
    /// `helpim_room_creation_failures_total`: creations that failed and were cleaned up.
    pub room_creation_failures: Counter,
    /// The last `room_event` id already counted into the claim counters; `None` before
    /// [`Metrics::start_counting_claims`].
    claim_watermark: tokio::sync::Mutex<Option<i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process-wide metrics.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (and labelled counters at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("helpim");
        let m = Metrics {
            registry: Registry::default(),
            transitions: Family::default(),
            closes: Family::default(),
            kicks: Family::default(),
            coalesced: Family::default(),
            bans: Counter::default(),
            claims: Family::default(),
            claim_expiries: Family::default(),
            staff_wait: Histogram::new(STAFF_WAIT_BUCKETS),
            chat_duration: Histogram::new(CHAT_BUCKETS),
            presence_to_commit: Histogram::new(LATENCY_BUCKETS),
            pending_writes: Gauge::default(),
            bad_rows: Gauge::default(),
            write_retries: Counter::default(),
            write_conflicts: Counter::default(),
            write_failures: Counter::default(),
            xmpp_session_up: Gauge::default(),
            reconnects: Counter::default(),
            lease_held: Gauge::default(),
            recovery_done: Gauge::default(),
            rooms: Family::default(),
            pool_ready: Gauge::default(),
            pool_target: Gauge::default(),
            pool_max: Gauge::default(),
            rooms_created: Counter::default(),
            room_creation_failures: Counter::default(),
            claim_watermark: tokio::sync::Mutex::new(None),
        };
        for reason in CloseReason::ALL {
            let _ = m.closes.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for reason in KickReason::LABELS {
            let _ = m.kicks.get_or_create(&ReasonLabel { reason });
        }
        for kind in [EventKind::NickChanged, EventKind::Kicked] {
            let _ = m.coalesced.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
        for role in [Role::Staff, Role::Client] {
            let label = RoleLabel {
                role: role.as_str(),
            };
            let _ = m.claims.get_or_create(&label);
            let _ = m.claim_expiries.get_or_create(&label);
        }
        for status in RoomStatus::ALL.iter().filter(|s| **s != RoomStatus::Closed) {
            let _ = m.rooms.get_or_create(&StatusLabel {
                status: status.as_str(),
            });
        }

        registry.register(
            "build",
            "Version of the running helpim-bot",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "transitions",
            "Room status changes committed to the database",
            m.transitions.clone(),
        );
        registry.register("closes", "Rooms closed, by reason", m.closes.clone());
        registry.register(
            "kicks",
            "People the bot kicked out of a room, by reason",
            m.kicks.clone(),
        );
        registry.register(
            "coalesced_events",
            "Nick changes and kicks recorded together with others of their window, by kind",
            m.coalesced.clone(),
        );
        registry.register(
            "bans",
            "JIDs a room had the server keep out after repeated kicks",
            m.bans.clone(),
        );
        registry.register(
            "claims",
            "Rooms claimed by the web application, by role",
            m.claims.clone(),
        );
        registry.register(
            "claim_expiries",
            "Claims released because nobody used them in time, by role",
            m.claim_expiries.clone(),
        );
        registry.register_with_unit(
            "staff_wait",
            "How long staff waited for a client, from entry to the client's entry",
            Unit::Seconds,
            m.staff_wait.clone(),
        );
        registry.register_with_unit(
            "chat_duration",
            "How long chats lasted, from the client's entry to the close",
            Unit::Seconds,
            m.chat_duration.clone(),
        );
        registry.register_with_unit(
            "presence_to_commit",
            "From the bot handling a person's presence to the commit of its row",
            Unit::Seconds,
            m.presence_to_commit.clone(),
        );
        registry.register(
            "pending_writes",
            "Room changes queued for the database and not yet committed",
            m.pending_writes.clone(),
        );
        registry.register(
            "bad_rows",
            "Database rows the bot cannot decode, skipped until corrected",
            m.bad_rows.clone(),
        );
        registry.register(
            "write_retries",
            "Database writes retried after a transient failure",
            m.write_retries.clone(),
        );
        registry.register(
            "write_conflicts",
            "Room changes not written because the row disagreed with the bot",
            m.write_conflicts.clone(),
        );
        registry.register(
            "write_failures",
            "Room changes the database refused for good (the room was closed as error)",
            m.write_failures.clone(),
        );
        registry.register(
            "xmpp_session_up",
            "1 while the XMPP session is online",
            m.xmpp_session_up.clone(),
        );
        registry.register(
            "reconnects",
            "New XMPP sessions after the first one",
            m.reconnects.clone(),
        );
        registry.register(
            "lease_held",
            "1 while this process holds the lease on its bot JID",
            m.lease_held.clone(),
        );
        registry.register(
            "recovery_done",
            "1 once the rooms recorded before start-up are accounted for",
            m.recovery_done.clone(),
        );
        registry.register(
            "rooms",
            "This bot's rooms that are not closed, by status",
            m.rooms.clone(),
        );
        registry.register(
            "pool_ready_rooms",
            "Rooms available and not claimed: what the web application can hand out",
            m.pool_ready.clone(),
        );
        registry.register(
            "pool_target_ready_rooms",
            "Ready rooms the pool keeps (pool.available)",
            m.pool_target.clone(),
        );
        registry.register(
            "pool_max_rooms",
            "Most open rooms the pool may have (pool.max_rooms)",
            m.pool_max.clone(),
        );
        registry.register(
            "rooms_created",
            "Rooms configured on the server and recorded as available",
            m.rooms_created.clone(),
        );
        registry.register(
            "room_creation_failures",
            "Room creations that failed",
            m.room_creation_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Counts one committed room change: transition, close, kick and, for a change about a
    /// person, the latency from the presence (`change.at`) to `committed`.
    pub fn observe_commit(&self, change: &RoomChange, committed: DateTime<Utc>) {
        if change.from != change.to {
            self.transitions
                .get_or_create(&TransitionLabels {
                    from: change.from.as_str(),
                    to: change.to.as_str(),
                })
                .inc();
            if change.to == RoomStatus::Closed {
                let reason = change.close_reason.map_or("unknown", CloseReason::as_str);
                self.closes.get_or_create(&ReasonLabel { reason }).inc();
            }
        }
        // A change naming a person was caused by that person's presence; a timeout or a
        // shutdown names nobody.
        if change.nick.is_some() {
            let latency = (committed - change.at).to_std().unwrap_or_default();
            self.presence_to_commit.observe(latency.as_secs_f64());
        }
    }

    /// Records the staff wait and the chat duration a committed change completed
    /// ([`crate::stats::ChatClock`], the clock the statistics use too).
    pub fn observe_chat(&self, done: &ChatDurations) {
        let secs = |d: chrono::TimeDelta| d.to_std().unwrap_or_default().as_secs_f64();
        if let Some(wait) = done.staff_wait {
            self.staff_wait.observe(secs(wait));
        }
        if let Some(chat) = done.chat {
            self.chat_duration.observe(secs(chat));
        }
    }

    /// Counts `count` events of `kind` recorded together in one row.
    pub fn count_coalesced(&self, kind: EventKind, count: u32) {
        self.coalesced
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc_by(u64::from(count));
    }

    /// Counts a person the bot decided to remove, by the reason's label.
    pub fn count_kick(&self, reason: KickReason) {
        self.kicks
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// Sets the pool's configured sizes (exported beside the ready rooms).
    pub fn set_pool_target(&self, available: u32, max_rooms: u32) {
        self.pool_target.set(i64::from(available));
        self.pool_max.set(i64::from(max_rooms));
    }

    /// Starts counting claims from now on: claims recorded before this process started
    /// are not counted (counters start at zero with the process, as Prometheus expects).
    pub async fn start_counting_claims(&self, store: &Store) -> Result<(), StoreError> {
        let newest = room_event::Entity::find()
            .select_only()
            .column_as(Expr::col(room_event::Column::Id).max(), "max_id")
            .into_tuple::<Option<i64>>()
            .one(store.connection())
            .await?
            .flatten();
        *self.claim_watermark.lock().await = Some(newest.unwrap_or(0));
        Ok(())
    }

    /// Brings the database-derived metrics up to date for `bot_jid`: rooms by status, ready
    /// rooms, and the claims and claim expiries recorded since the last refresh.
    ///
    /// Claims are read from `room_event` by id above a watermark; with PostgreSQL, an event
    /// whose transaction commits after a later id was already read is missed (rare: the
    /// window is one scrape and one concurrent claim).
    pub async fn refresh(&self, store: &Store, bot_jid: &str) -> Result<(), StoreError> {
        let db = store.connection();
        let by_status: Vec<(String, i64)> = room::Entity::find()
            .select_only()
            .column(room::Column::Status)
            .column_as(Expr::col(room::Column::Id).count(), "n")
            .filter(room::Column::BotJid.eq(bot_jid))
            .filter(room::Column::Status.ne(RoomStatus::Closed.as_str()))
            .group_by(room::Column::Status)
            .into_tuple()
            .all(db)
            .await?;
        for status in RoomStatus::ALL.iter().filter(|s| **s != RoomStatus::Closed) {
            let n = by_status
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            self.rooms
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(n);
        }
        self.bad_rows.set(store.bad_rows().len() as i64);
        let counts = store.pool_counts(bot_jid).await?;
        self.pool_ready
            .set(i64::try_from(counts.ready).unwrap_or(i64::MAX));

        let mut watermark = self.claim_watermark.lock().await;
        let Some(after) = *watermark else {
            return Ok(());
        };
        let mine = Query::select()
            .column(room::Column::Id)
            .from(room::Entity)
            .and_where(Expr::col(room::Column::BotJid).eq(bot_jid))
            .to_owned();
        let kinds = [
            EventKind::StaffClaimed,
            EventKind::ClientClaimed,
            EventKind::ClaimExpired,
        ]
        .map(EventKind::as_str);
        let rows: Vec<(i64, String, Option<String>)> = room_event::Entity::find()
            .select_only()
            .column(room_event::Column::Id)
            .column(room_event::Column::Kind)
            .column(room_event::Column::Role)
            .filter(room_event::Column::Id.gt(after))
            .filter(room_event::Column::Kind.is_in(kinds))
            .filter(room_event::Column::RoomId.in_subquery(mine))
            .order_by_asc(room_event::Column::Id)
            .into_tuple()
            .all(db)
            .await?;
        for (id, kind, role) in rows {
            *watermark = Some(id);
            let role = match (kind.as_str(), role.as_deref()) {
                (_, Some("client")) => Role::Client,
                (_, Some("staff")) => Role::Staff,
                ("client_claimed", _) => Role::Client,
                _ => Role::Staff,
            };
            let label = RoleLabel {
                role: role.as_str(),
            };
            if kind == EventKind::ClaimExpired.as_str() {
                self.claim_expiries.get_or_create(&label).inc();
            } else {
                self.claims.get_or_create(&label).inc();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ChatClock;
    use crate::store::RoomEvent;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn change(kind: EventKind, from: RoomStatus, to: RoomStatus, role: Option<Role>) -> RoomChange {
        RoomChange {
            nick: role.map(|r| format!("{r}-nick")),
            role,
            ..RoomChange::new(1, kind, from, to, at(0))
        }
    }

    /// The text parsed by a Prometheus text parser, as (name, labels, value) triples.
    fn scrape(m: &Metrics) -> prometheus_parse::Scrape {
        let text = m.encode();
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is not a scalar: {other:?}"),
        }
    }

    #[test]
    fn a_chat_is_counted_and_timed() {
        let m = Metrics::new();
        let mut clock = ChatClock::default();
        use RoomStatus::*;
        let mut staff = change(
            EventKind::Entered,
            Available,
            StaffWaiting,
            Some(Role::Staff),
        );
        staff.at = at(0);
        let mut client = change(
            EventKind::Entered,
            StaffWaiting,
            Chatting,
            Some(Role::Client),
        );
        client.at = at(90);
        let mut left = change(EventKind::Left, Chatting, OneLeft, Some(Role::Client));
        left.at = at(600);
        let mut closed = change(EventKind::Closed, OneLeft, Closed, Some(Role::Staff));
        closed.at = at(690);
        closed.close_reason = Some(CloseReason::Completed);
        let mut kick = change(EventKind::Kicked, OneLeft, OneLeft, Some(Role::Intruder));
        kick.detail = crate::texts::Text::kick(KickReason::ChatEnded)
            .english()
            .into();
        for c in [&staff, &client, &left, &kick, &closed] {
            m.observe_commit(c, c.at + chrono::Duration::milliseconds(3));
            m.observe_chat(&clock.on_commit(c));
        }
        m.count_kick(KickReason::ChatEnded);

        let s = scrape(&m);
        let t = |from, to| {
            value(
                &s,
                "helpim_transitions_total",
                &[("from", from), ("to", to)],
            )
        };
        assert_eq!(t("available", "staff_waiting"), 1.0);
        assert_eq!(t("one_left", "closed"), 1.0);
        assert_eq!(
            value(&s, "helpim_closes_total", &[("reason", "completed")]),
            1.0
        );
        assert_eq!(
            value(&s, "helpim_closes_total", &[("reason", "timeout")]),
            0.0
        );
        assert_eq!(
            value(&s, "helpim_kicks_total", &[("reason", "chat_ended")]),
            1.0
        );
        let histogram = |name: &str| {
            let sample = s.samples.iter().find(|x| x.metric == name).unwrap();
            match &sample.value {
                prometheus_parse::Value::Histogram(buckets) => buckets.clone(),
                other => panic!("{name}: {other:?}"),
            }
        };
        // Every change naming a person (all five) at 3 ms: in the 5 ms bucket, not 2 ms.
        let latency = histogram("helpim_presence_to_commit_seconds");
        let count = |b: &[prometheus_parse::HistogramCount], le: f64| {
            b.iter().find(|c| c.less_than == le).unwrap().count
        };
        assert_eq!(count(&latency, 0.002), 0.0);
        assert_eq!(count(&latency, 0.005), 5.0);
        let wait = histogram("helpim_staff_wait_seconds");
        assert_eq!(count(&wait, 60.0), 0.0);
        assert_eq!(count(&wait, 120.0), 1.0);
        let chat = histogram("helpim_chat_duration_seconds");
        assert_eq!(count(&chat, 300.0), 0.0);
        assert_eq!(count(&chat, 600.0), 1.0);
        assert_eq!(value(&s, "helpim_build_info", &[]), 1.0);
    }

    #[test]
    fn names_follow_the_conventions_and_no_label_is_free_text() {
        let m = Metrics::new();
        let mut c = change(
            EventKind::Kicked,
            RoomStatus::Chatting,
            RoomStatus::Chatting,
            Some(Role::Intruder),
        );
        c.detail = "some text nobody planned for, with a nick: alice".into();
        m.observe_commit(&c, c.at);
        // Kicks are counted by their typed reason when decided, never from a text.
        m.count_kick(KickReason::StillRemoved);
        let text = m.encode();
        let s = scrape(&m);
        assert_eq!(value(&s, "helpim_kicks_total", &[("reason", "other")]), 1.0);
        assert!(!text.contains("alice"));
        for sample in &s.samples {
            assert!(sample.metric.starts_with("helpim_"), "{}", sample.metric);
        }
        // Counter families are declared without the suffix and sampled with it.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            if kind == "counter" {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(&format!("{name}_total"))),
                    "{name} has no _total sample"
                );
            }
        }
    }

    #[test]
    fn a_recovered_room_reads_its_history_once() {
        use RoomStatus::*;
        let first = change(EventKind::Left, Chatting, OneLeft, Some(Role::Client));
        assert!(ChatClock::needs_history(&first));
        let new = change(
            EventKind::Entered,
            Available,
            StaffWaiting,
            Some(Role::Staff),
        );
        assert!(!ChatClock::needs_history(&new));
        let history = [RoomEvent {
            id: 3,
            room_id: 1,
            kind: EventKind::Entered,
            from_status: Some(StaffWaiting),
            to_status: Chatting,
            at: at(-100),
            nick: Some("c".into()),
            role: Some(Role::Client),
            detail: String::new(),
            close_reason: None,
        }];
        let mut clock = ChatClock::from_history(&history);
        let mut closed = change(EventKind::Closed, OneLeft, Closed, None);
        closed.at = at(200);
        assert_eq!(
            clock.on_commit(&closed).chat,
            Some(chrono::TimeDelta::seconds(300))
        );
    }

    #[test]
    fn kick_reasons_are_counted_under_a_closed_set_of_labels() {
        use KickReason::*;
        for reason in [
            NotAssigned,
            AssignedToAnother,
            Full,
            ChatEnded,
            StillRemoved,
        ] {
            assert!(KickReason::LABELS.contains(&reason.label()), "{reason:?}");
        }
        assert_eq!(
            AssignedToAnother.label(),
            NotAssigned.label(),
            "a claim bound to another JID is a missing claim for this person"
        );
        let m = Metrics::new();
        m.count_kick(Full);
        let s = scrape(&m);
        assert_eq!(value(&s, "helpim_kicks_total", &[("reason", "full")]), 1.0);
        assert_eq!(value(&s, "helpim_kicks_total", &[("reason", "other")]), 0.0);
    }
}
