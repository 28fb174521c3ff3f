//! The bot's nick: killed during a chat, the bot comes back to find a person in the chat
//! holding its nick. It neither ends the chat nor lets them speak as the bot: it rejoins
//! under another nick, asks them (by a kick with a kind reason) to come back under another
//! name, keeps their seat for them, and takes its own nick back once it is free.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use helpim_bot::model::{EventKind, RoomStatus};
use helpim_bot::texts::Text;
use minidom::Element;

use common::bot::{BotOptions, wait_status};
use common::client::TestClient;
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(20);

/// The bot's nick (the default `xmpp.nick`).
const BOT_NICK: &str = "HelpIM";

/// `person` takes `nick` in `room` as soon as the server lets them (the bot's occupant may
/// take a moment to go after the bot was killed).
async fn take_nick(person: &mut TestClient, room: &str, nick: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let change: Element = format!("<presence xmlns='jabber:client' to='{room}/{nick}'/>")
            .parse()
            .unwrap();
        person.send(change).await;
        let answer = person
            .wait_for_presence(
                room,
                |p| {
                    p.from_nick.as_deref() == Some(nick)
                        && (p.error.is_some() || p.available && p.status_codes.contains(&110))
                },
                WAIT,
            )
            .await;
        if answer.error.is_none() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{nick} still taken after {WAIT:?}: {answer:?}"
        );
        // The bot's occupant is still there: ask again shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_person_holding_the_bots_nick_after_a_restart_neither_ends_the_chat_nor_keeps_it(
    server: ServerKind,
    backend: Backend,
) {
    let mut w = World::start(server, backend, BotOptions::default()).await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Guest").await;

    w.bot.kill();
    take_nick(&mut client, &room.jid, BOT_NICK).await;
    w.bot.spawn();

    // Asked to come back under another name, in the helpline's words.
    let kicked = client.wait_kicked(&room.jid, WAIT).await;
    assert_eq!(
        kicked.reason.as_deref(),
        Some(Text::KickBotNick.english()),
        "{kicked:?}"
    );
    // Their seat waits for them: the chat is not over.
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;
    client
        .join(&room.jid, "Guest", Some(&room.password))
        .await
        .expect("the client comes back under another name");
    wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;

    // The bot holds its own nick again: nobody else speaks as the bot.
    staff
        .wait_for_presence(
            &room.jid,
            |p| {
                p.from_nick.as_deref() == Some(BOT_NICK)
                    && p.available
                    && p.affiliation.as_deref() == Some("owner")
            },
            WAIT,
        )
        .await;
    // The room's history and log say what happened.
    let kick = w.first_event(room.room_id, EventKind::Kicked).await;
    assert_eq!(kick.nick.as_deref(), Some(BOT_NICK));
    assert_eq!(kick.detail, Text::KickBotNick.english());
    let log = w.bot.log_text();
    assert!(
        log.contains(&format!("somebody holds the bot's nick {BOT_NICK}")),
        "{}",
        w.bot.log_tail(30)
    );
}

on_every_server_and_backend!(
    a_person_holding_the_bots_nick_after_a_restart_neither_ends_the_chat_nor_keeps_it
);
