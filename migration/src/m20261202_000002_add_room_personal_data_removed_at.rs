//! Records when the retention purge removed a room's personal data, and indexes the purge's
//! search by closing time.
//!
//! - `personal_data_removed_at`: when the purge scrubbed the room's nicks, JIDs, claimants
//!   and event details (see `helpim_bot::retention`); NULL while they are still there. The
//!   purge looks for closed rooms where it is NULL, so a daily run touches only what is new.
//! - `idx_room_closed_at`: "closed rooms, oldest first" for the scrub and the deletion.

use sea_orm_migration::prelude::*;

use crate::utc_timestamp_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `room` table and what this migration adds.
#[derive(DeriveIden, Clone, Copy)]
enum Room {
    Table,
    ClosedAt,
    PersonalDataRemovedAt,
}

/// The name of the index on `closed_at`.
const INDEX: &str = "idx_room_closed_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Room::Table)
                    .add_column(utc_timestamp_null(backend, Room::PersonalDataRemovedAt))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Room::Table)
                    .col(Room::ClosedAt)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Room::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Room::Table)
                    .drop_column(Room::PersonalDataRemovedAt)
                    .take(),
            )
            .await
    }
}
