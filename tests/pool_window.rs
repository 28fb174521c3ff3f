//! The pool's bounded creation window and its backoff, seen from outside: the real binary
//! against a real Prosody, read through its own log (every room logs "creating room" when
//! it starts entering and "room configured and recorded" or "room creation failed" when
//! done), and the owner form it fetches once per session ("owner form fetched").

#[macro_use]
mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};

use common::bot::{BotOptions, TestBot, eventually, wait_available};
use common::db::{Backend, TestDb};
use common::server::ServerKind;

/// The production default of `pool.creation_window`.
const WINDOW: i64 = 16;

/// The bot's log lines about room creation, in order.
fn creation_lines(bot: &TestBot) -> Vec<String> {
    bot.log_text()
        .lines()
        .filter(|l| {
            l.contains("creating room")
                || l.contains("room configured and recorded")
                || l.contains("room creation failed")
        })
        .map(str::to_owned)
        .collect()
}

/// The timestamp at the start of a log line.
fn time_of(line: &str) -> DateTime<Utc> {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|err| panic!("no timestamp ({err}) in {line:?}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_large_pool_is_created_through_the_window_one_room_after_another() {
    let server = common::server::start(ServerKind::Prosody);
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let rooms = 60;
    let bot = TestBot::start(
        server.as_ref(),
        &db.url,
        BotOptions {
            available: rooms,
            max_rooms: rooms,
            require_claims: true,
            ..Default::default()
        },
    );
    eventually("the whole pool", Duration::from_secs(60), || async {
        let n = store
            .pool_counts(&bot.jid)
            .await
            .map_err(|e| e.to_string())?
            .ready;
        if n == u64::from(rooms) {
            Ok(())
        } else {
            Err(format!("{n} ready"))
        }
    })
    .await;
    wait_available(&store, &bot.jid, rooms as usize).await;

    let lines = creation_lines(&bot);
    let (mut in_flight, mut most, mut started_before_first_ready) = (0i64, 0i64, None);
    for line in &lines {
        if line.contains("creating room") {
            in_flight += 1;
        } else {
            in_flight -= 1;
            started_before_first_ready.get_or_insert(most);
        }
        most = most.max(in_flight);
    }
    assert!(
        most <= WINDOW,
        "{most} rooms were being created at once, the window is {WINDOW}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("creating room")).count(),
        rooms as usize,
        "no creation failed"
    );
    let first_ready = started_before_first_ready.expect("a room became ready");
    assert!(
        first_ready <= WINDOW,
        "the first room became ready only after {first_ready} creations had started"
    );
}

#[tokio::test]
async fn a_server_refusing_creation_is_retried_only_after_the_backoff() {
    let server = common::server::start(ServerKind::Prosody);
    let db = TestDb::new(Backend::SqliteFile);
    let bot = TestBot::start(
        server.as_ref(),
        &db.url,
        BotOptions {
            available: 3,
            max_rooms: 10,
            require_claims: true,
            // No such MUC service: the server answers every join with an error at once.
            // (check_secs = 1 and a database write per room keep asking the pool to count.)
            muc_service: Some("no-muc.localhost".into()),
            ..Default::default()
        },
    );
    // The backoff after the first failure is 2 s, after the second 4 s.
    let failures = eventually("three backoffs", Duration::from_secs(30), || async {
        let warnings: Vec<String> = bot
            .log_text()
            .lines()
            .filter(|l| l.contains("pool: room creation failed"))
            .map(str::to_owned)
            .collect();
        if warnings.len() >= 3 {
            Ok(warnings)
        } else {
            Err(format!("{warnings:?}\n{}", bot.log_tail(5)))
        }
    })
    .await;
    assert!(failures[0].contains("(1 in a row)"), "{failures:?}");
    assert!(failures[1].contains("(2 in a row)"), "{failures:?}");
    assert!(failures[2].contains("(3 in a row)"), "{failures:?}");
    let first_gap = time_of(&failures[1]) - time_of(&failures[0]);
    let second_gap = time_of(&failures[2]) - time_of(&failures[1]);
    assert!(
        first_gap >= chrono::Duration::milliseconds(1_900),
        "retried {first_gap} after the first failure, the backoff is 2 s"
    );
    assert!(
        second_gap >= chrono::Duration::milliseconds(3_900),
        "retried {second_gap} after the second failure, the backoff is 4 s"
    );
    // Three creations at first (the pool wants 3), then one probe per backoff.
    let attempts = creation_lines(&bot)
        .iter()
        .filter(|l| l.contains("creating room") && time_of(l) <= time_of(&failures[2]))
        .count();
    assert_eq!(attempts, 5, "3 at first, then one probe after each backoff");
}

/// The owner form is fetched for the first room of a session only; every later room is
/// configured with one submit of the kept form, and still checked (disco#info: protected,
/// hidden, temporary). After a new session the form is fetched again, once.
async fn the_owner_form_is_fetched_once_per_session(kind: ServerKind) {
    use common::client::TestClient;
    use common::proxy::CuttableProxy;
    let server = common::server::start(kind);
    let proxy = CuttableProxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap()).await;
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let rooms = 20;
    let bot = TestBot::start(
        server.as_ref(),
        &db.url,
        BotOptions {
            available: rooms,
            max_rooms: 2 * rooms,
            port: Some(proxy.port),
            ..Default::default()
        },
    );
    let ready = wait_available(&store, &bot.jid, rooms as usize).await;
    let fetches = |bot: &TestBot| bot.log_text().matches("owner form fetched").count();
    assert_eq!(fetches(&bot), 1, "{}", bot.log_tail(40));
    assert!(!bot.log_text().contains("refused the kept owner form"));
    server.register("probe", "pw");
    let mut probe = TestClient::connect(server.as_ref(), "probe", "pw").await;
    for room in &ready {
        let info = probe.disco_info(&room.jid).await.expect("disco#info");
        for feature in ["muc_passwordprotected", "muc_hidden", "muc_temporary"] {
            assert!(info.has_feature(feature), "{} lacks {feature}", room.jid);
        }
    }

    // A new session: the rooms are gone with the old one; the form is fetched again.
    proxy.cut();
    eventually(
        "the bot notices the cut",
        Duration::from_secs(20),
        || async {
            let log = bot.log_text();
            log.contains("XMPP connection lost")
                .then_some(())
                .ok_or(bot.log_tail(3))
        },
    )
    .await;
    proxy.restore();
    eventually("a new pool", Duration::from_secs(60), || async {
        let fresh = store
            .pool_counts(&bot.jid)
            .await
            .map_err(|e| e.to_string())?;
        let log = bot.log_text();
        (fresh.ready == u64::from(rooms) && log.contains("new XMPP session"))
            .then_some(())
            .ok_or(format!("{fresh:?}"))
    })
    .await;
    assert_eq!(fetches(&bot), 2, "{}", bot.log_tail(40));
    drop(proxy);
}

on_every_server!(the_owner_form_is_fetched_once_per_session);
