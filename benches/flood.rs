//! Floods stay local (issue 23, point 2): the release bot on a real Prosody, with one quiet
//! chat and one flooded chat. In the quiet chat the client leaves and comes back (within
//! the rejoin grace) again and again; each departure and return is a status transition the
//! bot commits. Measured from the client's presence leaving the benchmark to the row's new
//! status being visible in the database (polled every millisecond), and the bot's part of
//! it (from the bot handling the presence, the event's time, to the row being visible),
//! side by side in one run: with nothing else going on, and while, in the other chat, one
//! participant changes nick as fast as the server lets them and a stranger with the
//! password joins again and again (until the server keeps them out). Also the rows the
//! flood wrote against the changes it made.
//!
//! `cargo bench --bench flood`. `HELPIM_BENCH_ROUNDS` (default 30) sets the departures and
//! returns per phase. Results go to standard output as a Markdown table; BENCHMARKS.md keeps
//! the last run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "record/servers.rs"]
mod servers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpim_bot::model::{EventKind, RoomStatus};
use helpim_bot::store::Store;
use minidom::Element;

use common::bot::{BotOptions, TestBot};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::world::{client_enters, staff_enters};
use servers::{Server, Setup};

fn main() {
    servers::block_on(run());
}

async fn run() {
    let rounds = servers::env_number("HELPIM_BENCH_ROUNDS", 30);
    println!(
        "| database | quiet: presence → row (p50 / p90 / max) | during the flood | the bot's part, quiet: handled → row | the bot's part, during the flood | flood: nick changes / rows | flood: joins kicked / rows |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, backend) in [
        ("SQLite", Backend::SqliteFile),
        ("PostgreSQL", Backend::Postgres),
    ] {
        let row = flood(backend, rounds).await;
        println!(
            "| {name} | {} | {} | {} | {} | {} / {} | {} / {} |",
            summary(&row.quiet),
            summary(&row.flooded),
            summary(&row.quiet_bot),
            summary(&row.flooded_bot),
            row.nick_changes,
            row.nick_rows,
            row.joins,
            row.kick_rows,
        );
    }
}

/// One database's figures.
struct Flood {
    quiet: Vec<Duration>,
    flooded: Vec<Duration>,
    /// The bot's part (presence handled → row visible), quiet and during the flood.
    quiet_bot: Vec<Duration>,
    flooded_bot: Vec<Duration>,
    nick_changes: usize,
    nick_rows: usize,
    joins: usize,
    kick_rows: usize,
}

fn summary(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    format!(
        "{} / {} / {} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*sorted.last().unwrap())
    )
}

async fn flood(backend: Backend, rounds: usize) -> Flood {
    let server = Server::start(Setup::ProsodyTuned);
    let server = server.as_dyn();
    let db = TestDb::new(backend);
    let store = db.store().await;
    let bot = TestBot::start(
        server,
        &db.url,
        BotOptions {
            user: "bench-flood".into(),
            available: 2,
            max_rooms: 4,
            log_level: Some("info"),
            room_logs: false,
            ..Default::default()
        },
    );
    for user in ["staff", "client", "flooder", "stranger"] {
        server.register(user, "pw");
    }
    let connect = async |user: &str| TestClient::connect(server, user, "pw").await;

    // The flooded chat: staff and the flooder as its client.
    let mut staff_b = connect("staff").await;
    let flooded = staff_enters(&store, &mut staff_b, "StaffB").await;
    let mut flooder = connect("flooder").await;
    client_enters(&store, &flooded, &mut flooder, "Flooder").await;
    // The quiet chat.
    let mut staff_a = connect("staff").await;
    let quiet = staff_enters(&store, &mut staff_a, "StaffA").await;
    let mut client = connect("client").await;
    client_enters(&store, &quiet, &mut client, "Guest").await;

    let (quiet_times, quiet_bot) = leave_and_return(&store, &mut client, &quiet, rounds).await;

    // The flood, in the other chat, until the quiet chat's rounds are done.
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicUsize::new(0));
    let joins = Arc::new(AtomicUsize::new(0));
    let renames = {
        let (stop, changes, room) = (stop.clone(), changes.clone(), flooded.jid.clone());
        async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let change: Element =
                    format!("<presence xmlns='jabber:client' to='{room}/Flooder{i}'/>")
                        .parse()
                        .unwrap();
                flooder.send(change).await;
                changes.fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(20) {
                    tokio::task::yield_now().await;
                }
            }
            flooder
        }
    };
    let mut stranger = connect("stranger").await;
    let intrusions = {
        let (stop, joins, claim) = (stop.clone(), joins.clone(), flooded.clone());
        async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let nick = format!("Mallory{i}");
                match stranger
                    .join(&claim.jid, &nick, Some(&claim.password))
                    .await
                {
                    Ok(_) => {
                        stranger
                            .wait_kicked(&claim.jid, Duration::from_secs(10))
                            .await;
                        joins.fetch_add(1, Ordering::Relaxed);
                    }
                    // Banned after repeated kicks: the server keeps them out by itself.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            stranger
        }
    };
    let measure = async {
        let times = leave_and_return(&store, &mut client, &quiet, rounds).await;
        stop.store(true, Ordering::Relaxed);
        times
    };
    let ((flooded_times, flooded_bot), _flooder, _stranger) =
        tokio::join!(measure, renames, intrusions);

    // Let the last coalescing window end before counting the rows.
    tokio::time::sleep(helpim_bot::lifecycle::COALESCE_WINDOW + Duration::from_secs(1)).await;
    let events = store.events(flooded.room_id).await.expect("events");
    let rows = |kind: EventKind| events.iter().filter(|e| e.kind == kind).count();
    drop(bot);
    Flood {
        quiet: quiet_times,
        flooded: flooded_times,
        quiet_bot,
        flooded_bot,
        nick_changes: changes.load(Ordering::Relaxed),
        nick_rows: rows(EventKind::NickChanged),
        joins: joins.load(Ordering::Relaxed),
        kick_rows: rows(EventKind::Kicked),
    }
}

/// `rounds` times: the client leaves (→ `one_left`) and comes back (→ `chatting`). Per
/// transition: from the presence leaving the benchmark to the row's new status being
/// visible (polled every millisecond), and the bot's part of it, from its handling the
/// presence (the event's time) to the row being visible.
async fn leave_and_return(
    store: &Store,
    client: &mut TestClient,
    claim: &helpim_bot::claims::Claim,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut times = Vec::new();
    let mut visible_at = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        client.leave(&claim.jid, "Guest").await;
        visible_at.push(until_status(store, claim.room_id, RoomStatus::OneLeft).await);
        times.push(start.elapsed());
        let start = Instant::now();
        client
            .join(&claim.jid, "Guest", Some(&claim.password))
            .await
            .expect("back within grace");
        visible_at.push(until_status(store, claim.room_id, RoomStatus::Chatting).await);
        times.push(start.elapsed());
    }
    // The transitions' events, in order: the last 2 × rounds `left` and `rejoined`.
    let events = store.events(claim.room_id).await.expect("events");
    let handled: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Left | EventKind::Rejoined))
        .map(|e| e.at)
        .collect();
    let handled = &handled[handled.len() - visible_at.len()..];
    let bot = visible_at
        .iter()
        .zip(handled)
        .map(|(seen, at)| (*seen - *at).to_std().unwrap_or_default())
        .collect();
    (times, bot)
}

/// Polls the row every millisecond until it has `status`; returns when it was seen.
async fn until_status(store: &Store, room_id: i64, status: RoomStatus) -> DateTime<Utc> {
    let start = Instant::now();
    loop {
        let row = store.room(room_id).await.expect("read").expect("the row");
        if row.status == status {
            return helpim_bot::store::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {status} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
