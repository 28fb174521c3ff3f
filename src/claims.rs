//! The web-app contract: atomic claims of rooms, and the release of claims nobody used.
//!
//! A staff claim takes one `available` room that nobody claimed yet (oldest first); a client
//! claim takes the `staff_waiting` room whose staff has waited longest (oldest
//! `status_changed_at`) and that has no client claim yet. Each claim writes the claim
//! columns and a `room_event` row in one transaction, so two claimers can never get the
//! same room for the same role, on any of the three databases.
//!
//! The SQL below is THE contract: `docs/webapp-contract.md` shows these exact statements
//! for web applications in other languages (a test checks that the document quotes them
//! verbatim), and the library functions run them unchanged.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, IsolationLevel, QueryResult, Statement, TransactionTrait,
    Value,
};

use crate::model::{EventKind, Role, RoomStatus};
use crate::store::{self, Store, StoreError};

/// PostgreSQL: take the oldest unclaimed available room for staff ($1 = claimer, $2 = the
/// only bare JID the claim admits, or NULL for anybody with the password): only rooms of a
/// bot whose XMPP session is up and whose heartbeat is fresh (see [`HEARTBEAT_FRESH`]), so
/// that nobody is sent to a room that is gone or that nobody watches. Every time is the
/// database's (`now()`): the claim's, and the heartbeat's cutoff, as the bot's own
/// ([`crate::store::now`]).
pub const POSTGRES_CLAIM_STAFF: &str =
    "UPDATE room SET staff_claimed_at = now(), staff_claimed_by = $1, staff_claimed_jid = $2
WHERE id = (SELECT id FROM room
            WHERE status = 'available' AND staff_claimed_at IS NULL
              AND bot_jid IN (SELECT bot_jid FROM bot_instance
                              WHERE xmpp_up AND heartbeat_at > now() - interval '30 seconds')
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, jid, password, status_changed_at, now() AS now";

/// PostgreSQL: take the room whose staff has waited longest, for a client.
pub const POSTGRES_CLAIM_CLIENT: &str =
    "UPDATE room SET client_claimed_at = now(), client_claimed_by = $1, client_claimed_jid = $2
WHERE id = (SELECT id FROM room
            WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
              AND bot_jid IN (SELECT bot_jid FROM bot_instance
                              WHERE xmpp_up AND heartbeat_at > now() - interval '30 seconds')
            ORDER BY status_changed_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, jid, password, status_changed_at, now() AS now";

/// PostgreSQL: claim one extra seat in chat `$3` (`muc.max_chatters` above 2).
pub const POSTGRES_CLAIM_EXTRA: &str =
    "UPDATE room SET extra_claimed_at = now(), extra_claimed_by = $1, extra_claimed_jid = $2
WHERE id = $3 AND status = 'chatting' AND extra_claimed_at IS NULL
  AND bot_jid IN (SELECT bot_jid FROM bot_instance
                  WHERE xmpp_up AND heartbeat_at > now() - interval '30 seconds')
RETURNING id, jid, password, status_changed_at, now() AS now";

/// PostgreSQL: the claim's event ($1 = room id, $2 = kind, $3 = status, $4 = the returned
/// `now`, or the returned `status_changed_at` if later, $5 = role, $6 = detail).
pub const POSTGRES_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES ($1, $2, $3, $3, $4, $5, $6)";

/// SQLite (3.35 or later): take the oldest unclaimed available room for staff
/// (?1 = now, ?2 = claimer, ?3 = bound JID or NULL). SQLite has one writer at a time: the
/// statement is atomic.
pub const SQLITE_CLAIM_STAFF: &str =
    "UPDATE room SET staff_claimed_at = ?1, staff_claimed_by = ?2, staff_claimed_jid = ?3
WHERE id = (SELECT id FROM room
            WHERE status = 'available' AND staff_claimed_at IS NULL
              AND bot_jid IN (SELECT bot_jid FROM bot_instance
                              WHERE xmpp_up AND heartbeat_at > ?4)
            ORDER BY id LIMIT 1)
RETURNING id, jid, password, status_changed_at";

/// SQLite: take the room whose staff has waited longest, for a client.
pub const SQLITE_CLAIM_CLIENT: &str =
    "UPDATE room SET client_claimed_at = ?1, client_claimed_by = ?2, client_claimed_jid = ?3
WHERE id = (SELECT id FROM room
            WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
              AND bot_jid IN (SELECT bot_jid FROM bot_instance
                              WHERE xmpp_up AND heartbeat_at > ?4)
            ORDER BY status_changed_at, id LIMIT 1)
RETURNING id, jid, password, status_changed_at";

/// SQLite: claim one extra seat in chat ?4.
pub const SQLITE_CLAIM_EXTRA: &str =
    "UPDATE room SET extra_claimed_at = ?1, extra_claimed_by = ?2, extra_claimed_jid = ?3
WHERE id = ?4 AND status = 'chatting' AND extra_claimed_at IS NULL
  AND bot_jid IN (SELECT bot_jid FROM bot_instance WHERE xmpp_up AND heartbeat_at > ?5)
RETURNING id, jid, password, status_changed_at";

/// SQLite: the claim's event.
pub const SQLITE_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)";

/// MySQL/MariaDB (10.6 or later): lock the oldest unclaimed available room of a live bot,
/// skipping rows other claimers hold, and read the database's time (`UTC_TIMESTAMP(6)`, the
/// claim's time and the heartbeat's cutoff); then [`MYSQL_SET_STAFF_CLAIM`] on the id found.
/// Run in a `READ COMMITTED` transaction, and through the index that serves the order:
/// InnoDB locks every row a locking read passes, so a table scan (which the optimiser picks
/// for small tables) would lock every free room and the other claimers, skipping them, would
/// be told there is none. The live bots are read in a derived table that cannot be merged
/// into the query (its `LIMIT`): merged, InnoDB would lock their `bot_instance` rows too,
/// and `SKIP LOCKED` would skip every room while another claim runs.
pub const MYSQL_FIND_STAFF_ROOM: &str =
    "SELECT id, jid, password, status_changed_at, UTC_TIMESTAMP(6) AS now
FROM room FORCE INDEX (idx_room_status_staff_claimed_at)
WHERE status = 'available' AND staff_claimed_at IS NULL
  AND bot_jid IN (SELECT bot_jid FROM (SELECT bot_jid FROM bot_instance
                                       WHERE xmpp_up
                                         AND heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 30 SECOND
                                       LIMIT 1000) AS live)
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// MySQL/MariaDB: lock the room whose staff has waited longest and has no client claim.
pub const MYSQL_FIND_CLIENT_ROOM: &str =
    "SELECT id, jid, password, status_changed_at, UTC_TIMESTAMP(6) AS now
FROM room FORCE INDEX (idx_room_status_status_changed_at)
WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
  AND bot_jid IN (SELECT bot_jid FROM (SELECT bot_jid FROM bot_instance
                                       WHERE xmpp_up
                                         AND heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 30 SECOND
                                       LIMIT 1000) AS live)
ORDER BY status_changed_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// MySQL/MariaDB: lock chat `?` if its extra seat is free; then [`MYSQL_SET_EXTRA_CLAIM`].
pub const MYSQL_FIND_EXTRA_ROOM: &str =
    "SELECT id, jid, password, status_changed_at, UTC_TIMESTAMP(6) AS now FROM room
WHERE id = ? AND status = 'chatting' AND extra_claimed_at IS NULL
  AND bot_jid IN (SELECT bot_jid FROM (SELECT bot_jid FROM bot_instance
                                       WHERE xmpp_up
                                         AND heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 30 SECOND
                                       LIMIT 1000) AS live)
FOR UPDATE";

/// MySQL/MariaDB: write the staff claim (the `now` read, claimer, bound JID or NULL, id).
pub const MYSQL_SET_STAFF_CLAIM: &str = "UPDATE room SET staff_claimed_at = ?, staff_claimed_by = ?, staff_claimed_jid = ? WHERE id = ?";

/// MySQL/MariaDB: write the client claim (the `now` read, claimer, bound JID or NULL, id).
pub const MYSQL_SET_CLIENT_CLAIM: &str = "UPDATE room SET client_claimed_at = ?, client_claimed_by = ?, client_claimed_jid = ? WHERE id = ?";

/// MySQL/MariaDB: write the extra-seat claim (the `now` read, claimer, bound JID or NULL,
/// id).
pub const MYSQL_SET_EXTRA_CLAIM: &str = "UPDATE room SET extra_claimed_at = ?, extra_claimed_by = ?, extra_claimed_jid = ? WHERE id = ?";

/// MySQL/MariaDB: the claim's event (room id, kind, status, status, the `now` read or the
/// room's `status_changed_at` if later, role, detail).
pub const MYSQL_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES (?, ?, ?, ?, ?, ?, ?)";

/// How old a bot's heartbeat may be for its rooms to be claimed: the lease's default time to
/// live (a live bot renews every third of it). The PostgreSQL and MySQL statements write it
/// out (`30 seconds`, checked by a test); SQLite's take `now − this` as their cutoff
/// parameter.
pub const HEARTBEAT_FRESH: std::time::Duration = crate::lease::DEFAULT_TTL;

/// A room the web application may now send a person to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claim {
    /// The room's row id.
    pub room_id: i64,
    /// The room's bare JID.
    pub jid: String,
    /// The room password to give to the person.
    pub password: String,
    /// The role the room was claimed for.
    pub role: &'static str,
    /// When (UTC, RFC 3339).
    pub claimed_at: String,
    /// The only bare JID the claim admits, if it is bound.
    pub bound_jid: Option<String>,
}

/// Why a claim gave no room.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Nothing to claim for this role right now (a normal answer, not a failure).
    #[error("no {0} room can be claimed right now")]
    NoneAvailable(Role),
    /// The JID a claim was to be bound to is not a valid bare JID.
    #[error("{jid:?} is not a bare JID (user@domain) to bind the claim to")]
    BadJid {
        /// What was given.
        jid: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ClaimError {
    fn from(error: sea_orm::DbErr) -> Self {
        ClaimError::Store(error.into())
    }
}

/// Claims a room for a staff member; `by` is recorded as `staff_claimed_by`. Anybody with
/// the password may enter on it.
pub async fn claim_staff(store: &Store, by: &str) -> Result<Claim, ClaimError> {
    claim(store, Role::Staff, by, None, None).await
}

/// Claims the longest-waiting staff member's room for a client; `by` is recorded as
/// `client_claimed_by`.
pub async fn claim_client(store: &Store, by: &str) -> Result<Claim, ClaimError> {
    claim(store, Role::Client, by, None, None).await
}

/// Claims a room for `role` (staff or client) that only the real bare JID `jid` may enter
/// in that role: anybody else, password or not, is kicked.
pub async fn claim_bound(
    store: &Store,
    role: Role,
    by: &str,
    jid: &str,
) -> Result<Claim, ClaimError> {
    claim(store, role, by, Some(jid), None).await
}

/// Claims one extra seat in chat `room_id` (`muc.max_chatters` above 2): the next person to
/// enter it (only `jid`, when given) is admitted, and the claim is used up.
pub async fn claim_extra(
    store: &Store,
    room_id: i64,
    by: &str,
    jid: Option<&str>,
) -> Result<Claim, ClaimError> {
    claim(store, Role::Extra, by, jid, Some(room_id)).await
}

/// `jid` as the normalised bare JID the server will report, or [`ClaimError::BadJid`].
pub fn normalise_jid(jid: &str) -> Result<String, ClaimError> {
    match jid::BareJid::new(jid.trim()) {
        Ok(bare) if bare.node().is_some() => Ok(bare.to_string()),
        _ => Err(ClaimError::BadJid {
            jid: jid.to_owned(),
        }),
    }
}

async fn claim(
    store: &Store,
    role: Role,
    by: &str,
    jid: Option<&str>,
    room_id: Option<i64>,
) -> Result<Claim, ClaimError> {
    let jid = jid.map(normalise_jid).transpose()?;
    let db = store.connection();
    let backend = db.get_database_backend();
    let at = store::now();
    let (status, kind) = match role {
        Role::Client => (RoomStatus::StaffWaiting, EventKind::ClientClaimed),
        Role::Extra => (RoomStatus::Chatting, EventKind::ExtraClaimed),
        _ => (RoomStatus::Available, EventKind::StaffClaimed),
    };
    // The bound JID is in the row (`*_claimed_jid`), never in the history's words: the
    // status page shows details, and it shows no person's JID.
    let detail = match &jid {
        Some(_) => format!("claimed by {by}, bound to one JID"),
        None => format!("claimed by {by}"),
    };
    let bound: Value = jid.clone().into();
    let room: Value = room_id.into();
    // READ COMMITTED on MySQL: InnoDB then releases the rows a claim read and rejected at
    // once, instead of holding them (and making other claims skip them) until it commits.
    // PostgreSQL's and SQLite's claims are single statements and keep the default.
    let isolation = (backend == DatabaseBackend::MySql).then_some(IsolationLevel::ReadCommitted);
    let txn = db.begin_with_config(isolation, None).await?;
    let row = match backend {
        DatabaseBackend::MySql => {
            let (find, set) = match role {
                Role::Client => (MYSQL_FIND_CLIENT_ROOM, MYSQL_SET_CLIENT_CLAIM),
                Role::Extra => (MYSQL_FIND_EXTRA_ROOM, MYSQL_SET_EXTRA_CLAIM),
                _ => (MYSQL_FIND_STAFF_ROOM, MYSQL_SET_STAFF_CLAIM),
            };
            let values = match role {
                Role::Extra => vec![room.clone()],
                _ => Vec::new(),
            };
            let found = txn
                .query_one_raw(Statement::from_sql_and_values(backend, find, values))
                .await?;
            if let Some(found) = &found {
                let id: i64 = found.try_get("", "id")?;
                let at = not_before_last_change(found, database_now(found, at))?;
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    set,
                    [at.into(), by.into(), bound, id.into()],
                ))
                .await?;
            }
            found
        }
        DatabaseBackend::Postgres => {
            let sql = match role {
                Role::Client => POSTGRES_CLAIM_CLIENT,
                Role::Extra => POSTGRES_CLAIM_EXTRA,
                _ => POSTGRES_CLAIM_STAFF,
            };
            let mut values = vec![by.into(), bound];
            if role == Role::Extra {
                values.push(room);
            }
            txn.query_one_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
        }
        _ => {
            let sql = match role {
                Role::Client => SQLITE_CLAIM_CLIENT,
                Role::Extra => SQLITE_CLAIM_EXTRA,
                _ => SQLITE_CLAIM_STAFF,
            };
            // SQLite is on this host: its statements take this host's time and cutoff. The
            // others read the database's own time in the statement.
            let fresh =
                chrono::Duration::from_std(HEARTBEAT_FRESH).unwrap_or(chrono::Duration::MAX);
            let mut values = vec![at.into(), by.into(), bound];
            if role == Role::Extra {
                values.push(room);
            }
            values.push((at - fresh).into());
            txn.query_one_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
        }
    };
    let Some(row) = row else {
        txn.rollback().await?;
        return Err(ClaimError::NoneAvailable(role));
    };
    // The claim's time was taken before its statement found the room: a room recorded in
    // between (a new one, a staff member's entry) has a later time, and the history must
    // not go backwards.
    let at = not_before_last_change(&row, database_now(&row, at))?;
    let mut claim = claim_of(&row, role, at)?;
    claim.bound_jid = jid;
    insert_event(
        &txn,
        backend,
        claim.room_id,
        kind,
        status,
        at,
        role,
        &detail,
    )
    .await?;
    txn.commit().await?;
    Ok(claim)
}

/// The database's time as the claim statement read it (its `now` column, on PostgreSQL and
/// MySQL), or `at` where the statement took this host's (SQLite).
fn database_now(row: &QueryResult, at: DateTime<Utc>) -> DateTime<Utc> {
    row.try_get::<DateTime<Utc>>("", "now")
        .map(|now| now.trunc_subsecs(6))
        .unwrap_or(at)
}

/// `at`, or the found room's last status change if that is later.
fn not_before_last_change(
    row: &QueryResult,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, sea_orm::DbErr> {
    let changed: DateTime<Utc> = row.try_get("", "status_changed_at")?;
    Ok(at.max(changed))
}

fn claim_of(row: &QueryResult, role: Role, at: DateTime<Utc>) -> Result<Claim, sea_orm::DbErr> {
    Ok(Claim {
        room_id: row.try_get("", "id")?,
        jid: row.try_get("", "jid")?,
        password: row.try_get("", "password")?,
        role: role.as_str(),
        claimed_at: at.to_rfc3339(),
        bound_jid: None,
    })
}

/// Appends a claim (or release) event with the contract's statement for `backend`.
#[allow(clippy::too_many_arguments)] // one value per column of the statement
async fn insert_event<C: ConnectionTrait>(
    db: &C,
    backend: DatabaseBackend,
    room_id: i64,
    kind: EventKind,
    status: RoomStatus,
    at: DateTime<Utc>,
    role: Role,
    detail: &str,
) -> Result<(), sea_orm::DbErr> {
    let values: Vec<Value> = vec![
        room_id.into(),
        kind.as_str().into(),
        status.as_str().into(),
        at.into(),
        role.as_str().into(),
        detail.into(),
    ];
    let statement = match backend {
        DatabaseBackend::MySql => {
            let mut values = values;
            values.insert(3, status.as_str().into()); // MySQL has no numbered parameters
            Statement::from_sql_and_values(backend, MYSQL_CLAIM_EVENT, values)
        }
        DatabaseBackend::Postgres => {
            Statement::from_sql_and_values(backend, POSTGRES_CLAIM_EVENT, values)
        }
        _ => Statement::from_sql_and_values(backend, SQLITE_CLAIM_EVENT, values),
    };
    db.execute_raw(statement).await?;
    Ok(())
}

/// How long each kind of claim stays open without being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimTtls {
    /// `timeouts.staff_claim_secs`.
    pub staff: std::time::Duration,
    /// `timeouts.client_claim_secs` (extra seats too).
    pub client: std::time::Duration,
}

impl ClaimTtls {
    /// The time-to-live of a claim for `role`.
    pub fn of(&self, role: Role) -> std::time::Duration {
        match role {
            Role::Staff => self.staff,
            _ => self.client,
        }
    }
}

/// Whether a claim made at `at` is still open at `now` (an unparseable or future time counts
/// as open: it is the web application's, and expiring it early would refuse a person).
fn is_open(at: Option<DateTime<Utc>>, now: DateTime<Utc>, ttl: std::time::Duration) -> bool {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    at.is_some_and(|at| now - at < ttl)
}

/// The claims on `row`'s seats at `now`, as the lifecycle's admission rules read them: a
/// claim past its time-to-live is [`SeatClaim::Missing`] even before the bot released it, so that
/// a person who comes too late is refused.
///
/// [`SeatClaim::Missing`]: crate::lifecycle::SeatClaim::Missing
pub fn seats(row: &store::Room, now: DateTime<Utc>, ttls: &ClaimTtls) -> crate::lifecycle::Claims {
    use crate::lifecycle::SeatClaim;
    let seat = |at: Option<DateTime<Utc>>, jid: &Option<String>, role: Role| {
        if !is_open(at, now, ttls.of(role)) {
            return SeatClaim::Missing;
        }
        let bound = jid.as_deref().map(|jid| {
            // A JID the web application wrote in another spelling still binds that person;
            // one that is no JID at all binds nobody.
            normalise_jid(jid).unwrap_or_else(|_| {
                log::error!(room = row.jid.as_str(); "the {role} claim is bound to {jid:?}, which is not a bare JID: nobody can enter on it");
                String::new()
            })
        });
        SeatClaim::Open { bound }
    };
    crate::lifecycle::Claims {
        staff: seat(row.staff_claimed_at, &row.staff_claimed_jid, Role::Staff),
        client: seat(row.client_claimed_at, &row.client_claimed_jid, Role::Client),
        extra: seat(row.extra_claimed_at, &row.extra_claimed_jid, Role::Extra),
    }
}

/// A claim that nobody used within its time-to-live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredClaim {
    /// The room's row id.
    pub room_id: i64,
    /// The room's bare JID (to find its actor).
    pub jid: String,
    /// The seat that was claimed.
    pub role: Role,
    /// Who claimed it.
    pub by: Option<String>,
    /// The time-to-live it outlived.
    pub ttl: std::time::Duration,
}

/// The claims of `bot_jid`'s rooms that nobody used in time: a staff claim on a room still
/// `available`, a client claim on a room still `staff_waiting`, an extra-seat claim on a room
/// still `chatting`. Only reads; the room's actor releases each (see [`release`]).
pub async fn expired_claims(
    store: &Store,
    bot_jid: &str,
    ttls: &ClaimTtls,
) -> Result<Vec<ExpiredClaim>, StoreError> {
    use entity::room;
    use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};

    let now = store::now();
    let query = room::Entity::find()
        .filter(room::Column::BotJid.eq(bot_jid))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(room::Column::Status.eq(RoomStatus::Available.as_str()))
                        .add(room::Column::StaffClaimedAt.is_not_null()),
                )
                .add(
                    Condition::all()
                        .add(room::Column::Status.eq(RoomStatus::StaffWaiting.as_str()))
                        .add(room::Column::ClientClaimedAt.is_not_null()),
                )
                .add(
                    Condition::all()
                        .add(room::Column::Status.eq(RoomStatus::Chatting.as_str()))
                        .add(room::Column::ExtraClaimedAt.is_not_null()),
                ),
        );
    // Decoded one by one: a bad row is quarantined, and every other claim still expires.
    let rows = store.decode_rooms(query).await?.rows;
    let mut expired = Vec::new();
    for row in rows {
        let (role, at, by) = match row.status {
            RoomStatus::Available => (Role::Staff, row.staff_claimed_at, &row.staff_claimed_by),
            RoomStatus::StaffWaiting => {
                (Role::Client, row.client_claimed_at, &row.client_claimed_by)
            }
            _ => (Role::Extra, row.extra_claimed_at, &row.extra_claimed_by),
        };
        // Compared here rather than in SQL: SQLite stores timestamps as text, and a web
        // application may write another (valid) text format than the bot's.
        if !is_open(at, now, ttls.of(role)) {
            expired.push(ExpiredClaim {
                room_id: row.id,
                jid: row.jid.clone(),
                role,
                by: by.clone(),
                ttl: ttls.of(role),
            });
        }
    }
    Ok(expired)
}

/// The claim-column conditions of `role`: (claimed_at, claimed_by, claimed_jid).
fn claim_columns(role: Role) -> [entity::room::Column; 3] {
    use entity::room::Column;
    match role {
        Role::Staff => [
            Column::StaffClaimedAt,
            Column::StaffClaimedBy,
            Column::StaffClaimedJid,
        ],
        Role::Client => [
            Column::ClientClaimedAt,
            Column::ClientClaimedBy,
            Column::ClientClaimedJid,
        ],
        _ => [
            Column::ExtraClaimedAt,
            Column::ExtraClaimedBy,
            Column::ExtraClaimedJid,
        ],
    }
}

/// Writes a new password into a room whose `role` claim is still set, so that the row never
/// offers a password the server does not have: the claim keeps the room from being claimed
/// until [`release`] clears it, after the server has the new password too. `false` when the
/// claim is no longer there (used or released meanwhile).
pub async fn set_password_while_claimed(
    store: &Store,
    room_id: i64,
    role: Role,
    password: &str,
) -> Result<bool, StoreError> {
    use entity::room;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let [claimed_at, ..] = claim_columns(role);
    let updated = room::Entity::update_many()
        .set(room::ActiveModel {
            password: Set(password.to_owned()),
            ..Default::default()
        })
        .filter(room::Column::Id.eq(room_id))
        .filter(room::Column::Status.eq(crate::lifecycle::claimed_status(role).as_str()))
        .filter(claimed_at.is_not_null())
        .exec(store.connection())
        .await?
        .rows_affected;
    Ok(updated == 1)
}

/// Releases an expired claim: clears its columns and appends a `claim_expired` event, in one
/// transaction, if the room still has that claim in the status it needs. Returns whether it
/// did.
pub async fn release(
    store: &Store,
    expired: &ExpiredClaim,
    password_changed: bool,
) -> Result<bool, StoreError> {
    use entity::room;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let db = store.connection();
    let backend = db.get_database_backend();
    let now = store::now();
    let status = crate::lifecycle::claimed_status(expired.role);
    let [claimed_at, claimed_by, claimed_jid] = claim_columns(expired.role);
    let txn = db.begin().await?;
    let updated = room::Entity::update_many()
        .col_expr(claimed_at, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(claimed_by, Expr::value(Option::<String>::None))
        .col_expr(claimed_jid, Expr::value(Option::<String>::None))
        .filter(room::Column::Id.eq(expired.room_id))
        .filter(room::Column::Status.eq(status.as_str()))
        .filter(claimed_at.is_not_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if updated == 1 {
        let detail = format!(
            "{} claim by {} not used within {} s{}",
            expired.role,
            expired.by.as_deref().unwrap_or("?"),
            expired.ttl.as_secs(),
            if password_changed {
                "; password changed"
            } else {
                ""
            }
        );
        insert_event(
            &txn,
            backend,
            expired.room_id,
            EventKind::ClaimExpired,
            status,
            now,
            expired.role,
            &detail,
        )
        .await?;
        log::info!(room = expired.jid.as_str(); "{detail}: released");
    }
    txn.commit().await?;
    Ok(updated == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements that read the database's clock write the heartbeat's freshness out.
    #[test]
    fn the_written_out_cutoff_is_the_heartbeat_freshness() {
        assert_eq!(HEARTBEAT_FRESH, std::time::Duration::from_secs(30));
        for sql in [
            POSTGRES_CLAIM_STAFF,
            POSTGRES_CLAIM_CLIENT,
            POSTGRES_CLAIM_EXTRA,
        ] {
            assert!(
                sql.contains("heartbeat_at > now() - interval '30 seconds'"),
                "{sql}"
            );
        }
        for sql in [
            MYSQL_FIND_STAFF_ROOM,
            MYSQL_FIND_CLIENT_ROOM,
            MYSQL_FIND_EXTRA_ROOM,
        ] {
            assert!(
                sql.contains("heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 30 SECOND"),
                "{sql}"
            );
        }
    }

    /// The document web-app developers read quotes every statement the bot runs, verbatim.
    #[test]
    fn the_webapp_contract_quotes_every_statement() {
        let doc = include_str!("../docs/webapp-contract.md");
        for (name, sql) in [
            ("POSTGRES_CLAIM_STAFF", POSTGRES_CLAIM_STAFF),
            ("POSTGRES_CLAIM_CLIENT", POSTGRES_CLAIM_CLIENT),
            ("POSTGRES_CLAIM_EVENT", POSTGRES_CLAIM_EVENT),
            ("SQLITE_CLAIM_STAFF", SQLITE_CLAIM_STAFF),
            ("SQLITE_CLAIM_CLIENT", SQLITE_CLAIM_CLIENT),
            ("SQLITE_CLAIM_EXTRA", SQLITE_CLAIM_EXTRA),
            ("POSTGRES_CLAIM_EXTRA", POSTGRES_CLAIM_EXTRA),
            ("MYSQL_FIND_EXTRA_ROOM", MYSQL_FIND_EXTRA_ROOM),
            ("MYSQL_SET_EXTRA_CLAIM", MYSQL_SET_EXTRA_CLAIM),
            ("SQLITE_CLAIM_EVENT", SQLITE_CLAIM_EVENT),
            ("MYSQL_FIND_STAFF_ROOM", MYSQL_FIND_STAFF_ROOM),
            ("MYSQL_FIND_CLIENT_ROOM", MYSQL_FIND_CLIENT_ROOM),
            ("MYSQL_SET_STAFF_CLAIM", MYSQL_SET_STAFF_CLAIM),
            ("MYSQL_SET_CLIENT_CLAIM", MYSQL_SET_CLIENT_CLAIM),
            ("MYSQL_CLAIM_EVENT", MYSQL_CLAIM_EVENT),
        ] {
            assert!(
                doc.contains(sql),
                "docs/webapp-contract.md lacks {name}:\n{sql}"
            );
        }
    }
}
