//! Full lifecycles under load: `chats` staff members and `chats` clients, each a real XMPP
//! connection, go through rooms the way the web application sends them (claim, join), and
//! leave; the bot follows every room to `closed`, destroys it and makes a replacement.
//!
//! Two phases on one bot:
//! - **bursts**: every staff member joins at once, then every client, then everybody
//!   leaves; a round ends when the pool is full again. Gives lifecycles and transitions per
//!   second, the bot's CPU per transition, and how busy the server and the bot were;
//! - **paced**: the same people keep up to `chats` chats going at once: each pair starts
//!   within 3 s, the client comes 0.1–1 s after the staff member, the chat lasts 15–25 s;
//!   transitions arrive unsynchronised while the chats are open.
//!
//! Latency is the bot's own `helpim_presence_to_commit_seconds` histogram (from handling a
//! person's presence to the row's commit), read from `/metrics` before and after a phase.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use helpim_bot::claims::Claim;
use helpim_bot::model::{Role, RoomStatus};
use helpim_bot::store::Store;
use rand::RngExt;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::common::bot::{BotOptions, TestBot};
use crate::common::client::TestClient;
use crate::common::db::{Backend, TestDb};
use crate::common::http::http_get;
use crate::common::prosody::TestProsody;
use crate::common::server::{XmppServer, pick_port};
use crate::common::world;

/// The presence → commit figures of one phase, from the histogram's buckets.
pub struct Latency {
    /// Transitions observed.
    pub count: u64,
    /// Upper bound of the bucket holding the 50th percentile, in ms.
    pub p50_ms: f64,
    /// Upper bound of the bucket holding the 99th percentile, in ms.
    pub p99_ms: f64,
    /// Share of transitions committed within 10 ms.
    pub within_10ms: f64,
    /// Share within 20 ms.
    pub within_20ms: f64,
}

/// What the two phases measured.
pub struct Chats {
    /// Latency over the burst rounds.
    pub burst: Latency,
    /// The same, for the staff members' joins, the clients' joins and everybody leaving.
    pub burst_parts: [Latency; 3],
    /// Latency over the paced phase.
    pub paced: Latency,
    /// Lifecycles per second over the burst rounds (all of a round's rooms closed and
    /// replaced).
    pub lifecycles_per_s: f64,
    /// Rows of `room_event` written per second over the burst rounds.
    pub transitions_per_s: f64,
    /// Bot CPU per `room_event` row over the burst rounds, in ms (replacement rooms
    /// included: their creation is one row each).
    pub bot_cpu_per_transition_ms: f64,
    /// Server CPU over wall time during the burst rounds (1.0 = one core).
    pub server_busy: f64,
    /// Bot CPU over wall time during the burst rounds.
    pub bot_busy: f64,
    /// CPU of the load generator (this process: every person's connection) over wall time
    /// during the burst rounds.
    pub people_busy: f64,
    /// Share of the whole machine's CPU busy during the burst rounds (1.0 = every core).
    pub machine_busy: f64,
    /// The same during the paced phase.
    pub paced_machine_busy: f64,
    /// Rooms in use at once during the paced phase (the mean of samples every 250 ms).
    pub paced_open_chats: usize,
}

/// Runs both phases with `chats` pairs on a fresh Prosody and `backend`.
pub async fn run(backend: Backend, chats: usize, rounds: usize, paced: usize) -> Chats {
    let server = TestProsody::start();
    let db = TestDb::new(backend);
    let store = &db.store().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", pick_port()).parse().unwrap();
    let bot = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            user: "bench-chats".into(),
            available: chats as u32,
            max_rooms: (chats * 3) as u32,
            log_level: Some("info"),
            room_logs: false,
            extra: format!("[http]\nlisten = \"{addr}\"\n"),
            ..Default::default()
        },
    );
    let bot_pid = bot.pid().expect("the bot runs");
    let server_pid = server.pid().expect("the server runs");
    pool_full(store, &bot.jid, chats).await;
    server.register("staff", "pw");
    server.register("client", "pw");
    let mut staff = connect_all(&server, "staff", chats).await;
    let mut clients = connect_all(&server, "client", chats).await;

    // Bursts.
    let before = histogram(addr);
    let events_before = events(store).await;
    let (bot_start, server_start) = (
        crate::servers::cpu_ms(bot_pid),
        crate::servers::cpu_ms(server_pid),
    );
    let people_start = crate::servers::cpu_ms(std::process::id());
    let machine_start = crate::servers::machine_ticks();
    let started = Instant::now();
    // Staff joins, client joins, everybody leaving: each part's histogram counts, summed
    // over the rounds.
    let mut parts: [Vec<(f64, u64)>; 3] = Default::default();
    for _ in 0..rounds {
        let h0 = histogram(addr);
        let staff_claims = all_enter(store, &mut staff, Role::Staff).await;
        all_status(store, &staff_claims, RoomStatus::StaffWaiting, &bot).await;
        let h1 = histogram(addr);
        let client_claims = all_enter(store, &mut clients, Role::Client).await;
        all_status(store, &staff_claims, RoomStatus::Chatting, &bot).await;
        let h2 = histogram(addr);
        let leaving = staff
            .iter_mut()
            .zip(&staff_claims)
            .enumerate()
            .map(|(i, (p, c))| (p, c, format!("Staff{i}")))
            .chain(
                clients
                    .iter_mut()
                    .zip(&client_claims)
                    .enumerate()
                    .map(|(i, (p, c))| (p, c, format!("Client{i}"))),
            );
        join_all(leaving.map(|(person, claim, nick)| async move {
            person.leave(&claim.jid, &nick).await;
        }))
        .await;
        all_status(store, &staff_claims, RoomStatus::Closed, &bot).await;
        pool_full(store, &bot.jid, chats).await;
        let h3 = histogram(addr);
        for (part, (a, b)) in parts.iter_mut().zip([(&h0, &h1), (&h1, &h2), (&h2, &h3)]) {
            add(part, &delta(a, b));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (bot_end, server_end) = (
        crate::servers::cpu_ms(bot_pid),
        crate::servers::cpu_ms(server_pid),
    );
    let people_end = crate::servers::cpu_ms(std::process::id());
    let machine_busy = crate::servers::machine_busy(machine_start, crate::servers::machine_ticks());
    let transitions = events(store).await - events_before;
    let burst = latency(&before, &histogram(addr));
    let burst_parts = parts.map(|p| summary(&p));

    // Paced.
    let before = histogram(addr);
    let paced_start = crate::servers::machine_ticks();
    let workers_done = std::cell::Cell::new(false);
    let bot = &bot;
    let workers = staff.iter_mut().zip(clients.iter_mut()).enumerate().map(
        |(i, (staff, client))| async move {
            for _ in 0..paced {
                pause(0..3000).await;
                let claim = world::claim_staff(store).await;
                enter(staff, &claim, &format!("Staff{i}")).await;
                pause(100..1000).await;
                let client_claim = world::claim_client(store).await;
                enter(client, &client_claim, &format!("Client{i}")).await;
                wait_status(store, claim.room_id, RoomStatus::Chatting, bot).await;
                pause(15_000..25_000).await;
                client.leave(&client_claim.jid, &format!("Client{i}")).await;
                staff.leave(&claim.jid, &format!("Staff{i}")).await;
            }
        },
    );
    // The rooms in use (claimed, waiting or chatting), sampled every 250 ms while the
    // workers run.
    let watch = async {
        let mut samples = Vec::new();
        while !workers_done.get() {
            let counts = store.pool_counts(&bot.jid).await.expect("counts");
            samples.push((counts.open - counts.ready) as usize);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        samples.iter().sum::<usize>() / samples.len().max(1)
    };
    let work = async {
        join_all(workers).await;
        workers_done.set(true);
    };
    let ((), paced_open_chats) = futures::join!(work, watch);
    let paced_latency = latency(&before, &histogram(addr));
    let paced_machine_busy =
        crate::servers::machine_busy(paced_start, crate::servers::machine_ticks());
    // Clean logouts before the server stops (a dropped client would keep reconnecting).
    join_all(staff.into_iter().chain(clients).map(TestClient::disconnect)).await;
    Chats {
        burst,
        burst_parts,
        paced: paced_latency,
        lifecycles_per_s: (chats * rounds) as f64 / elapsed,
        transitions_per_s: transitions as f64 / elapsed,
        bot_cpu_per_transition_ms: (bot_end - bot_start) / transitions.max(1) as f64,
        server_busy: (server_end - server_start) / 1e3 / elapsed,
        bot_busy: (bot_end - bot_start) / 1e3 / elapsed,
        people_busy: (people_end - people_start) / 1e3 / elapsed,
        machine_busy,
        paced_machine_busy,
        paced_open_chats,
    }
}

/// `n` connections of account `user`, logged in at once.
async fn connect_all(server: &dyn XmppServer, user: &str, n: usize) -> Vec<TestClient> {
    join_all((0..n).map(|_| TestClient::connect(server, user, "pw"))).await
}

/// Every one of `people` claims a room for `role` and enters it at once (as `Staff<i>` or
/// `Client<i>`); their claims, in order.
async fn all_enter(store: &Store, people: &mut [TestClient], role: Role) -> Vec<Claim> {
    join_all(people.iter_mut().enumerate().map(|(i, person)| async move {
        let (claim, nick) = match role {
            Role::Client => (world::claim_client(store).await, format!("Client{i}")),
            _ => (world::claim_staff(store).await, format!("Staff{i}")),
        };
        enter(person, &claim, &nick).await;
        claim
    }))
    .await
}

/// `person` joins the claimed room as `nick`.
async fn enter(person: &mut TestClient, claim: &Claim, nick: &str) {
    person
        .join(&claim.jid, nick, Some(&claim.password))
        .await
        .unwrap_or_else(|e| panic!("{nick} joins {}: {e:?}", claim.jid));
}

/// A random pause of `ms` milliseconds.
async fn pause(ms: std::ops::Range<u64>) {
    let ms = rand::rng().random_range(ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Waits (at most 60 s) until the bot has `n` ready rooms and no other open room.
async fn pool_full(store: &Store, bot: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.pool_counts(bot).await.expect("counts");
        if counts.ready as usize >= n && counts.open as usize == counts.ready as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool of {n} not full: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (at most 60 s) until every claimed room is `status`.
async fn all_status(store: &Store, claims: &[Claim], status: RoomStatus, bot: &TestBot) {
    for claim in claims {
        wait_status(store, claim.room_id, status, bot).await;
    }
}

/// Waits (at most 60 s) until room `id` is `status`; the failure shows the row, its events
/// and the end of the bot's log.
async fn wait_status(store: &Store, id: i64, status: RoomStatus, bot: &TestBot) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.room(id).await.expect("room").map(|r| r.status) != Some(status) {
        if Instant::now() > deadline {
            let row = store.room(id).await.expect("room");
            let events = store.events(id).await.expect("events");
            panic!(
                "room {id} never became {status}\n{row:#?}\n{events:#?}\n{}",
                bot.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rows in `room_event`.
async fn events(store: &Store) -> u64 {
    entity::room_event::Entity::find()
        .count(store.connection())
        .await
        .expect("count room_event")
}

/// The cumulative buckets of `helpim_presence_to_commit_seconds`: (upper bound, count).
fn histogram(addr: SocketAddr) -> Vec<(f64, u64)> {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter_map(|l| l.strip_prefix("helpim_presence_to_commit_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The counts per bucket between two readings of the histogram.
fn delta(before: &[(f64, u64)], after: &[(f64, u64)]) -> Vec<(f64, u64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, n - was)
        })
        .collect()
}

/// Adds the counts of `more` to `sum`, bucket by bucket.
fn add(sum: &mut Vec<(f64, u64)>, more: &[(f64, u64)]) {
    for &(le, n) in more {
        match sum.iter_mut().find(|s| s.0 == le) {
            Some(bucket) => bucket.1 += n,
            None => sum.push((le, n)),
        }
    }
}

/// The latency between two readings of the histogram.
fn latency(before: &[(f64, u64)], after: &[(f64, u64)]) -> Latency {
    summary(&delta(before, after))
}

/// The figures of cumulative bucket counts.
fn summary(delta: &[(f64, u64)]) -> Latency {
    let count = delta.last().map_or(0, |d| d.1);
    let quantile = |q: f64| {
        let rank = (q * count as f64).ceil() as u64;
        delta
            .iter()
            .find(|d| d.1 >= rank.max(1))
            .map_or(f64::NAN, |d| d.0 * 1e3)
    };
    let within = |le: f64| {
        let n = delta.iter().find(|d| d.0 == le).map_or(0, |d| d.1);
        n as f64 / count.max(1) as f64
    };
    Latency {
        count,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        within_10ms: within(0.01),
        within_20ms: within(0.02),
    }
}
