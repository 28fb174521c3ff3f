//! Typed queries over the SeaORM entities: rooms and their history.
//!
//! Not the only module that talks SQL: the claim, lease and retention statements live
//! beside their logic ([`crate::claims`], [`crate::lease`], [`crate::retention`]), and so do
//! the read-only queries of [`crate::stats`], [`crate::metrics`] and the status page
//! ([`crate::http::status`]). Each of those owns its statements; all run on the store's
//! connection ([`Store::connection`]) and decode rows through it where a bad row could be
//! met ([`Store::decode_rooms`]).
//!
//! Every status change is one transaction that changes the `room` row and appends its
//! `room_event` row together (in a burst, several rooms' changes share one:
//! [`Store::apply_many`]), so the history never disagrees with the room. The one write
//! without an event is [`Store::mark_destroyed`]: the server's confirmation that a closed
//! room is gone changes no status and is no step of the room's life. Every row read is validated
//! into the [`crate::model`] vocabulary; a string that is not part of the contract is reported
//! as [`StoreError::BadRow`], never guessed at. Queries that read many rows decode them one
//! by one, so that a bad row is quarantined ([`crate::quarantine`]) instead of failing the
//! query. Timestamps are truncated to microseconds,
//! the finest precision every backend keeps, so that what is written is exactly what is read.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{room, room_event};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectOptions, Database, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QueryTrait,
    Select, SqlErr, TransactionTrait,
};

use crate::config::redact_url;
use crate::model::{CloseReason, EventKind, Role, RoomStatus, UnknownValue};
use crate::quarantine::{BadRow, Quarantine, decode_each};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached at start-up; the URL tells the operator which one.
    #[error("cannot connect to the database at {url}")]
    Connect {
        /// The database URL with its password replaced by `***` ([`redact_url`]), safe to
        /// log.
        url: String,
        /// What the driver said.
        #[source]
        source: DbErr,
    },
    /// The database refused or failed a statement (connection lost, schema missing, ...).
    #[error("database error")]
    Db(#[from] DbErr),
    /// A row holds a value that is not part of the contract (edited by hand, or written by a
    /// newer program); it is reported rather than guessed at.
    #[error("{table} row {id} has a bad {column}")]
    BadRow {
        /// The table of the row.
        table: &'static str,
        /// The row's `id`.
        id: i64,
        /// The column holding the bad value.
        column: &'static str,
        /// The bad value and the accepted ones.
        #[source]
        source: UnknownValue,
    },
    /// A row could not be decoded at all (an unreadable or zero timestamp, a NULL where a
    /// value belongs): it is quarantined ([`crate::quarantine`]).
    #[error("{0}, which the bot cannot read")]
    Undecodable(BadRow),
    /// A change expected the room in one status but found it in another (or found no room):
    /// somebody else changed it first, so the caller must re-read instead of overwriting.
    #[error(
        "room {room_id} was expected to be {expected} but is {}",
        .found.map_or("missing", RoomStatus::as_str)
    )]
    Conflict {
        /// The room that was to be changed.
        room_id: i64,
        /// The status the change was computed from.
        expected: RoomStatus,
        /// The status the room actually has; `None` when there is no such room.
        found: Option<RoomStatus>,
    },
    /// A room with this JID is already recorded: room names must never be reused, because
    /// the web application finds rooms by JID.
    #[error("a room with JID {jid} already exists")]
    DuplicateJid {
        /// The JID that is taken.
        jid: String,
    },
    /// The transaction a change was written in together with other rooms' changes
    /// ([`crate::actors::committer`]) failed on the way (the connection was lost): nothing of it
    /// was written, and it may be tried again.
    #[error("the transaction failed before it committed: {0}")]
    Interrupted(String),
}

impl StoreError {
    /// Whether this is about a row the bot cannot decode ([`crate::quarantine`]), which the
    /// store has logged and counted already.
    pub fn is_bad_row(&self) -> bool {
        matches!(self, StoreError::BadRow { .. } | StoreError::Undecodable(_))
    }

    /// Whether the same operation may succeed later (the database unreachable, busy or
    /// restarting), so that it is worth retrying; see [`crate::db_errors`].
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::Interrupted(_) => true,
            StoreError::Db(error) => crate::db_errors::is_transient(error),
            StoreError::BadRow { .. }
            | StoreError::Undecodable(_)
            | StoreError::Conflict { .. }
            | StoreError::DuplicateJid { .. } => false,
        }
    }

    /// The [`BadRow`] this error is about: a value outside the contract, or a row that could
    /// not be decoded. Only those two come out of decoding a row.
    fn into_bad_row(self) -> BadRow {
        match self {
            StoreError::BadRow {
                table,
                id,
                column,
                source,
            } => BadRow {
                table,
                id,
                column: column.to_owned(),
                value: format!("{:?} (not one of {})", source.value, source.expected),
            },
            StoreError::Undecodable(bad) => bad,
            other => unreachable!("decoding a row gives no {other:?}"),
        }
    }
}

/// The rows a query found: those that decoded, and those that did not (quarantined).
#[derive(Debug, Clone)]
pub struct Rows<T> {
    /// The rows that decoded.
    pub rows: Vec<T>,
    /// The rows that did not.
    pub bad: Vec<BadRow>,
}

/// The database that records the rooms, shared by all actors.
///
/// Cloning is cheap: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The rows no read could decode, shared by every clone: see [`crate::quarantine`].
    quarantine: Quarantine,
}

/// What is needed to record a newly configured room; it starts `available`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRoom {
    /// The full bare room JID.
    pub jid: String,
    /// The room password, handed to the web application.
    pub password: String,
    /// The bare JID of the bot instance that owns the room.
    pub bot_jid: String,
    /// When the room was configured (truncated to microseconds when stored).
    pub at: DateTime<Utc>,
}

pub use crate::model::RoomChange;

/// A room as recorded, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    /// The row id, used by [`RoomChange::room_id`].
    pub id: i64,
    /// The full bare room JID.
    pub jid: String,
    /// The room password; empty once the room is closed, because the closing transaction
    /// clears it (no secret outlives its room). [`Room::password`] says which.
    pub password: String,
    /// Where the room is in its life.
    pub status: RoomStatus,
    /// The bare JID of the owning bot instance.
    pub bot_jid: String,
    /// The nick of the staff member who entered.
    pub staff_nick: Option<String>,
    /// The nick of the client who entered.
    pub client_nick: Option<String>,
    /// When the web application claimed the room for staff.
    pub staff_claimed_at: Option<DateTime<Utc>>,
    /// Who claimed the room for staff.
    pub staff_claimed_by: Option<String>,
    /// When the web application claimed the room for a client.
    pub client_claimed_at: Option<DateTime<Utc>>,
    /// Who claimed the room for a client.
    pub client_claimed_by: Option<String>,
    /// The real bare JID of the staff member who entered (personal data).
    pub staff_jid: Option<String>,
    /// The real bare JID of the client who entered (personal data).
    pub client_jid: Option<String>,
    /// The only bare JID the staff claim admits, when the web application bound it.
    pub staff_claimed_jid: Option<String>,
    /// The only bare JID the client claim admits, when the web application bound it.
    pub client_claimed_jid: Option<String>,
    /// When one extra seat of a chat in progress was claimed (and not used yet).
    pub extra_claimed_at: Option<DateTime<Utc>>,
    /// Who claimed the extra seat.
    pub extra_claimed_by: Option<String>,
    /// The only bare JID the extra claim admits, when bound.
    pub extra_claimed_jid: Option<String>,
    /// When the server confirmed the room destroyed (or gone).
    pub destroyed_at: Option<DateTime<Utc>>,
    /// When the retention purge removed the room's personal data; `None` while it is kept.
    pub personal_data_removed_at: Option<DateTime<Utc>>,
    /// When the room was recorded.
    pub created_at: DateTime<Utc>,
    /// When the status last changed.
    pub status_changed_at: DateTime<Utc>,
    /// When the room closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Why the room closed.
    pub close_reason: Option<CloseReason>,
}

impl Room {
    /// The room password, or `None` once it was cleared (the room is closed): what to hand
    /// to a person, without mistaking the cleared value for a password.
    pub fn password(&self) -> Option<&str> {
        Some(self.password.as_str()).filter(|password| !password.is_empty())
    }
}

/// One entry of a room's history, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEvent {
    /// The row id; events of a room are ordered by it.
    pub id: i64,
    /// The room the event happened in.
    pub room_id: i64,
    /// What happened.
    pub kind: EventKind,
    /// The status before; `None` for the creation event.
    pub from_status: Option<RoomStatus>,
    /// The status after.
    pub to_status: RoomStatus,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The nick of the person concerned.
    pub nick: Option<String>,
    /// The part that person plays.
    pub role: Option<Role>,
    /// Why, in words.
    pub detail: String,
    /// On the event that closed the room: why it closed.
    pub close_reason: Option<CloseReason>,
}

/// Which rooms [`Store::rooms`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct RoomFilter {
    /// Only rooms in this status.
    pub status: Option<RoomStatus>,
    /// Only rooms owned by this bot JID.
    pub bot_jid: Option<String>,
}

/// How many rooms one bot has, for deciding whether to create more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCounts {
    /// Rooms `available` and not yet claimed for staff: what the web app can still hand out.
    pub ready: u64,
    /// Rooms not `closed`: what the bot has on the server.
    pub open: u64,
}

/// The PostgreSQL channel on which every committed transition is announced: `NOTIFY
/// helpim_room, '<room id> <status>'`, sent by the transaction that makes the change (so it
/// arrives only if and when that transaction commits, in commit order). Claims and their
/// releases are announced by a trigger (migration m20261202_000004). See
/// `docs/webapp-contract.md`.
pub const NOTIFY_CHANNEL: &str = "helpim_room";

/// The row's update for one change, inside `txn` (only if the row is still in
/// `change.from`, else [`StoreError::Conflict`] and nothing written); returns the event to
/// insert beside it.
async fn update_in(
    txn: &DatabaseTransaction,
    change: &RoomChange,
) -> Result<room_event::ActiveModel, StoreError> {
    let at = micros(change.at);
    let mut update = room::ActiveModel {
        status: Set(change.to.as_str().to_owned()),
        ..Default::default()
    };
    if change.from != change.to {
        update.status_changed_at = Set(at);
        if closes(change) {
            update.closed_at = Set(Some(at));
            update.close_reason = Set(change.close_reason.map(|r| r.as_str().to_owned()));
            update.password = Set(String::new());
        }
    }
    if let Some(nick) = &change.set_staff_nick {
        update.staff_nick = Set(Some(nick.clone()));
    }
    if let Some(nick) = &change.set_client_nick {
        update.client_nick = Set(Some(nick.clone()));
    }
    if let Some(jid) = &change.set_staff_jid {
        update.staff_jid = Set(Some(jid.clone()));
    }
    if let Some(jid) = &change.set_client_jid {
        update.client_jid = Set(Some(jid.clone()));
    }
    if change.use_extra_claim {
        update.extra_claimed_at = Set(None);
        update.extra_claimed_by = Set(None);
        update.extra_claimed_jid = Set(None);
    }

    // sqlx connects to MySQL with CLIENT_FOUND_ROWS, so rows_affected counts matched rows
    // there too, even when the update changes no value.
    let updated = room::Entity::update_many()
        .set(update)
        .filter(room::Column::Id.eq(change.room_id))
        .filter(room::Column::Status.eq(change.from.as_str()))
        .exec(txn)
        .await?
        .rows_affected;
    if updated == 0 {
        return conflict(txn, change).await;
    }
    Ok(event_of(change))
}

/// The [`StoreError::Conflict`] of a change whose row was not in its `from`: what the row
/// holds instead (or that there is none).
async fn conflict(
    txn: &DatabaseTransaction,
    change: &RoomChange,
) -> Result<room_event::ActiveModel, StoreError> {
    let found = room::Entity::find_by_id(change.room_id).one(txn).await?;
    Err(StoreError::Conflict {
        room_id: change.room_id,
        expected: change.from,
        found: found.map(Room::try_from).transpose()?.map(|r| r.status),
    })
}

/// Whether `change` closes its room (a transition into `closed`).
fn closes(change: &RoomChange) -> bool {
    change.from != change.to && change.to == RoomStatus::Closed
}

/// The `room_event` row recording `change`.
fn event_of(change: &RoomChange) -> room_event::ActiveModel {
    let closes = closes(change);
    room_event::ActiveModel {
        room_id: Set(change.room_id),
        kind: Set(change.kind.as_str().to_owned()),
        from_status: Set(Some(change.from.as_str().to_owned())),
        to_status: Set(change.to.as_str().to_owned()),
        at: Set(micros(change.at)),
        nick: Set(change.nick.clone()),
        role: Set(change.role.map(|r| r.as_str().to_owned())),
        detail: Set(change.detail.clone()),
        close_reason: Set(change
            .close_reason
            .filter(|_| closes)
            .map(|r| r.as_str().to_owned())),
        ..Default::default()
    }
}

/// PostgreSQL's update of a whole batch's rows in one statement (one round trip instead of
/// one per room): each row changes only if it is still in its change's `from`, exactly as
/// [`update_in`] changes it. Returns the ids of the rows changed.
const POSTGRES_UPDATE_BATCH: &str = "UPDATE room AS r SET \
    status = v.to_status, \
    status_changed_at = CASE WHEN v.moves THEN v.at ELSE r.status_changed_at END, \
    closed_at = CASE WHEN v.closes THEN v.at ELSE r.closed_at END, \
    close_reason = CASE WHEN v.closes THEN v.close_reason ELSE r.close_reason END, \
    password = CASE WHEN v.closes THEN '' ELSE r.password END, \
    staff_nick = COALESCE(v.staff_nick, r.staff_nick), \
    client_nick = COALESCE(v.client_nick, r.client_nick), \
    staff_jid = COALESCE(v.staff_jid, r.staff_jid), \
    client_jid = COALESCE(v.client_jid, r.client_jid), \
    extra_claimed_at = CASE WHEN v.use_extra THEN NULL ELSE r.extra_claimed_at END, \
    extra_claimed_by = CASE WHEN v.use_extra THEN NULL ELSE r.extra_claimed_by END, \
    extra_claimed_jid = CASE WHEN v.use_extra THEN NULL ELSE r.extra_claimed_jid END \
    FROM (VALUES {rows}) AS v(id, from_status, to_status, at, moves, closes, close_reason, \
    staff_nick, client_nick, staff_jid, client_jid, use_extra) \
    WHERE r.id = v.id AND r.status = v.from_status RETURNING r.id";

/// Runs [`POSTGRES_UPDATE_BATCH`] for `changes` (at most one per room); the ids changed.
async fn update_all_postgres(
    txn: &DatabaseTransaction,
    changes: &[RoomChange],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    /// The types of the `VALUES` columns, in [`POSTGRES_UPDATE_BATCH`]'s order.
    const TYPES: [&str; 12] = [
        "bigint",
        "text",
        "text",
        "timestamptz",
        "boolean",
        "boolean",
        "text",
        "text",
        "text",
        "text",
        "text",
        "boolean",
    ];
    let mut rows = Vec::with_capacity(changes.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(changes.len() * TYPES.len());
    for change in changes {
        let first = values.len();
        let row: Vec<String> = TYPES
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::{ty}", first + i + 1))
            .collect();
        rows.push(format!("({})", row.join(", ")));
        values.extend([
            change.room_id.into(),
            change.from.as_str().into(),
            change.to.as_str().into(),
            micros(change.at).into(),
            (change.from != change.to).into(),
            closes(change).into(),
            change.close_reason.map(|r| r.as_str().to_owned()).into(),
            change.set_staff_nick.clone().into(),
            change.set_client_nick.clone().into(),
            change.set_staff_jid.clone().into(),
            change.set_client_jid.clone().into(),
            change.use_extra_claim.into(),
        ]);
    }
    let sql = POSTGRES_UPDATE_BATCH.replace("{rows}", &rows.join(", "));
    let changed = txn
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    changed
        .iter()
        .map(|row| Ok(row.try_get::<i64>("", "id")?))
        .collect()
}

/// [`Store::apply_many`]'s writes inside `txn`: one result per change (a conflict is that
/// change's result), or the error that must roll the whole transaction back.
async fn apply_many_in(
    txn: &DatabaseTransaction,
    changes: &[RoomChange],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    // PostgreSQL changes every row in one statement; a row it left alone disagreed, and is
    // read (as `update_in` does) to say how.
    let changed = match txn.get_database_backend() {
        DatabaseBackend::Postgres => Some(update_all_postgres(txn, changes).await?),
        _ => None,
    };
    let mut results = Vec::with_capacity(changes.len());
    let (mut events, mut notices) = (Vec::new(), Vec::new());
    for change in changes {
        let step = match &changed {
            Some(changed) if changed.contains(&change.room_id) => Ok(event_of(change)),
            Some(_) => conflict(txn, change).await,
            None => update_in(txn, change).await,
        };
        match step {
            Ok(event) => {
                events.push(event);
                notices.push((change.room_id, change.to));
                results.push(Ok(()));
            }
            Err(error @ (StoreError::Conflict { .. } | StoreError::BadRow { .. })) => {
                results.push(Err(error));
            }
            Err(error) => return Err(error),
        }
    }
    record_in(txn, events, &notices).await?;
    Ok(results)
}

/// Inserts the events of the changes written in `txn` (one statement, without RETURNING:
/// nothing of the new rows is needed) and queues their notifications (one statement on
/// PostgreSQL, nothing elsewhere).
async fn record_in(
    txn: &DatabaseTransaction,
    events: Vec<room_event::ActiveModel>,
    notices: &[(i64, RoomStatus)],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    room_event::Entity::insert_many(events)
        .exec_without_returning(txn)
        .await?;
    notify_all(txn, notices).await?;
    Ok(())
}

/// On PostgreSQL, queues the [`NOTIFY_CHANNEL`] notification of each room being in its
/// status in the transaction `txn`, in one statement (`SELECT pg_notify($1, $2),
/// pg_notify($1, $3), …`, sent in that order); on the other databases, does nothing (they
/// have no such mechanism: web applications poll, as the contract describes).
async fn notify_all<C: ConnectionTrait>(
    txn: &C,
    notices: &[(i64, RoomStatus)],
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend != DatabaseBackend::Postgres || notices.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = (0..notices.len())
        .map(|i| format!("pg_notify($1, ${})", i + 2))
        .collect();
    let mut values: Vec<sea_orm::Value> = vec![NOTIFY_CHANNEL.into()];
    values.extend(
        notices
            .iter()
            .map(|(room_id, status)| format!("{room_id} {status}").into()),
    );
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        format!("SELECT {}", calls.join(", ")),
        values,
    ))
    .await?;
    Ok(())
}

/// The current time on the database's clock, truncated to microseconds so that it
/// round-trips through every backend.
///
/// One clock for every time the bot writes or compares: the database's. The bot and the web
/// application often run on other hosts than the database, and their clocks drift apart. A
/// claim stamped by one clock and expired by another, or a heartbeat written by one and
/// judged fresh by another, breaks by the difference. [`Store::sync_clock`] measures how far
/// this host's clock is from the database's (PostgreSQL `clock_timestamp()`, MariaDB
/// `UTC_TIMESTAMP(6)`), and this function adds that offset to the host's time. SQLite runs
/// on this host, so its clock is the host's (offset 0). The offset is process-wide: a process
/// talks to one database.
pub fn now() -> DateTime<Utc> {
    let offset = DB_CLOCK_OFFSET_MICROS.load(std::sync::atomic::Ordering::Relaxed);
    micros(Utc::now() + chrono::Duration::microseconds(offset))
}

/// The database's clock minus this host's, in microseconds ([`Store::sync_clock`]).
static DB_CLOCK_OFFSET_MICROS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// `at` truncated to microseconds: the finest precision PostgreSQL and MySQL keep.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// Parses a contract string found in a row, naming the row and column when it is bad.
fn parse<T: FromStr<Err = UnknownValue>>(
    table: &'static str,
    id: i64,
    column: &'static str,
    value: &str,
) -> Result<T, StoreError> {
    value.parse().map_err(|source| StoreError::BadRow {
        table,
        id,
        column,
        source,
    })
}

impl TryFrom<room::Model> for Room {
    type Error = StoreError;

    fn try_from(row: room::Model) -> Result<Self, StoreError> {
        let id = row.id;
        Ok(Room {
            status: parse("room", id, "status", &row.status)?,
            close_reason: row
                .close_reason
                .as_deref()
                .map(|reason| parse("room", id, "close_reason", reason))
                .transpose()?,
            id,
            jid: row.jid,
            password: row.password,
            bot_jid: row.bot_jid,
            staff_nick: row.staff_nick,
            client_nick: row.client_nick,
            staff_claimed_at: row.staff_claimed_at,
            staff_claimed_by: row.staff_claimed_by,
            client_claimed_at: row.client_claimed_at,
            client_claimed_by: row.client_claimed_by,
            staff_jid: row.staff_jid,
            client_jid: row.client_jid,
            staff_claimed_jid: row.staff_claimed_jid,
            client_claimed_jid: row.client_claimed_jid,
            extra_claimed_at: row.extra_claimed_at,
            extra_claimed_by: row.extra_claimed_by,
            extra_claimed_jid: row.extra_claimed_jid,
            destroyed_at: row.destroyed_at,
            personal_data_removed_at: row.personal_data_removed_at,
            created_at: row.created_at,
            status_changed_at: row.status_changed_at,
            closed_at: row.closed_at,
        })
    }
}

impl TryFrom<room_event::Model> for RoomEvent {
    type Error = StoreError;

    fn try_from(row: room_event::Model) -> Result<Self, StoreError> {
        let id = row.id;
        let status = |column, value: &str| parse::<RoomStatus>("room_event", id, column, value);
        Ok(RoomEvent {
            kind: parse("room_event", id, "kind", &row.kind)?,
            from_status: row
                .from_status
                .as_deref()
                .map(|from| status("from_status", from))
                .transpose()?,
            to_status: status("to_status", &row.to_status)?,
            role: row
                .role
                .as_deref()
                .map(|role| parse("room_event", id, "role", role))
                .transpose()?,
            close_reason: row
                .close_reason
                .as_deref()
                .map(|reason| parse("room_event", id, "close_reason", reason))
                .transpose()?,
            id,
            room_id: row.room_id,
            at: row.at,
            nick: row.nick,
            detail: row.detail,
        })
    }
}

impl Store {
    /// Opens a connection pool to `url` (`sqlite:`, `postgres:` or `mysql:`); does not
    /// migrate, so that the operator decides when the schema changes.
    ///
    /// SQLite keeps SeaORM's single connection (which is what makes `sqlite::memory:` one
    /// database); servers get a small pool whose idle connections are checked before use,
    /// so that a database restart costs one failed ping, not one failed write. A statement
    /// waits at most 10 s for a connection; sqlx retries a refused connection until then,
    /// so an unreachable server fails after 10 s with "pool timed out".
    ///
    /// A SQLite file is switched to WAL (write-ahead logging), so that the web application's
    /// readers and the bot's writes never exclude each other (in the default rollback
    /// journal a long read locks every writer out until it ends); WAL is a property of the
    /// file and stays on for every later connection. `synchronous = NORMAL` is WAL's
    /// recommended level: a commit is durable at the next checkpoint instead of costing an
    /// fsync each, and the database can never be corrupted by a crash. The busy timeout
    /// (5 s) lets a write wait for the web application's claim transaction instead of
    /// failing with "database is locked": far longer than a claim or a transition holds the
    /// write lock (milliseconds), short enough to surface a stuck writer. `sqlite::memory:`
    /// ignores WAL (SQLite keeps its memory journal), which is harmless.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            options.map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
            });
        } else {
            options
                .max_connections(5)
                .test_before_acquire_if_idle_for(Duration::from_secs(60));
        }
        let db = Database::connect(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        let store = Store {
            db,
            quarantine: Quarantine::default(),
        };
        // Every time from here on is on the database's clock ([`now`]); a database that
        // does not answer yet is measured at the next sync.
        if let Err(error) = store.sync_clock().await {
            log::debug!("cannot read the database's clock yet: {error}");
        }
        Ok(store)
    }

    /// Measures the database's clock against this host's and sets the offset [`now`] adds:
    /// the database's time, read in one round trip, against the middle of that round trip
    /// on this host (good to half a round trip, a millisecond on a LAN). SQLite is this
    /// host's clock: offset 0. Returns the offset.
    pub async fn sync_clock(&self) -> Result<chrono::Duration, StoreError> {
        let sql = match self.db.get_database_backend() {
            DatabaseBackend::Postgres => "SELECT clock_timestamp() AS now",
            DatabaseBackend::MySql => "SELECT UTC_TIMESTAMP(6) AS now",
            _ => {
                DB_CLOCK_OFFSET_MICROS.store(0, std::sync::atomic::Ordering::Relaxed);
                return Ok(chrono::Duration::zero());
            }
        };
        let backend = self.db.get_database_backend();
        let before = Utc::now();
        let row = self
            .db
            .query_one_raw(Statement::from_string(backend, sql))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the database's time".to_owned()))?;
        let after = Utc::now();
        let theirs: DateTime<Utc> = row.try_get("", "now")?;
        let ours = before + (after - before) / 2;
        let offset = theirs - ours;
        let micros = offset.num_microseconds().unwrap_or(0);
        let previous = DB_CLOCK_OFFSET_MICROS.swap(micros, std::sync::atomic::Ordering::Relaxed);
        if (micros - previous).abs() > 1_000_000 {
            log::info!(
                "the database's clock is {:.3} s {} this host's: every time the bot writes or \
                 compares is on the database's clock",
                (micros.abs() as f64) / 1e6,
                if micros >= 0 { "ahead of" } else { "behind" }
            );
        }
        Ok(offset)
    }

    /// Applies every pending migration, bringing the schema up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(Migrator::up(&self.db, None).await?)
    }

    /// Reverts every migration, dropping helpim-bot's tables (and their data).
    pub async fn migrate_down(&self) -> Result<(), StoreError> {
        Ok(Migrator::down(&self.db, None).await?)
    }

    /// The underlying connection, for what the typed API does not cover (tests, the CLI).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Records a newly configured room as `available`, with its `created` event, in one
    /// transaction. A JID that is already recorded gives [`StoreError::DuplicateJid`].
    pub async fn create_room(&self, new: &NewRoom) -> Result<Room, StoreError> {
        let at = micros(new.at);
        let status = RoomStatus::Available;
        let txn = self.db.begin().await?;
        let row = room::ActiveModel {
            jid: Set(new.jid.clone()),
            password: Set(new.password.clone()),
            status: Set(status.as_str().to_owned()),
            bot_jid: Set(new.bot_jid.clone()),
            created_at: Set(at),
            status_changed_at: Set(at),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::DuplicateJid {
                jid: new.jid.clone(),
            },
            _ => StoreError::Db(err),
        })?;
        room_event::ActiveModel {
            room_id: Set(row.id),
            kind: Set(EventKind::Created.as_str().to_owned()),
            from_status: Set(None),
            to_status: Set(status.as_str().to_owned()),
            at: Set(at),
            detail: Set("room configured on the server".to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        notify_all(&txn, &[(row.id, status)]).await?;
        txn.commit().await?;
        row.try_into()
    }

    /// Applies one step of a room's life and appends its event, in one transaction.
    ///
    /// The room row changes only if it is still in `change.from` (optimistic concurrency
    /// with the web application and other writers); otherwise nothing is written and the
    /// result is [`StoreError::Conflict`]. `status_changed_at` moves only when the status
    /// does, and `closed_at`/`close_reason` are set only when the room becomes `closed`; the
    /// same transaction clears the room's password (set to the empty string), so that no
    /// secret outlives its room. On PostgreSQL it also announces the change on
    /// [`NOTIFY_CHANNEL`].
    pub async fn apply(&self, change: &RoomChange) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        let written = match update_in(&txn, change).await {
            Ok(event) => record_in(&txn, vec![event], &[(change.room_id, change.to)]).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => Ok(txn.commit().await?),
            Err(error) => {
                txn.rollback().await?;
                Err(error)
            }
        }
    }

    /// Applies the changes of several rooms in one transaction, as [`Store::apply`] does each
    /// (one commit for all: see [`crate::actors::committer`]), and returns one result per change,
    /// in order. A change whose row disagrees gets its [`StoreError::Conflict`] and writes
    /// nothing; the others are written. Any other failure rolls the whole transaction back
    /// and is the outer error: then nothing was written. At most one change per room: a
    /// room's next change is computed from its previous one's result.
    pub async fn apply_many(
        &self,
        changes: &[RoomChange],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let txn = self.db.begin().await?;
        match apply_many_in(&txn, changes).await {
            Ok(results) => {
                txn.commit().await?;
                Ok(results)
            }
            Err(error) => {
                txn.rollback().await?;
                Err(error)
            }
        }
    }

    /// Closes room `room_id` with reason `error` from whatever status its row has now: for a
    /// room whose own change the database refused for good, whose picture of the row is
    /// therefore no longer to be trusted. Returns false if the row was closed already.
    pub async fn close_as_error(
        &self,
        room_id: i64,
        at: DateTime<Utc>,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let Some(room) = self.room(room_id).await? else {
            return Ok(false);
        };
        if room.status == RoomStatus::Closed {
            return Ok(false);
        }
        self.apply(&RoomChange {
            detail: detail.to_owned(),
            close_reason: Some(CloseReason::Error),
            ..RoomChange::new(
                room_id,
                EventKind::Closed,
                room.status,
                RoomStatus::Closed,
                at,
            )
        })
        .await?;
        Ok(true)
    }

    /// The room with row id `id`, if any.
    pub async fn room(&self, id: i64) -> Result<Option<Room>, StoreError> {
        self.one_room(room::Entity::find_by_id(id)).await
    }

    /// The room with bare JID `jid`, if any: how XMPP events are matched to rows.
    pub async fn room_by_jid(&self, jid: &str) -> Result<Option<Room>, StoreError> {
        self.one_room(room::Entity::find().filter(room::Column::Jid.eq(jid)))
            .await
    }

    /// The one room `query` finds, if any. A row that cannot be decoded is the error
    /// [`StoreError::Undecodable`] (and quarantined): the caller asked for that very room.
    async fn one_room(&self, query: Select<room::Entity>) -> Result<Option<Room>, StoreError> {
        let mut found = self.decode_rooms(query).await?;
        if let Some(bad) = found.bad.pop() {
            return Err(StoreError::Undecodable(bad));
        }
        Ok(found.rows.pop())
    }

    /// The rooms matching `filter`, oldest first (by id). Rows that cannot be decoded are
    /// left out (and quarantined).
    pub async fn rooms(&self, filter: &RoomFilter) -> Result<Vec<Room>, StoreError> {
        let query = room::Entity::find()
            .apply_if(filter.status, |query, status| {
                query.filter(room::Column::Status.eq(status.as_str()))
            })
            .apply_if(filter.bot_jid.as_deref(), |query, bot_jid| {
                query.filter(room::Column::BotJid.eq(bot_jid))
            })
            .order_by_asc(room::Column::Id);
        Ok(self.decode_rooms(query).await?.rows)
    }

    /// Every room of `bot_jid` that is not `closed`, ordered by id: what the bot must find
    /// again on the server after a restart or a reconnect. Rows that cannot be decoded are
    /// left out (and quarantined), so that one bad row never stops the others.
    pub async fn open_rooms(&self, bot_jid: &str) -> Result<Vec<Room>, StoreError> {
        Ok(self.open_room_rows(bot_jid).await?.rows)
    }

    /// [`Store::open_rooms`], with the rows of `bot_jid` that are not `closed` and could not
    /// be decoded.
    pub async fn open_room_rows(&self, bot_jid: &str) -> Result<Rows<Room>, StoreError> {
        let query = room::Entity::find()
            .filter(room::Column::BotJid.eq(bot_jid))
            .filter(room::Column::Status.ne(RoomStatus::Closed.as_str()))
            .order_by_asc(room::Column::Id);
        self.decode_rooms(query).await
    }

    /// The history of room `room_id`, in the order it was recorded. Events that cannot be
    /// decoded are left out (and quarantined).
    pub async fn events(&self, room_id: i64) -> Result<Vec<RoomEvent>, StoreError> {
        let query = room_event::Entity::find()
            .filter(room_event::Column::RoomId.eq(room_id))
            .order_by_asc(room_event::Column::Id);
        Ok(self.decode_events(query).await?.rows)
    }

    /// Runs `query` and decodes its rooms one by one ([`decode_each`]): the rooms, and the
    /// rows that could not be decoded, which are quarantined (logged once, counted). The
    /// rows that decode leave the quarantine.
    pub async fn decode_rooms(
        &self,
        query: Select<room::Entity>,
    ) -> Result<Rows<Room>, StoreError> {
        self.decode("room", query, |room: &Room| room.id).await
    }

    /// Runs `query` and decodes its events one by one, as [`Store::decode_rooms`] does.
    pub async fn decode_events(
        &self,
        query: Select<room_event::Entity>,
    ) -> Result<Rows<RoomEvent>, StoreError> {
        self.decode("room_event", query, |event: &RoomEvent| event.id)
            .await
    }

    /// [`Store::decode_rooms`] for any table whose models validate into `T`.
    async fn decode<E, T>(
        &self,
        table: &'static str,
        query: Select<E>,
        id: fn(&T) -> i64,
    ) -> Result<Rows<T>, StoreError>
    where
        E: EntityTrait,
        T: TryFrom<E::Model, Error = StoreError>,
    {
        let results = self
            .db
            .query_all_raw(query.build(self.db.get_database_backend()))
            .await?;
        let (rows, bad) = decode_each::<E, _>(table, results, |model| {
            T::try_from(model).map_err(StoreError::into_bad_row)
        });
        self.quarantine.report(&bad);
        self.quarantine.readable(table, rows.iter().map(id));
        Ok(Rows { rows, bad })
    }

    /// The rows no read could decode so far (see [`crate::quarantine`]).
    pub fn bad_rows(&self) -> Vec<BadRow> {
        self.quarantine.rows()
    }

    /// Reads every quarantined row again by id, so that a row corrected by hand leaves the
    /// quarantine even when no other read would find it (it was closed meanwhile, say). A
    /// row that is gone (deleted) leaves it too.
    pub async fn recheck_bad_rows(&self) -> Result<(), StoreError> {
        for bad in self.quarantine.rows() {
            let found = match bad.table {
                "room" => {
                    let rows = self.decode_rooms(room::Entity::find_by_id(bad.id)).await?;
                    rows.rows.len() + rows.bad.len()
                }
                _ => {
                    let rows = self
                        .decode_events(room_event::Entity::find_by_id(bad.id))
                        .await?;
                    rows.rows.len() + rows.bad.len()
                }
            };
            if found == 0 {
                self.quarantine.readable(bad.table, [bad.id]);
            }
        }
        Ok(())
    }

    /// How many of `bot_jid`'s rooms are ready to hand out and how many are open.
    ///
    /// Two counting queries, not one snapshot: under concurrent changes the numbers may be
    /// a moment apart, which is fine for deciding how many rooms to create.
    pub async fn pool_counts(&self, bot_jid: &str) -> Result<PoolCounts, StoreError> {
        let mine = || room::Entity::find().filter(room::Column::BotJid.eq(bot_jid));
        let ready_rows = || {
            mine()
                .filter(room::Column::Status.eq(RoomStatus::Available.as_str()))
                .filter(room::Column::StaffClaimedAt.is_null())
        };
        let mut ready = ready_rows().count(&self.db).await?;
        // A quarantined row looks ready to SQL, but the bot cannot hand it out: it does not
        // count, so that the pool makes another room in its place.
        let bad: Vec<i64> = self
            .quarantine
            .rows()
            .into_iter()
            .filter(|bad| bad.table == "room")
            .map(|bad| bad.id)
            .collect();
        if !bad.is_empty() {
            let unusable = ready_rows()
                .filter(room::Column::Id.is_in(bad))
                .count(&self.db)
                .await?;
            ready = ready.saturating_sub(unusable);
        }
        let open = mine()
            .filter(room::Column::Status.ne(RoomStatus::Closed.as_str()))
            .count(&self.db)
            .await?;
        Ok(PoolCounts { ready, open })
    }

    /// Records that the server confirmed room `room_id` destroyed (or already gone). Only a
    /// `closed` row is marked; marking twice keeps the first time.
    pub async fn mark_destroyed(&self, room_id: i64) -> Result<(), StoreError> {
        room::Entity::update_many()
            .set(room::ActiveModel {
                destroyed_at: Set(Some(now())),
                ..Default::default()
            })
            .filter(room::Column::Id.eq(room_id))
            .filter(room::Column::Status.eq(RoomStatus::Closed.as_str()))
            .filter(room::Column::DestroyedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// `bot_jid`'s `closed` rooms whose destruction the server never confirmed: rooms that
    /// may still live on the server, to destroy at start-up and after every reconnect.
    pub async fn undestroyed_rooms(&self, bot_jid: &str) -> Result<Vec<Room>, StoreError> {
        let query = room::Entity::find()
            .filter(room::Column::BotJid.eq(bot_jid))
            .filter(room::Column::Status.eq(RoomStatus::Closed.as_str()))
            .filter(room::Column::DestroyedAt.is_null())
            .order_by_asc(room::Column::Id);
        Ok(self.decode_rooms(query).await?.rows)
    }

    /// A cheap round trip to the database, to tell whether it is still reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn now_has_whole_microseconds() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }

    #[test]
    fn micros_truncates_and_keeps_the_rest() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(
            micros(at),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
    }

    #[test]
    fn a_bad_status_names_table_row_and_column() {
        let at = now();
        let row = room::Model {
            id: 7,
            jid: "helpim-x@conference.localhost".into(),
            password: "pw".into(),
            status: "Chatting".into(),
            bot_jid: "bot@localhost".into(),
            staff_nick: None,
            client_nick: None,
            staff_claimed_at: None,
            staff_claimed_by: None,
            client_claimed_at: None,
            client_claimed_by: None,
            staff_jid: None,
            client_jid: None,
            staff_claimed_jid: None,
            client_claimed_jid: None,
            extra_claimed_at: None,
            extra_claimed_by: None,
            extra_claimed_jid: None,
            destroyed_at: None,
            personal_data_removed_at: None,
            created_at: at,
            status_changed_at: at,
            closed_at: None,
            close_reason: None,
        };
        match Room::try_from(row) {
            Err(StoreError::BadRow {
                table: "room",
                id: 7,
                column: "status",
                source,
            }) => assert_eq!(source.value, "Chatting"),
            other => panic!("expected BadRow, got {other:?}"),
        }
    }
}
