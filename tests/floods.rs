//! Bounded cost per participant: one person changing nick hundreds of times, or a stranger
//! with the password joining again and again, makes the bot write a bounded number of rows
//! (coalesced within `lifecycle::COALESCE_WINDOW` and counted), while the row's nick stays
//! current and every stranger is still kicked at once; a JID kicked again and again is kept
//! out by the server itself until a claim names it. Real servers, real clients, SQLite and
//! PostgreSQL.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpim_bot::claims;
use helpim_bot::lifecycle::BAN_AFTER;
use helpim_bot::model::{EventKind, Role, RoomStatus};
use minidom::Element;

use common::bot::{BotOptions, eventually, wait_status};
use common::client::{JoinError, Joined, TestClient};
use common::db::Backend;
use common::http::metric;
use common::server::{ServerKind, pick_port};
use common::world::World;

const WAIT: Duration = Duration::from_secs(20);

/// The most `nick_changed` rows a flood of a few seconds may write: a burst of rows of their
/// own and one for the rest, per window (`lifecycle::COALESCE_WINDOW`, 5 s), for two windows.
const ROWS_BOUND: usize = 8;

/// A world whose bot's metrics are on a known address.
async fn world(server: ServerKind, backend: Backend) -> (World, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let options = BotOptions {
        extra: format!("[http]\nlisten = \"{addr}\"\n"),
        ..BotOptions::default()
    };
    (World::start(server, backend, options).await, addr)
}

/// `helpim_coalesced_events_total{kind="…"}`.
fn coalesced(addr: SocketAddr, kind: &str) -> Result<f64, String> {
    metric(
        addr,
        &format!("helpim_coalesced_events_total{{kind=\"{kind}\"}}"),
    )
}

/// A presence to `room/nick` from an occupant: a nick change (XEP-0045 §7.6).
fn nick_change(room: &str, nick: &str) -> Element {
    format!("<presence xmlns='jabber:client' to='{room}/{nick}'/>")
        .parse()
        .unwrap()
}

async fn three_hundred_nick_changes_write_a_few_rows_and_the_last_nick(
    server: ServerKind,
    backend: Backend,
) {
    let (w, addr) = world(server, backend).await;
    let (room, _staff, mut client) = w.chat("Counsellor", "Guest").await;
    for i in 1..=300 {
        client
            .send(nick_change(&room.jid, &format!("Guest{i}")))
            .await;
    }
    // The row names the person by their nick now, within a few seconds.
    eventually("the row's client nick to be Guest300", WAIT, || async {
        match w.row(room.room_id).await.client_nick.as_deref() {
            Some("Guest300") => Ok(()),
            other => Err(format!("client_nick {other:?}")),
        }
    })
    .await;
    let renames = w
        .events(room.room_id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::NickChanged)
        .count();
    assert!(
        (1..=ROWS_BOUND).contains(&renames),
        "{renames} nick_changed rows for 300 changes"
    );
    // Not lost: counted.
    let counted = coalesced(addr, "nick_changed").unwrap();
    assert!(counted >= 300.0 - ROWS_BOUND as f64, "{counted} coalesced");
}

async fn sixty_strangers_joins_are_kicked_each_time_into_a_few_rows(
    server: ServerKind,
    backend: Backend,
) {
    let (w, addr) = world(server, backend).await;
    // A room with a free seat (ejabberd refuses joins to a full one by itself).
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Counsellor").await;
    // Thirty JIDs joining twice each: as with anonymous logins, no JID comes often enough
    // to be banned (`lifecycle::BAN_AFTER`), so every join costs a kick.
    let mut strangers = Vec::new();
    for i in 0..30 {
        strangers.push(w.person(&format!("stranger{i}")).await);
    }
    for round in 0..2 {
        for (i, stranger) in strangers.iter_mut().enumerate() {
            let nick = format!("Mallory{i}-{round}");
            match stranger.join(&room.jid, &nick, Some(&room.password)).await {
                // In: the bot kicks them at once, every time.
                Ok(_) => {
                    stranger.wait_kicked(&room.jid, WAIT).await;
                }
                Err(e) => panic!("join {i} refused by the server: {e:?}"),
            }
        }
    }
    let kicks = eventually("the kicks counted", WAIT, || async {
        let rows = w
            .events(room.room_id)
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::Kicked)
            .count();
        let counted = coalesced(addr, "kicked")?;
        if rows as f64 + counted >= 60.0 {
            Ok(rows)
        } else {
            Err(format!("{rows} rows, {counted} coalesced"))
        }
    })
    .await;
    assert!(
        (1..=ROWS_BOUND * 3).contains(&kicks),
        "{kicks} kicked rows for 60 joins"
    );
}

/// Joins `room` as `nick` until the server answers as `wanted` says (the bot's ban or unban
/// takes a moment): returns the last answer.
async fn join_until(
    person: &mut TestClient,
    room: &str,
    nick: &str,
    password: &str,
    wanted: impl Fn(&Result<Joined, JoinError>) -> bool,
) -> Result<Joined, JoinError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = person.join(room, nick, Some(password)).await;
        if wanted(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "still {answer:?} after {WAIT:?}");
        if answer.is_ok() {
            person.wait_kicked(room, WAIT).await;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn a_jid_kicked_again_and_again_is_kept_out_by_the_server_until_a_claim_names_it(
    server: ServerKind,
    backend: Backend,
) {
    let (w, addr) = world(server, backend).await;
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Counsellor").await;
    let mut stranger = w.person("stranger").await;
    for _ in 0..BAN_AFTER {
        stranger
            .join(&room.jid, "Mallory", Some(&room.password))
            .await
            .expect("the server lets the stranger in: they have the password");
        stranger.wait_kicked(&room.jid, WAIT).await;
    }
    // Now the server itself keeps them out: the bot spends nothing more on them.
    let refused = join_until(&mut stranger, &room.jid, "Mallory", &room.password, |a| {
        a.is_err()
    })
    .await;
    assert_eq!(
        refused.unwrap_err(),
        JoinError::Refused {
            condition: "forbidden".into()
        }
    );
    assert_eq!(metric(addr, "helpim_bans_total").unwrap(), 1.0);

    // The web application sends them, by JID: the room lets them in again.
    let stranger_jid = w.server.jid("stranger");
    claims::claim_bound(&w.store, Role::Client, "web", &stranger_jid)
        .await
        .expect("the client seat, for the stranger's JID");
    join_until(&mut stranger, &room.jid, "Guest", &room.password, |a| {
        a.is_ok()
    })
    .await
    .unwrap();
    wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
}

on_every_server_and_backend!(
    three_hundred_nick_changes_write_a_few_rows_and_the_last_nick,
    sixty_strangers_joins_are_kicked_each_time_into_a_few_rows,
    a_jid_kicked_again_and_again_is_kept_out_by_the_server_until_a_claim_names_it,
);
