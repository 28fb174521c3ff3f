//! On MySQL/MariaDB, helpim-bot's tables hold any character: `utf8mb4`, whatever the
//! database's default character set is.
//!
//! A database created as `latin1` (MariaDB's default before 11.6, and what many old
//! installations have) gave the tables `latin1`. A nick in Cyrillic, or the "→" of an event
//! detail, then made the write fail: the room was closed `error`, and when that close failed
//! too, the row said `staff_waiting` for a room that was gone. The tables the earlier
//! migrations created are converted here, so a new database ends up with `utf8mb4` tables
//! as well. Columns keep their types. Other databases store UTF-8 already and are left
//! alone.
//!
//! Down does nothing. Converting back to `latin1` would lose every character it cannot
//! hold.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// helpim-bot's tables.
pub const TABLES: [&str; 3] = ["room", "room_event", "bot_instance"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in TABLES {
            let convert = format!("ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4");
            db.execute_unprepared(&convert).await.map_err(|error| {
                DbErr::Migration(format!(
                    "cannot convert table {table} to utf8mb4 ({error}): run `{convert}` as a \
                     user allowed to alter it, then start helpim-bot again"
                ))
            })?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
