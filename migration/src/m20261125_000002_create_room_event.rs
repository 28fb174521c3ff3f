//! Creates the append-only `room_event` table and its indexes.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_room::Room;
use crate::utc_timestamp;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `room_event` table and its columns, as of this migration.
#[derive(DeriveIden)]
enum RoomEvent {
    Table,
    Id,
    RoomId,
    Kind,
    FromStatus,
    ToStatus,
    At,
    Nick,
    Role,
    Detail,
    CloseReason,
}

/// The `CREATE TABLE room_event` statement for `backend`.
pub(crate) fn create_table(backend: DbBackend) -> TableCreateStatement {
    Table::create()
        .table(RoomEvent::Table)
        .col(big_pk_auto(RoomEvent::Id))
        .col(big_integer(RoomEvent::RoomId))
        .col(string(RoomEvent::Kind))
        .col(string_null(RoomEvent::FromStatus))
        .col(string(RoomEvent::ToStatus))
        .col(utc_timestamp(backend, RoomEvent::At))
        .col(text_null(RoomEvent::Nick))
        .col(string_null(RoomEvent::Role))
        .col(text(RoomEvent::Detail))
        .col(string_null(RoomEvent::CloseReason))
        .foreign_key(
            ForeignKey::create()
                .name("fk_room_event_room_id")
                .from(RoomEvent::Table, RoomEvent::RoomId)
                .to(Room::Table, Room::Id)
                // History is kept: a room with events cannot be deleted by accident.
                .on_delete(ForeignKeyAction::Restrict)
                .on_update(ForeignKeyAction::Restrict),
        )
        .take()
}

/// The indexes: name and columns.
const INDEXES: [(&str, [RoomEvent; 2]); 2] = [
    // "a room's history in order" (and the foreign key's index on MySQL).
    (
        "idx_room_event_room_id_id",
        [RoomEvent::RoomId, RoomEvent::Id],
    ),
    // "events of a kind in a period" (statistics).
    ("idx_room_event_kind_at", [RoomEvent::Kind, RoomEvent::At]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(create_table(manager.get_database_backend()))
            .await?;
        for (name, [first, second]) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(RoomEvent::Table)
                        .col(first)
                        .col(second)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoomEvent::Table).take())
            .await
    }
}
