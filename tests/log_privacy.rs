//! No log level prints a room password, the bot's own password or a message body: a full
//! chat runs with the bot at the most verbose level (`RUST_LOG=trace`), and its log and its
//! per-room log files are searched for each secret.
//!
//! The old bot let tokio-xmpp log whole stanzas at trace: every join (with the room
//! password) and every message (with its body) went to the log.

#[macro_use]
mod common;

use std::time::Duration;

use helpim_bot::model::RoomStatus;

use common::bot::{BotOptions, wait_status};
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(10);

// On PostgreSQL too: its driver logs differently (statements, parameters) from SQLite's.
on_every_server_and_backend!(a_full_chat_at_trace_level_leaks_nothing);

async fn a_full_chat_at_trace_level_leaks_nothing(server: ServerKind, backend: Backend) {
    let options = BotOptions {
        // The most verbose logging there is, for every crate in the process.
        env: vec![("RUST_LOG".into(), "trace".into())],
        ..Default::default()
    };
    let w = World::start(server, backend, options).await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Visitor").await;
    let secret = "my address is 12 Hidden Lane";
    let message = |body: &str| {
        format!(
            "<message xmlns='jabber:client' to='{}' type='groupchat'><body>{body}</body></message>",
            room.jid
        )
        .parse::<minidom::Element>()
        .expect("a message")
    };
    client.send(message(secret)).await;
    staff.send(message("thank you for telling me")).await;
    // Both messages went through the room (the staff sees the client's).
    staff
        .wait_for(
            "the client's message",
            |el| el.name() == "message" && el.children().any(|c| c.text() == secret),
            WAIT,
        )
        .await;
    client.leave(&room.jid, "Visitor").await;
    staff.leave(&room.jid, "Counsellor").await;
    wait_status(&w.store, room.room_id, RoomStatus::Closed).await;

    let config = std::fs::read_to_string(&w.bot.config).expect("the bot's config");
    let bot_password = config
        .lines()
        .find_map(|l| l.strip_prefix("password = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the bot's password in its config");
    let mut logs = vec![("the bot's log".to_owned(), w.bot.log_text())];
    for entry in std::fs::read_dir(&w.bot.room_dir).expect("the room log directory") {
        let path = entry.expect("a room log").path();
        let text = std::fs::read_to_string(&path).expect("read a room log");
        logs.push((path.display().to_string(), text));
    }
    assert!(
        logs[0].1.lines().count() > 100 && logs[0].1.contains("TRACE"),
        "the bot really logged at trace level"
    );
    assert!(logs.len() > 1, "per-room logs were written");
    for (name, text) in &logs {
        for (what, value) in [
            ("the room password", room.password.as_str()),
            ("the bot's password", bot_password),
            ("the client's message", secret),
            ("the staff's message", "thank you for telling me"),
        ] {
            assert!(!text.contains(value), "{name} contains {what}");
        }
    }
}
