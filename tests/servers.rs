//! `xmpp.servers`: a bot given several servers (the nodes of a cluster) connects to the first
//! that answers, and after a lost connection goes on to the next one without a backoff.
//! Real bot binary, real Prosody and ejabberd, SQLite; the second "node" is the same server
//! reached another way (a dead port, a proxy the test cuts), so that no cluster is needed
//! for the connection logic itself (issue 13's cluster test covers real nodes).

#[macro_use]
mod common;

use std::time::Duration;

use helpim_bot::model::RoomStatus;

use common::bot::{BotOptions, eventually, wait_available, wait_status};
use common::db::Backend;
use common::proxy::CuttableProxy;
use common::server::{ServerKind, XmppServer, pick_port};
use common::world::World;

const WAIT: Duration = Duration::from_secs(20);

on_every_server!(
    a_dead_first_server_is_skipped,
    a_lost_server_is_replaced_by_the_next_one_and_the_chat_followed,
);

/// A world on `server` (and SQLite) whose bot has `xmpp.servers = servers`.
async fn world(server: Box<dyn XmppServer>, servers: Vec<String>) -> World {
    let options = BotOptions {
        available: 1,
        max_rooms: 3,
        servers: Some(servers),
        ..Default::default()
    };
    World::on(server, Backend::SqliteFile, options).await
}

/// Nothing listens on the first entry: the bot logs in to the second at once and fills its
/// pool.
async fn a_dead_first_server_is_skipped(kind: ServerKind) {
    let server = common::server::start(kind);
    let (dead, port) = (pick_port(), server.port());
    let w = world(
        server,
        vec![format!("127.0.0.1:{dead}"), format!("127.0.0.1:{port}")],
    )
    .await;
    w.available(1).await;
    let log = w.bot.log_text();
    assert!(
        log.contains(&format!("via 127.0.0.1:{dead}, 127.0.0.1:{port}")),
        "the start-up line names both: {log}"
    );
    assert!(
        log.contains(&format!("connected to 127.0.0.1:{port}")),
        "{log}"
    );
}

/// The bot's first server is a proxy to the XMPP server; a staff member waits in a room.
/// The proxy is cut (connections dropped, new ones refused): the bot reconnects through the
/// second entry, and the room is still followed: the client's entry is recorded.
async fn a_lost_server_is_replaced_by_the_next_one_and_the_chat_followed(kind: ServerKind) {
    let server = common::server::start(kind);
    let proxy = CuttableProxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap()).await;
    let servers = vec![
        format!("127.0.0.1:{}", proxy.port),
        format!("127.0.0.1:{}", server.port()),
    ];
    let w = world(server, servers).await;
    wait_available(&w.store, &w.bot.jid, 1).await;
    assert!(
        !w.bot.log_text().contains("connected to"),
        "the first server answered: no other was tried"
    );
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Counsellor").await;

    proxy.cut();
    let direct = format!("connected to 127.0.0.1:{}", w.server.port());
    eventually("the bot on the second server", WAIT, || async {
        let log = w.bot.log_text();
        log.contains(&direct)
            .then_some(())
            .ok_or_else(|| w.bot.log_tail(5))
    })
    .await;
    let mut client = w.person("client").await;
    w.client_enters(&room, &mut client, "Guest").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Counsellor"));
}
