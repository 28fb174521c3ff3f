//! No person's real JID on the status page (issue 21): a chat whose claims are bound to the
//! people's JIDs, then every page that shows what the database holds about it. The bot's own
//! JID in the header is the operator's and may be there.
//!
//! Before issue 21 the claim's event detail said "claimed by … for <jid>", and `/rooms/<id>`
//! showed it.

mod common;

use std::net::SocketAddr;

use helpim_bot::claims;
use helpim_bot::model::{Role, RoomStatus};

use common::bot::{BotOptions, wait_status};
use common::db::Backend;
use common::http::http_get;
use common::server::{ServerKind, pick_port};
use common::world::World;

#[tokio::test]
async fn the_status_page_shows_no_real_jid() {
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let options = BotOptions {
        extra: format!("[http]\nlisten = \"{addr}\"\n"),
        ..BotOptions::default()
    };
    let w = World::start(ServerKind::Prosody, Backend::SqliteFile, options).await;
    w.available(3).await;
    let mut staff = w.person("staff").await;
    let mut client = w.person("client").await;
    let jids = [
        staff.jid().to_bare().to_string(),
        client.jid().to_bare().to_string(),
    ];
    let room = claims::claim_bound(&w.store, Role::Staff, "web", &jids[0])
        .await
        .expect("a bound staff claim");
    staff
        .join(&room.jid, "Staff", Some(&room.password))
        .await
        .expect("staff joins");
    wait_status(&w.store, room.room_id, RoomStatus::StaffWaiting).await;
    let chat = claims::claim_bound(&w.store, Role::Client, "web", &jids[1])
        .await
        .expect("a bound client claim");
    client
        .join(&chat.jid, "Guest", Some(&chat.password))
        .await
        .expect("client joins");
    wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
    client.leave(&chat.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;

    for path in ["/".to_owned(), format!("/rooms/{}", room.room_id)] {
        let (code, page) = http_get(addr, &path).unwrap();
        assert_eq!(code, 200, "{path}: {page}");
        assert!(page.contains("Staff"), "{path} shows the chat: {page}");
        for jid in &jids {
            assert!(!page.contains(jid.as_str()), "{path} shows {jid}:\n{page}");
        }
        // The bot's own JID is the operator's; no other JID of the server's domain.
        let others = page
            .replace(&w.bot.jid, "")
            .matches(&format!("@{}", w.server.domain()))
            .count();
        assert_eq!(others, 0, "{path} shows a JID:\n{page}");
    }
}
