//! Rerunnable benchmark: how long the bot takes to fill its pool on Prosody as Debian ships
//! it (`limits` with c2s at 10 kB/s, `smacks`, a room cache of 100), with and without the
//! bot's JID in `unlimited_jids`, beside the unthrottled test configuration.
//!
//! `cargo bench --bench stock_prosody` (release build). `HELPIM_BENCH_ROOMS` sets the pool
//! size (default 50), `HELPIM_BENCH_RUNS` the runs per setup (default 3; the median is
//! shown). Times are from the bot's "XMPP session up" log line to the first and the last
//! room's `created_at`; the README's Prosody section quotes the result.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpim_bot::store::RoomFilter;

use common::bot::{BotOptions, TestBot, logged_at};
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;

/// The three server set-ups compared.
#[derive(Clone, Copy)]
enum Setup {
    /// The test suite's configuration: no `limits`, no `smacks`, a room cache of 1000.
    Unthrottled,
    /// Debian's configuration, the bot subject to the c2s limit.
    StockLimited,
    /// Debian's configuration with the bot in `unlimited_jids`.
    StockUnlimited,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Unthrottled => "test config (no limits, cache 1000)",
            Setup::StockLimited => "Debian stock (limits c2s 10 kB/s, cache 100)",
            Setup::StockUnlimited => "Debian stock + bot in unlimited_jids",
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One pool fill: (first room ready, all `rooms` ready), after the session came up.
async fn fill(setup: Setup, rooms: usize) -> (Duration, Duration) {
    let server = match setup {
        Setup::Unthrottled => TestProsody::start(),
        Setup::StockLimited => TestProsody::start_stock(&[]),
        Setup::StockUnlimited => TestProsody::start_stock(&["bench@localhost"]),
    };
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let bot = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            user: "bench".into(),
            available: rooms as u32,
            max_rooms: rooms as u32 + 5,
            extra: "[http]\nenabled = false\n".into(),
            ..Default::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    let created: Vec<DateTime<Utc>> = loop {
        let all = store
            .rooms(&RoomFilter {
                status: None,
                bot_jid: Some(bot.jid.clone()),
            })
            .await
            .expect("rooms");
        if all.len() >= rooms {
            break all.iter().map(|r| r.created_at).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} rooms of {rooms} after 10 min\n{}",
            all.len(),
            bot.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let up = logged_at(&bot.log_text(), "XMPP session up").expect("session up line");
    let since = |t: &DateTime<Utc>| (*t - up).to_std().unwrap_or_default();
    let first = created.iter().min().map(since).unwrap_or_default();
    let last = created.iter().max().map(since).unwrap_or_default();
    (first, last)
}

async fn run() {
    let rooms = env_or("HELPIM_BENCH_ROOMS", 50);
    let runs = env_or("HELPIM_BENCH_RUNS", 3).max(1);
    println!("pool of {rooms} rooms, median of {runs} runs, times after the session is up\n");
    println!("| server | first room ready | pool full | rooms/s |");
    println!("|---|---|---|---|");
    for setup in [
        Setup::Unthrottled,
        Setup::StockLimited,
        Setup::StockUnlimited,
    ] {
        let mut firsts = Vec::new();
        let mut fulls = Vec::new();
        for _ in 0..runs {
            let (first, full) = fill(setup, rooms).await;
            firsts.push(first);
            fulls.push(full);
        }
        firsts.sort();
        fulls.sort();
        let (first, full) = (firsts[runs / 2], fulls[runs / 2]);
        println!(
            "| {} | {} ms | {:.2} s | {:.0} |",
            setup.name(),
            first.as_millis(),
            full.as_secs_f64(),
            rooms as f64 / full.as_secs_f64().max(0.001)
        );
    }
}
