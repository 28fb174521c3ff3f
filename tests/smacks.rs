//! XEP-0198 stream management for real: Prosody as Debian ships it (`smacks`, 600 s of
//! hibernation), the bot connected through a TCP proxy the test cuts. The stream resumes:
//! no rejoin, no row changes, and the chat is still followed afterwards. Cut for longer
//! than the hibernation: a new session, the empty rooms found gone and closed `lost`, the
//! chat rejoined and followed, the pool refilled. And the contrast: on the repo's test
//! Prosody (no XEP-0198) a lost connection ends the session, and the rooms only the bot was
//! in are closed `lost` at once, before any new session.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use helpim_bot::model::{CloseReason, RoomStatus};

use common::bot::{
    BotOptions, TestBot, eventually, wait_available, wait_gone_from_server, wait_status,
};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;
use common::proxy::CuttableProxy;
use common::server::XmppServer;
use common::world::{client_enters, staff_enters};

const WAIT: Duration = Duration::from_secs(20);

/// A bot behind a cuttable proxy to `server`, with two ready rooms and a chat between the
/// accounts `staff` and `client` (nicks `Staff` and `Guest`) in a third.
struct Chatting {
    server: TestProsody,
    proxy: CuttableProxy,
    store: helpim_bot::store::Store,
    bot: TestBot,
    staff: TestClient,
    client: TestClient,
    room: helpim_bot::claims::Claim,
    _db: TestDb,
}

impl Chatting {
    /// Starts the proxy, a SQLite database and the bot (at most `max_rooms`), and the chat.
    async fn start(server: TestProsody, max_rooms: u32) -> Chatting {
        let target: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
        let proxy = CuttableProxy::start(target).await;
        let db = TestDb::new(Backend::SqliteFile);
        let store = db.store().await;
        let bot = TestBot::start(
            &server,
            &db.url,
            BotOptions {
                available: 2,
                max_rooms,
                port: Some(proxy.port),
                extra: "[http]\nenabled = false\n".into(),
                ..Default::default()
            },
        );
        wait_available(&store, &bot.jid, 2).await;
        server.register("staff", "pw");
        server.register("client", "pw");
        let mut staff = TestClient::connect(&server, "staff", "pw").await;
        let mut client = TestClient::connect(&server, "client", "pw").await;
        let room = staff_enters(&store, &mut staff, "Staff").await;
        client_enters(&store, &room, &mut client, "Guest").await;
        Chatting {
            server,
            proxy,
            store,
            bot,
            staff,
            client,
            room,
            _db: db,
        }
    }
}

#[tokio::test]
async fn a_cut_connection_resumes_without_rejoins_and_the_chat_is_still_followed() {
    let Chatting {
        // Kept to the end: the server runs as long as it lives.
        server: _server,
        proxy,
        store,
        bot,
        mut staff,
        mut client,
        room,
        _db,
    } = Chatting::start(TestProsody::start_stock(&["helpim-bot@localhost"]), 4).await;
    wait_available(&store, &bot.jid, 2).await;
    let before = store.open_rooms(&bot.jid).await.unwrap();
    let events_before = store.events(room.room_id).await.unwrap().len();
    let joins_before = bot.log_text().matches("rejoining").count();
    let sessions_before = bot.log_text().matches("new XMPP session").count();

    // The bot's TCP connection dies; the server keeps its session hibernated.
    proxy.cut();
    eventually("the bot to notice the cut", WAIT, || async {
        let log = bot.log_text();
        log.contains("XMPP connection lost")
            .then_some(())
            .ok_or(bot.log_tail(3))
    })
    .await;
    proxy.restore();
    eventually("the stream to resume", WAIT, || async {
        let log = bot.log_text();
        log.contains("XMPP stream resumed")
            .then_some(())
            .ok_or(bot.log_tail(5))
    })
    .await;
    // Claims may take this bot's rooms again once the session is recorded up.
    eventually("the session recorded up again", WAIT, || async {
        let log = bot.log_text();
        let up = log.rfind("XMPP session recorded as up");
        let down = log.rfind("XMPP session recorded as down");
        (up > down).then_some(()).ok_or(bot.log_tail(5))
    })
    .await;

    // Nothing changed: the same open rooms in the same states, no new event, no rejoin.
    let after = store.open_rooms(&bot.jid).await.unwrap();
    let key = |rooms: &[helpim_bot::store::Room]| {
        rooms
            .iter()
            .map(|r| (r.id, r.status, r.status_changed_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&after), key(&before));
    assert_eq!(
        store.events(room.room_id).await.unwrap().len(),
        events_before
    );
    assert_eq!(
        bot.log_text().matches("rejoining").count(),
        joins_before,
        "no room was rejoined:\n{}",
        bot.log_tail(30)
    );
    assert_eq!(
        bot.log_text().matches("new XMPP session").count(),
        sessions_before,
        "a new session instead of the resumed one"
    );

    // The chat is still followed: the client leaves, then the staff member.
    client.leave(&room.jid, "Guest").await;
    wait_status(&store, room.room_id, RoomStatus::OneLeft).await;
    staff.leave(&room.jid, "Staff").await;
    wait_status(&store, room.room_id, RoomStatus::Closed).await;
    drop(proxy);
}

#[tokio::test]
async fn a_cut_longer_than_the_hibernation_gives_a_new_session_and_reconciled_rooms() {
    // The stock server with a short hibernation, so that the test outlasts it.
    let mut server = TestProsody::start_stock(&["helpim-bot@localhost"]);
    server.stop();
    let config = std::fs::read_to_string(server.config_file()).unwrap();
    assert!(config.contains("smacks_hibernation_time = 600"));
    std::fs::write(
        server.config_file(),
        config.replace(
            "smacks_hibernation_time = 600",
            "smacks_hibernation_time = 2",
        ),
    )
    .unwrap();
    server.start_again();
    let Chatting {
        server,
        proxy,
        store,
        bot,
        mut staff,
        mut client,
        room,
        _db,
    } = Chatting::start(server, 6).await;
    let ready = wait_available(&store, &bot.jid, 2).await;

    proxy.cut();
    // The hibernation ends: the server removes the bot from its rooms, and the rooms only
    // the bot was in are gone.
    server.register("probe", "pw");
    let mut probe = TestClient::connect(&server, "probe", "pw").await;
    for row in &ready {
        wait_gone_from_server(&mut probe, &row.jid).await;
    }
    proxy.restore();

    // A new session: the gone rooms are closed lost, the chat is rejoined and still
    // chatting, and the pool is full again with new rooms.
    for row in &ready {
        let closed = wait_status(&store, row.id, RoomStatus::Closed).await;
        assert_eq!(closed.close_reason, Some(CloseReason::Lost));
    }
    let fresh = wait_available(&store, &bot.jid, 2).await;
    assert!(fresh.iter().all(|r| ready.iter().all(|old| old.id != r.id)));
    assert!(
        bot.log_text().contains("new XMPP session"),
        "{}",
        bot.log_tail(30)
    );
    assert_eq!(
        store.room(room.room_id).await.unwrap().unwrap().status,
        RoomStatus::Chatting
    );
    client.leave(&room.jid, "Guest").await;
    wait_status(&store, room.room_id, RoomStatus::OneLeft).await;
    staff.leave(&room.jid, "Staff").await;
    let closed = wait_status(&store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(closed.close_reason, Some(CloseReason::Completed));
    drop(proxy);
}

#[tokio::test]
async fn without_stream_management_a_lost_connection_closes_the_empty_rooms_at_once() {
    // The repo's test Prosody offers no XEP-0198: a lost connection ends the session, the
    // server drops the rooms only the bot was in, and their rows must say so before any
    // new session (the proxy refuses one until restored).
    let mut c = Chatting::start(TestProsody::start(), 6).await;
    let (proxy, store, bot, room) = (&c.proxy, &c.store, &c.bot, c.room.clone());
    let ready = wait_available(store, &bot.jid, 2).await;
    let sessions_before = bot.log_text().matches("new XMPP session").count();

    let cut = std::time::Instant::now();
    proxy.cut();
    for row in &ready {
        let closed = wait_status(store, row.id, RoomStatus::Closed).await;
        assert_eq!(closed.close_reason, Some(CloseReason::Lost), "{closed:?}");
        assert!(closed.password.is_empty());
    }
    println!("empty rooms closed lost {:?} after the cut", cut.elapsed());
    assert!(
        bot.log_text().contains("the session cannot resume"),
        "{}",
        bot.log_tail(10)
    );
    assert_eq!(
        bot.log_text().matches("new XMPP session").count(),
        sessions_before,
        "closed while no session was possible"
    );
    // The chat is not touched: people are inside, and it is rejoined later.
    assert_eq!(
        store.room(room.room_id).await.unwrap().unwrap().status,
        RoomStatus::Chatting
    );

    proxy.restore();
    // A new session: the closed rooms' destruction is confirmed with the server, the chat
    // is rejoined and followed, and the pool is full again with new rooms.
    for row in &ready {
        eventually("the closed room's destruction confirmed", WAIT, || async {
            let row = store.room(row.id).await.unwrap().unwrap();
            row.destroyed_at.map(|_| ()).ok_or(bot.log_tail(5))
        })
        .await;
    }
    let fresh = wait_available(store, &bot.jid, 2).await;
    assert!(fresh.iter().all(|r| ready.iter().all(|old| old.id != r.id)));
    c.client.leave(&room.jid, "Guest").await;
    wait_status(&c.store, room.room_id, RoomStatus::OneLeft).await;
    c.staff.leave(&room.jid, "Staff").await;
    let closed = wait_status(&c.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(closed.close_reason, Some(CloseReason::Completed));
}
