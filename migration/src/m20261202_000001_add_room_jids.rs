//! Binds a room's roles to real JIDs and records what the bot must still do on the server.
//!
//! - `staff_jid`, `client_jid`: the real bare JIDs of the people who entered as staff and as
//!   client (the bot, owner of a semi-anonymous room, sees them; participants do not).
//! - `staff_claimed_jid`, `client_claimed_jid`: a claim may name the only bare JID it admits.
//! - `extra_claimed_at`, `extra_claimed_by`, `extra_claimed_jid`: a claim of one extra seat in
//!   a chat in progress (`muc.max_chatters` above 2), used up by the person it admits.
//! - `destroyed_at`: when the server confirmed the room's destruction (or that it was gone);
//!   a `closed` row without it is a room the bot must still destroy. Rows closed before this
//!   migration are taken as destroyed.
//!
//! The JID columns are personal data: the retention purge scrubs them with the nicks.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::utc_timestamp_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `room` table and the columns this migration adds.
#[derive(DeriveIden, Clone, Copy)]
enum Room {
    Table,
    Status,
    ClosedAt,
    StaffJid,
    ClientJid,
    StaffClaimedJid,
    ClientClaimedJid,
    ExtraClaimedAt,
    ExtraClaimedBy,
    ExtraClaimedJid,
    DestroyedAt,
}

/// The new columns, each nullable.
fn columns(backend: DbBackend) -> Vec<ColumnDef> {
    // A bare JID is up to 2 × 1023 bytes and an '@': text, no length limit.
    let text = |name: Room| ColumnDef::new(name).text().null().take();
    vec![
        text(Room::StaffJid),
        text(Room::ClientJid),
        text(Room::StaffClaimedJid),
        text(Room::ClientClaimedJid),
        utc_timestamp_null(backend, Room::ExtraClaimedAt),
        ColumnDef::new(Room::ExtraClaimedBy).string().null().take(),
        text(Room::ExtraClaimedJid),
        utc_timestamp_null(backend, Room::DestroyedAt),
    ]
}

const NAMES: [Room; 8] = [
    Room::StaffJid,
    Room::ClientJid,
    Room::StaffClaimedJid,
    Room::ClientClaimedJid,
    Room::ExtraClaimedAt,
    Room::ExtraClaimedBy,
    Room::ExtraClaimedJid,
    Room::DestroyedAt,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One ALTER per column: SQLite adds one column per statement.
        for mut column in columns(manager.get_database_backend()) {
            manager
                .alter_table(
                    Table::alter()
                        .table(Room::Table)
                        .add_column(&mut column)
                        .take(),
                )
                .await?;
        }
        // Rooms closed before this migration were destroyed (or lost) as far as anybody knows.
        manager
            .exec_stmt(
                Query::update()
                    .table(Room::Table)
                    .value(Room::DestroyedAt, Expr::col(Room::ClosedAt))
                    .and_where(Expr::col(Room::Status).eq("closed"))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in NAMES {
            manager
                .alter_table(Table::alter().table(Room::Table).drop_column(column).take())
                .await?;
        }
        Ok(())
    }
}
