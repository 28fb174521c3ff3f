//! Surviving crashes, restarts and lost connections: the database is the truth, and after
//! every recovery each row matches what the server shows. Real processes (kill -9), a real
//! Prosody stopped and started, real clients. The bot runs with the production default
//! `require_claims = true`: every person enters through a claim (`common::world`).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use helpim_bot::claims::Claim;
use helpim_bot::model::{CloseReason, EventKind, RoomStatus};
use helpim_bot::store::{Room, Store};

use common::bot::{BotOptions, TestBot, eventually, stderr, wait_available, wait_status};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;
use common::server::{ServerKind, XmppServer};
use common::world::{World, claim_staff, open_chats, staff_enters};

const WAIT: Duration = Duration::from_secs(20);

/// Staff and client in a room, kept for the test.
struct Chat {
    /// The staff claim of the chat's room.
    room: Claim,
    staff: Option<TestClient>,
    client: Option<TestClient>,
}

/// `n` chats entered through claims (`common::world::open_chats`), each `chatting`.
async fn start_chats(server: &dyn XmppServer, store: &Store, n: usize) -> Vec<Chat> {
    open_chats(server, store, n)
        .await
        .into_iter()
        .map(|(room, staff, client)| Chat {
            room,
            staff: Some(staff),
            client: Some(client),
        })
        .collect()
}

/// A Prosody and SQLite world with the accounts `staff` and `client`, and borrows of its parts.
async fn chat_world(options: BotOptions) -> World {
    chat_world_on(ServerKind::Prosody, options).await
}

/// [`chat_world`] on the XMPP server `kind`.
async fn chat_world_on(kind: ServerKind, options: BotOptions) -> World {
    let w = World::start(kind, Backend::SqliteFile, options).await;
    w.server.register("staff", "pw");
    w.server.register("client", "pw");
    w
}

fn status_counts(rooms: &[Room]) -> BTreeMap<RoomStatus, usize> {
    let mut counts = BTreeMap::new();
    for room in rooms {
        *counts.entry(room.status).or_default() += 1;
    }
    counts
}

on_every_server!(
    a_row_changed_under_the_bot_restarts_the_room_from_it_and_later_changes_land,
    a_room_that_cannot_be_configured_on_rejoin_is_closed_lost_and_recovery_goes_on,
);

#[tokio::test]
async fn kill_9_during_twenty_chats_then_restart_matches_the_server() {
    const CHATS: usize = 20;
    let mut w = chat_world(BotOptions {
        available: CHATS as u32,
        max_rooms: 40,
        extra: "[timeouts]\none_left_secs = 0".into(),
        ..Default::default()
    })
    .await;
    let (bot, store, server) = (&mut w.bot, &w.store, &mut w.server);
    wait_available(store, &bot.jid, CHATS).await;
    let mut chats = start_chats(server.as_ref(), store, CHATS).await;
    // The pool refilled behind the claims: these rooms die with the bot's session.
    let spare = wait_available(store, &bot.jid, CHATS).await;

    bot.kill(); // kill -9: no goodbye, nothing flushed
    // While the bot is down: in chats 0-4 the client leaves; in 5-7 both leave.
    for (n, chat) in chats.iter_mut().enumerate().take(5) {
        chat.client
            .as_mut()
            .unwrap()
            .leave(&chat.room.jid, &format!("Guest{n}"))
            .await;
    }
    for (n, chat) in chats.iter_mut().enumerate().take(8).skip(5) {
        chat.client
            .as_mut()
            .unwrap()
            .leave(&chat.room.jid, &format!("Guest{n}"))
            .await;
        chat.staff
            .as_mut()
            .unwrap()
            .leave(&chat.room.jid, &format!("Staff{n}"))
            .await;
    }

    bot.spawn();
    // Every row ends in the state the server shows.
    for (n, chat) in chats.iter().enumerate() {
        let expected = match n {
            0..5 => RoomStatus::OneLeft,
            5..8 => RoomStatus::Closed,
            _ => RoomStatus::Chatting,
        };
        let row = eventually(&format!("room {n} to be {expected}"), WAIT, || async {
            let row = store
                .room(chat.room.room_id)
                .await
                .map_err(|e| e.to_string())?
                .unwrap();
            (row.status == expected)
                .then_some(row.clone())
                .ok_or(format!("{}", row.status))
        })
        .await;
        if (5..8).contains(&n) {
            // Emptied while the bot was away: the server dropped the temporary room.
            assert_eq!(row.close_reason, Some(CloseReason::Lost), "room {n}");
        }
    }
    // The unused rooms of before were found lost (until then their rows still say
    // `available`), and the pool is full again with new ones.
    for room in &spare {
        let row = wait_status(store, room.id, RoomStatus::Closed).await;
        assert_eq!(row.close_reason, Some(CloseReason::Lost), "{}", room.jid);
    }
    wait_available(store, &bot.jid, CHATS).await;

    // The chats go on and are tracked to closed.
    for (n, chat) in chats.iter_mut().enumerate() {
        if n < 5 {
            chat.staff
                .as_mut()
                .unwrap()
                .leave(&chat.room.jid, &format!("Staff{n}"))
                .await;
        } else if n >= 8 {
            chat.client
                .as_mut()
                .unwrap()
                .leave(&chat.room.jid, &format!("Guest{n}"))
                .await;
            chat.staff
                .as_mut()
                .unwrap()
                .leave(&chat.room.jid, &format!("Staff{n}"))
                .await;
        }
    }
    for (n, chat) in chats.iter().enumerate() {
        let row = wait_status(store, chat.room.room_id, RoomStatus::Closed).await;
        if !(5..8).contains(&n) {
            assert_eq!(row.close_reason, Some(CloseReason::Completed), "room {n}");
        }
        let events = store.events(chat.room.room_id).await.unwrap();
        for pair in events.windows(2) {
            assert_eq!(
                pair[1].from_status,
                Some(pair[0].to_status),
                "room {n}: {events:?}"
            );
            assert!(pair[0].at <= pair[1].at);
        }
    }
    // No room of this bot is left open but the fresh pool.
    wait_available(store, &bot.jid, CHATS).await;
    let open = store.open_rooms(&bot.jid).await.unwrap();
    assert_eq!(
        status_counts(&open),
        BTreeMap::from([(RoomStatus::Available, CHATS)])
    );
}

#[tokio::test]
async fn prosody_restarted_during_chats_rooms_are_lost_and_the_pool_refills() {
    let mut w = chat_world(BotOptions {
        available: 3,
        max_rooms: 10,
        ..Default::default()
    })
    .await;
    let (bot, store, server) = (&mut w.bot, &w.store, &mut w.server);
    wait_available(store, &bot.jid, 3).await;
    let chats = start_chats(server.as_ref(), store, 2).await;
    let chat_rooms: Vec<i64> = chats.iter().map(|c| c.room.room_id).collect();
    let before: Vec<i64> = store
        .open_rooms(&bot.jid)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();

    server.stop();
    drop(chats); // their connections are gone with the server
    server.start_again();

    // The bot reconnects by itself, finds every room gone, closes them and refills. The
    // unused room is lost. A chat's room is lost too, unless the bot still saw both people
    // leave while the server went down (Prosody ends their sessions first, with ordinary
    // unavailable presences): then, as far as anyone can tell, the chat completed.
    for id in &before {
        let row = wait_status(store, *id, RoomStatus::Closed).await;
        let chat = chat_rooms.contains(id);
        match row.close_reason {
            Some(CloseReason::Lost) => {}
            Some(CloseReason::Completed) if chat => {}
            other => panic!("room {id} (chat: {chat}) closed with {other:?}"),
        }
    }
    let fresh = wait_available(store, &bot.jid, 3).await;
    assert!(fresh.iter().all(|r| !before.contains(&r.id)));
    assert!(
        bot.exited().is_none(),
        "the bot kept running:\n{}",
        bot.log_tail(30)
    );

    // And the new rooms work.
    let mut staff = TestClient::connect(server.as_ref(), "staff", "pw").await;
    let claim = staff_enters(store, &mut staff, "Staff").await;
    assert!(
        fresh.iter().any(|r| r.id == claim.room_id),
        "the claim is for a fresh room: {claim:?}"
    );
    let events = store.events(before[0]).await.unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::Closed);
}

#[tokio::test]
async fn a_clean_restart_keeps_chats_running_and_tracks_them() {
    let mut w = chat_world(BotOptions {
        available: 2,
        max_rooms: 6,
        ..Default::default()
    })
    .await;
    let (bot, store, server) = (&mut w.bot, &w.store, &mut w.server);
    wait_available(store, &bot.jid, 2).await;
    let mut chats = start_chats(server.as_ref(), store, 1).await;
    // The pool replaced the claimed room: two unused rooms again.
    let unused = wait_available(store, &bot.jid, 2).await;

    assert_eq!(bot.stop().code(), Some(0));
    // The unused rooms were closed for the shutdown; the chat's room was left running.
    for room in &unused {
        let row = store.room(room.id).await.unwrap().unwrap();
        assert_eq!(
            row.close_reason,
            Some(CloseReason::Shutdown),
            "{}",
            room.jid
        );
    }
    assert_eq!(
        store
            .room(chats[0].room.room_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RoomStatus::Chatting
    );

    bot.spawn();
    wait_available(store, &bot.jid, 2).await;
    let chat = &mut chats[0];
    chat.client
        .as_mut()
        .unwrap()
        .leave(&chat.room.jid, "Guest0")
        .await;
    wait_status(store, chat.room.room_id, RoomStatus::OneLeft).await;
    chat.staff
        .as_mut()
        .unwrap()
        .leave(&chat.room.jid, "Staff0")
        .await;
    let row = wait_status(store, chat.room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
}

/// Without the test-only hook the scenario cannot run: fail with the fix, never skip.
#[cfg(not(feature = "fault-injection"))]
#[tokio::test]
async fn a_panic_in_one_room_actor_leaves_the_other_rooms_alone() {
    panic!(
        "this test needs the bot built with its test-only fault injection: \
         cargo test --features helpim-bot/fault-injection (scripts/test-all does)"
    );
}

#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn a_panic_in_one_room_actor_leaves_the_other_rooms_alone() {
    let mut w = chat_world(BotOptions {
        available: 2,
        max_rooms: 6,
        env: vec![("HELPIM_FAULT_PANIC_ON_NICK".into(), "Boom".into())],
        ..Default::default()
    })
    .await;
    w.server.register("boom", "pw");
    let (bot, store, server) = (&mut w.bot, &w.store, &mut w.server);
    wait_available(store, &bot.jid, 2).await;
    let mut chats = start_chats(server.as_ref(), store, 1).await;

    // "Boom", a staff member with a claim for another room, entering it makes that room's
    // actor panic.
    let other = claim_staff(store).await;
    let mut boom = TestClient::connect(server.as_ref(), "boom", "pw").await;
    boom.join(&other.jid, "Boom", Some(&other.password))
        .await
        .expect("join");
    eventually("the injected panic", WAIT, || async {
        let log = bot.log_text();
        log.contains("fault injection")
            .then_some(())
            .ok_or("not yet".to_owned())
    })
    .await;

    // The chat in the first room goes on, tracked as before.
    let chat = &mut chats[0];
    chat.client
        .as_mut()
        .unwrap()
        .leave(&chat.room.jid, "Guest0")
        .await;
    wait_status(store, chat.room.room_id, RoomStatus::OneLeft).await;

    // The broken room is restarted from its row: it rejoins and finds Boom inside.
    let row = wait_status(store, other.room_id, RoomStatus::StaffWaiting).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Boom"));
    assert!(
        bot.log_text()
            .contains("restarting it from its database row")
    );
    assert!(bot.exited().is_none(), "the bot kept running");
    // The pool still works: rooms taken are replaced.
    wait_available(store, &bot.jid, 2).await;
    chat.staff
        .as_mut()
        .unwrap()
        .leave(&chat.room.jid, "Staff0")
        .await;
    wait_status(store, chat.room.room_id, RoomStatus::Closed).await;
}

/// Prosody with the accounts `staff` and `client`, a PostgreSQL database, and a bot that
/// reaches the database only through a proxy the test can cut. The store is the test's own
/// view: direct, never cut.
struct CuttablePostgres {
    server: TestProsody,
    store: Store,
    proxy: common::proxy::CuttableProxy,
    bot: TestBot,
    _db: TestDb,
}

impl CuttablePostgres {
    /// Starts it all; the bot has `available` ready rooms when this returns.
    async fn start(available: u32, extra: &str) -> CuttablePostgres {
        let server = TestProsody::start();
        server.register("staff", "pw");
        server.register("client", "pw");
        let db = TestDb::new(Backend::Postgres);
        let store = db.store().await;
        let proxy = common::proxy::CuttableProxy::start("127.0.0.1:5432".parse().unwrap()).await;
        let via_proxy = db.url.replacen(":5432/", &format!(":{}/", proxy.port), 1);
        assert_ne!(via_proxy, db.url, "the URL goes through the proxy");
        let bot = TestBot::start(
            &server,
            &via_proxy,
            BotOptions {
                available,
                max_rooms: 3 * available,
                extra: extra.into(),
                ..Default::default()
            },
        );
        wait_available(&store, &bot.jid, available as usize).await;
        CuttablePostgres {
            server,
            store,
            proxy,
            bot,
            _db: db,
        }
    }
}

#[tokio::test]
async fn postgres_unreachable_during_transitions_loses_and_reorders_nothing() {
    let CuttablePostgres {
        server,
        store,
        proxy,
        mut bot,
        _db,
    } = CuttablePostgres::start(2, "[timeouts]\nretry_max_secs = 1\none_left_secs = 0").await;
    let mut chats = start_chats(&server, &store, 1).await;
    let room = chats[0].room.clone();

    proxy.cut();
    // Transitions while the database is unreachable: the XMPP side goes on.
    let chat = &mut chats[0];
    chat.client
        .as_mut()
        .unwrap()
        .leave(&room.jid, "Guest0")
        .await;
    chat.staff
        .as_mut()
        .unwrap()
        .leave(&room.jid, "Staff0")
        .await;
    // The room is destroyed on the server even though nothing could be written.
    let mut probe = TestClient::connect(&server, "client", "pw").await;
    common::bot::wait_gone_from_server(&mut probe, &room.jid).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = store.room(room.room_id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        RoomStatus::Chatting,
        "nothing could be written meanwhile"
    );
    assert!(bot.exited().is_none(), "the bot stays up during the outage");

    let restored_at = chrono::Utc::now();
    proxy.restore();
    let row = wait_status(&store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
    let events = store.events(room.room_id).await.unwrap();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.from_status, e.to_status))
        .collect();
    assert_eq!(
        kinds[kinds.len() - 2..],
        [
            (
                EventKind::Left,
                Some(RoomStatus::Chatting),
                RoomStatus::OneLeft
            ),
            (
                EventKind::Closed,
                Some(RoomStatus::OneLeft),
                RoomStatus::Closed
            ),
        ],
        "every pending transition landed, in order"
    );
    // Timestamps are those of the transitions, not of the late writes.
    for event in &events[events.len() - 2..] {
        assert!(event.at < restored_at, "{event:?} stamped after the outage");
    }
    wait_available(&store, &bot.jid, 2).await;
}

#[tokio::test]
async fn one_process_per_bot_jid_and_bots_with_other_jids_share_the_database() {
    let server = TestProsody::start();
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let mut first = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            available: 2,
            max_rooms: 4,
            ..Default::default()
        },
    );
    let first_rooms = wait_available(&store, &first.jid, 2).await;

    // The same config again: refused with a message naming the holder, exit 1.
    let output = first.cli(&[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("already managed by pid"), "{err}");
    // The first bot and its rooms were not disturbed.
    assert!(first.exited().is_none());
    for room in &first_rooms {
        assert_eq!(
            store.room(room.id).await.unwrap().unwrap().status,
            RoomStatus::Available
        );
    }

    // A bot with another JID shares the database and keeps to its own rooms.
    let mut second = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            user: "helpim-bot-2".into(),
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    );
    let second_rooms = wait_available(&store, &second.jid, 1).await;
    assert_eq!(
        rooms_of(&store, &first.jid).await,
        first_rooms.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    // The health check reads the lease: healthy while the bot runs.
    let output = first.cli(&["health"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("healthy"));
    // Stopping the first bot closes only its own unused rooms.
    assert_eq!(first.stop().code(), Some(0));
    let row = store.room(second_rooms[0].id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        RoomStatus::Available,
        "the other bot's room is untouched"
    );
    assert_eq!(second.stop().code(), Some(0));

    // The health check reads the lease: unhealthy once nobody holds it.
    let output = first.cli(&["health"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

async fn rooms_of(store: &Store, bot: &str) -> Vec<i64> {
    store
        .rooms(&helpim_bot::store::RoomFilter {
            status: Some(RoomStatus::Available),
            bot_jid: Some(bot.into()),
        })
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

/// XEP-0410: a room that forgot the bot without a word (the test plugin
/// `mod_helpim_test_forget` on Prosody) is noticed by the bot's self-ping, which rejoins
/// and follows the chat on.
#[tokio::test]
async fn a_room_that_silently_dropped_the_bot_is_noticed_by_the_self_ping_and_rejoined() {
    let w = chat_world(BotOptions {
        available: 1,
        max_rooms: 3,
        // A self-ping every second instead of every 300 s, so the test need not wait.
        extra: "[timeouts]\nroom_ping_secs = 1".into(),
        ..Default::default()
    })
    .await;
    let (bot, store, server) = (&w.bot, &w.store, &w.server);
    wait_available(store, &bot.jid, 1).await;
    let mut chats = start_chats(server.as_ref(), store, 1).await;
    let chat = &mut chats[0];
    let jid = chat.room.jid.clone();

    // The room forgets the bot (nick "HelpIM"): nobody gets a presence.
    let forget = xmpp_parsers::message::Message::groupchat(jid::Jid::new(&jid).unwrap())
        .with_body(Default::default(), "helpim-test: forget HelpIM".into());
    chat.staff.as_mut().unwrap().send(forget.into()).await;
    eventually("the self-ping to notice", WAIT, || async {
        let log = bot.log_text();
        (log.contains("self-ping says the bot is no longer in the room")
            && log.contains("rejoining to check the room"))
        .then_some(())
        .ok_or(bot.log_tail(5))
    })
    .await;

    // Back inside, the bot follows the chat: the client leaves, then the staff member.
    let id = chat.room.room_id;
    assert_eq!(
        store.room(id).await.unwrap().unwrap().status,
        RoomStatus::Chatting
    );
    // The rejoin is done once the bot sees the chat again; then a departure is recorded.
    eventually("the rejoin to finish", WAIT, || async {
        let log = bot.log_text();
        let rejoining = log.rfind("rejoining to check the room");
        let after = rejoining.map(|at| &log[at..]).unwrap_or("");
        after
            .lines()
            .any(|l| l.contains("back in the room") && l.contains("Staff0") && l.contains("Guest0"))
            .then_some(())
            .ok_or(bot.log_tail(5))
    })
    .await;
    chat.client.as_mut().unwrap().leave(&jid, "Guest0").await;
    wait_status(store, id, RoomStatus::OneLeft).await;
    chat.staff.as_mut().unwrap().leave(&jid, "Staff0").await;
    let row = wait_status(store, id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
}

/// Issue 10: a holder whose lease expired (its database unreachable) does nothing on XMPP
/// until it holds the lease again: another process could own the rooms by then. Here the
/// `one_left` timeout falls due during the outage; the room is destroyed only once the
/// lease is renewed.
#[tokio::test]
async fn a_holder_whose_lease_expired_acts_on_no_room_until_it_is_renewed() {
    // one_left ends the chat 1 s after a departure (an XMPP action that needs no database):
    // the action the expired lease must hold back.
    let CuttablePostgres {
        server,
        store,
        proxy,
        bot,
        _db,
    } = CuttablePostgres::start(1, "[timeouts]\nretry_max_secs = 1\none_left_secs = 1").await;
    let mut chats = start_chats(&server, &store, 1).await;
    let room = chats[0].room.clone();

    proxy.cut();
    eventually("the lease to expire", WAIT, || async {
        let log = bot.log_text();
        log.contains("could not be renewed in time")
            .then_some(())
            .ok_or(bot.log_tail(3))
    })
    .await;
    chats[0]
        .client
        .as_mut()
        .unwrap()
        .leave(&room.jid, "Guest0")
        .await;
    // Well past the one_left timeout, the room is still there: nothing was sent.
    let mut probe = TestClient::connect(&server, "client", "pw").await;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        probe
            .disco_info(&room.jid)
            .await
            .unwrap_or_else(|e| panic!("the room was acted on without a lease: {e}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.restore();
    eventually("the lease to be renewed", WAIT, || async {
        let log = bot.log_text();
        log.contains("held stanza(s) sent")
            .then_some(())
            .ok_or(bot.log_tail(3))
    })
    .await;
    // Then the held actions go out: the chat ends and its room is destroyed.
    common::bot::wait_gone_from_server(&mut probe, &room.jid).await;
    let row = wait_status(&store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Timeout), "{row:?}");
}

/// Issue 10: after a write conflict (somebody else changed the row) the room is not stuck
/// with every later change refused: it restarts from the row as it is, and what happens
/// next is recorded.
async fn a_row_changed_under_the_bot_restarts_the_room_from_it_and_later_changes_land(
    kind: ServerKind,
) {
    use sea_orm::ConnectionTrait;
    let w = chat_world_on(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    let (bot, store, server) = (&w.bot, &w.store, &w.server);
    wait_available(store, &bot.jid, 1).await;
    let mut chats = start_chats(server.as_ref(), store, 1).await;
    let chat = &mut chats[0];
    let (id, jid) = (chat.room.room_id, chat.room.jid.clone());

    // Somebody else changes the row (an operator's mistaken fix by hand).
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE room SET status = 'staff_waiting' WHERE id = {id}"
        ))
        .await
        .unwrap();
    // The client leaves: the bot's chatting → one_left is refused by the row.
    chat.client.as_mut().unwrap().leave(&jid, "Guest0").await;
    eventually("the room to start again from its row", WAIT, || async {
        let log = bot.log_text();
        (log.contains("database row disagrees with the bot")
            && log.contains("restarting the room from its database row")
            && log.contains("back in the room"))
        .then_some(())
        .ok_or(bot.log_tail(5))
    })
    .await;
    // From the row (staff waiting, the staff member inside), the room goes on: the staff
    // member leaves, and that is recorded.
    chat.staff.as_mut().unwrap().leave(&jid, "Staff0").await;
    let row = wait_status(store, id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::NoClient), "{row:?}");
    let mut probe = TestClient::connect(server.as_ref(), "client", "pw").await;
    common::bot::wait_gone_from_server(&mut probe, &jid).await;
}

/// A change the database refuses for good (here a constraint that forbids `entered`
/// events, added by the test) is not retried: the row is closed `error` and the room is
/// destroyed, so that nobody sits in a room the bot cannot follow; the pool replaces it.
async fn a_change_refused_for_good_closes_the_room_as_error(
    kind: ServerKind,
    backend: Backend,
    refuse: &str,
) {
    use sea_orm::ConnectionTrait;
    let w = World::start(
        kind,
        backend,
        BotOptions {
            available: 1,
            max_rooms: 2,
            ..Default::default()
        },
    )
    .await;
    w.server.register("staff", "pw");
    let (bot, store) = (&w.bot, &w.store);
    let first = wait_available(store, &bot.jid, 1).await.remove(0);
    store.connection().execute_unprepared(refuse).await.unwrap();

    let mut staff = w.person("staff").await;
    let claim = claim_staff(store).await;
    assert_eq!(claim.room_id, first.id);
    staff
        .join(&claim.jid, "Staff", Some(&claim.password))
        .await
        .expect("the staff member enters");
    let row = wait_status(store, first.id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Error), "{row:?}");
    assert!(row.password.is_empty(), "no secret outlives its room");
    let events = store.events(first.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind, last.from_status, last.to_status),
        (
            EventKind::Closed,
            Some(RoomStatus::Available),
            RoomStatus::Closed
        ),
        "{events:?}"
    );
    // The staff member is told: the room is destroyed under them.
    let gone = staff
        .wait_for_presence(&claim.jid, |p| p.destroyed, WAIT)
        .await;
    assert!(gone.destroyed);
    // Recorded as destroyed, and a new room takes its place.
    eventually("the row to be marked destroyed", WAIT, || async {
        let row = store.room(first.id).await.unwrap().unwrap();
        row.destroyed_at.map(|_| ()).ok_or("not yet".to_owned())
    })
    .await;
    let next = wait_available(store, &bot.jid, 1).await.remove(0);
    assert_ne!(next.id, first.id);
    let log = bot.log_text();
    assert!(
        log.contains("refused change entered available→staff_waiting for good"),
        "{}",
        bot.log_tail(20)
    );
    assert!(!log.contains("retrying in"), "{}", bot.log_tail(20));
}

#[tokio::test]
async fn sqlite_a_change_refused_for_good_closes_the_room_as_error() {
    a_change_refused_for_good_closes_the_room_as_error(
        ServerKind::Prosody,
        Backend::SqliteFile,
        "CREATE TRIGGER refuse_entered BEFORE INSERT ON room_event WHEN NEW.kind = 'entered' \
         BEGIN SELECT RAISE(ABORT, 'entries refused by the test'); END",
    )
    .await;
}

#[tokio::test]
async fn postgres_a_change_refused_for_good_closes_the_room_as_error() {
    a_change_refused_for_good_closes_the_room_as_error(
        ServerKind::Prosody,
        Backend::Postgres,
        "ALTER TABLE room_event ADD CONSTRAINT refuse_entered CHECK (kind <> 'entered')",
    )
    .await;
}

#[tokio::test]
async fn ejabberd_postgres_a_change_refused_for_good_closes_the_room_as_error() {
    a_change_refused_for_good_closes_the_room_as_error(
        ServerKind::Ejabberd,
        Backend::Postgres,
        "ALTER TABLE room_event ADD CONSTRAINT refuse_entered CHECK (kind <> 'entered')",
    )
    .await;
}

#[tokio::test]
async fn mariadb_a_change_refused_for_good_closes_the_room_as_error() {
    a_change_refused_for_good_closes_the_room_as_error(
        ServerKind::Prosody,
        Backend::MariaDb,
        "ALTER TABLE room_event ADD CONSTRAINT refuse_entered CHECK (kind <> 'entered')",
    )
    .await;
}

/// A room the bot can no longer configure when it rejoins (an administrator took its
/// ownership away while it was down) is closed `lost` and given up: its destroy is refused
/// too, and is not retried forever (an actor stuck retrying every 30 s, and a shutdown
/// waiting for it); the recovery ends and the pool refills.
async fn a_room_that_cannot_be_configured_on_rejoin_is_closed_lost_and_recovery_goes_on(
    kind: ServerKind,
) {
    let mut w = chat_world_on(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    wait_available(&w.store, &w.bot.jid, 1).await;
    let mut staff = w.person("staff").await;
    let room = staff_enters(&w.store, &mut staff, "Staff").await;
    wait_available(&w.store, &w.bot.jid, 1).await;

    w.bot.kill();
    let bot_account = w.bot.jid.clone();
    if let Some(body) = w.server.disown(&room.jid, &bot_account) {
        let disown = xmpp_parsers::message::Message::groupchat(jid::Jid::new(&room.jid).unwrap())
            .with_body(Default::default(), body);
        staff.send(disown.into()).await;
    }
    w.bot.spawn();

    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Lost), "{row:?}");
    // Not stuck on the room: the recovery ends and the pool is full again.
    let fresh = wait_available(&w.store, &w.bot.jid, 1).await;
    assert_ne!(fresh[0].id, room.room_id);
    let log = w.bot.log_text();
    assert!(
        log.contains("cannot be configured again (the bot is no longer its owner")
            && log.contains("refuses to let the bot destroy the room"),
        "{}",
        w.bot.log_tail(30)
    );
    assert!(
        !log.contains("destroying the room failed"),
        "a refused destroy is not retried:\n{}",
        w.bot.log_tail(30)
    );
    // The row stays undestroyed: the room still lives on the server.
    assert_eq!(
        w.store
            .room(room.room_id)
            .await
            .unwrap()
            .unwrap()
            .destroyed_at,
        None
    );
}

/// After a restart, a rejoin the server does not answer (the test plugin swallows joins)
/// is tried again, up to 3 times: `swallowed` joins below that, and the room is followed on
/// (a client enters later); 3 or more, and the room is given up as `lost` and the pool
/// refilled, instead of being adopted unwatched or waited for forever. Prosody only: the
/// swallowing needs the test plugin. `join_secs = 1` (default 10) keeps each timeout short.
async fn a_rejoin_without_answer_is_retried_within_a_bound(swallowed: u32) {
    let mut w = chat_world(BotOptions {
        available: 1,
        max_rooms: 3,
        extra: "[timeouts]\njoin_secs = 1".into(),
        ..Default::default()
    })
    .await;
    wait_available(&w.store, &w.bot.jid, 1).await;
    let mut staff = w.person("staff").await;
    let room = staff_enters(&w.store, &mut staff, "Staff").await;

    w.bot.kill();
    let swallow = xmpp_parsers::message::Message::groupchat(jid::Jid::new(&room.jid).unwrap())
        .with_body(
            Default::default(),
            format!("helpim-test: swallow joins {swallowed}"),
        );
    staff.send(swallow.into()).await;
    w.bot.spawn();

    if swallowed < 3 {
        eventually("the rejoin to be retried and to succeed", WAIT, || async {
            let log = w.bot.log_text();
            (log.contains(&format!("no answer to the rejoin ({swallowed} of 3)"))
                && log.contains("back in the room"))
            .then_some(())
            .ok_or(w.bot.log_tail(5))
        })
        .await;
        let mut client = w.person("client").await;
        common::world::client_enters(&w.store, &room, &mut client, "Guest").await;
    } else {
        let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
        assert_eq!(row.close_reason, Some(CloseReason::Lost), "{row:?}");
        assert!(
            w.bot.log_text().contains("no answer to 3 rejoins"),
            "{}",
            w.bot.log_tail(20)
        );
        let fresh = wait_available(&w.store, &w.bot.jid, 1).await;
        assert_ne!(fresh[0].id, room.room_id);
    }
}

#[tokio::test]
async fn a_rejoin_without_answer_twice_is_retried_and_the_room_followed() {
    a_rejoin_without_answer_is_retried_within_a_bound(2).await;
}

#[tokio::test]
async fn a_rejoin_without_answer_three_times_gives_the_room_up_as_lost() {
    a_rejoin_without_answer_is_retried_within_a_bound(3).await;
}
