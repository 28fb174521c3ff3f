//! Rerunnable benchmark of recovery after a crash (issue 10, point 7): the real bot on a real
//! Prosody with 1 000 live rooms (500 with a staff member inside, 500 ready) is killed with
//! SIGKILL and restarted at once, on the production lease (`lease_secs = 30`). Measured from
//! the restart until
//! - the lease is held (the dead pid on this host is the proof; no 30 s wait),
//! - every row matches the server: the 500 ready rooms died with the bot's session and are
//!   closed `lost`, the 500 staff rooms are still `staff_waiting`,
//! - `/readyz` answers 200 (lease, session, database, every recorded room rejoined),
//! - the pool is full again (500 new ready rooms).
//!
//! On Prosody and ejabberd, SQLite and PostgreSQL, at the production log level (`info`);
//! with the server's and the bot's CPU over the recovery (restart to pool full), to show
//! which one is the limit. `cargo bench --bench recovery` (release build);
//! `HELPIM_BENCH_ROOMS` sets the number of live rooms (default 1000, half of them with staff).
//! Results go to standard output as a Markdown table; BENCHMARKS.md keeps the last run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "record/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpim_bot::claims;
use helpim_bot::model::RoomStatus;
use helpim_bot::store::Store;

use common::bot::{BotOptions, TestBot};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::http::http_get;
use common::server::pick_port;
use servers::{Server, Setup, cpu_ms};

/// People per staff account: one account sits in this many rooms, as several browser tabs
/// of one staff member would (Prosody has no per-account room limit).
const ROOMS_PER_STAFF: usize = 50;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let live: usize = std::env::var("HELPIM_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let staffed = live / 2;
    let ready = live - staffed;
    println!(
        "| server | database | lease held | rows match the server | ready (/readyz 200) | pool full again | server CPU busy | bot CPU busy |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for setup in [Setup::ProsodyTuned, Setup::Ejabberd] {
        for (name, backend) in [
            ("SQLite", Backend::SqliteFile),
            ("PostgreSQL", Backend::Postgres),
        ] {
            let row = recovery(setup, backend, staffed, ready).await;
            println!(
                "| {} | {name} | {} | {} | {} | {} | {:.0} % | {:.0} % |",
                setup.name(),
                secs(row.lease),
                secs(row.rows),
                secs(row.readyz),
                secs(row.pool),
                row.server_busy * 100.0,
                row.bot_busy * 100.0,
            );
        }
    }
    println!("\n{live} live rooms: {staffed} with a staff member inside, {ready} ready");
}

/// Times from the restart, for one database.
struct Recovery {
    lease: Duration,
    rows: Duration,
    readyz: Duration,
    pool: Duration,
    /// Server CPU over wall time from the restart to the full pool (1.0 = one core).
    server_busy: f64,
    /// The same for the bot (both its processes: the killed one's CPU is not counted).
    bot_busy: f64,
}

async fn recovery(setup: Setup, backend: Backend, staffed: usize, ready: usize) -> Recovery {
    let server = Server::start(setup);
    let server_pid = server.pid();
    let server = server.as_dyn();
    let db = TestDb::new(backend);
    let store = db.store().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let mut bot = TestBot::start(
        server,
        &db.url,
        BotOptions {
            user: "bench-recovery".into(),
            available: ready as u32,
            max_rooms: (staffed + 2 * ready) as u32,
            // The production lease; the HTTP listener for /readyz.
            extra: format!("[timeouts]\nlease_secs = 30\n\n[http]\nlisten = \"{addr}\"\n"),
            log_level: Some("info"),
            room_logs: false,
            ..Default::default()
        },
    );
    until(
        &store,
        Duration::from_secs(120),
        "the first pool",
        async |s| s.pool_counts(&bot.jid).await.unwrap().ready as usize >= ready,
    )
    .await;

    // Staff members enter `staffed` rooms through claims; the pool refills behind them.
    let mut staff_rooms = Vec::new();
    let mut people = Vec::new();
    for account in 0..staffed.div_ceil(ROOMS_PER_STAFF) {
        let user = format!("staff{account}");
        server.register(&user, "pw");
        let mut person = TestClient::connect(server, &user, "pw").await;
        for n in 0..ROOMS_PER_STAFF.min(staffed - staff_rooms.len()) {
            let claim = loop {
                match claims::claim_staff(&store, "bench").await {
                    Ok(claim) => break claim,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            person
                .join(&claim.jid, &format!("Staff{n}"), Some(&claim.password))
                .await
                .expect("staff enters");
            staff_rooms.push(claim.room_id);
        }
        people.push(person);
    }
    let staffed_rows = staff_rooms.clone();
    until(
        &store,
        Duration::from_secs(120),
        "staff rooms and a full pool",
        async |s| {
            let counts = s.pool_counts(&bot.jid).await.unwrap();
            let mut waiting = 0;
            for id in &staffed_rows {
                if s.room(*id).await.unwrap().unwrap().status == RoomStatus::StaffWaiting {
                    waiting += 1;
                }
            }
            waiting == staffed && counts.ready as usize >= ready
        },
    )
    .await;
    let doomed: Vec<i64> = store
        .open_rooms(&bot.jid)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == RoomStatus::Available)
        .map(|r| r.id)
        .collect();
    assert_eq!(doomed.len(), ready);

    bot.kill();
    let server_at_restart = cpu_ms(server_pid);
    let restarted = Instant::now();
    bot.spawn();
    let pid = i64::from(bot.pid().unwrap());
    let jid = bot.jid.clone();
    until(&store, Duration::from_secs(60), "the lease", async |s| {
        use sea_orm::EntityTrait;
        entity::bot_instance::Entity::find_by_id(jid.clone())
            .one(s.connection())
            .await
            .unwrap()
            .is_some_and(|row| row.pid == pid)
    })
    .await;
    let lease = restarted.elapsed();
    let (mut rows, mut readyz, mut pool) = (None, None, None);
    let deadline = restarted + Duration::from_secs(120);
    while rows.is_none() || readyz.is_none() || pool.is_none() {
        assert!(Instant::now() < deadline, "no full recovery within 120 s");
        if rows.is_none() && rows_match(&store, &doomed, &staff_rooms).await {
            rows = Some(restarted.elapsed());
        }
        if readyz.is_none() && http_get(addr, "/readyz").is_ok_and(|(code, _)| code == 200) {
            readyz = Some(restarted.elapsed());
        }
        if pool.is_none() {
            let fresh = store.pool_counts(&bot.jid).await.unwrap().ready as usize;
            if fresh >= ready && rows.is_some() {
                pool = Some(restarted.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = restarted.elapsed().as_secs_f64();
    let server_busy = (cpu_ms(server_pid) - server_at_restart) / 1e3 / wall;
    let bot_busy = cpu_ms(pid as u32) / 1e3 / wall;
    for id in &doomed {
        let row = store.room(*id).await.unwrap().unwrap();
        assert_eq!(row.close_reason, Some(helpim_bot::model::CloseReason::Lost));
    }
    drop(people);
    drop(bot);
    Recovery {
        lease,
        rows: rows.unwrap(),
        readyz: readyz.unwrap(),
        pool: pool.unwrap(),
        server_busy,
        bot_busy,
    }
}

/// Every room that died with the session is closed `lost`, every staff room still waits.
async fn rows_match(store: &Store, doomed: &[i64], staffed: &[i64]) -> bool {
    let open: std::collections::HashMap<i64, RoomStatus> = store
        .rooms(&helpim_bot::store::RoomFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect();
    doomed
        .iter()
        .all(|id| open.get(id) == Some(&RoomStatus::Closed))
        && staffed
            .iter()
            .all(|id| open.get(id) == Some(&RoomStatus::StaffWaiting))
}

/// Polls `check` every 10 ms until it holds; panics after `within`.
async fn until(store: &Store, within: Duration, what: &str, check: impl AsyncFn(&Store) -> bool) {
    let deadline = Instant::now() + within;
    while !check(store).await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
