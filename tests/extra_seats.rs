//! With `muc.max_chatters` above 2, every person beyond staff and client needs an extra-seat
//! claim of that very chat; a bound claim admits only its JID; each claim admits one person.
//!
//! The old bot checked nobody's claim in `chatting`: anybody with the password could join a
//! chat in progress while it was below the limit.

#[macro_use]
mod common;

use std::time::Duration;

use helpim_bot::claims::{self, ClaimError};
use helpim_bot::model::{EventKind, Role, RoomStatus};
use helpim_bot::store::{NewRoom, RoomChange, Store};

use common::bot::{BotOptions, eventually};
use common::client::JoinError;
use common::db::{Backend, TestDb};
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(10);

/// A change of a room's status by the bot, with no person.
fn step(room_id: i64, kind: EventKind, from: RoomStatus, to: RoomStatus) -> RoomChange {
    RoomChange::new(room_id, kind, from, to, helpim_bot::store::now())
}

/// A recorded room brought to `chatting`; returns its id.
async fn chatting_room(store: &Store, name: &str) -> i64 {
    let room = store
        .create_room(&NewRoom {
            jid: format!("helpim-{name}@conference.localhost"),
            password: "pw".into(),
            bot_jid: "bot@localhost".into(),
            at: helpim_bot::store::now(),
        })
        .await
        .expect("create a room");
    use EventKind::Entered;
    use RoomStatus::*;
    for (from, to) in [(Available, StaffWaiting), (StaffWaiting, Chatting)] {
        store
            .apply(&step(room.id, Entered, from, to))
            .await
            .expect("a transition");
    }
    room.id
}

async fn one_extra_seat_per_claim_and_only_in_a_chat(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    common::db::live_bot(&store, "bot@localhost").await;
    let chat = chatting_room(&store, "chat").await;
    let claim = claims::claim_extra(&store, chat, "supervisor:3", Some("Carol@Example.org"))
        .await
        .expect("an extra seat of a chat");
    assert_eq!(claim.room_id, chat);
    assert_eq!(claim.role, "extra");
    assert_eq!(
        claim.bound_jid.as_deref(),
        Some("carol@example.org"),
        "normalised"
    );
    let row = store.room(chat).await.unwrap().unwrap();
    assert_eq!(row.extra_claimed_by.as_deref(), Some("supervisor:3"));
    assert_eq!(row.extra_claimed_jid.as_deref(), Some("carol@example.org"));
    // The seat is taken until it is used or expires.
    assert!(matches!(
        claims::claim_extra(&store, chat, "supervisor:4", None).await,
        Err(ClaimError::NoneAvailable(Role::Extra))
    ));
    let events = store.events(chat).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::ExtraClaimed);
    assert_eq!(last.role, Some(Role::Extra));
    // Not a chat: nothing to claim.
    let available = store
        .create_room(&NewRoom {
            jid: "helpim-free@conference.localhost".into(),
            password: "pw".into(),
            bot_jid: "bot@localhost".into(),
            at: helpim_bot::store::now(),
        })
        .await
        .unwrap();
    assert!(matches!(
        claims::claim_extra(&store, available.id, "supervisor:3", None).await,
        Err(ClaimError::NoneAvailable(Role::Extra))
    ));
    // A JID that is not one changes nothing.
    assert!(matches!(
        claims::claim_bound(&store, Role::Staff, "web", "not a jid").await,
        Err(ClaimError::BadJid { .. })
    ));
    assert_eq!(
        store
            .room(available.id)
            .await
            .unwrap()
            .unwrap()
            .staff_claimed_at,
        None
    );
}

#[tokio::test]
async fn one_extra_seat_per_claim_and_only_in_a_chat_on_sqlite() {
    one_extra_seat_per_claim_and_only_in_a_chat(Backend::SqliteFile).await
}

#[tokio::test]
async fn one_extra_seat_per_claim_and_only_in_a_chat_on_postgres() {
    one_extra_seat_per_claim_and_only_in_a_chat(Backend::Postgres).await
}

#[tokio::test]
async fn one_extra_seat_per_claim_and_only_in_a_chat_on_mariadb() {
    one_extra_seat_per_claim_and_only_in_a_chat(Backend::MariaDb).await
}

async fn a_third_person_needs_an_extra_seat_claim(server: ServerKind, backend: Backend) {
    // Three people may chat: the setting under test.
    let w = World::start(
        server,
        backend,
        BotOptions {
            max_chatters: 3,
            ..Default::default()
        },
    )
    .await;
    let (room, _staff, _client) = w.chat("Counsellor", "Visitor").await;
    let mut carol = w.person("carol").await;
    let mut dave = w.person("dave").await;
    // Without an extra-seat claim: kicked, although the chat is below its limit.
    let kicked = |nick: &'static str| {
        move |p: &common::client::PresenceSeen| {
            p.from_nick.as_deref() == Some(nick) && !p.available && p.status_codes.contains(&307)
        }
    };
    carol
        .join(&room.jid, "Carol", Some(&room.password))
        .await
        .expect("the server lets carol in");
    carol
        .wait_for_presence(&room.jid, kicked("Carol"), WAIT)
        .await;
    // A seat bound to carol: dave, with the password, is kicked; carol is admitted.
    let carol_jid = w.server.jid("carol");
    let bot = &w.bot;
    let out = bot.cli(&[
        "claim",
        "extra",
        "--room",
        &room.room_id.to_string(),
        "--jid",
        &carol_jid,
        "--by",
        "supervisor:3",
    ]);
    assert!(out.status.success(), "{}", common::bot::stderr(&out));
    dave.join(&room.jid, "Dave", Some(&room.password))
        .await
        .expect("the server lets dave in");
    dave.wait_for_presence(&room.jid, kicked("Dave"), WAIT)
        .await;
    match carol.join(&room.jid, "Carol", Some(&room.password)).await {
        Ok(_) => {}
        Err(JoinError::Refused { condition }) => panic!("carol refused: {condition}"),
        Err(other) => panic!("carol: {other:?}"),
    }
    let events = eventually("carol entered as extra", WAIT, || async {
        let events = w.events(room.room_id).await;
        match events.last() {
            Some(e) if e.kind == EventKind::Entered && e.role == Some(Role::Extra) => Ok(events),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(events.last().unwrap().nick.as_deref(), Some("Carol"));
    let row = w.row(room.room_id).await;
    assert_eq!(row.status, RoomStatus::Chatting);
    assert_eq!(row.extra_claimed_at, None, "the claim is used up");
    let kicked: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Kicked)
        .filter_map(|e| e.nick.as_deref())
        .collect();
    assert_eq!(kicked, ["Carol", "Dave"]);
}

on_every_server_and_backend!(a_third_person_needs_an_extra_seat_claim);
