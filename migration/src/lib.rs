//! Dated SeaORM migrations of helpim-bot's schema, shared with the helpline's web application.
//!
//! Every migration goes up and down cleanly on SQLite, PostgreSQL and MySQL/MariaDB. Released
//! migrations are history: never edit one, add a new dated file instead.

pub use sea_orm_migration::prelude::*;

use sea_orm_migration::sea_orm::DbBackend;

mod m20261125_000001_create_room;
mod m20261125_000002_create_room_event;
mod m20261125_000003_create_bot_instance;
mod m20261202_000001_add_room_jids;
mod m20261202_000002_add_room_personal_data_removed_at;
mod m20261202_000003_clear_closed_room_passwords;
mod m20261202_000004_notify_claims;
mod m20261202_000005_add_lease_liveness;
mod m20261204_000001_convert_to_utf8mb4;

/// The list of helpim-bot's migrations, applied in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_room::Migration),
            Box::new(m20261125_000002_create_room_event::Migration),
            Box::new(m20261125_000003_create_bot_instance::Migration),
            Box::new(m20261202_000001_add_room_jids::Migration),
            Box::new(m20261202_000002_add_room_personal_data_removed_at::Migration),
            Box::new(m20261202_000003_clear_closed_room_passwords::Migration),
            Box::new(m20261202_000004_notify_claims::Migration),
            Box::new(m20261202_000005_add_lease_liveness::Migration),
            Box::new(m20261204_000001_convert_to_utf8mb4::Migration),
        ]
    }
}

/// A NOT NULL UTC timestamp column that keeps microseconds on every backend.
///
/// PostgreSQL gets `timestamptz` and SQLite SeaORM's text timestamp, both of which keep
/// microseconds; MySQL/MariaDB would map a UTC timestamp to `timestamp` (whole seconds, 2038
/// limit, session time zone conversion), so it gets `DATETIME(6)` holding UTC.
fn utc_timestamp(backend: DbBackend, name: impl IntoIden) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match backend {
        DbBackend::MySql => column.custom("DATETIME(6)"),
        _ => column.timestamp_with_time_zone(),
    };
    column.not_null().take()
}

/// Like [`utc_timestamp`], but nullable.
fn utc_timestamp_null(backend: DbBackend, name: impl IntoIden) -> ColumnDef {
    utc_timestamp(backend, name).null().take()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL's `timestamp`/`datetime` drop the microseconds the store relies on.
    #[test]
    fn timestamps_keep_microseconds_on_mysql() {
        let sql = [
            m20261125_000001_create_room::create_table(DbBackend::MySql)
                .to_string(MysqlQueryBuilder),
            m20261125_000002_create_room_event::create_table(DbBackend::MySql)
                .to_string(MysqlQueryBuilder),
        ]
        .join("\n");
        assert!(!sql.to_lowercase().contains("timestamp"), "{sql}");
        assert_eq!(sql.matches("DATETIME(6)").count(), 6, "{sql}");
    }

    /// PostgreSQL keeps the instant, whatever the session time zone.
    #[test]
    fn postgres_gets_timestamptz() {
        let sql = m20261125_000001_create_room::create_table(DbBackend::Postgres)
            .to_string(PostgresQueryBuilder);
        assert_eq!(sql.matches("timestamp with time zone").count(), 5, "{sql}");
    }
}
