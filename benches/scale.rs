//! Rerunnable benchmark of pool creation at scale (issue 14): for pools of N rooms on
//! Prosody with a room cache big enough ("tuned"), on Prosody with its default cache of 100
//! ("stock cache"), and on ejabberd, the time from the bot's XMPP login to its first and its
//! last ready room, rooms per second, and the CPU the bot and the server spend per room
//! (from `/proc/<pid>/stat`, between the first ready room and the last, so that start-up,
//! migrations and login are not counted).
//!
//! `cargo bench --bench scale` (release build). `HELPIM_BENCH_SIZES` (default
//! `100,500,2000`) sets the pool sizes. Results go to standard output as a Markdown table;
//! BENCHMARKS.md keeps the last run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpim_bot::store::RoomFilter;

use common::bot::{BotOptions, TestBot, logged_at};
use common::db::{Backend, TestDb};
use common::ejabberd::TestEjabberd;
use common::prosody::TestProsody;
use common::server::XmppServer;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// The server set-ups compared.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The test config with `muc_room_cache_size` raised above every pool size.
    ProsodyTuned,
    /// The test config with Prosody's default `muc_room_cache_size` (100).
    ProsodyStockCache,
    /// The test config of ejabberd (`max_user_conferences: 1000`: pools up to 1000).
    Ejabberd,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::ProsodyTuned => "Prosody, cache 10 000",
            Setup::ProsodyStockCache => "Prosody, cache 100 (default)",
            Setup::Ejabberd => "ejabberd 23.01",
        }
    }
}

async fn run() {
    let sizes: Vec<usize> = std::env::var("HELPIM_BENCH_SIZES")
        .unwrap_or_else(|_| "100,500,2000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    println!(
        "| server | rooms | first ready after login | all ready after login | rooms/s | bot CPU per room | server CPU per room |"
    );
    println!("|---|---|---|---|---|---|---|");
    for setup in [
        Setup::ProsodyTuned,
        Setup::ProsodyStockCache,
        Setup::Ejabberd,
    ] {
        for &rooms in &sizes {
            if matches!(setup, Setup::Ejabberd) && rooms > 1000 {
                println!(
                    "| {} | {rooms} | (the test config's max_user_conferences is 1000) | | | | |",
                    setup.name()
                );
                continue;
            }
            let r = fill(setup, rooms).await;
            println!(
                "| {} | {rooms} | {:.0} ms | {:.2} s | {:.0} | {:.2} ms | {:.2} ms |",
                setup.name(),
                r.first.as_secs_f64() * 1e3,
                r.last.as_secs_f64(),
                rooms as f64 / r.last.as_secs_f64(),
                r.bot_cpu_ms / (rooms - 1) as f64,
                r.server_cpu_ms / (rooms - 1) as f64,
            );
        }
    }
}

/// One pool fill's figures.
struct Fill {
    first: Duration,
    last: Duration,
    bot_cpu_ms: f64,
    server_cpu_ms: f64,
}

/// A running server of either kind, kept by its concrete type for its pid.
enum Server {
    Prosody(TestProsody),
    Ejabberd(TestEjabberd),
}

impl Server {
    /// The server of `setup`, started.
    fn start(setup: Setup) -> Server {
        if let Setup::Ejabberd = setup {
            return Server::Ejabberd(TestEjabberd::start());
        }
        let mut server = TestProsody::start();
        server.stop();
        let config = std::fs::read_to_string(server.config_file()).unwrap();
        assert!(config.contains("muc_room_cache_size = 1000"));
        let cache = match setup {
            Setup::ProsodyTuned => "10000",
            _ => "100",
        };
        std::fs::write(
            server.config_file(),
            config.replace(
                "muc_room_cache_size = 1000",
                &format!("muc_room_cache_size = {cache}"),
            ),
        )
        .unwrap();
        server.start_again();
        Server::Prosody(server)
    }

    fn as_dyn(&self) -> &dyn XmppServer {
        match self {
            Server::Prosody(s) => s,
            Server::Ejabberd(s) => s,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Prosody(s) => s.pid(),
            Server::Ejabberd(s) => s.pid(),
        }
        .expect("the server runs")
    }
}

async fn fill(setup: Setup, rooms: usize) -> Fill {
    let server = Server::start(setup);
    let server_pid = server.pid();
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let bot = TestBot::start(
        server.as_dyn(),
        &db.url,
        BotOptions {
            user: "bench".into(),
            available: rooms as u32,
            max_rooms: rooms as u32,
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
    let up = logged_at(&bot.log_text(), "XMPP session up").expect("session up line");
    let since = |t: &DateTime<Utc>| (*t - up).to_std().unwrap_or_default();
    Fill {
        first: created.iter().min().map(since).unwrap_or_default(),
        last: created.iter().max().map(since).unwrap_or_default(),
        bot_cpu_ms: bot_end - bot_start,
        server_cpu_ms: server_end - server_start,
    }
}

/// User plus system CPU time of process `pid`, in milliseconds (`/proc/<pid>/stat` fields
/// 14 and 15, in clock ticks of 10 ms).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) * 10.0
}
