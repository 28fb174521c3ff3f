//! The retention purge on real databases: histories written through the store (as the bot
//! and the web application write them) with old timestamps, purged, and compared.
//!
//! On SQLite, PostgreSQL and MariaDB: the scrub leaves no nick, JID or claimant anywhere in
//! the scrubbed rooms and their events, `stats` gives the same figures before and after,
//! recent and open rooms are untouched, a dry run changes nothing, deletion removes rooms
//! with their events, old room logs go, and a year of rows is purged in small batches while
//! the bot keeps writing. Closing a room clears its password. Then the CLI: its output and
//! exit codes.

mod common;

use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Duration, Utc};
use common::bot::{helpim_bot, stderr};
use common::db::{Backend, TestDb};
use entity::{room, room_event};
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};
use helpim_bot::retention::{Purge, PurgeReport, neutral_text};
use helpim_bot::stats::{self, StatsQuery};
use helpim_bot::store::{NewRoom, Room, RoomChange, RoomEvent, Store};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QueryOrder};

use EventKind as K;
use RoomStatus as S;

const BOT: &str = "bot@localhost";

/// A room written for the test, and every personal string it holds.
struct Chat {
    id: i64,
    personal: Vec<String>,
}

/// A change of `room_id` at `at`, with nothing personal.
fn step(room_id: i64, kind: EventKind, from: S, to: S, at: DateTime<Utc>) -> RoomChange {
    RoomChange {
        detail: format!("{kind}"),
        ..RoomChange::new(room_id, kind, from, to, at)
    }
}

/// Writes a whole chat named `name`: created at `created`, claimed for staff and client
/// (with bound JIDs), both enter, the client changes nick, an extra seat is claimed, an
/// intruder is kicked, the client leaves, and (with `closed`) the room closes `completed`
/// at `closed`; without it, the room stays `chatting`. Every nick, JID and claimant differs
/// per room and is quoted in event details, as the bot's details quote them.
async fn chat(
    store: &Store,
    name: &str,
    created: DateTime<Utc>,
    closed: Option<DateTime<Utc>>,
) -> Chat {
    let room = store
        .create_room(&NewRoom {
            jid: format!("helpim-{name}@conference.localhost"),
            password: format!("secret-{name}"),
            bot_jid: BOT.to_owned(),
            at: created,
        })
        .await
        .unwrap_or_else(|err| panic!("create {name}: {err}"));
    let id = room.id;
    let minute = |n: i64| created + Duration::minutes(n);
    let staff = format!("Staff-{name}");
    let staff_jid = format!("staff-{name}@localhost");
    let staff_by = format!("counsellor-{name}");
    let guest = format!("Guest-{name}");
    let guest2 = format!("Renamed-{name}");
    let guest_jid = format!("guest-{name}@localhost");
    let guest_by = format!("seeker-{name}");
    let extra_by = format!("supervisor-{name}");
    let extra_jid = format!("supervisor-{name}@localhost");
    let intruder = format!("Intruder-{name}");
    let intruder_jid = format!("intruder-{name}@localhost");
    let claim = |model: room::ActiveModel| async move {
        model.update(store.connection()).await.unwrap();
    };
    let apply = |change: RoomChange| async move {
        store
            .apply(&change)
            .await
            .unwrap_or_else(|err| panic!("apply {change:?}: {err}"));
    };

    claim(room::ActiveModel {
        id: Set(id),
        staff_claimed_at: Set(Some(minute(1))),
        staff_claimed_by: Set(Some(staff_by.clone())),
        staff_claimed_jid: Set(Some(staff_jid.clone())),
        ..Default::default()
    })
    .await;
    apply(RoomChange {
        role: Some(Role::Staff),
        detail: format!("claimed by {staff_by} for {staff_jid}"),
        ..step(id, K::StaffClaimed, S::Available, S::Available, minute(1))
    })
    .await;
    apply(RoomChange {
        nick: Some(staff.clone()),
        role: Some(Role::Staff),
        detail: format!("{staff} ({staff_jid}) entered as staff"),
        set_staff_nick: Some(staff.clone()),
        set_staff_jid: Some(staff_jid.clone()),
        ..step(id, K::Entered, S::Available, S::StaffWaiting, minute(2))
    })
    .await;
    claim(room::ActiveModel {
        id: Set(id),
        client_claimed_at: Set(Some(minute(3))),
        client_claimed_by: Set(Some(guest_by.clone())),
        client_claimed_jid: Set(Some(guest_jid.clone())),
        ..Default::default()
    })
    .await;
    apply(RoomChange {
        role: Some(Role::Client),
        detail: format!("claimed by {guest_by}"),
        ..step(
            id,
            K::ClientClaimed,
            S::StaffWaiting,
            S::StaffWaiting,
            minute(3),
        )
    })
    .await;
    apply(RoomChange {
        nick: Some(guest.clone()),
        role: Some(Role::Client),
        detail: format!("{guest} ({guest_jid}) entered as client"),
        set_client_nick: Some(guest.clone()),
        set_client_jid: Some(guest_jid.clone()),
        ..step(id, K::Entered, S::StaffWaiting, S::Chatting, minute(4))
    })
    .await;
    apply(RoomChange {
        nick: Some(guest2.clone()),
        role: Some(Role::Client),
        detail: format!("changed nick from {guest} to {guest2}"),
        set_client_nick: Some(guest2.clone()),
        ..step(id, K::NickChanged, S::Chatting, S::Chatting, minute(5))
    })
    .await;
    claim(room::ActiveModel {
        id: Set(id),
        extra_claimed_at: Set(Some(minute(6))),
        extra_claimed_by: Set(Some(extra_by.clone())),
        extra_claimed_jid: Set(Some(extra_jid.clone())),
        ..Default::default()
    })
    .await;
    apply(RoomChange {
        nick: Some(intruder.clone()),
        role: Some(Role::Intruder),
        detail: format!("kicked {intruder} ({intruder_jid}): no claim"),
        ..step(id, K::Kicked, S::Chatting, S::Chatting, minute(7))
    })
    .await;
    if let Some(closed) = closed {
        apply(RoomChange {
            nick: Some(guest2.clone()),
            role: Some(Role::Client),
            detail: format!("{guest2} left"),
            ..step(
                id,
                K::Left,
                S::Chatting,
                S::OneLeft,
                closed - Duration::minutes(1),
            )
        })
        .await;
        apply(RoomChange {
            nick: Some(staff.clone()),
            role: Some(Role::Staff),
            detail: format!("{staff} left, chat with {guest2} over"),
            close_reason: Some(CloseReason::Completed),
            ..step(id, K::Closed, S::OneLeft, S::Closed, closed)
        })
        .await;
    }
    Chat {
        id,
        personal: vec![
            staff,
            staff_jid,
            staff_by,
            guest,
            guest2,
            guest_jid,
            guest_by,
            extra_by,
            extra_jid,
            intruder,
            intruder_jid,
            format!("secret-{name}"),
        ],
    }
}

/// A room and its events as stored, raw (every column), for comparing and grepping.
async fn raw(store: &Store, id: i64) -> (room::Model, Vec<room_event::Model>) {
    let row = room::Entity::find_by_id(id)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("room {id} is gone"));
    let events = room_event::Entity::find()
        .order_by_asc(room_event::Column::Id)
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.room_id == id)
        .collect();
    (row, events)
}

/// Every room and event in the database, validated, for "nothing changed".
async fn everything(store: &Store) -> (Vec<room::Model>, Vec<room_event::Model>) {
    let db = store.connection();
    (
        room::Entity::find()
            .order_by_asc(room::Column::Id)
            .all(db)
            .await
            .unwrap(),
        room_event::Entity::find()
            .order_by_asc(room_event::Column::Id)
            .all(db)
            .await
            .unwrap(),
    )
}

/// The purge under test: 30 days of personal data, rows kept forever unless `delete_days`.
fn purge(delete_days: Option<u32>, room_dir: Option<&Path>, batch_rooms: u64) -> Purge {
    Purge {
        personal_data_days: 30,
        delete_days,
        room_dir: room_dir.map(Path::to_owned),
        batch_rooms,
    }
}

/// Sets the modification time of a new file `name` in `dir` to `at`.
fn log_file(dir: &Path, name: &str, at: DateTime<Utc>) {
    let path = dir.join(name);
    std::fs::write(
        &path,
        "2026-11-01T10:00:00.000Z INFO  room=x Guest entered\n",
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::from(at))
        .unwrap();
}

/// The whole story on one backend.
async fn scrub_delete_and_logs(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let now = helpim_bot::store::now();
    let days = |n: i64| now - Duration::days(n);

    // A year-old chat, one of 40 days, one of 5 days, and one still going (created long ago).
    let ancient = chat(
        &store,
        "ancient",
        days(400),
        Some(days(400) + Duration::hours(1)),
    )
    .await;
    let old = chat(&store, "old", days(40), Some(days(40) + Duration::hours(1))).await;
    let recent = chat(
        &store,
        "recent",
        days(5),
        Some(days(5) + Duration::hours(1)),
    )
    .await;
    let going = chat(&store, "going", days(90), None).await;
    let fresh = store
        .create_room(&NewRoom {
            jid: "helpim-fresh@conference.localhost".to_owned(),
            password: "secret-fresh".to_owned(),
            bot_jid: BOT.to_owned(),
            at: days(60),
        })
        .await
        .unwrap();

    // No secret outlives its room: closing cleared the password, in the same transaction.
    for closed in [&ancient, &old, &recent] {
        let row = store.room(closed.id).await.unwrap().unwrap();
        assert_eq!(row.status, S::Closed);
        assert_eq!(row.password, "");
        assert_eq!(row.password(), None);
    }
    let open = store.room(going.id).await.unwrap().unwrap();
    assert_eq!(open.password(), Some("secret-going"));
    assert_eq!(fresh.password(), Some("secret-fresh"));

    let logs = tempfile::tempdir().unwrap();
    log_file(logs.path(), "helpim-old@conference.localhost.log", days(31));
    log_file(
        logs.path(),
        "helpim-recent@conference.localhost.log",
        days(4),
    );
    log_file(logs.path(), "README.txt", days(365));
    std::fs::create_dir(logs.path().join("archive.log")).unwrap();

    let stats_before = stats::load(&store, &StatsQuery::default()).await.unwrap();
    let since = StatsQuery {
        since: Some(days(45)),
    };
    let since_before = stats::load(&store, &since).await.unwrap();
    assert_eq!(stats_before.rooms_created, 5);
    assert_eq!(stats_before.rooms_closed, 3);
    let untouched = [
        raw(&store, recent.id).await,
        raw(&store, going.id).await,
        raw(&store, fresh.id).await,
    ];

    // Every personal string is there before the scrub (but the password, cleared at close),
    // so that its absence afterwards means something.
    for written in [&ancient, &old] {
        let (row, events) = raw(&store, written.id).await;
        let dump = format!("{row:?}\n{events:#?}");
        for personal in written
            .personal
            .iter()
            .filter(|p| !p.starts_with("secret-"))
        {
            assert!(dump.contains(personal.as_str()), "{personal:?} not written");
        }
    }

    // Dry run: the numbers of the purge, and nothing changed anywhere.
    let scrub_only = purge(None, Some(logs.path()), 1);
    let before = everything(&store).await;
    let plan = scrub_only.plan(&store, now).await.unwrap();
    assert_eq!(everything(&store).await, before, "the dry run changed rows");
    assert!(
        logs.path()
            .join("helpim-old@conference.localhost.log")
            .exists()
    );
    let events_per_closed_chat = raw(&store, old.id).await.1.len() as u64;
    assert_eq!(events_per_closed_chat, 9);
    assert_eq!(
        plan,
        PurgeReport {
            dry_run: true,
            scrub_before: days(30),
            delete_before: None,
            scrubbed_rooms: 2,
            scrubbed_events: 2 * events_per_closed_chat,
            deleted_rooms: 0,
            deleted_events: 0,
            deleted_logs: 1,
            batches: 0,
        }
    );

    // The scrub does what the plan said, one room per batch here.
    let report = scrub_only.run(&store, now).await.unwrap();
    assert_eq!(
        report,
        PurgeReport {
            dry_run: false,
            batches: 2,
            ..plan.clone()
        }
    );
    for scrubbed in [&ancient, &old] {
        let (row, events) = raw(&store, scrubbed.id).await;
        let dump = format!("{row:?}\n{events:#?}");
        for personal in &scrubbed.personal {
            assert!(
                !dump.contains(personal.as_str()),
                "{personal:?} survived the scrub:\n{dump}"
            );
        }
        assert!(row.personal_data_removed_at.is_some());
        assert_eq!(
            (
                row.staff_nick,
                row.client_nick,
                row.staff_jid,
                row.client_jid
            ),
            (None, None, None, None)
        );
        // The timeline stays: statuses, timestamps, reasons, roles.
        assert_eq!(row.status, "closed");
        assert_eq!(row.close_reason.as_deref(), Some("completed"));
        assert!(row.staff_claimed_at.is_some() && row.client_claimed_at.is_some());
        let typed: Vec<RoomEvent> = store.events(scrubbed.id).await.unwrap();
        let kinds: Vec<_> = typed.iter().map(|e| (e.kind, e.role)).collect();
        assert_eq!(
            kinds,
            [
                (K::Created, None),
                (K::StaffClaimed, Some(Role::Staff)),
                (K::Entered, Some(Role::Staff)),
                (K::ClientClaimed, Some(Role::Client)),
                (K::Entered, Some(Role::Client)),
                (K::NickChanged, Some(Role::Client)),
                (K::Kicked, Some(Role::Intruder)),
                (K::Left, Some(Role::Client)),
                (K::Closed, Some(Role::Staff)),
            ]
        );
        for event in &typed {
            assert_eq!(event.nick, None);
            assert_eq!(event.detail, neutral_text(event.kind));
        }
    }
    assert_eq!(
        stats::load(&store, &StatsQuery::default()).await.unwrap(),
        stats_before,
        "the scrub changed the statistics"
    );
    assert_eq!(stats::load(&store, &since).await.unwrap(), since_before);
    for (id, expected) in [recent.id, going.id, fresh.id].into_iter().zip(&untouched) {
        assert_eq!(&raw(&store, id).await, expected, "room {id} was touched");
    }
    // Logs: only the old room log went; other files and directories stay.
    let mut left: Vec<_> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "README.txt",
            "archive.log",
            "helpim-recent@conference.localhost.log"
        ]
    );

    // Daily runs find nothing new.
    let again = scrub_only.run(&store, now).await.unwrap();
    assert_eq!(
        (
            again.scrubbed_rooms,
            again.scrubbed_events,
            again.deleted_logs,
            again.batches
        ),
        (0, 0, 0, 0)
    );

    // Deletion after a year: the plan, then the rows and their events go; nothing else.
    let with_delete = purge(Some(365), Some(logs.path()), 50);
    let before = everything(&store).await;
    let plan = with_delete.plan(&store, now).await.unwrap();
    assert_eq!(everything(&store).await, before);
    assert_eq!(
        (plan.deleted_rooms, plan.deleted_events, plan.scrubbed_rooms),
        (1, events_per_closed_chat, 0)
    );
    let report = with_delete.run(&store, now).await.unwrap();
    assert_eq!(
        report,
        PurgeReport {
            dry_run: false,
            batches: 1,
            ..plan
        }
    );
    assert_eq!(store.room(ancient.id).await.unwrap(), None);
    assert_eq!(store.events(ancient.id).await.unwrap(), []);
    assert!(store.room(old.id).await.unwrap().is_some());
    let (rooms, events) = everything(&store).await;
    assert_eq!(rooms.len(), 4);
    assert_eq!(
        events.len(),
        before.1.len() - events_per_closed_chat as usize
    );
}

#[tokio::test]
async fn sqlite_scrub_delete_and_logs() {
    scrub_delete_and_logs(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_scrub_delete_and_logs() {
    scrub_delete_and_logs(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_scrub_delete_and_logs() {
    scrub_delete_and_logs(Backend::MariaDb).await;
}

/// A year of closed rooms (a few thousand, each with its events) written in bulk, as a
/// helpline's database looks after a year: one room every three hours.
const YEAR_ROOMS: usize = 3_000;
/// Closed in the last 30 days: to be left alone.
const RECENT_ROOMS: usize = 20;
/// Small batches, so that the purge takes many.
const BATCH: u64 = 100;

/// Writes [`YEAR_ROOMS`] rooms closed between 395 and 30 days ago and [`RECENT_ROOMS`]
/// closed in the last 30 days, each with a nick-bearing history of 4 events (3 for a room
/// whose client never came).
async fn write_a_year(store: &Store, now: DateTime<Utc>) -> u64 {
    let db = store.connection();
    let spacing = Duration::days(365) / YEAR_ROOMS as i32;
    let closings: Vec<DateTime<Utc>> = (0..YEAR_ROOMS)
        .map(|i| now - Duration::days(31) - spacing * i as i32)
        .chain((0..RECENT_ROOMS).map(|i| now - Duration::days(1) - Duration::hours(i as i64)))
        .collect();
    for (chunk_index, chunk) in closings.chunks(500).enumerate() {
        let rows = chunk.iter().enumerate().map(|(i, &closed)| {
            let n = chunk_index * 500 + i;
            let created = closed - Duration::minutes(30);
            let chatted = n % 4 != 0;
            room::ActiveModel {
                jid: Set(format!("helpim-y{n}@conference.localhost")),
                password: Set(String::new()),
                status: Set("closed".to_owned()),
                bot_jid: Set(BOT.to_owned()),
                staff_nick: Set(Some(format!("Staff-y{n}"))),
                client_nick: Set(chatted.then(|| format!("Guest-y{n}"))),
                staff_claimed_at: Set(Some(created)),
                staff_claimed_by: Set(Some(format!("counsellor-y{n}"))),
                client_claimed_at: Set(chatted.then_some(created)),
                client_claimed_by: Set(chatted.then(|| format!("seeker-y{n}"))),
                staff_jid: Set(Some(format!("staff-y{n}@localhost"))),
                client_jid: Set(chatted.then(|| format!("guest-y{n}@localhost"))),
                created_at: Set(created),
                status_changed_at: Set(closed),
                closed_at: Set(Some(closed)),
                close_reason: Set(Some(if chatted { "completed" } else { "no_client" }.into())),
                destroyed_at: Set(Some(closed)),
                ..Default::default()
            }
        });
        room::Entity::insert_many(rows).exec(db).await.unwrap();
    }
    let rooms = room::Entity::find()
        .order_by_asc(room::Column::Id)
        .all(db)
        .await
        .unwrap();
    let mut events = Vec::new();
    for row in &rooms {
        let event = |kind: EventKind, from: Option<S>, to: S, at, nick: Option<&String>| {
            room_event::ActiveModel {
                room_id: Set(row.id),
                kind: Set(kind.as_str().to_owned()),
                from_status: Set(from.map(|s| s.as_str().to_owned())),
                to_status: Set(to.as_str().to_owned()),
                at: Set(at),
                nick: Set(nick.cloned()),
                role: Set(match kind {
                    K::Created => None,
                    K::Entered if from == Some(S::StaffWaiting) => Some("client".to_owned()),
                    _ => Some("staff".to_owned()),
                }),
                detail: Set(format!("{kind}: {}", nick.map_or("-", |n| n.as_str()))),
                close_reason: Set((kind == K::Closed)
                    .then(|| row.close_reason.clone())
                    .flatten()),
                ..Default::default()
            }
        };
        let closed = row.closed_at.unwrap();
        events.push(event(K::Created, None, S::Available, row.created_at, None));
        let staff = row.staff_nick.as_ref();
        let entered = row.created_at + Duration::minutes(1);
        events.push(event(
            K::Entered,
            Some(S::Available),
            S::StaffWaiting,
            entered,
            staff,
        ));
        let last = match &row.client_nick {
            Some(client) => {
                let came = entered + Duration::seconds(45);
                events.push(event(
                    K::Entered,
                    Some(S::StaffWaiting),
                    S::Chatting,
                    came,
                    Some(client),
                ));
                S::Chatting
            }
            None => S::StaffWaiting,
        };
        events.push(event(K::Closed, Some(last), S::Closed, closed, staff));
    }
    let count = events.len() as u64;
    for chunk in events.chunks(1_000) {
        room_event::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .unwrap();
    }
    count
}

/// A year of rows is purged in many short batches while the bot keeps writing: every batch
/// is bounded, the bot's writes go through between batches, the figures stay the same and
/// no nick is left in any scrubbed room.
async fn a_year_in_batches(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let now = helpim_bot::store::now();
    let events = write_a_year(&store, now).await;
    assert_eq!(events, 3 * 750 + 4 * 2_250 + 4 * 15 + 3 * 5);
    // A room the bot is busy with meanwhile.
    let live = store
        .create_room(&NewRoom {
            jid: "helpim-live@conference.localhost".to_owned(),
            password: "secret-live".to_owned(),
            bot_jid: BOT.to_owned(),
            at: now,
        })
        .await
        .unwrap();
    let stats_before = stats::load(&store, &StatsQuery::default()).await.unwrap();
    assert_eq!(
        stats_before.rooms_closed,
        (YEAR_ROOMS + RECENT_ROOMS) as u64
    );

    let purge = purge(None, None, BATCH);
    let plan = purge.plan(&store, now).await.unwrap();
    assert_eq!(plan.scrubbed_rooms, YEAR_ROOMS as u64);

    let done = std::sync::atomic::AtomicBool::new(false);
    let purging = async {
        let report = purge.run(&store, now).await.unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        report
    };
    let writing = async {
        let mut writes = 0_u32;
        let mut slowest = std::time::Duration::ZERO;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let started = std::time::Instant::now();
            store
                .apply(&RoomChange {
                    nick: Some("Staff-live".to_owned()),
                    ..step(live.id, K::Reconciled, S::Available, S::Available, now)
                })
                .await
                .unwrap();
            slowest = slowest.max(started.elapsed());
            writes += 1;
        }
        (writes, slowest)
    };
    let (report, (writes, slowest)) = tokio::join!(purging, writing);
    eprintln!(
        "{backend:?}: {} rooms, {} events in {} batches; {writes} bot writes meanwhile, \
         slowest {slowest:?}",
        report.scrubbed_rooms, report.scrubbed_events, report.batches
    );
    assert_eq!(report.scrubbed_rooms, YEAR_ROOMS as u64);
    assert_eq!(report.scrubbed_events, plan.scrubbed_events);
    assert_eq!(report.batches, YEAR_ROOMS as u64 / BATCH);
    assert!(
        writes >= 3,
        "the bot's writes must get through between batches, got {writes} during {} batches",
        report.batches
    );

    assert_eq!(
        stats::load(&store, &StatsQuery::default()).await.unwrap(),
        stats_before
    );
    let (rooms, events) = everything(&store).await;
    let scrubbed: std::collections::HashSet<i64> = rooms
        .iter()
        .filter(|row| row.personal_data_removed_at.is_some())
        .map(|row| row.id)
        .collect();
    assert_eq!(scrubbed.len(), YEAR_ROOMS);
    for row in rooms.iter().filter(|row| scrubbed.contains(&row.id)) {
        assert!(row.closed_at.unwrap() < now - Duration::days(30));
        assert_eq!((&row.staff_nick, &row.client_nick), (&None, &None));
        assert_eq!((&row.staff_jid, &row.client_claimed_by), (&None, &None));
    }
    for event in events.iter().filter(|e| scrubbed.contains(&e.room_id)) {
        assert_eq!(event.nick, None);
        assert!(!event.detail.contains("-y"), "{event:?}");
    }
    let kept = rooms.iter().filter(|row| row.staff_nick.is_some()).count();
    assert_eq!(kept, RECENT_ROOMS, "recent rooms keep their nicks");
}

#[tokio::test]
async fn sqlite_a_year_in_batches() {
    a_year_in_batches(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_a_year_in_batches() {
    a_year_in_batches(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_year_in_batches() {
    a_year_in_batches(Backend::MariaDb).await;
}

/// Rooms closed before this version kept their passwords: the migration clears them, and
/// leaves open rooms' alone. Up, down and up again on every backend.
async fn migration_clears_closed_passwords(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let now = helpim_bot::store::now();
    let closed = chat(
        &store,
        "before",
        now - Duration::days(2),
        Some(now - Duration::days(1)),
    )
    .await;
    let open = chat(&store, "open", now - Duration::days(2), None).await;
    // As an older version left it.
    room::ActiveModel {
        id: Set(closed.id),
        password: Set("secret-before".to_owned()),
        ..Default::default()
    }
    .update(store.connection())
    .await
    .unwrap();
    // Down past the purge's column (the migrations after it, then it), then up again.
    let after_it = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name().starts_with("m20261202_000002"))
        .expect("the purge's migration") as u32;
    Migrator::down(store.connection(), Some(after_it + 1))
        .await
        .unwrap();
    Migrator::up(store.connection(), None).await.unwrap();
    let row: Room = store.room(closed.id).await.unwrap().unwrap();
    assert_eq!(row.password(), None);
    assert_eq!(row.personal_data_removed_at, None);
    let row = store.room(open.id).await.unwrap().unwrap();
    assert_eq!(row.password(), Some("secret-open"));
}

#[tokio::test]
async fn sqlite_migration_clears_closed_passwords() {
    migration_clears_closed_passwords(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_migration_clears_closed_passwords() {
    migration_clears_closed_passwords(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_migration_clears_closed_passwords() {
    migration_clears_closed_passwords(Backend::MariaDb).await;
}

/// A config for the CLI: a SQLite file and a room log directory in `dir`, plus `extra`.
fn cli_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[xmpp]\njid = \"helpim-bot@localhost\"\npassword = \"pw\"\nhost = \"127.0.0.1\"\n\
             tls = \"none\"\n[muc]\nservice = \"conference.localhost\"\n\
             [database]\nurl = \"sqlite://{dir}/bot.sqlite\"\n\
             [logging]\nroom_dir = \"{dir}/rooms\"\n{extra}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `helpim-bot purge [--dry-run]` as an operator runs it: the numbers, nothing changed by
/// the dry run, the purge done by the real run, exit 0; exit 2 for a bad `[retention]` or
/// command line, exit 1 with a hint when the dry run meets an unmigrated database.
#[tokio::test]
async fn the_purge_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), "[retention]\npersonal_data_days = 30");
    let config = config.to_str().unwrap();

    // Before any migration, the dry run refuses (it changes nothing, the schema included).
    let output = helpim_bot(&["purge", "--dry-run", "--config", config]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("helpim-bot migrate"),
        "{}",
        stderr(&output)
    );

    let url = format!("sqlite://{}/bot.sqlite", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let now = helpim_bot::store::now();
    let old = chat(
        &store,
        "old",
        now - Duration::days(41),
        Some(now - Duration::days(40)),
    )
    .await;
    let new = chat(
        &store,
        "new",
        now - Duration::days(2),
        Some(now - Duration::days(1)),
    )
    .await;
    let rooms = dir.path().join("rooms");
    log_file(
        &rooms,
        "helpim-old@conference.localhost.log",
        now - Duration::days(40),
    );
    log_file(&rooms, "helpim-new@conference.localhost.log", now);

    let before = everything(&store).await;
    let output = helpim_bot(&["purge", "--dry-run", "--config", config]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "dry run: nothing was changed",
        "scrub: 1 rooms, 9 events to scrub (closed before ",
        "delete: 0 rooms, 0 events (never: retention.delete_days is not set)",
        "room logs: 1 files to delete",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(
        everything(&store).await,
        before,
        "the dry run changed the database"
    );
    assert!(rooms.join("helpim-old@conference.localhost.log").exists());

    let output = helpim_bot(&["purge", "--config", config]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "scrub: 1 rooms, 9 events scrubbed (closed before ",
        "room logs: 1 files deleted",
        "batches: 1",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(!text.contains("dry run"), "{text}");
    let (row, _) = raw(&store, old.id).await;
    assert!(row.personal_data_removed_at.is_some());
    assert_eq!(row.staff_nick, None);
    let (row, _) = raw(&store, new.id).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Staff-new"));
    assert!(!rooms.join("helpim-old@conference.localhost.log").exists());
    assert!(rooms.join("helpim-new@conference.localhost.log").exists());

    // No password is shown for a closed room: it was cleared when the room closed.
    let output = helpim_bot(&["rooms", "--passwords", "--config", config]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.matches(" password=-").count(), 2, "{text}");
    assert!(!text.contains("secret-"), "{text}");

    // Nothing left to do is no failure.
    let output = helpim_bot(&["purge", "--config", config]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("scrub: 0 rooms, 0 events"),
        "{}",
        stdout(&output)
    );

    // A bad [retention] is a configuration error: exit 2, one line naming the key.
    let bad = cli_config(dir.path(), "[retention]\npersonal_data_days = 0");
    let output = helpim_bot(&["purge", "--dry-run", "--config", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("retention.personal_data_days"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let output = helpim_bot(&["purge", "--dry-runn"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Two purges at once (two bots sharing a database, or the CLI beside the bot) share the
/// work: every room is scrubbed exactly once, and the numbers add up to the plan's.
async fn two_purges_at_once(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let now = helpim_bot::store::now();
    write_a_year(&store, now).await;
    let first = purge(None, None, BATCH);
    let second = purge(None, None, BATCH / 2);
    let plan = first.plan(&store, now).await.unwrap();
    let (a, b) = tokio::join!(first.run(&store, now), second.run(&store, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!(
        "{backend:?}: {} + {} rooms in {} + {} batches",
        a.scrubbed_rooms, b.scrubbed_rooms, a.batches, b.batches
    );
    assert_eq!(a.scrubbed_rooms + b.scrubbed_rooms, plan.scrubbed_rooms);
    assert_eq!(a.scrubbed_events + b.scrubbed_events, plan.scrubbed_events);
    let (rooms, _) = everything(&store).await;
    assert_eq!(
        rooms
            .iter()
            .filter(|row| row.personal_data_removed_at.is_some())
            .count(),
        YEAR_ROOMS
    );
}

#[tokio::test]
async fn sqlite_two_purges_at_once() {
    two_purges_at_once(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_two_purges_at_once() {
    two_purges_at_once(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_two_purges_at_once() {
    two_purges_at_once(Backend::MariaDb).await;
}

/// Bad rows never keep personal data (issue 21): rows the bot cannot read are scrubbed in SQL
/// once they are past the cut-off by their creation, whatever their status says. Before
/// issue 21 the purge took only `closed` rows with a closing time, so a status outside the
/// contract, or `closed` without a time, kept nicks, JIDs and claimants for ever.
async fn bad_rows_are_scrubbed(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let now = helpim_bot::store::now();
    let days = |n: i64| now - Duration::days(n);
    let spoil = |id: i64, set: &str| {
        let statement = format!("UPDATE room SET {set} WHERE id = {id}");
        let store = store.clone();
        async move {
            use sea_orm::ConnectionTrait;
            store
                .connection()
                .execute_unprepared(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    };
    // Closed long ago, then its status spelt otherwise by hand.
    let renamed = chat(
        &store,
        "renamed",
        days(90),
        Some(days(90) + Duration::hours(1)),
    )
    .await;
    spoil(renamed.id, "status = 'Closed'").await;
    // Left open long ago with a status the bot does not know.
    let unknown = chat(&store, "unknown", days(90), None).await;
    spoil(unknown.id, "status = 'talking'").await;
    // `closed` without a closing time.
    let untimed = chat(
        &store,
        "untimed",
        days(90),
        Some(days(90) + Duration::hours(1)),
    )
    .await;
    spoil(untimed.id, "closed_at = NULL").await;
    // Bad, but recent: kept, like any recent room.
    let recent = chat(&store, "recent", days(2), None).await;
    spoil(recent.id, "status = 'talking'").await;

    let report = purge(None, None, 10)
        .run(&store, now)
        .await
        .expect("the purge runs");
    assert_eq!(report.scrubbed_rooms, 3, "{report:?}");
    for chat in [&renamed, &unknown, &untimed] {
        let (row, events) = raw(&store, chat.id).await;
        let text = format!("{row:?} {events:?}");
        for personal in &chat.personal {
            assert!(!text.contains(personal.as_str()), "{personal} kept: {text}");
        }
    }
    let (row, _) = raw(&store, recent.id).await;
    assert!(row.staff_nick.is_some(), "a recent room is kept: {row:?}");
}

#[tokio::test]
async fn sqlite_bad_rows_are_scrubbed() {
    bad_rows_are_scrubbed(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_bad_rows_are_scrubbed() {
    bad_rows_are_scrubbed(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_bad_rows_are_scrubbed() {
    bad_rows_are_scrubbed(Backend::MariaDb).await;
}
