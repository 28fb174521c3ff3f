//! The benchmark of record (issue 14): the release bot on real servers, at the production
//! log level (`info`), nothing mocked. It prints four Markdown tables; BENCHMARKS.md keeps
//! the last run on the reference machine.
//!
//! 1. **Creation**: a pool of N rooms filled on a fresh server, on Prosody with a tuned room
//!    cache, on Prosody with its default cache of 100, and on ejabberd. Per fill: the first
//!    and the last room ready after login, rooms per second, the bot's and the server's CPU
//!    per room (`/proc/<pid>/stat`, between the first room and the last), the bot's RSS. In
//!    the same run, the limit: a raw client (no actors, no database, no logging) sending the
//!    same stanzas through the same window, and the bot's rooms per second as a share of it.
//! 2. **Memory**: the bot's RSS with one room and with 10 000 live rooms, measured.
//! 3. **Chats**: 200 staff members and 200 clients (real connections) through claims and
//!    joins: lifecycles and transitions per second in bursts, the bot's CPU per
//!    transition, how busy the server is, and the bot's own presence → commit latency
//!    (`helpim_presence_to_commit_seconds`) in bursts of 200 joins and with 200 chats going
//!    at once, on SQLite and PostgreSQL.
//! 4. **Claims**: the contract's claim, 500 in a row, per database.
//!
//! `cargo bench --bench pool`. Environment: `HELPIM_BENCH_PARTS` (default
//! `creation,memory,chats,claims`), `HELPIM_BENCH_SIZES` (default `100,500,2000`),
//! `HELPIM_BENCH_BIG` (default 10000), `HELPIM_BENCH_CHATS` (default 200),
//! `HELPIM_BENCH_SERVERS` (default `tuned,stock,ejabberd`),
//! `HELPIM_BENCH_ROUNDS` (burst rounds, default 3), `HELPIM_BENCH_PACED` (lifecycles per
//! pair in the paced phase, default 1).

#[path = "record/chats.rs"]
mod chats;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "record/raw.rs"]
mod raw;
#[path = "record/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpim_bot::claims;
use helpim_bot::store::{NewRoom, RoomFilter};

use common::bot::{BotOptions, TestBot, logged_at};
use common::db::{Backend, TestDb};
use common::server::XmppServer;
use servers::{Server, Setup, cpu_ms, rss_kib};

/// The bot's default `pool.creation_window`, which the raw client uses too.
const WINDOW: usize = 16;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// A comma-separated list from the environment, or `default`.
fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A number from the environment, or `default`.
fn number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run() {
    let parts = list("HELPIM_BENCH_PARTS", "creation,memory,chats,claims");
    let part = |p: &str| parts.iter().any(|x| x == p);
    if part("creation") {
        let sizes: Vec<usize> = list("HELPIM_BENCH_SIZES", "100,500,2000")
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        creation(&sizes).await;
    }
    if part("memory") {
        memory(number("HELPIM_BENCH_BIG", 10_000)).await;
    }
    if part("chats") {
        chats_table(
            number("HELPIM_BENCH_CHATS", 200),
            number("HELPIM_BENCH_ROUNDS", 3),
            number("HELPIM_BENCH_PACED", 1),
        )
        .await;
    }
    if part("claims") {
        claims_table().await;
    }
}

/// Table 1: pool fills by the bot and by the raw client, side by side.
async fn creation(sizes: &[usize]) {
    println!("## Creation (window {WINDOW}, SQLite, log level info)\n");
    println!(
        "| server | rooms | first ready | first ready (raw) | all ready | rooms/s | raw client rooms/s | bot / raw | bot CPU per room | raw client CPU per room | server CPU per room (bot) | server CPU per room (raw) | bot RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut all_ready = Vec::new();
    let servers = list("HELPIM_BENCH_SERVERS", "tuned,stock,ejabberd");
    for (key, setup) in [
        ("tuned", Setup::ProsodyTuned),
        ("stock", Setup::ProsodyStockCache),
        ("ejabberd", Setup::Ejabberd),
    ] {
        if !servers.iter().any(|s| s == key) {
            continue;
        }
        for &rooms in sizes {
            let bot = fill(setup, rooms).await;
            let raw = {
                let server = Server::start(setup);
                raw::fill(server.as_dyn(), server.pid(), "raw", rooms, WINDOW).await
            };
            let per_room = |ms: f64| format!("{:.2} ms", ms / (rooms - 1) as f64);
            let bot_rate = rooms as f64 / bot.last.as_secs_f64();
            let raw_rate = rooms as f64 / raw.last.as_secs_f64();
            println!(
                "| {} | {rooms} | {:.0} ms | {:.0} ms | {:.2} s | {bot_rate:.0} | {raw_rate:.0} | {:.2} | {} | {} | {} | {} | {:.1} MiB |",
                setup.name(),
                bot.first.as_secs_f64() * 1e3,
                raw.first.as_secs_f64() * 1e3,
                bot.last.as_secs_f64(),
                bot_rate / raw_rate,
                per_room(bot.bot_cpu_ms),
                per_room(raw.client_cpu_ms),
                per_room(bot.server_cpu_ms),
                per_room(raw.server_cpu_ms),
                bot.rss_kib as f64 / 1024.0,
            );
            all_ready.push((setup.name(), rooms, bot.last));
        }
    }
    println!();
    for &rooms in sizes {
        let find = |setup: Setup| {
            all_ready
                .iter()
                .find(|(name, n, _)| *name == setup.name() && *n == rooms)
                .map(|r| r.2.as_secs_f64())
        };
        if let (Some(stock), Some(tuned)) =
            (find(Setup::ProsodyStockCache), find(Setup::ProsodyTuned))
        {
            println!(
                "- {rooms} rooms: Prosody's default cache takes {:.2}× the time of the tuned one",
                stock / tuned
            );
        }
    }
    println!();
}

/// One pool fill's figures.
struct Fill {
    first: Duration,
    last: Duration,
    bot_cpu_ms: f64,
    server_cpu_ms: f64,
    rss_kib: u64,
}

/// The bot fills a pool of `rooms` on a fresh server of `setup`.
async fn fill(setup: Setup, rooms: usize) -> Fill {
    let server = Server::start(setup);
    bot_fill(server.as_dyn(), server.pid(), rooms).await
}

/// The bot fills a pool of `rooms` on `server` (process `server_pid`), SQLite file.
async fn bot_fill(server: &dyn XmppServer, server_pid: u32, rooms: usize) -> Fill {
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let bot = TestBot::start(
        server,
        &db.url,
        BotOptions {
            user: "bench".into(),
            available: rooms as u32,
            max_rooms: rooms as u32,
            log_level: Some("info"),
            room_logs: false,
            extra: "[http]\nenabled = false\n".into(),
            ..Default::default()
        },
    );
    let bot_pid = bot.pid().expect("the bot runs");
    let filter = RoomFilter {
        status: None,
        bot_jid: Some(bot.jid.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut at_first = None;
    let created: Vec<DateTime<Utc>> = loop {
        let n = store.pool_counts(&bot.jid).await.expect("counts").open as usize;
        if n >= 1 && at_first.is_none() {
            at_first = Some((cpu_ms(bot_pid), cpu_ms(server_pid)));
        }
        if n >= rooms {
            let all = store.rooms(&filter).await.expect("rooms");
            break all.iter().map(|r| r.created_at).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{n} rooms of {rooms} after 15 min\n{}",
            bot.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (bot_end, server_end) = (cpu_ms(bot_pid), cpu_ms(server_pid));
    let (bot_start, server_start) = at_first.expect("a first room");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(bot_pid);
    let up = logged_at(&bot.log_text(), "XMPP session up").expect("session up line");
    let since = |t: &DateTime<Utc>| (*t - up).to_std().unwrap_or_default();
    Fill {
        first: created.iter().min().map(since).unwrap_or_default(),
        last: created.iter().max().map(since).unwrap_or_default(),
        bot_cpu_ms: bot_end - bot_start,
        server_cpu_ms: server_end - server_start,
        rss_kib: rss,
    }
}

/// Table 2: RSS with one room and with `big` live rooms (on ejabberd, the faster creator).
async fn memory(big: usize) {
    println!("## Memory (ejabberd, SQLite, log level info)\n");
    println!("| live rooms | bot RSS | per room |\n|---|---|---|");
    let server = Server::start(Setup::Ejabberd);
    let one = bot_fill(server.as_dyn(), server.pid(), 1).await;
    let server = Server::start(Setup::Ejabberd);
    let many = bot_fill(server.as_dyn(), server.pid(), big).await;
    println!("| 1 | {:.1} MiB | |", one.rss_kib as f64 / 1024.0);
    println!(
        "| {big} | {:.1} MiB | {:.1} KiB |\n",
        many.rss_kib as f64 / 1024.0,
        many.rss_kib.saturating_sub(one.rss_kib) as f64 / (big - 1) as f64
    );
}

/// Table 3: lifecycles and latency under 200 chats, on SQLite and PostgreSQL.
async fn chats_table(chats: usize, rounds: usize, paced: usize) {
    println!(
        "## Chats ({chats} staff + {chats} clients on Prosody, {rounds} burst rounds, {paced} paced lifecycles each)\n"
    );
    println!(
        "| database | lifecycles/s | transitions/s | bot CPU per transition | server CPU busy | bot CPU busy | people's CPU busy | machine busy | burst: presence → commit | p99: staff joins / client joins / leaves | paced ({chats} chats): presence → commit | rooms in use (paced) | machine busy (paced) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let databases = list("HELPIM_BENCH_DATABASES", "sqlite,postgres");
    for (name, backend) in [
        ("SQLite", Backend::SqliteFile),
        ("PostgreSQL", Backend::Postgres),
    ] {
        if !databases
            .iter()
            .any(|d| name.to_lowercase().starts_with(d.as_str()))
        {
            continue;
        }
        let r = chats::run(backend, chats, rounds, paced).await;
        let shown = |l: &chats::Latency| {
            format!(
                "n {}, p50 ≤ {} ms, p99 ≤ {} ms, {:.1} % ≤ 10 ms, {:.1} % ≤ 20 ms",
                l.count,
                l.p50_ms,
                l.p99_ms,
                l.within_10ms * 100.0,
                l.within_20ms * 100.0
            )
        };
        println!(
            "| {name} | {:.1} | {:.0} | {:.3} ms | {:.0} % | {:.0} % | {:.0} % | {:.0} % | {} | {} ms | {} | {} | {:.0} % |",
            r.lifecycles_per_s,
            r.transitions_per_s,
            r.bot_cpu_per_transition_ms,
            r.server_busy * 100.0,
            r.bot_busy * 100.0,
            r.people_busy * 100.0,
            r.machine_busy * 100.0,
            shown(&r.burst),
            r.burst_parts
                .iter()
                .map(|l| format!("≤ {}", l.p99_ms))
                .collect::<Vec<_>>()
                .join(" / "),
            shown(&r.paced),
            r.paced_open_chats,
            r.paced_machine_busy * 100.0,
        );
    }
    println!();
}

/// Table 4: 500 staff claims one after the other, per database.
async fn claims_table() {
    println!("## Claims\n\n| database | staff claim (500 in a row) |\n|---|---|");
    for (name, backend) in [
        ("SQLite file", Backend::SqliteFile),
        ("PostgreSQL", Backend::Postgres),
        ("MariaDB", Backend::MariaDb),
    ] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        // Claims take only rooms of a bot whose session is up.
        common::db::live_bot(&store, "b@bench").await;
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
        println!("| {name} | {:.2} ms each |", per.as_secs_f64() * 1e3);
    }
    println!();
}
