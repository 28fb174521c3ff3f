//! Rerunnable benchmark of the real bot on a real Prosody: how fast the pool fills, how much
//! memory the bot holds per ready room, how soon a presence becomes a database transition,
//! and how long a claim takes on SQLite and PostgreSQL.
//!
//! `cargo bench --bench pool` (release build). `HELPIM_BENCH_ROOMS` sets the pool size
//! (default 200). Results go to standard output as a Markdown table; BENCHMARKS.md keeps
//! the numbers of the last run on the reference machine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use helpim_bot::claims;
use helpim_bot::model::RoomStatus;
use helpim_bot::store::{NewRoom, Store};

use common::bot::{BotOptions, TestBot};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Waits until the bot has `n` available rooms; returns when that happened.
async fn until_available(store: &Store, bot: &str, n: usize) -> Instant {
    loop {
        let counts = store.pool_counts(bot).await.expect("counts");
        if counts.ready as usize >= n {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run() {
    let rooms: usize = std::env::var("HELPIM_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rows = Vec::new();

    // 1. The pool fills, and memory with one ready room and with `rooms` ready rooms.
    let server = TestProsody::start();
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let options = BotOptions {
        user: "bench-small".into(),
        available: 1,
        max_rooms: 2,
        ..Default::default()
    };
    let small = TestBot::start(&server, &db.url, options);
    until_available(&store, &small.jid, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_one = rss_kib(small.pid().expect("running"));
    drop(small);

    let options = BotOptions {
        user: "bench".into(),
        available: rooms as u32,
        max_rooms: rooms as u32 + 60,
        ..Default::default()
    };
    let started = Instant::now();
    let bot = TestBot::start(&server, &db.url, options);
    let first = until_available(&store, &bot.jid, 1).await;
    let full = until_available(&store, &bot.jid, rooms).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_full = rss_kib(bot.pid().expect("running"));
    let fill = full - first;
    rows.push((
        "start-up to first ready room".to_owned(),
        format!("{:.0} ms", (first - started).as_secs_f64() * 1e3),
    ));
    rows.push((
        format!("pool fill, {rooms} rooms (first to last ready)"),
        format!(
            "{:.2} s = {:.0} rooms/s",
            fill.as_secs_f64(),
            rooms as f64 / fill.as_secs_f64()
        ),
    ));
    rows.push((
        "bot RSS, 1 ready room".to_owned(),
        format!("{:.1} MiB", rss_one as f64 / 1024.0),
    ));
    rows.push((
        format!("bot RSS, {rooms} ready rooms"),
        format!(
            "{:.1} MiB ({:.1} KiB per room)",
            rss_full as f64 / 1024.0,
            (rss_full.saturating_sub(rss_one)) as f64 / (rooms - 1) as f64
        ),
    ));

    // 2. Presence to database transition: staff enters, row becomes staff_waiting.
    server.register("staff", "pw");
    let ready = store
        .rooms(&helpim_bot::store::RoomFilter {
            status: Some(RoomStatus::Available),
            bot_jid: Some(bot.jid.clone()),
        })
        .await
        .expect("rooms");
    let mut latencies = Vec::new();
    let mut staff = TestClient::connect(&server, "staff", "pw").await;
    for (i, room) in ready.iter().take(50).enumerate() {
        let joined = Instant::now();
        staff
            .join(&room.jid, &format!("Staff{i}"), Some(&room.password))
            .await
            .expect("join");
        wait_fast(&store, room.id, RoomStatus::StaffWaiting).await;
        latencies.push(joined.elapsed());
    }
    latencies.sort();
    rows.push((
        "join → row `staff_waiting` (50 rooms)".to_owned(),
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            ms(percentile(&latencies, 50)),
            ms(percentile(&latencies, 90)),
            ms(*latencies.last().unwrap())
        ),
    ));
    drop(bot);

    // 3. Claims: 500 staff claims one after the other, per database.
    for (name, backend) in [
        ("SQLite file", Backend::SqliteFile),
        ("PostgreSQL", Backend::Postgres),
        ("MariaDB", Backend::MariaDb),
    ] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        for i in 0..500 {
            store
                .create_room(&NewRoom {
                    jid: format!("b{i}@conference.bench"),
                    password: "pw".into(),
                    bot_jid: "b@bench".into(),
                    at: helpim_bot::store::now(),
                })
                .await
                .expect("seed");
        }
        let started = Instant::now();
        for _ in 0..500 {
            claims::claim_staff(&store, "bench").await.expect("claim");
        }
        let per = started.elapsed() / 500;
        rows.push((
            format!("staff claim, {name} (500 in a row)"),
            format!("{:.2} ms each", ms(per)),
        ));
    }

    println!("| measurement | result |\n|---|---|");
    for (what, result) in rows {
        println!("| {what} | {result} |");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Polls every millisecond (the tests' helper polls every 50 ms: too coarse here).
async fn wait_fast(store: &Store, id: i64, status: RoomStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if store.room(id).await.expect("room").map(|r| r.status) == Some(status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("room {id} never became {status}");
}
