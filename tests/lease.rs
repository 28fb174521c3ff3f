mod common;

// The bot JID lease against real databases: one holder per JID, taken over from a dead
// holder, lost by the old one, and atomic under 20 concurrent acquirers, on each backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::db::{Backend, TestDb};
use entity::bot_instance;
use helpim_bot::lease::{self, Lease, LeaseError};
use helpim_bot::store::{NewRoom, PoolCounts, Store, StoreError};
use sea_orm::{ConnectionTrait, EntityTrait};

const BOT: &str = "bot@localhost";
const OTHER_BOT: &str = "other-bot@localhost";

/// Short enough for a test, long enough that a loaded machine still renews in time.
const TTL: Duration = Duration::from_secs(1);

/// The lease row of `bot_jid`, if any.
async fn row(store: &Store, bot_jid: &str) -> Option<bot_instance::Model> {
    bot_instance::Entity::find_by_id(bot_jid.to_owned())
        .one(store.connection())
        .await
        .unwrap()
}

/// Acquires `bot_jid`, expecting success, and how long it took.
async fn acquire_ok(store: &Store, bot_jid: &str) -> (Lease, Duration) {
    let start = Instant::now();
    let lease = lease::acquire(store, bot_jid, TTL)
        .await
        .unwrap_or_else(|err| panic!("acquire {bot_jid}: {err}"));
    (lease, start.elapsed())
}

/// Keeps `lease` renewed in the background until the returned handle is aborted.
fn keep_renewing(lease: &Arc<Lease>) -> tokio::task::JoinHandle<LeaseError> {
    let lease = Arc::clone(lease);
    tokio::spawn(async move { lease.keep_alive().await })
}

async fn exercise(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    // A second pool, as a second process would have.
    let other = Store::connect(&db.url).await.unwrap();

    // The new table goes down with the schema and comes back up.
    store.migrate_down().await.unwrap();
    assert!(
        matches!(
            lease::acquire(&store, BOT, TTL).await,
            Err(LeaseError::Store(StoreError::Db(_)))
        ),
        "the bot_instance table should be gone after migrating down"
    );
    store.migrate().await.unwrap();

    // On an empty table the lease is taken at once and the row names this process.
    let (first, took) = acquire_ok(&store, BOT).await;
    assert!(took < TTL / 2, "a free JID is taken at once, took {took:?}");
    let held = row(&store, BOT).await.expect("the lease row");
    assert_eq!(held.holder, first.token());
    assert_eq!(held.pid, i64::from(std::process::id()));
    assert_eq!(held.renewals, 0);
    assert!(!held.host.is_empty());
    assert!(Utc::now() - held.heartbeat_at < chrono::TimeDelta::seconds(5));
    let health = lease::health(&store, BOT, TTL).await.unwrap();
    assert!(health.is_healthy(), "{health}");
    assert!(
        health
            .to_string()
            .starts_with("healthy: bot@localhost held by pid "),
        "{health}"
    );

    // While the holder renews (here well past its ttl), a second process is refused with
    // a message naming the holder, as soon as it sees a renewal.
    let first = Arc::new(first);
    let renewer = keep_renewing(&first);
    tokio::time::sleep(TTL * 2).await;
    let start = Instant::now();
    match lease::acquire(&other, BOT, TTL).await {
        Err(LeaseError::Held {
            bot_jid,
            holder_description,
            heartbeat_at,
        }) => {
            assert_eq!(bot_jid, BOT);
            let pid = std::process::id();
            assert!(
                holder_description.starts_with(&format!("pid {pid} on host ")),
                "{holder_description}"
            );
            assert!(Utc::now() - heartbeat_at < chrono::TimeDelta::seconds(5));
        }
        other => panic!(
            "expected Held, got {:?}",
            other.map(|l| l.token().to_owned())
        ),
    }
    assert!(
        start.elapsed() < TTL,
        "Held within a renewal interval, took {:?}",
        start.elapsed()
    );
    let renewed = row(&store, BOT).await.unwrap();
    assert_eq!(renewed.holder, first.token(), "the holder keeps its lease");
    assert!(
        renewed.renewals >= 3,
        "renewed every ttl/3: {}",
        renewed.renewals
    );
    assert!(lease::health(&store, BOT, TTL).await.unwrap().is_healthy());

    // Another bot JID on the same database is independent.
    let (other_bot, took) = acquire_ok(&other, OTHER_BOT).await;
    assert!(
        took < TTL / 2,
        "another JID is taken at once, took {took:?}"
    );
    other_bot.renew().await.unwrap();
    assert_eq!(row(&store, BOT).await.unwrap().holder, first.token());

    // After a release the JID is free at once.
    renewer.abort();
    let _ = renewer.await;
    let first = Arc::into_inner(first).expect("the renewer is gone");
    first.release().await.unwrap();
    assert!(row(&store, BOT).await.is_none());
    let health = lease::health(&store, BOT, TTL).await.unwrap();
    assert!(!health.is_healthy());
    assert!(
        health.to_string().contains("held by no process"),
        "{health}"
    );
    let (again, took) = acquire_ok(&other, BOT).await;
    assert!(
        took < TTL / 2,
        "a released JID is taken at once, took {took:?}"
    );

    // A holder that stops renewing (killed) is taken over after one ttl of silence; the
    // health check sees it stale meanwhile, and the old holder learns it lost the lease.
    tokio::time::sleep(TTL).await;
    let health = lease::health(&store, BOT, TTL).await.unwrap();
    assert!(!health.is_healthy(), "{health}");
    assert!(health.to_string().contains("no heartbeat for"), "{health}");
    let (taker, took) = acquire_ok(&store, BOT).await;
    assert!(
        took >= TTL && took < TTL * 3,
        "taken over after watching one ttl, took {took:?}"
    );
    assert_eq!(row(&store, BOT).await.unwrap().holder, taker.token());
    match again.renew().await {
        Err(LeaseError::Lost {
            bot_jid,
            taken_by: Some(by),
        }) => {
            assert_eq!(bot_jid, BOT);
            assert!(by.starts_with("pid "), "{by}");
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    // Its keep-alive would not even try: its validity ran out long ago.
    assert!(matches!(
        again.keep_alive().await,
        LeaseError::Expired { .. }
    ));
    assert!(matches!(
        again.release().await,
        Err(LeaseError::Lost { .. })
    ));
    assert_eq!(row(&store, BOT).await.unwrap().holder, taker.token());
    taker.renew().await.unwrap();

    // Room counts appear in the health report.
    store
        .create_room(&NewRoom {
            jid: "helpim-lease@conference.localhost".into(),
            password: "pw".into(),
            bot_jid: BOT.into(),
            at: Utc::now(),
        })
        .await
        .unwrap();
    let health = lease::health(&store, BOT, TTL).await.unwrap();
    assert_eq!(health.counts, PoolCounts { ready: 1, open: 1 });
    assert!(
        health.to_string().ends_with("1 rooms ready, 1 open"),
        "{health}"
    );

    // A holder that cannot reach its row gives up before anyone could take over, and is
    // valid again when a renewal succeeds and nobody took over meanwhile.
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    let conn = store.connection();
    taker.renew().await.unwrap();
    conn.execute_unprepared(&rename("bot_instance", "bot_instance_away"))
        .await
        .unwrap();
    let start = Instant::now();
    match taker.keep_alive().await {
        LeaseError::Expired {
            bot_jid,
            silent_for,
            last_error,
        } => {
            assert_eq!(bot_jid, BOT);
            assert!(
                silent_for >= TTL * 3 / 4 && silent_for < TTL,
                "{silent_for:?}"
            );
            assert!(last_error.is_some());
        }
        other => panic!("expected Expired, got {other}"),
    }
    assert!(start.elapsed() < TTL, "expired within the ttl");
    conn.execute_unprepared(&rename("bot_instance_away", "bot_instance"))
        .await
        .unwrap();
    taker.renew().await.unwrap();
    assert!(taker.valid_until() > tokio::time::Instant::now());

    // A holder whose lease is taken while it renews finds out at its next renewal.
    let taker = Arc::new(taker);
    let renewer = keep_renewing(&taker);
    let intrude =
        format!("UPDATE bot_instance SET holder = 'intruder', pid = 4242 WHERE bot_jid = '{BOT}'");
    conn.execute_unprepared(&intrude).await.unwrap();
    let start = Instant::now();
    match renewer.await.unwrap() {
        LeaseError::Lost {
            taken_by: Some(by), ..
        } => assert!(by.starts_with("pid 4242 on host "), "{by}"),
        other => panic!("expected Lost, got {other}"),
    }
    assert!(start.elapsed() < TTL, "noticed at the next renewal");
    let taker = Arc::into_inner(taker).expect("the renewer is gone");
    assert!(matches!(
        taker.release().await,
        Err(LeaseError::Lost { .. })
    ));
    assert_eq!(row(&store, BOT).await.unwrap().holder, "intruder");
    other_bot.release().await.unwrap();
    assert!(row(&store, OTHER_BOT).await.is_none());
}

/// 20 processes try to acquire `BOT` at once: exactly one gets the lease and keeps it
/// renewed as a bot would, then releases it; the others are refused. Returns the winners'
/// tokens and how long each refusal took.
async fn contend(stores: &[Store]) -> (Vec<String>, Vec<Duration>) {
    let start = Instant::now();
    let outcomes = futures::future::join_all(stores.iter().map(|store| async move {
        match lease::acquire(store, BOT, TTL).await {
            Ok(lease) => {
                let kept = tokio::time::timeout(TTL * 2, lease.keep_alive()).await;
                assert!(kept.is_err(), "the winner lost its lease: {kept:?}");
                let token = lease.token().to_owned();
                lease.release().await.unwrap();
                Ok(token)
            }
            Err(LeaseError::Held { .. }) => Err(start.elapsed()),
            Err(other) => panic!("unexpected {other}"),
        }
    }))
    .await;
    let (mut winners, mut refused) = (Vec::new(), Vec::new());
    for outcome in outcomes {
        match outcome {
            Ok(token) => winners.push(token),
            Err(took) => refused.push(took),
        }
    }
    (winners, refused)
}

/// 20 processes start at once with one JID, first on an empty table (the INSERT decides),
/// then against the lease of a killed holder (the compare-and-swap UPDATE decides):
/// exactly one wins each time.
async fn race(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    // One connection pool each, like 20 processes.
    let mut stores = Vec::new();
    for _ in 0..20 {
        stores.push(Store::connect(&db.url).await.unwrap());
    }

    let (winners, refused) = contend(&stores).await;
    assert_eq!(
        winners.len(),
        1,
        "{backend:?}: one winner on an empty table"
    );
    assert_eq!(refused.len(), 19, "{backend:?}");
    assert!(
        refused.iter().all(|took| *took < TTL * 2),
        "{backend:?}: refused while the winner renews: {refused:?}"
    );
    assert!(row(&store, BOT).await.is_none(), "released at the end");

    // A holder killed without releasing: its row stays, unrenewed.
    let (dead, _) = acquire_ok(&store, BOT).await;
    let dead_token = dead.token().to_owned();
    drop(dead);
    let (winners, refused) = contend(&stores).await;
    assert_eq!(winners.len(), 1, "{backend:?}: one taker of a dead lease");
    assert_ne!(winners[0], dead_token);
    assert_eq!(refused.len(), 19, "{backend:?}");
    assert!(
        refused.iter().all(|took| *took >= TTL && *took < TTL * 3),
        "{backend:?}: refused when the winner took over: {refused:?}"
    );
    assert!(row(&store, BOT).await.is_none(), "released at the end");
}

#[tokio::test]
async fn sqlite_file() {
    exercise(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres() {
    exercise(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb() {
    exercise(Backend::MariaDb).await;
}

#[tokio::test]
async fn race_sqlite_file() {
    race(Backend::SqliteFile).await;
}

#[tokio::test]
async fn race_postgres() {
    race(Backend::Postgres).await;
}

#[tokio::test]
async fn race_mariadb() {
    race(Backend::MariaDb).await;
}

/// The session state in the row is the last one recorded, whatever order the writes run
/// in: a "down" that runs late (after the reconnect's "up") must not make the bot's rooms
/// unclaimable for good.
#[tokio::test]
async fn session_records_land_in_the_order_they_were_made() {
    for backend in [Backend::SqliteFile, Backend::Postgres, Backend::MariaDb] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        let (lease, _) = acquire_ok(&store, BOT).await;
        let lease = Arc::new(lease);
        let down = lease.record_session(Some("bot.aaaa"), false);
        let up = lease.record_session(Some("bot.bbbb"), true);
        // The later record runs first, the earlier one after it.
        assert!(up.await.unwrap(), "{backend:?}: the up is written");
        assert!(
            !down.await.unwrap(),
            "{backend:?}: the late down is skipped"
        );
        let recorded = row(&store, BOT).await.unwrap();
        assert!(recorded.xmpp_up, "{backend:?}");
        assert_eq!(recorded.xmpp_resource.as_deref(), Some("bot.bbbb"));
        // In order, each lands.
        assert!(lease.record_session(None, false).await.unwrap());
        assert!(!row(&store, BOT).await.unwrap().xmpp_up);
        lease.release().await.unwrap();
    }
}
