//! XEP-0198 stream management for real: Prosody as Debian ships it (`smacks`, 600 s of
//! hibernation), the bot connected through a TCP proxy the test cuts. The stream resumes:
//! no rejoin, no row changes, and the chat is still followed afterwards.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use helpim_bot::model::RoomStatus;

use common::bot::{BotOptions, TestBot, eventually, wait_available, wait_status};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;
use common::proxy::CuttableProxy;
use common::server::XmppServer;
use common::world::{client_enters, staff_enters};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_cut_connection_resumes_without_rejoins_and_the_chat_is_still_followed() {
    let server = TestProsody::start_stock(&["helpim-bot@localhost"]);
    let target: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = CuttableProxy::start(target).await;
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let bot = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            available: 2,
            max_rooms: 4,
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
