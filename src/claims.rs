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

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement, TransactionTrait, Value};

use crate::model::{EventKind, Role, RoomStatus};
use crate::store::{self, Store, StoreError};

/// PostgreSQL: take the oldest unclaimed available room for staff ($1 = now, $2 = claimer).
pub const POSTGRES_CLAIM_STAFF: &str =
    "UPDATE room SET staff_claimed_at = $1, staff_claimed_by = $2
WHERE id = (SELECT id FROM room
            WHERE status = 'available' AND staff_claimed_at IS NULL
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, jid, password";

/// PostgreSQL: take the room whose staff has waited longest, for a client.
pub const POSTGRES_CLAIM_CLIENT: &str =
    "UPDATE room SET client_claimed_at = $1, client_claimed_by = $2
WHERE id = (SELECT id FROM room
            WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
            ORDER BY status_changed_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, jid, password";

/// PostgreSQL: the claim's event ($1 = room id, $2 = kind, $3 = status, $4 = now,
/// $5 = role, $6 = detail).
pub const POSTGRES_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES ($1, $2, $3, $3, $4, $5, $6)";

/// SQLite (3.35 or later): take the oldest unclaimed available room for staff
/// (?1 = now, ?2 = claimer). SQLite has one writer at a time: the statement is atomic.
pub const SQLITE_CLAIM_STAFF: &str = "UPDATE room SET staff_claimed_at = ?1, staff_claimed_by = ?2
WHERE id = (SELECT id FROM room
            WHERE status = 'available' AND staff_claimed_at IS NULL
            ORDER BY id LIMIT 1)
RETURNING id, jid, password";

/// SQLite: take the room whose staff has waited longest, for a client.
pub const SQLITE_CLAIM_CLIENT: &str =
    "UPDATE room SET client_claimed_at = ?1, client_claimed_by = ?2
WHERE id = (SELECT id FROM room
            WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
            ORDER BY status_changed_at, id LIMIT 1)
RETURNING id, jid, password";

/// SQLite: the claim's event.
pub const SQLITE_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)";

/// MySQL/MariaDB (10.6 or later): lock the oldest unclaimed available room, skipping rows
/// other claimers hold; then [`MYSQL_SET_STAFF_CLAIM`] on the id found.
pub const MYSQL_FIND_STAFF_ROOM: &str = "SELECT id, jid, password FROM room
WHERE status = 'available' AND staff_claimed_at IS NULL
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// MySQL/MariaDB: lock the room whose staff has waited longest and has no client claim.
pub const MYSQL_FIND_CLIENT_ROOM: &str = "SELECT id, jid, password FROM room
WHERE status = 'staff_waiting' AND client_claimed_at IS NULL
ORDER BY status_changed_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// MySQL/MariaDB: write the staff claim (now, claimer, id).
pub const MYSQL_SET_STAFF_CLAIM: &str =
    "UPDATE room SET staff_claimed_at = ?, staff_claimed_by = ? WHERE id = ?";

/// MySQL/MariaDB: write the client claim (now, claimer, id).
pub const MYSQL_SET_CLIENT_CLAIM: &str =
    "UPDATE room SET client_claimed_at = ?, client_claimed_by = ? WHERE id = ?";

/// MySQL/MariaDB: the claim's event (room id, kind, status, status, now, role, detail).
pub const MYSQL_CLAIM_EVENT: &str =
    "INSERT INTO room_event (room_id, kind, from_status, to_status, at, role, detail)
VALUES (?, ?, ?, ?, ?, ?, ?)";

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
}

/// Why a claim gave no room.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Nothing to claim for this role right now (a normal answer, not a failure).
    #[error("no {0} room can be claimed right now")]
    NoneAvailable(Role),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ClaimError {
    fn from(error: sea_orm::DbErr) -> Self {
        ClaimError::Store(error.into())
    }
}

/// Claims a room for a staff member; `by` is recorded as `staff_claimed_by`.
pub async fn claim_staff(store: &Store, by: &str) -> Result<Claim, ClaimError> {
    claim(store, Role::Staff, by).await
}

/// Claims the longest-waiting staff member's room for a client; `by` is recorded as
/// `client_claimed_by`.
pub async fn claim_client(store: &Store, by: &str) -> Result<Claim, ClaimError> {
    claim(store, Role::Client, by).await
}

async fn claim(store: &Store, role: Role, by: &str) -> Result<Claim, ClaimError> {
    let db = store.connection();
    let backend = db.get_database_backend();
    let at = store::now();
    let (status, kind) = match role {
        Role::Client => (RoomStatus::StaffWaiting, EventKind::ClientClaimed),
        _ => (RoomStatus::Available, EventKind::StaffClaimed),
    };
    let detail = format!("claimed by {by}");
    let txn = db.begin().await?;
    let row = match backend {
        DatabaseBackend::MySql => {
            let find = if role == Role::Client {
                MYSQL_FIND_CLIENT_ROOM
            } else {
                MYSQL_FIND_STAFF_ROOM
            };
            let found = txn
                .query_one_raw(Statement::from_string(backend, find))
                .await?;
            if let Some(found) = &found {
                let set = if role == Role::Client {
                    MYSQL_SET_CLIENT_CLAIM
                } else {
                    MYSQL_SET_STAFF_CLAIM
                };
                let id: i64 = found.try_get("", "id")?;
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    set,
                    [at.into(), by.into(), id.into()],
                ))
                .await?;
            }
            found
        }
        _ => {
            let sql = match (backend, role) {
                (DatabaseBackend::Postgres, Role::Client) => POSTGRES_CLAIM_CLIENT,
                (DatabaseBackend::Postgres, _) => POSTGRES_CLAIM_STAFF,
                (_, Role::Client) => SQLITE_CLAIM_CLIENT,
                _ => SQLITE_CLAIM_STAFF,
            };
            txn.query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [at.into(), by.into()],
            ))
            .await?
        }
    };
    let Some(row) = row else {
        txn.rollback().await?;
        return Err(ClaimError::NoneAvailable(role));
    };
    let claim = claim_of(&row, role, at)?;
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

fn claim_of(row: &QueryResult, role: Role, at: DateTime<Utc>) -> Result<Claim, sea_orm::DbErr> {
    Ok(Claim {
        room_id: row.try_get("", "id")?,
        jid: row.try_get("", "jid")?,
        password: row.try_get("", "password")?,
        role: role.as_str(),
        claimed_at: at.to_rfc3339(),
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

/// Releases the claims of `bot_jid`'s rooms that nobody used in time: a staff claim on a
/// room still `available` after `staff_ttl`, a client claim on a room still `staff_waiting`
/// after `client_ttl`. Each release clears the claim columns and appends a `claim_expired`
/// event, in one transaction; returns how many were released.
pub async fn release_expired(
    store: &Store,
    bot_jid: &str,
    staff_ttl: chrono::Duration,
    client_ttl: chrono::Duration,
) -> Result<u64, StoreError> {
    use entity::room;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let db = store.connection();
    let backend = db.get_database_backend();
    let now = store::now();
    let mut released = 0;
    for (role, status, ttl) in [
        (Role::Staff, RoomStatus::Available, staff_ttl),
        (Role::Client, RoomStatus::StaffWaiting, client_ttl),
    ] {
        let claimed_at = match role {
            Role::Client => room::Column::ClientClaimedAt,
            _ => room::Column::StaffClaimedAt,
        };
        let candidates = room::Entity::find()
            .filter(room::Column::BotJid.eq(bot_jid))
            .filter(room::Column::Status.eq(status.as_str()))
            .filter(claimed_at.is_not_null())
            .all(db)
            .await?;
        for row in candidates {
            let (at, by) = match role {
                Role::Client => (row.client_claimed_at, row.client_claimed_by.clone()),
                _ => (row.staff_claimed_at, row.staff_claimed_by.clone()),
            };
            // Compared here rather than in SQL: SQLite stores timestamps as text, and a web
            // application may write another (valid) text format than the bot's.
            if at.is_none_or(|at| now - at < ttl) {
                continue;
            }
            let mut clear = room::ActiveModel::default();
            match role {
                Role::Client => {
                    clear.client_claimed_at = Set(None);
                    clear.client_claimed_by = Set(None);
                }
                _ => {
                    clear.staff_claimed_at = Set(None);
                    clear.staff_claimed_by = Set(None);
                }
            }
            let txn = db.begin().await?;
            let updated = room::Entity::update_many()
                .set(clear)
                .filter(room::Column::Id.eq(row.id))
                .filter(room::Column::Status.eq(status.as_str()))
                .filter(claimed_at.is_not_null())
                .exec(&txn)
                .await?
                .rows_affected;
            if updated == 1 {
                let detail = format!(
                    "{role} claim by {} not used within {} s",
                    by.as_deref().unwrap_or("?"),
                    ttl.num_seconds()
                );
                insert_event(
                    &txn,
                    backend,
                    row.id,
                    EventKind::ClaimExpired,
                    status,
                    now,
                    role,
                    &detail,
                )
                .await?;
                released += 1;
                log::info!(room = row.jid.as_str(); "{detail}: released");
            }
            txn.commit().await?;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

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
