mod common;

// A web application in a process of its own reads and claims on the bot's SQLite file while
// the bot writes transitions: it must never see "database is locked".
//
// The web application is a small Python program using Python's own `sqlite3` module (a
// different SQLite library instance, a different process, its own file locks): what a
// helpline's Django or Flask application does. It follows docs/webapp-contract.md: a busy
// timeout on its connection, `BEGIN IMMEDIATE` around a claim, the contract's claim
// statements verbatim (taken from `helpim_bot::claims`), and reads both as single
// statements and as a read transaction spanning several statements (one consistent page).
// A second worker of the web application streams the event history to a slow client (a CSV
// download): its read stays open for longer than any busy timeout. In SQLite's default
// rollback-journal mode that reader locks every writer out (the bot's transitions and the
// web application's own claims both fail with "database is locked"); in WAL mode readers
// and the writer do not exclude each other.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::db::{Backend, TestDb};
use helpim_bot::claims::{SQLITE_CLAIM_CLIENT, SQLITE_CLAIM_EVENT, SQLITE_CLAIM_STAFF};
use helpim_bot::model::{EventKind, RoomStatus};
use helpim_bot::store::{NewRoom, RoomChange, Store};

const BOT: &str = "bot@localhost";

/// Rooms the bot takes through four transitions each: 200 transitions in all.
const ROOMS: usize = 50;

/// The web application: reads and claims in a loop until a line arrives on stdin, then
/// prints one JSON line with what it did and every error it met.
const WEBAPP: &str = r#"
import json, sqlite3, sys, threading
from datetime import datetime, timezone

path, sql_file = sys.argv[1], sys.argv[2]
sql = json.load(open(sql_file))
# What the contract asks of the web application: a busy timeout on every connection (Python's
# `timeout`, set again as the PRAGMA to be explicit) and explicit transactions.
conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
conn.execute("PRAGMA busy_timeout = 5000")

stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

done = {"exports": 0, "reads": 0, "read_txns": 0, "staff_claims": 0, "client_claims": 0, "empty_claims": 0}
errors = []

def export():
    # The slow download: one row every 50 ms, the statement (and so its read) open all along.
    export_conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    export_conn.execute("PRAGMA busy_timeout = 5000")
    while not stop.is_set():
        try:
            cursor = export_conn.execute("SELECT id, room_id, kind, at FROM room_event ORDER BY id")
            while not stop.is_set() and cursor.fetchone() is not None:
                stop.wait(0.05)
            cursor.close()
            done["exports"] += 1
        except sqlite3.Error as err:
            errors.append("export: " + str(err))

def now():
    return datetime.now(timezone.utc).isoformat()

def claim(statement, kind, status, role):
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Unbound claims, of any live bot: the heartbeat cutoff is the empty text, earlier
        # than any timestamp (the bot's heartbeat is written by the test as live).
        row = conn.execute(statement, (now(), "webapp", None, "")).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            done["empty_claims"] += 1
            return
        conn.execute(sql["event"], (row[0], kind, status, now(), role, "claimed by webapp"))
        conn.execute("COMMIT")
        done[role + "_claims"] += 1
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

exporter = threading.Thread(target=export)
exporter.start()
print("ready", flush=True)
while not stop.is_set():
    try:
        conn.execute("SELECT id, jid, status FROM room ORDER BY id").fetchall()
        conn.execute("SELECT COUNT(*) FROM room_event").fetchone()
        done["reads"] += 2
        # One consistent page: several statements in one read transaction.
        conn.execute("BEGIN")
        conn.execute("SELECT status, COUNT(*) FROM room GROUP BY status").fetchall()
        conn.execute("SELECT room_id, kind, at FROM room_event ORDER BY id DESC LIMIT 20").fetchall()
        conn.execute("COMMIT")
        done["read_txns"] += 1
        claim(sql["staff"], "staff_claimed", "available", "staff")
        claim(sql["client"], "client_claimed", "staff_waiting", "client")
    except sqlite3.Error as err:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        errors.append(str(err))
exporter.join()
print(json.dumps({"done": done, "errors": errors}), flush=True)
"#;

/// The change taking room `room_id` from `from` to `to`.
fn change(room_id: i64, kind: EventKind, from: RoomStatus, to: RoomStatus) -> RoomChange {
    RoomChange {
        detail: format!("{kind} in the concurrency test"),
        close_reason: (to == RoomStatus::Closed)
            .then_some(helpim_bot::model::CloseReason::Completed),
        ..RoomChange::new(room_id, kind, from, to, Utc::now())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webapp_process_reading_and_claiming_never_meets_a_locked_database() {
    let db = TestDb::new(Backend::SqliteFile);
    let store: Store = db.store().await;
    common::db::live_bot(&store, BOT).await;
    let path = db
        .url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .expect("a SQLite file URL")
        .to_owned();
    let dir = std::path::Path::new(&path).parent().unwrap().to_owned();

    let mut ids = Vec::new();
    for n in 0..ROOMS {
        let room = store
            .create_room(&NewRoom {
                jid: format!("helpim-conc{n}@conference.localhost"),
                password: format!("pw-{n}"),
                bot_jid: BOT.to_owned(),
                at: Utc::now(),
            })
            .await
            .expect("create a room");
        ids.push(room.id);
    }

    let script = dir.join("webapp.py");
    std::fs::write(&script, WEBAPP).unwrap();
    let sql_file = dir.join("claim-sql.json");
    std::fs::write(
        &sql_file,
        serde_json::json!({
            "staff": SQLITE_CLAIM_STAFF,
            "client": SQLITE_CLAIM_CLIENT,
            "event": SQLITE_CLAIM_EVENT,
        })
        .to_string(),
    )
    .unwrap();
    let mut webapp = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(&sql_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3 (apt-get install -y python3)");
    let mut out = BufReader::new(webapp.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the web application did not start");

    // The bot's side: 200 transitions, each room one after another through its life, as
    // fast as the store takes them.
    use RoomStatus as S;
    let steps = [
        (EventKind::Entered, S::Available, S::StaffWaiting),
        (EventKind::Entered, S::StaffWaiting, S::Chatting),
        (EventKind::Left, S::Chatting, S::OneLeft),
        (EventKind::Closed, S::OneLeft, S::Closed),
    ];
    let started = Instant::now();
    let mut applied = 0;
    let mut bot_errors = Vec::new();
    for (kind, from, to) in steps {
        for &id in &ids {
            match store.apply(&change(id, kind, from, to)).await {
                Ok(()) => applied += 1,
                Err(err) => bot_errors.push(format!("{err:?}")),
            }
            if bot_errors.len() >= 3 {
                break; // enough to fail, without waiting out the rest
            }
        }
    }
    let bot_took = started.elapsed();

    writeln!(webapp.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while webapp.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the web application did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|err| panic!("bad report from the web application ({err}): {line}"));
    eprintln!("bot: {applied} transitions in {bot_took:?}; web application: {report}");
    assert!(
        bot_errors.is_empty(),
        "{} of the bot's transitions failed, e.g. {:?}",
        bot_errors.len(),
        bot_errors.first()
    );
    assert_eq!(applied, 4 * ROOMS);
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.is_empty(),
        "the web application met {} errors, e.g. {:?}",
        errors.len(),
        errors.first()
    );
    let done = &report["done"];
    assert!(
        done["reads"].as_u64().unwrap() > 0,
        "the web application never read"
    );
    assert!(
        done["staff_claims"].as_u64().unwrap() + done["empty_claims"].as_u64().unwrap() > 0,
        "the web application never claimed"
    );
}

/// The file is in WAL mode with `synchronous = NORMAL` on the bot's connection, and an
/// in-memory database still connects and migrates.
#[tokio::test]
async fn a_sqlite_file_is_in_wal_mode_and_memory_still_works() {
    use sea_orm::{ConnectionTrait, Statement};

    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let pragma = |name: &'static str| {
        let store = store.clone();
        async move {
            let conn = store.connection();
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("PRAGMA {name}"),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))
                .unwrap()
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("synchronous").await, "1", "1 is NORMAL");
    assert_eq!(pragma("busy_timeout").await, "5000");

    let memory = TestDb::new(Backend::SqliteMemory);
    let store = memory.store().await;
    assert_eq!(store.pool_counts(BOT).await.unwrap().open, 0);
}
