//! Any character set (issue 21): on a MariaDB database created as `latin1`, the bot's tables
//! are `utf8mb4` after migrating, and people whose nicks are not Latin chat as anybody else.
//! Real bot binary, real Prosody, real MariaDB.
//!
//! Before issue 21 the staff member's Cyrillic nick made the write fail. The bot closed the
//! room `error`, but that write failed too (its detail held "→"), so the row said
//! `staff_waiting` for a room that was gone.

mod common;

use std::time::Duration;

use helpim_bot::model::RoomStatus;
use helpim_bot::store::Store;
use sea_orm::{ConnectionTrait, Statement};

use common::bot::{BotOptions, TestBot};
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

/// Tables an older version created as `latin1`, and a database user who may create tables
/// (the migrations' own bookkeeping needs that) but not alter them: the bot refuses to
/// start, with one line that gives the statement to run. It does not run on tables that
/// lose what people write.
#[tokio::test]
async fn a_conversion_the_user_may_not_do_stops_the_bot_with_the_fix() {
    use migration::{Migrator, MigratorTrait};

    let db = TestDb::mariadb_latin1();
    let root = Store::connect(&db.url).await.expect("connect as root");
    // Every migration before the conversion, as an older version of the bot left them.
    let before = Migrator::migrations().len() as u32 - 1;
    Migrator::up(root.connection(), Some(before))
        .await
        .expect("the older migrations");
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let user = format!("helpim_{}", &name[name.len() - 8..]);
    for statement in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON {name}.* TO '{user}'@'%'"),
    ] {
        root.connection()
            .execute_unprepared(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let url = db.url.replacen("root@", &format!("{user}:pw@"), 1);
    let server = server::start(ServerKind::Prosody);
    let mut bot = TestBot::start(server.as_ref(), &url, BotOptions::default());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = bot.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bot did not stop:\n{}",
            bot.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = root
        .connection()
        .execute_unprepared(&format!("DROP USER '{user}'@'%'"))
        .await;
    assert_eq!(status.code(), Some(1), "{}", bot.log_text());
    let log = bot.log_text();
    let fix = "ALTER TABLE room CONVERT TO CHARACTER SET utf8mb4";
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(fix)).collect();
    assert_eq!(lines.len(), 1, "one line with the fix:\n{log}");
}
