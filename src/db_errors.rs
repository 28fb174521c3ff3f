//! Sorts database errors into transient (wait and try again) and permanent (trying again
//! can never succeed).
//!
//! A room's writes are retried while the database is unreachable, so that no change is lost
//! in an outage. A change the database refuses for good (a constraint, a missing table or
//! column, a value it cannot store) would be retried forever and hold back every later
//! change of its room: such a room is ended as `error` instead (see
//! [`crate::actors::writer`]). When in doubt an error counts as transient: retrying a
//! permanent fault costs log lines, ending a live chat for a passing fault costs a chat.

use sea_orm::sqlx::error::DatabaseError;
use sea_orm::sqlx::mysql::MySqlDatabaseError;
use sea_orm::sqlx::postgres::PgDatabaseError;
use sea_orm::sqlx::sqlite::SqliteError;
use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Whether `error` may go away by itself (connection lost, pool exhausted, lock contention,
/// a server shutting down or out of resources), so that the same statement can succeed later.
pub fn is_transient(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            sqlx_is_transient(error)
        }
        // SeaORM's own checks (type conversions, missing keys, ...): the same input fails
        // the same way every time.
        _ => false,
    }
}

/// The SQLx part of [`is_transient`].
fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(error) => {
            if let Some(pg) = error.try_downcast_ref::<PgDatabaseError>() {
                postgres_is_transient(pg.code())
            } else if let Some(mysql) = error.try_downcast_ref::<MySqlDatabaseError>() {
                mysql_is_transient(mysql.number())
            } else if let Some(sqlite) = error.try_downcast_ref::<SqliteError>() {
                sqlite_is_transient(sqlite.code().and_then(|code| code.parse().ok()))
            } else {
                true
            }
        }
        // Decoding, encoding, unknown columns or types, bad arguments, configuration.
        _ => false,
    }
}

/// PostgreSQL, by SQLSTATE: the classes of connection exceptions (08), rolled-back
/// transactions (40: serialization failure, deadlock), insufficient resources (53),
/// operator intervention (57: shutdown, cancelled) and system errors (58), plus
/// `lock_not_available` (55P03). Everything else (23 constraints, 42 missing table or
/// column, 22 bad data) fails again the same way.
fn postgres_is_transient(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("08" | "40" | "53" | "57" | "58")) || sqlstate == "55P03"
}

/// MariaDB and MySQL, by error number: too many connections (1040, 1203), shutdown (1053,
/// 1077-1080), lock wait timeout (1205), deadlock (1213), query interrupted (1317), out of
/// memory or resources (1037, 1041, 1135), lost connections (1152-1161, 1927, 2002-2013).
fn mysql_is_transient(number: u16) -> bool {
    matches!(
        number,
        1037 | 1040 | 1041 | 1053 | 1077..=1080 | 1135 | 1152..=1161 | 1203 | 1205 | 1213
            | 1317 | 1927 | 2002..=2013
    )
}

/// SQLite, by primary result code (the low byte of the extended code): `SQLITE_BUSY` (5)
/// and `SQLITE_LOCKED` (6) while another connection writes, `SQLITE_NOMEM` (7), I/O errors
/// (10), a full disk (13) that an operator can free. Constraints (19), a read-only or
/// corrupt file, a missing table: permanent.
fn sqlite_is_transient(extended_code: Option<i32>) -> bool {
    match extended_code {
        Some(code) => matches!(code & 0xff, 5 | 6 | 7 | 10 | 13),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::ConnAcquireErr;

    use super::*;

    fn exec(error: sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn an_unreachable_database_is_transient() {
        assert!(is_transient(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(is_transient(&DbErr::Conn(RuntimeErr::Internal(
            "reset".into()
        ))));
        assert!(is_transient(&exec(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )))));
        assert!(is_transient(&exec(sqlx::Error::PoolTimedOut)));
        assert!(is_transient(&DbErr::Query(RuntimeErr::SqlxError(
            Arc::new(sqlx::Error::PoolClosed)
        ))));
    }

    #[test]
    fn a_statement_the_database_cannot_run_is_permanent() {
        assert!(!is_transient(&exec(sqlx::Error::ColumnNotFound(
            "status".into()
        ))));
        assert!(!is_transient(&exec(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&DbErr::Custom("bad".into())));
        assert!(!is_transient(&DbErr::RecordNotUpdated));
    }

    #[test]
    fn postgres_sqlstates_are_sorted_by_class() {
        for transient in [
            "08006", "08P01", "40001", "40P01", "53300", "57P01", "58030", "55P03",
        ] {
            assert!(postgres_is_transient(transient), "{transient}");
        }
        for permanent in ["23505", "23514", "42P01", "42703", "22001", "P0001"] {
            assert!(!postgres_is_transient(permanent), "{permanent}");
        }
    }

    #[test]
    fn mysql_error_numbers_are_sorted() {
        for transient in [1040, 1053, 1205, 1213, 2006, 2013] {
            assert!(mysql_is_transient(transient), "{transient}");
        }
        // Duplicate key, bad column, table missing, data too long, check constraint.
        for permanent in [1062, 1054, 1146, 1406, 4025] {
            assert!(!mysql_is_transient(permanent), "{permanent}");
        }
    }

    #[test]
    fn sqlite_codes_are_sorted_by_primary_code() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED, SQLITE_IOERR_WRITE (778).
        for transient in [5, 517, 6, 778] {
            assert!(sqlite_is_transient(Some(transient)), "{transient}");
        }
        // SQLITE_CONSTRAINT_CHECK (275), _TRIGGER (1811), _UNIQUE (2067), SQLITE_READONLY.
        for permanent in [275, 1811, 2067, 8, 1] {
            assert!(!sqlite_is_transient(Some(permanent)), "{permanent}");
        }
    }
}
