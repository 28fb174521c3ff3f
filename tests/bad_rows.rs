//! A bad row never stops the bot (issue 21): a row the bot cannot decode is quarantined,
//! logged once, counted and listed, and every other room is managed as usual. Real bot
//! binary, real Prosody, real databases (SQLite, PostgreSQL, MariaDB).
//!
//! A bad row is what a web application (or a hand, or a migration of its own) may write:
//! a status outside the five values (`Chatting`), and, where the database lets it store
//! one, a timestamp the bot cannot read (MariaDB's zero date, a SQLite text that is no
//! time).
//!
//! Before issue 21: a bad row at start-up stopped the bot ("cannot read the recorded rooms:
//! room row 2 has a bad status", exit 1, a crash loop under systemd); a row that turned bad
//! during a chat left the room unmanaged for good, and an intruder was held inside it, not
//! kicked.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use helpim_bot::model::{EventKind, RoomStatus};
use sea_orm::ConnectionTrait;

use common::bot::{BotOptions, eventually, wait_status};
use common::db::Backend;
use common::http::{http_get, metric};
use common::server::{ServerKind, pick_port};
use common::world::World;

/// How long the bot may take to notice a corrected row: it reads bad rows again every 10 s.
const TAKEN_UP: Duration = Duration::from_secs(30);

/// How long the scenario waits for the bot to act on something it saw.
const WAIT: Duration = Duration::from_secs(20);

/// One test per database: `bad_rows_on_sqlite::…`, `…_postgres::…`, `…_mariadb::…`.
macro_rules! on_every_database {
    ($($name:ident),+ $(,)?) => {
        on_every_database!(@module on_sqlite, SqliteFile; $($name),+);
        on_every_database!(@module on_postgres, Postgres; $($name),+);
        on_every_database!(@module on_mariadb, MariaDb; $($name),+);
    };
    (@module $module:ident, $backend:ident; $($name:ident),+) => {
        mod $module {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::$backend).await })+
        }
    };
}

on_every_database!(
    a_bad_status_at_start_up_is_skipped_and_taken_up_once_corrected,
    an_unreadable_timestamp_at_start_up_is_skipped,
    a_row_that_turns_bad_during_a_chat_keeps_the_people_and_keeps_strangers_out,
);

/// A world whose bot serves HTTP on a port of the test's choosing.
async fn world(backend: Backend) -> (World, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let options = BotOptions {
        extra: format!("[http]\nlisten = \"{addr}\"\n"),
        ..BotOptions::default()
    };
    (
        World::start(ServerKind::Prosody, backend, options).await,
        addr,
    )
}

/// Runs one SQL statement as the web application would.
async fn sql(w: &World, statement: &str) {
    w.store
        .connection()
        .execute_unprepared(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The value of `helpim_bad_rows`.
fn bad_rows_metric(addr: SocketAddr) -> Result<f64, String> {
    metric(addr, "helpim_bad_rows")
}

/// Waits until `helpim_bad_rows` is `n`.
async fn wait_bad_rows(addr: SocketAddr, n: f64) {
    eventually(&format!("helpim_bad_rows {n}"), TAKEN_UP, || async {
        match bad_rows_metric(addr)? {
            v if v == n => Ok(()),
            v => Err(format!("helpim_bad_rows {v}")),
        }
    })
    .await
}

/// The bot is stopped, `spoil` makes one of its three ready rooms bad, and the bot starts
/// again: it must come up, skip that row with one ERROR line naming it, count it, list it on
/// the status page, stay ready, and keep the pool full with the other rooms. Returns the
/// bad row's id.
async fn restart_with_a_bad_row(w: &mut World, addr: SocketAddr, spoil: &str, column: &str) -> i64 {
    let rooms = w.available(3).await;
    let bad = rooms[0].id;
    // Killed, not stopped: a clean stop would close the ready rooms (`shutdown`).
    w.bot.kill();
    sql(w, &spoil.replace("{id}", &bad.to_string())).await;
    w.bot.spawn();
    eventually("/readyz 200 with a bad row", WAIT, || async {
        match http_get(addr, "/readyz")? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        }
    })
    .await;
    assert!(
        w.bot.exited().is_none(),
        "the bot stopped:\n{}",
        w.bot.log_tail(30)
    );
    wait_bad_rows(addr, 1.0).await;
    let log = w.bot.log_text();
    let named = format!("room row {bad}: column {column} holds");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&named)).collect();
    assert_eq!(lines.len(), 1, "one ERROR line naming the row:\n{log}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    let (code, page) = http_get(addr, "/").unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Rows that need attention") && page.contains(&format!("<td>{bad}</td>")),
        "{page}"
    );
    // Every other room is managed: the pool is full again without the bad row.
    eventually("three ready rooms besides the bad one", WAIT, || async {
        let ready = w
            .store
            .open_rooms(&w.bot.jid)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| r.status == RoomStatus::Available && r.id != bad)
            .count();
        if ready >= 3 {
            Ok(())
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await;
    bad
}

/// A status outside the contract's five values, written while the bot was down.
async fn a_bad_status_at_start_up_is_skipped_and_taken_up_once_corrected(backend: Backend) {
    let (mut w, addr) = world(backend).await;
    let bad = restart_with_a_bad_row(
        &mut w,
        addr,
        "UPDATE room SET status = 'Chatting' WHERE id = {id}",
        "status",
    )
    .await;
    // Corrected by hand: the bot takes the room up again (its room on the server is still
    // there, empty: the bot rejoins it).
    sql(
        &w,
        &format!("UPDATE room SET status = 'available' WHERE id = {bad}"),
    )
    .await;
    wait_bad_rows(addr, 0.0).await;
    eventually("the corrected room taken up", TAKEN_UP, || async {
        let log = w.bot.log_text();
        if log.contains(&format!("room row {bad} is readable again")) {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
}

/// A timestamp the bot cannot read: MariaDB's zero date, or a SQLite text that is no time.
/// PostgreSQL cannot store one (its `timestamptz` refuses it), so there the row gets a status
/// outside the contract instead.
async fn an_unreadable_timestamp_at_start_up_is_skipped(backend: Backend) {
    let (mut w, addr) = world(backend).await;
    let (spoil, column) = match backend {
        Backend::MariaDb => (
            "SET SESSION sql_mode = ''; UPDATE room SET status_changed_at = '0000-00-00 00:00:00' WHERE id = {id}",
            "status_changed_at",
        ),
        Backend::SqliteFile | Backend::SqliteMemory => (
            "UPDATE room SET status_changed_at = 'yesterday' WHERE id = {id}",
            "status_changed_at",
        ),
        Backend::Postgres => (
            "UPDATE room SET close_reason = 'finished' WHERE id = {id}",
            "close_reason",
        ),
    };
    restart_with_a_bad_row(&mut w, addr, spoil, column).await;
}

/// During a chat the web application writes a status the bot cannot read. The people inside
/// stay; a stranger with the password is kicked (nobody's claim can be read); once the row
/// is corrected the bot takes the room up from it and follows the chat to its end.
async fn a_row_that_turns_bad_during_a_chat_keeps_the_people_and_keeps_strangers_out(
    backend: Backend,
) {
    let (w, addr) = world(backend).await;
    let (room, mut staff, mut client) = w.chat("Staff", "Guest").await;
    // Not `Chatting`: MariaDB compares case-insensitively, so there the bot's own next write
    // would match that one and mend it.
    sql(
        &w,
        &format!(
            "UPDATE room SET status = 'talking' WHERE id = {}",
            room.room_id
        ),
    )
    .await;
    let mut stranger = w.person("stranger").await;
    stranger
        .join(&room.jid, "Stranger", Some(&room.password))
        .await
        .expect("a stranger with the password gets in until the bot acts");
    stranger.wait_kicked(&room.jid, WAIT).await;
    wait_bad_rows(addr, 1.0).await;
    // The people inside stay: the room was not destroyed.
    let message: minidom::Element = format!(
        "<message xmlns='jabber:client' to='{}' type='groupchat'><body>still here?</body></message>",
        room.jid
    )
    .parse()
    .unwrap();
    staff.send(message).await;
    client
        .wait_for(
            "the staff member's message",
            |el| el.name() == "message" && el.attr("type") == Some("groupchat"),
            WAIT,
        )
        .await;

    sql(
        &w,
        &format!(
            "UPDATE room SET status = 'chatting' WHERE id = {}",
            room.room_id
        ),
    )
    .await;
    wait_bad_rows(addr, 0.0).await;
    // Taken up from the row: the client's leave is followed.
    eventually("the room taken up again", TAKEN_UP, || async {
        if w.bot
            .log_text()
            .contains("restarting the room from its database row")
        {
            Ok(())
        } else {
            Err(format!(
                "not yet; the bot's log ends:\n{}",
                w.bot.log_tail(40)
            ))
        }
    })
    .await;
    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;
    let events = w.events(room.room_id).await;
    assert!(
        events.iter().any(|e| e.kind == EventKind::Left),
        "{events:#?}"
    );
}
