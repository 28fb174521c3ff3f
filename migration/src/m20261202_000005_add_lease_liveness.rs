//! What a would-be taker needs to prove a lease holder dead without waiting out its lease,
//! and what the web application needs to send people only to rooms a live bot watches.
//!
//! - `process_scope`: the holder's boot id and pid namespace. Two processes with the same
//!   scope see the same pids, so a taker with the holder's scope can look the holder's pid
//!   up; a pid alone proves nothing (containers reuse pids).
//! - `process_start`: the holder's start time (clock ticks after boot, from `/proc`): a pid
//!   that runs with another start time is another process.
//! - `xmpp_resource`: the resource of the holder's XMPP session (each process binds its own),
//!   so that a taker on any host can ask the server whether that session still exists.
//! - `xmpp_up`: whether the holder's XMPP session is up now. Claims take only rooms of a bot
//!   whose session is up and whose heartbeat is fresh.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `bot_instance` table and the columns this migration adds.
#[derive(DeriveIden, Clone, Copy)]
enum BotInstance {
    Table,
    ProcessScope,
    ProcessStart,
    XmppResource,
    XmppUp,
}

fn columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new(BotInstance::ProcessScope)
            .string()
            .null()
            .take(),
        ColumnDef::new(BotInstance::ProcessStart)
            .big_integer()
            .null()
            .take(),
        // A resource is up to 1023 bytes: text.
        ColumnDef::new(BotInstance::XmppResource)
            .text()
            .null()
            .take(),
        ColumnDef::new(BotInstance::XmppUp)
            .boolean()
            .not_null()
            .default(false)
            .take(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One ALTER per column: SQLite adds one column per statement.
        for mut column in columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(BotInstance::Table)
                        .add_column(&mut column)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            BotInstance::ProcessScope,
            BotInstance::ProcessStart,
            BotInstance::XmppResource,
            BotInstance::XmppUp,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BotInstance::Table)
                        .drop_column(column)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
