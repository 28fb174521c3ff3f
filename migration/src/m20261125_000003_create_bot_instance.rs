//! Creates the `bot_instance` table: one row per bot JID that a running process holds, the
//! lease that keeps two processes with the same JID from managing the same rooms at once.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::utc_timestamp;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `bot_instance` table and its columns, as of this migration.
#[derive(DeriveIden)]
enum BotInstance {
    Table,
    BotJid,
    Holder,
    Pid,
    Host,
    AcquiredAt,
    HeartbeatAt,
    Renewals,
}

/// The `CREATE TABLE bot_instance` statement for `backend`.
pub(crate) fn create_table(backend: DbBackend) -> TableCreateStatement {
    Table::create()
        .table(BotInstance::Table)
        // The primary key is what makes acquiring atomic: of several INSERTs for one JID,
        // exactly one succeeds. 255 characters keep it within MySQL's key length limit.
        .col(string(BotInstance::BotJid).primary_key())
        // A random token per process: who holds the lease, compared on every renewal.
        .col(string(BotInstance::Holder))
        // For the operator's messages only; never used to decide anything.
        .col(big_integer(BotInstance::Pid))
        .col(string(BotInstance::Host))
        .col(utc_timestamp(backend, BotInstance::AcquiredAt))
        .col(utc_timestamp(backend, BotInstance::HeartbeatAt))
        // Bumped by every renewal: a would-be taker waits for it to stay unchanged, which
        // needs no agreement between the machines' clocks.
        .col(big_integer(BotInstance::Renewals))
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(create_table(manager.get_database_backend()))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BotInstance::Table).take())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL's `timestamp`/`datetime` would drop the microseconds of the heartbeat.
    #[test]
    fn timestamps_keep_microseconds_on_mysql() {
        let sql = create_table(DbBackend::MySql).to_string(MysqlQueryBuilder);
        assert!(!sql.to_lowercase().contains("timestamp"), "{sql}");
        assert_eq!(sql.matches("DATETIME(6)").count(), 2, "{sql}");
    }

    /// The JID is the key: one row, hence one holder, per bot JID.
    #[test]
    fn bot_jid_is_the_primary_key() {
        for sql in [
            create_table(DbBackend::Postgres).to_string(PostgresQueryBuilder),
            create_table(DbBackend::Sqlite).to_string(SqliteQueryBuilder),
            create_table(DbBackend::MySql).to_string(MysqlQueryBuilder),
        ] {
            let bot_jid = sql
                .split(',')
                .find(|part| part.contains("bot_jid"))
                .unwrap_or_default();
            assert!(bot_jid.contains("PRIMARY KEY"), "{sql}");
        }
    }
}
