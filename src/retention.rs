//! The retention purge: what identifies a person does not outlive `[retention]`.
//!
//! A room's history is kept for statistics, but its nicks, real JIDs and claimants are
//! personal data of people who asked a helpline for help, and nothing needs them once the
//! chat is long over. [`Purge::run`] therefore, in this order:
//!
//! 1. **deletes** the rooms closed more than `retention.delete_days` ago, with their events
//!    (only when `delete_days` is set);
//! 2. **scrubs** the rooms closed more than `retention.personal_data_days` ago: every
//!    personal-data column of the row (`staff_nick`, `client_nick`, `*_claimed_by`,
//!    `*_jid`, `*_claimed_jid`; the password too, in case it survived) becomes NULL
//!    (the password `''`), `personal_data_removed_at` records when, and every event of the
//!    room loses its `nick` and gets a neutral `detail` chosen by its kind alone (a detail
//!    may quote a nick: "changed nick from X"). Statuses, timestamps, close reasons and roles
//!    stay, so [`crate::stats`] gives exactly the same figures before and after;
//! 3. **deletes room log files** (`logging.room_dir`, `<room jid>.log`) not written to for
//!    `personal_data_days`.
//!
//! Rows are handled in batches of [`Purge::batch_rooms`] rooms, one short transaction each
//! (select the ids, change those rows, commit), so a year of history never holds a lock for
//! long and the bot's transitions slip in between batches. Only `closed` rooms are touched,
//! which the bot no longer changes (except for recording a confirmed destroy). A batch that
//! is interrupted (shutdown, lost connection) rolls back whole and the next run redoes it,
//! so the purge can be stopped at any time; several processes may purge at once (on
//! PostgreSQL and MariaDB each batch skips the rooms another has locked).
//!
//! The bot runs it once a day ([`spawn_daily`]); operators run it with
//! `helpim-bot purge [--dry-run]`, where the dry run only counts ([`Purge::plan`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{room, room_event};
use sea_orm::sea_query::{CaseStatement, Expr, SelectStatement};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    TransactionTrait,
};

use crate::config::{LoggingConfig, RetentionConfig};
use crate::model::{EventKind, RoomStatus};
use crate::store::{Store, StoreError};

/// How many rooms one batch changes by default: with their events (about ten each) a few
/// thousand rows, a transaction of milliseconds.
pub const DEFAULT_BATCH_ROOMS: u64 = 200;

/// How long after start-up the bot's first daily purge runs: recovery comes first.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(60);

/// How often the bot purges.
const DAILY: Duration = Duration::from_secs(24 * 60 * 60);

/// How soon the bot tries again after a failed purge (database unreachable, ...).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60 * 60);

/// Why a purge stopped. Whatever it finished before (whole batches) stays done.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The database refused or failed a statement.
    #[error("database error during the retention purge")]
    Store(#[from] StoreError),
    /// The room log directory could not be read, or a log file could not be deleted.
    #[error("room log {}: {source}", path.display())]
    RoomLog {
        /// The directory or file concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl From<sea_orm::DbErr> for RetentionError {
    fn from(err: sea_orm::DbErr) -> Self {
        RetentionError::Store(StoreError::Db(err))
    }
}

/// What to purge: the retention periods, the room log directory and the batch size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// Rooms closed longer ago than this many days are scrubbed; log files this old deleted.
    pub personal_data_days: u32,
    /// Rooms closed longer ago than this many days are deleted; `None`: never.
    pub delete_days: Option<u32>,
    /// Where room log files are (`logging.room_dir`); `None`: there are none.
    pub room_dir: Option<PathBuf>,
    /// How many rooms one transaction changes (at least 1).
    pub batch_rooms: u64,
}

/// What a purge did, or (for a dry run) would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// Whether this is a dry run: counted, nothing changed.
    pub dry_run: bool,
    /// Rooms closed before this instant are scrubbed.
    pub scrub_before: DateTime<Utc>,
    /// Rooms closed before this instant are deleted; `None`: never.
    pub delete_before: Option<DateTime<Utc>>,
    /// Rooms whose personal data was (would be) removed.
    pub scrubbed_rooms: u64,
    /// Their events, which lost their nicks and details.
    pub scrubbed_events: u64,
    /// Rooms deleted.
    pub deleted_rooms: u64,
    /// Their events, deleted with them.
    pub deleted_events: u64,
    /// Room log files deleted.
    pub deleted_logs: u64,
    /// Transactions that changed rows (0 for a dry run).
    pub batches: u64,
}

impl Purge {
    /// The purge the configuration asks for, in batches of [`DEFAULT_BATCH_ROOMS`].
    pub fn new(retention: &RetentionConfig, logging: &LoggingConfig) -> Purge {
        Purge {
            personal_data_days: retention.personal_data_days,
            delete_days: retention.delete_days,
            room_dir: logging.room_dir.clone(),
            batch_rooms: DEFAULT_BATCH_ROOMS,
        }
    }

    /// Rooms closed before this are scrubbed, log files last written before it deleted.
    fn scrub_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.personal_data_days))
    }

    /// Rooms closed before this are deleted.
    fn delete_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.delete_days
            .map(|days| now - chrono::Duration::days(i64::from(days)))
    }

    /// An empty report for a purge at `now`.
    fn report(&self, now: DateTime<Utc>, dry_run: bool) -> PurgeReport {
        PurgeReport {
            dry_run,
            scrub_before: self.scrub_before(now),
            delete_before: self.delete_before(now),
            scrubbed_rooms: 0,
            scrubbed_events: 0,
            deleted_rooms: 0,
            deleted_events: 0,
            deleted_logs: 0,
            batches: 0,
        }
    }

    /// Purges as of `now`: deletes, scrubs, then removes old room logs (see the module
    /// documentation), batch after batch until nothing is left.
    pub async fn run(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<PurgeReport, RetentionError> {
        let mut report = self.report(now, false);
        let db = store.connection();
        let batch = self.batch_rooms.max(1);
        if let Some(before) = report.delete_before {
            loop {
                let txn = db.begin().await?;
                let ids = self.batch_ids(&txn, deletable(before), batch).await?;
                if ids.is_empty() {
                    txn.rollback().await?;
                    break;
                }
                report.deleted_events += room_event::Entity::delete_many()
                    .filter(room_event::Column::RoomId.is_in(ids.clone()))
                    .exec(&txn)
                    .await?
                    .rows_affected;
                report.deleted_rooms += room::Entity::delete_many()
                    .filter(room::Column::Id.is_in(ids))
                    .exec(&txn)
                    .await?
                    .rows_affected;
                txn.commit().await?;
                report.batches += 1;
                // Let the bot's waiting writes in before the next batch.
                tokio::task::yield_now().await;
            }
        }
        let removed_at = crate::store::now();
        loop {
            let txn = db.begin().await?;
            let ids = self.batch_ids(&txn, scrubbable(&report), batch).await?;
            if ids.is_empty() {
                txn.rollback().await?;
                break;
            }
            report.scrubbed_rooms += room::Entity::update_many()
                .set(room::ActiveModel {
                    password: Set(String::new()),
                    staff_nick: Set(None),
                    client_nick: Set(None),
                    staff_claimed_by: Set(None),
                    client_claimed_by: Set(None),
                    staff_jid: Set(None),
                    client_jid: Set(None),
                    staff_claimed_jid: Set(None),
                    client_claimed_jid: Set(None),
                    extra_claimed_by: Set(None),
                    extra_claimed_jid: Set(None),
                    personal_data_removed_at: Set(Some(removed_at)),
                    ..Default::default()
                })
                .filter(room::Column::Id.is_in(ids.clone()))
                .exec(&txn)
                .await?
                .rows_affected;
            report.scrubbed_events += room_event::Entity::update_many()
                .set(room_event::ActiveModel {
                    nick: Set(None),
                    ..Default::default()
                })
                .col_expr(room_event::Column::Detail, neutral_detail())
                .filter(room_event::Column::RoomId.is_in(ids))
                .exec(&txn)
                .await?
                .rows_affected;
            txn.commit().await?;
            report.batches += 1;
            tokio::task::yield_now().await;
        }
        // What SQL could not judge is reported: rows outside the contract that still hold
        // personal data and were not due by their creation time (or whose creation time is
        // itself unreadable). The quarantine lists them too (`helpim_bad_rows`).
        let statuses: Vec<&str> = RoomStatus::ALL.iter().map(|s| s.as_str()).collect();
        let kept = room::Entity::find()
            .filter(room::Column::PersonalDataRemovedAt.is_null())
            .filter(room::Column::Status.is_not_in(statuses))
            .count(db)
            .await?;
        if kept > 0 {
            log::warn!(
                "retention: {kept} room row(s) with a status outside the contract still hold \
                 personal data (not yet past retention.personal_data_days by their creation, \
                 or with an unreadable creation time): correct or delete them"
            );
        }
        report.deleted_logs = self.room_logs(report.scrub_before, true)?;
        Ok(report)
    }

    /// What [`Purge::run`] would do as of `now`, counted with read-only queries: changes
    /// nothing, in the database or on disk.
    pub async fn plan(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<PurgeReport, RetentionError> {
        let mut report = self.report(now, true);
        let db = store.connection();
        let ids_of = |condition: sea_orm::Condition| -> SelectStatement {
            room::Entity::find()
                .select_only()
                .column(room::Column::Id)
                .filter(condition)
                .into_query()
        };
        let events_of = |condition: sea_orm::Condition| {
            room_event::Entity::find()
                .filter(room_event::Column::RoomId.in_subquery(ids_of(condition)))
                .count(db)
        };
        if let Some(before) = report.delete_before {
            report.deleted_rooms = room::Entity::find()
                .filter(deletable(before))
                .count(db)
                .await?;
            report.deleted_events = events_of(deletable(before)).await?;
        }
        report.scrubbed_rooms = room::Entity::find()
            .filter(scrubbable(&report))
            .count(db)
            .await?;
        report.scrubbed_events = events_of(scrubbable(&report)).await?;
        report.deleted_logs = self.room_logs(report.scrub_before, false)?;
        Ok(report)
    }

    /// The ids of the next batch of rooms matching `condition`, oldest first.
    ///
    /// On PostgreSQL and MySQL/MariaDB the rows are locked for the batch's transaction and
    /// rows locked by others are skipped (`FOR UPDATE SKIP LOCKED`), so that two purges at
    /// once (two bots sharing a database, or the CLI beside the bot) take different rooms
    /// and a row the bot is updating is left for the next run. SQLite has one writer at a
    /// time anyway.
    async fn batch_ids(
        &self,
        txn: &DatabaseTransaction,
        condition: sea_orm::Condition,
        batch: u64,
    ) -> Result<Vec<i64>, RetentionError> {
        let mut query = room::Entity::find()
            .select_only()
            .column(room::Column::Id)
            .filter(condition)
            .order_by_asc(room::Column::Id)
            .limit(batch);
        if txn.get_database_backend() != DatabaseBackend::Sqlite {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        Ok(query.into_tuple().all(txn).await?)
    }

    /// Counts, and with `delete` deletes, the room log files last written before `before`.
    ///
    /// Only regular files named `*.log` count: the directory is the bot's, but an operator
    /// may keep other things beside the logs.
    fn room_logs(&self, before: DateTime<Utc>, delete: bool) -> Result<u64, RetentionError> {
        let Some(dir) = &self.room_dir else {
            return Ok(0);
        };
        let failed = |path: &Path| {
            let path = path.to_owned();
            move |source| RetentionError::RoomLog { path, source }
        };
        let before = SystemTime::from(before);
        let mut count = 0;
        for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
            let entry = entry.map_err(failed(dir))?;
            let path = entry.path();
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Deleted meanwhile (another purge): nothing left to do.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(failed(&path)(err)),
            };
            let is_log = path.extension().is_some_and(|ext| ext == "log");
            if !metadata.is_file() || !is_log {
                continue;
            }
            if metadata.modified().map_err(failed(&path))? >= before {
                continue;
            }
            if delete {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(failed(&path)(err)),
                }
            }
            count += 1;
        }
        Ok(count)
    }
}

/// Closed rooms that closed before `before`: to be deleted.
fn deletable(before: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(room::Column::Status.eq(RoomStatus::Closed.as_str()))
        .add(room::Column::ClosedAt.lt(before))
}

/// Rooms that still hold their personal data and are past the report's scrub cut-off:
/// closed rooms that closed before it (and are not about to be deleted, which a dry run
/// must not count twice).
///
/// A bad row ([`crate::quarantine`]) never keeps personal data: the conditions are SQL, so
/// they need no row to be decoded, and they also take the rows the bot cannot read that are
/// past the cut-off by their creation (a status outside the contract, or `closed` without a
/// closing time): no chat lasts that long. A MariaDB zero date is older than any cut-off.
fn scrubbable(report: &PurgeReport) -> sea_orm::Condition {
    let before = report.scrub_before;
    let mut closed = sea_orm::Condition::all()
        .add(room::Column::Status.eq(RoomStatus::Closed.as_str()))
        .add(room::Column::ClosedAt.lt(before));
    if let Some(delete_before) = report.delete_before {
        closed = closed.add(room::Column::ClosedAt.gte(delete_before));
    }
    let statuses: Vec<&str> = RoomStatus::ALL.iter().map(|s| s.as_str()).collect();
    let bad = sea_orm::Condition::any()
        .add(room::Column::Status.is_not_in(statuses))
        .add(
            sea_orm::Condition::all()
                .add(room::Column::Status.eq(RoomStatus::Closed.as_str()))
                .add(room::Column::ClosedAt.is_null()),
        );
    sea_orm::Condition::all()
        .add(room::Column::PersonalDataRemovedAt.is_null())
        .add(
            sea_orm::Condition::any().add(closed).add(
                sea_orm::Condition::all()
                    .add(bad)
                    .add(room::Column::CreatedAt.lt(before)),
            ),
        )
}

/// The detail a scrubbed event gets in place of its own: a fixed text per kind, so that no
/// nick, JID or claimant quoted in the original survives.
pub fn neutral_text(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Created => "room configured on the server",
        EventKind::Entered => "a person entered (personal data removed)",
        EventKind::Left => "a person left (personal data removed)",
        EventKind::Rejoined => "a person came back (personal data removed)",
        EventKind::NickChanged => "a person changed nick (personal data removed)",
        EventKind::Kicked => "a person was kicked (personal data removed)",
        EventKind::KickFailed => "a kick did not work (personal data removed)",
        EventKind::ExtraClaimed => "claimed an extra seat (personal data removed)",
        EventKind::StaffClaimed => "claimed for staff (personal data removed)",
        EventKind::ClientClaimed => "claimed for a client (personal data removed)",
        EventKind::ClaimExpired => "a claim expired (personal data removed)",
        EventKind::Closed => "room closed (personal data removed)",
        EventKind::Reconciled => "row corrected from the server (personal data removed)",
    }
}

/// The detail of an event of a kind the contract does not know (a damaged row).
const UNKNOWN_KIND_TEXT: &str = "personal data removed";

/// `CASE kind WHEN 'created' THEN '…' … ELSE '…' END`: [`neutral_text`] in SQL, so that a
/// batch's events are rewritten by one statement.
fn neutral_detail() -> Expr {
    EventKind::ALL
        .iter()
        .fold(CaseStatement::new(), |case, kind| {
            case.case(
                room_event::Column::Kind.eq(kind.as_str()),
                Expr::val(neutral_text(*kind)),
            )
        })
        .finally(Expr::val(UNKNOWN_KIND_TEXT))
        .into()
}

impl fmt::Display for PurgeReport {
    /// Three lines of numbers for the operator, e.g.
    ///
    /// ```text
    /// scrub: 12 rooms, 96 events (closed before 2026-11-02T08:00:00Z)
    /// delete: 0 rooms, 0 events (never: retention.delete_days is not set)
    /// room logs: 3 files deleted
    /// ```
    ///
    /// preceded, for a dry run, by a line saying that nothing was changed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let (done, would) = if self.dry_run {
            writeln!(f, "dry run: nothing was changed; a purge now would")?;
            ("to delete", "to scrub")
        } else {
            ("deleted", "scrubbed")
        };
        writeln!(
            f,
            "scrub: {} rooms, {} events {would} (closed before {})",
            self.scrubbed_rooms,
            self.scrubbed_events,
            time(self.scrub_before)
        )?;
        match self.delete_before {
            Some(before) => writeln!(
                f,
                "delete: {} rooms, {} events {done} (closed before {})",
                self.deleted_rooms,
                self.deleted_events,
                time(before)
            )?,
            None => writeln!(
                f,
                "delete: 0 rooms, 0 events (never: retention.delete_days is not set)"
            )?,
        }
        write!(f, "room logs: {} files {done}", self.deleted_logs)?;
        if !self.dry_run {
            write!(f, "\nbatches: {}", self.batches)?;
        }
        Ok(())
    }
}

/// Runs [`Purge::run`] in the background: a minute after start-up, then once a day (an
/// hour after a failure). The purge stops when the returned guard is dropped; a batch cut
/// short rolls back whole, so stopping is safe at any moment.
pub fn spawn_daily(store: Store, purge: Purge) -> DailyPurge {
    spawn_every(store, purge, FIRST_RUN_DELAY, DAILY, RETRY_AFTER_FAILURE)
}

/// [`spawn_daily`] with its delays as parameters: the first run after `first`, then every
/// `every`, or `retry` after a failure.
fn spawn_every(
    store: Store,
    purge: Purge,
    first: Duration,
    every: Duration,
    retry: Duration,
) -> DailyPurge {
    let task = tokio::spawn(async move {
        tokio::time::sleep(first).await;
        loop {
            let next = match purge.run(&store, crate::store::now()).await {
                Ok(report) => {
                    log::info!(
                        "retention purge: scrubbed {} rooms ({} events), deleted {} rooms \
                         ({} events) and {} room logs, in {} batches",
                        report.scrubbed_rooms,
                        report.scrubbed_events,
                        report.deleted_rooms,
                        report.deleted_events,
                        report.deleted_logs,
                        report.batches
                    );
                    every
                }
                Err(err) => {
                    log::warn!(
                        "retention purge failed, retrying in {retry:?}: {}",
                        crate::logging::chain(&err)
                    );
                    retry
                }
            };
            tokio::time::sleep(next).await;
        }
    });
    DailyPurge { task }
}

/// The bot's daily purge; dropping it stops the purge.
#[derive(Debug)]
pub struct DailyPurge {
    /// The background task.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DailyPurge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn purge() -> Purge {
        Purge {
            personal_data_days: 30,
            delete_days: Some(365),
            room_dir: None,
            batch_rooms: 10,
        }
    }

    /// Records a room closed `days_ago` days ago, with a staff nick.
    async fn closed_room(store: &Store, name: &str, days_ago: i64) -> i64 {
        use crate::model::{CloseReason, Role};
        use crate::store::{NewRoom, RoomChange};
        let at = crate::store::now() - chrono::Duration::days(days_ago);
        let room = store
            .create_room(&NewRoom {
                jid: format!("helpim-{name}@conference.localhost"),
                password: "pw".to_owned(),
                bot_jid: "bot@localhost".to_owned(),
                at,
            })
            .await
            .unwrap();
        let change = |kind, from, to, nick: Option<&str>| RoomChange {
            nick: nick.map(str::to_owned),
            role: Some(Role::Staff),
            detail: format!("{nick:?} did {kind}"),
            set_staff_nick: nick.map(str::to_owned),
            close_reason: Some(CloseReason::NoClient),
            ..RoomChange::new(room.id, kind, from, to, at)
        };
        let nick = format!("Staff-{name}");
        let steps = [
            change(
                EventKind::Entered,
                RoomStatus::Available,
                RoomStatus::StaffWaiting,
                Some(&nick),
            ),
            change(
                EventKind::Closed,
                RoomStatus::StaffWaiting,
                RoomStatus::Closed,
                None,
            ),
        ];
        for step in &steps {
            store.apply(step).await.unwrap();
        }
        room.id
    }

    /// Waits (up to 10 s) until room `id` is scrubbed.
    async fn until_scrubbed(store: &Store, id: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let room = store.room(id).await.unwrap().unwrap();
            if room.personal_data_removed_at.is_some() {
                assert_eq!(room.staff_nick, None);
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "room {id} not scrubbed in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The bot's timer purges after its first delay and again after every period, until
    /// the guard is dropped.
    #[tokio::test]
    async fn the_timer_purges_again_and_again() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let first = closed_room(&store, "first", 40).await;
        let guard = spawn_every(
            store.clone(),
            purge(),
            Duration::from_millis(20),
            Duration::from_millis(50),
            Duration::from_millis(50),
        );
        until_scrubbed(&store, first).await;
        let second = closed_room(&store, "second", 40).await;
        until_scrubbed(&store, second).await;
        assert!(!guard.task.is_finished());
        let handle = guard.task.abort_handle();
        drop(guard);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !handle.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "still running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn cut_offs_are_whole_days_before_now() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let report = purge().report(now, false);
        assert_eq!(
            report.scrub_before,
            Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap()
        );
        assert_eq!(
            report.delete_before,
            Some(Utc.with_ymd_and_hms(2025, 12, 2, 8, 0, 0).unwrap())
        );
        let never = Purge {
            delete_days: None,
            ..purge()
        };
        assert_eq!(never.report(now, false).delete_before, None);
    }

    #[test]
    fn every_kind_has_a_neutral_text_without_placeholders() {
        for kind in EventKind::ALL {
            let text = neutral_text(*kind);
            assert!(!text.is_empty());
            assert!(!text.contains('{'), "{text}");
        }
    }

    #[test]
    fn the_report_is_numbers_on_short_lines() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let mut report = purge().report(now, true);
        report.scrubbed_rooms = 12;
        report.scrubbed_events = 96;
        report.deleted_logs = 3;
        let text = report.to_string();
        assert_eq!(
            text,
            "dry run: nothing was changed; a purge now would\n\
             scrub: 12 rooms, 96 events to scrub (closed before 2026-11-02T08:00:00Z)\n\
             delete: 0 rooms, 0 events to delete (closed before 2025-12-02T08:00:00Z)\n\
             room logs: 3 files to delete"
        );
        report.dry_run = false;
        report.delete_before = None;
        report.batches = 2;
        assert_eq!(
            report.to_string(),
            "scrub: 12 rooms, 96 events scrubbed (closed before 2026-11-02T08:00:00Z)\n\
             delete: 0 rooms, 0 events (never: retention.delete_days is not set)\n\
             room logs: 3 files deleted\n\
             batches: 2"
        );
    }
}
