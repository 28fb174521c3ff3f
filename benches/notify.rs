//! Rerunnable benchmark of PostgreSQL push: the latency from a transition's commit to its
//! `helpim_room` notification arriving at a real `LISTEN` connection.
//!
//! `cargo bench --bench notify`. `HELPIM_BENCH_TRANSITIONS` sets how many transitions are
//! measured (default 500). Needs the PostgreSQL of the tests (see `tests/common/db.rs`).
//! Prints a Markdown table; BENCHMARKS.md keeps the numbers of the last run.
//!
//! Each transition is one `Store::apply` (a status change and its event, one transaction),
//! made one after the other. Two spans are measured per transition, both ending when the
//! listener task received the notification: from the start of `apply` (an upper bound: it
//! includes the transaction itself) and from `apply` returning, i.e. the commit
//! acknowledged (the notification may even arrive first: counted as 0).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use helpim_bot::model::{EventKind, RoomStatus};
use helpim_bot::store::{NOTIFY_CHANNEL, NewRoom, RoomChange};
use sea_orm::sqlx::postgres::PgListener;

use common::db::{Backend, TestDb};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn summary(mut spans: Vec<Duration>) -> String {
    spans.sort();
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        percentile(&spans, 50).as_secs_f64() * 1e3,
        percentile(&spans, 90).as_secs_f64() * 1e3,
        spans.last().expect("measured").as_secs_f64() * 1e3,
    )
}

async fn run() {
    let transitions: usize = std::env::var("HELPIM_BENCH_TRANSITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let db = TestDb::new(Backend::Postgres);
    let store = db.store().await;
    let room = store
        .create_room(&NewRoom {
            jid: "helpim-bench@conference.localhost".to_owned(),
            password: "pw".to_owned(),
            bot_jid: "bot@localhost".to_owned(),
            at: helpim_bot::store::now(),
        })
        .await
        .expect("room");

    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen(NOTIFY_CHANNEL).await.expect("listen");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(async move {
        loop {
            let notification = listener.recv().await.expect("notification");
            if tx
                .send((Instant::now(), notification.payload().to_owned()))
                .is_err()
            {
                return;
            }
        }
    });

    let mut from_start = Vec::with_capacity(transitions);
    let mut from_commit = Vec::with_capacity(transitions);
    // Alternating between two statuses, so that every payload differs from the one before.
    let statuses = [RoomStatus::Available, RoomStatus::StaffWaiting];
    for i in 0..transitions {
        let (from, to) = (statuses[i % 2], statuses[(i + 1) % 2]);
        let started = Instant::now();
        store
            .apply(&RoomChange {
                detail: "benchmark".to_owned(),
                ..RoomChange::new(
                    room.id,
                    EventKind::Reconciled,
                    from,
                    to,
                    helpim_bot::store::now(),
                )
            })
            .await
            .expect("apply");
        let committed = Instant::now();
        let (received, payload) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a notification within 10 s")
            .expect("listener alive");
        assert_eq!(payload, format!("{} {to}", room.id));
        from_start.push(received.saturating_duration_since(started));
        from_commit.push(received.saturating_duration_since(committed));
    }
    receiver.abort();

    println!("| measurement ({transitions} transitions, PostgreSQL) | result |");
    println!("|---|---|");
    println!(
        "| apply start → notification received | {} |",
        summary(from_start)
    );
    println!(
        "| commit acknowledged → notification received | {} |",
        summary(from_commit)
    );
}
