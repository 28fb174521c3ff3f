//! No secret outlives its room: clears the password of every room already closed.
//!
//! From this version on, the transaction that closes a room also sets its `password` to the
//! empty string (the bot never gives a room an empty password, so `''` means "no password
//! any more"). The column stays `NOT NULL`, so that web applications reading it as a string
//! keep working and SQLite needs no table rebuild. This migration brings the rooms closed
//! before it in line.
//!
//! Going down changes nothing: a cleared secret cannot be brought back, and no older
//! version needs it (closed rooms are destroyed on the server).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `room` columns this migration touches.
#[derive(DeriveIden, Clone, Copy)]
enum Room {
    Table,
    Password,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::update()
                    .table(Room::Table)
                    .value(Room::Password, "")
                    .and_where(Expr::col(Room::Status).eq("closed"))
                    .take(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
