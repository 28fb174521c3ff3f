//! Truth within seconds of a crash, on the production `lease_secs` (30): a restarted bot
//! takes over from its killed predecessor at once when it can prove the predecessor dead, a
//! standby becomes active within seconds of a kill -9, and a live holder is never taken
//! over, whether it runs on this host or (as its row says) on another one. Real processes,
//! a real Prosody and a real ejabberd (every test runs on both), SQLite, real clients
//! entering through claims.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpim_bot::model::RoomStatus;
use helpim_bot::store::Store;
use sea_orm::{ConnectionTrait, EntityTrait};

use common::bot::{BotOptions, TestBot, eventually, wait_available};
use common::client::TestClient;
use common::db::Backend;
use common::http::http_get;
use common::server::{ServerKind, XmppServer, pick_port};
use common::world::{World, open_chats};

/// How soon a proven-dead holder must be taken over (issue 10).
const TAKEOVER: Duration = Duration::from_secs(2);
/// How soon a standby must be active with every row reconciled (issue 10).
const STANDBY: Duration = Duration::from_secs(5);

on_every_server!(
    a_restart_after_kill_9_takes_over_within_2_s_and_reconciles_the_rows,
    a_standby_never_takes_a_live_holder_and_is_active_within_5_s_of_kill_9,
);

/// A world of `kind` and SQLite on the production lease (30 s), with the accounts `staff`
/// and `client`, whose bot listens for HTTP on the returned address.
async fn world(kind: ServerKind, available: u32) -> (World, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let w = World::start(
        kind,
        Backend::SqliteFile,
        BotOptions {
            available,
            max_rooms: 3 * available,
            // The production default; the harness otherwise shortens it.
            extra: format!("[timeouts]\nlease_secs = 30\n\n[http]\nlisten = \"{addr}\"\n"),
            ..Default::default()
        },
    )
    .await;
    w.server.register("staff", "pw");
    w.server.register("client", "pw");
    (w, addr)
}

/// A chat in progress: the room's id and JID, and both people, kept connected.
struct Chat {
    room_id: i64,
    jid: String,
    /// Kept connected: the staff member stays in the room throughout.
    _staff: TestClient,
    client: TestClient,
}

/// `n` chats entered through claims, each `chatting` when this returns.
async fn chats(server: &dyn XmppServer, store: &Store, n: usize) -> Vec<Chat> {
    open_chats(server, store, n)
        .await
        .into_iter()
        .map(|(room, staff, client)| Chat {
            room_id: room.room_id,
            jid: room.jid,
            _staff: staff,
            client,
        })
        .collect()
}

impl Chat {
    /// The client leaves the room.
    async fn client_leaves(&mut self, nick: &str) {
        self.client.leave(&self.jid, nick).await;
    }
}

/// The pid in the lease row of `bot`.
async fn holder_pid(store: &Store, bot: &str) -> Option<u32> {
    entity::bot_instance::Entity::find_by_id(bot.to_owned())
        .one(store.connection())
        .await
        .expect("read the lease row")
        .map(|row| row.pid as u32)
}

/// Waits until the process `pid` holds the lease of `bot`.
async fn wait_holder(store: &Store, bot: &str, pid: u32, within: Duration) {
    eventually(&format!("pid {pid} to hold the lease"), within, || async {
        match holder_pid(store, bot).await {
            Some(holder) if holder == pid => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
}

/// Waits until `/readyz` of the bot at `addr` answers 200: lease held, session up,
/// database answering, every room recovered.
async fn wait_ready(addr: SocketAddr, within: Duration) {
    eventually("/readyz → 200", within, || async {
        match http_get(addr, "/readyz") {
            Ok((200, _)) => Ok(()),
            Ok((code, body)) => Err(format!("{code} {body}")),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Checks for `period` that `pid` keeps the lease and `bot` keeps running.
async fn keeps_the_lease(store: &Store, bot: &mut TestBot, period: Duration) {
    let pid = bot.pid().expect("running");
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert_eq!(holder_pid(store, &bot.jid).await, Some(pid), "taken over");
        assert!(bot.exited().is_none(), "{}", bot.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every chat's row shows `expected(n)`.
async fn rows_match(
    store: &Store,
    chats: &[Chat],
    within: Duration,
    expected: fn(usize) -> RoomStatus,
) {
    for (n, chat) in chats.iter().enumerate() {
        let want = expected(n);
        eventually(&format!("chat {n} to be {want}"), within, || async {
            let row = store.room(chat.room_id).await.map_err(|e| e.to_string())?;
            let status = row.map(|r| r.status);
            (status == Some(want))
                .then_some(())
                .ok_or(format!("{status:?}"))
        })
        .await;
    }
}

async fn a_restart_after_kill_9_takes_over_within_2_s_and_reconciles_the_rows(kind: ServerKind) {
    let (mut w, addr) = world(kind, 3).await;
    wait_available(&w.store, &w.bot.jid, 3).await;
    let mut chats = chats(w.server.as_ref(), &w.store, 3).await;
    wait_ready(addr, STANDBY).await;

    w.bot.kill();
    // While the bot is dead, chat 0's client leaves.
    chats[0].client_leaves("Guest0").await;

    let restarted = Instant::now();
    w.bot.spawn();
    let pid = w.bot.pid().unwrap();
    // Its predecessor's pid is gone from this host: proof enough, no 30 s wait.
    wait_holder(&w.store, &w.bot.jid, pid, TAKEOVER).await;
    let took = restarted.elapsed();
    let log = w.bot.log_text();
    assert!(
        log.contains("taken over from") && log.contains("no longer running on this host"),
        "{}",
        w.bot.log_tail(30)
    );
    rows_match(&w.store, &chats, STANDBY, |n| {
        if n == 0 {
            RoomStatus::OneLeft
        } else {
            RoomStatus::Chatting
        }
    })
    .await;
    wait_ready(addr, STANDBY).await;
    eprintln!(
        "{kind:?}: takeover after kill -9: lease in {took:?}, ready in {:?}",
        restarted.elapsed()
    );
}

async fn a_standby_never_takes_a_live_holder_and_is_active_within_5_s_of_kill_9(kind: ServerKind) {
    let (mut w, addr) = world(kind, 2).await;
    wait_available(&w.store, &w.bot.jid, 2).await;
    let mut chats = chats(w.server.as_ref(), &w.store, 2).await;
    let active = w.bot.pid().unwrap();

    let mut standby = w.bot.standby();
    eventually("the standby to watch the holder", STANDBY, || async {
        let log = standby.log_text();
        log.contains("is held by")
            .then_some(())
            .ok_or(standby.log_tail(5))
    })
    .await;
    // A live holder on this host: its pid runs and its session answers.
    keeps_the_lease(&w.store, &mut w.bot, Duration::from_secs(3)).await;
    assert!(standby.exited().is_none(), "{}", standby.log_tail(30));

    // The same holder as if it ran on another host: only its XMPP session can tell, and it
    // answers, so it is still never taken over.
    w.store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE bot_instance SET host = 'another-host', process_scope = 'another-boot' \
             WHERE bot_jid = '{}'",
            w.bot.jid
        ))
        .await
        .unwrap();
    keeps_the_lease(&w.store, &mut w.bot, Duration::from_secs(3)).await;
    assert_eq!(holder_pid(&w.store, &w.bot.jid).await, Some(active));

    // kill -9 during the chats; a client leaves at once.
    w.bot.kill();
    let killed = Instant::now();
    chats[1].client_leaves("Guest1").await;
    // The holder's row says "another host": the proof is its session, gone from the server.
    wait_holder(&w.store, &w.bot.jid, standby.pid().unwrap(), STANDBY).await;
    rows_match(
        &w.store,
        &chats,
        STANDBY.saturating_sub(killed.elapsed()),
        |n| {
            if n == 1 {
                RoomStatus::OneLeft
            } else {
                RoomStatus::Chatting
            }
        },
    )
    .await;
    // Ready: lease, session, database, every room recovered; the listener the active
    // process had is the standby's now.
    wait_ready(addr, STANDBY.saturating_sub(killed.elapsed())).await;
    let took = killed.elapsed();
    assert!(took <= STANDBY, "active after {took:?}");
    let log = standby.log_text();
    assert!(
        log.contains("standby") && log.contains("taken over from"),
        "{}",
        standby.log_tail(30)
    );
    eprintln!("{kind:?}: standby active and ready {took:?} after kill -9");

    // The new active process follows the chats on.
    chats[0].client_leaves("Guest0").await;
    rows_match(&w.store, &chats, STANDBY, |_| RoomStatus::OneLeft).await;
    drop(chats);
    standby.kill();
}
