//! Any character set (issue 21): on a MariaDB database created as `latin1`, the bot's tables
//! are `utf8mb4` after migrating, and people whose nicks are not Latin chat as anybody else.
//! Real bot binary, real Prosody, real MariaDB.
//!
//! Before issue 21 the staff member's Cyrillic nick made the write fail. The bot closed the
//! room `error`, but that write failed too (its detail held "→"), so the row said
//! `staff_waiting` for a room that was gone.

mod common;

use helpim_bot::model::RoomStatus;
use sea_orm::{ConnectionTrait, Statement};

use common::bot::BotOptions;
use common::db::TestDb;
use common::server::{self, ServerKind};
use common::world::World;

#[tokio::test]
async fn a_latin1_database_gets_utf8mb4_tables_and_non_latin_nicks_chat() {
    let db = TestDb::mariadb_latin1();
    let w = World::with_db(
        server::start(ServerKind::Prosody),
        db,
        BotOptions::default(),
    )
    .await;

    // Every text column of the bot's tables holds any character.
    let backend = w.store.connection().get_database_backend();
    let columns = w
        .store
        .connection()
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND CHARACTER_SET_NAME IS NOT NULL \
             AND TABLE_NAME IN ('room', 'room_event', 'bot_instance')",
        ))
        .await
        .expect("read the column character sets");
    assert!(!columns.is_empty(), "no text columns found");
    for column in &columns {
        let table: String = column.try_get("", "TABLE_NAME").unwrap();
        let name: String = column.try_get("", "COLUMN_NAME").unwrap();
        let charset: String = column.try_get("", "CHARACTER_SET_NAME").unwrap();
        assert_eq!(charset, "utf8mb4", "{table}.{name}");
    }

    let (room, _staff, _client) = w.chat("Алёна", "Дмитрий").await;
    let row = w.row(room.room_id).await;
    assert_eq!(row.status, RoomStatus::Chatting);
    assert_eq!(row.staff_nick.as_deref(), Some("Алёна"));
    assert_eq!(row.client_nick.as_deref(), Some("Дмитрий"));
    let events = w.events(room.room_id).await;
    assert!(
        events.iter().any(|e| e.nick.as_deref() == Some("Дмитрий")),
        "{events:#?}"
    );
}
