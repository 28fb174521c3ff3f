//! Group commit (`Store::apply_many`, `actors::committer::Committer`) against the real
//! databases: changes of several rooms written in one transaction keep the guarantees of
//! one change at a time. A change whose row disagrees is refused alone; a change the
//! database refuses for good fails alone (the batch is rolled back and written one by one);
//! every written change has its event, and on PostgreSQL its notification.

mod common;

use std::time::Duration;

use common::db::{Backend, TestDb};
use futures::future::join_all;
use helpim_bot::actors::committer::Committer;
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};
use helpim_bot::store::{NewRoom, RoomChange, Store, StoreError};
use sea_orm::ConnectionTrait;

const BOT: &str = "bot@localhost";

async fn room(store: &Store, name: &str) -> i64 {
    store
        .create_room(&NewRoom {
            jid: format!("helpim-{name}@conference.localhost"),
            password: format!("pw-{name}"),
            bot_jid: BOT.into(),
            at: helpim_bot::store::now(),
        })
        .await
        .unwrap()
        .id
}

/// A staff member entering room `id` as `nick` (`available → staff_waiting`), as the
/// lifecycle records it; `from` is what the room believes its status is.
fn entered(id: i64, from: RoomStatus, nick: &str) -> RoomChange {
    RoomChange {
        nick: Some(nick.into()),
        role: Some(Role::Staff),
        detail: format!("{nick} entered"),
        set_staff_nick: Some(nick.into()),
        set_staff_jid: Some(format!("{}@localhost", nick.to_lowercase())),
        ..RoomChange::new(
            id,
            EventKind::Entered,
            from,
            RoomStatus::StaffWaiting,
            helpim_bot::store::now(),
        )
    }
}

/// A kick recorded in room `id` (status unchanged): an event the refusing constraint lets
/// through.
fn kicked(id: i64, status: RoomStatus) -> RoomChange {
    RoomChange {
        detail: "Mallory has no claim".into(),
        nick: Some("Mallory".into()),
        ..RoomChange::new(
            id,
            EventKind::Kicked,
            status,
            status,
            helpim_bot::store::now(),
        )
    }
}

/// The kinds of room `id`'s events, in order.
async fn kinds(store: &Store, id: i64) -> Vec<EventKind> {
    store
        .events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect()
}

/// One transaction for five rooms: the four whose rows agree are written with their events
/// (and, on PostgreSQL, announced in order), the one whose row disagrees is refused with
/// what its row holds and writes nothing. A close clears the password and sets the close
/// time and reason; a kick (no status change) leaves `status_changed_at` alone.
async fn a_conflict_is_refused_alone(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let (a, b, c, d, e) = (
        room(&store, "a").await,
        room(&store, "b").await,
        room(&store, "c").await,
        room(&store, "d").await,
        room(&store, "e").await,
    );
    let created_e = store.room(e).await.unwrap().unwrap().status_changed_at;
    let close = RoomChange {
        detail: "shut down".into(),
        close_reason: Some(CloseReason::Shutdown),
        ..RoomChange::new(
            d,
            EventKind::Closed,
            RoomStatus::Available,
            RoomStatus::Closed,
            helpim_bot::store::now(),
        )
    };
    let closed_at = close.at;
    let mut listener = match backend {
        Backend::Postgres => {
            let mut l = sea_orm::sqlx::postgres::PgListener::connect(&db.url)
                .await
                .unwrap();
            l.listen(helpim_bot::store::NOTIFY_CHANNEL).await.unwrap();
            Some(l)
        }
        _ => None,
    };

    let results = store
        .apply_many(&[
            entered(a, RoomStatus::Available, "Alice"),
            // The bot believes b is chatting: somebody else's picture of the row.
            entered(b, RoomStatus::Chatting, "Bob"),
            entered(c, RoomStatus::Available, "Carol"),
            close,
            kicked(e, RoomStatus::Available),
        ])
        .await
        .expect("the transaction commits");

    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(
            results[1],
            Err(StoreError::Conflict {
                room_id,
                expected: RoomStatus::Chatting,
                found: Some(RoomStatus::Available),
            }) if room_id == b
        ),
        "{:?}",
        results[1]
    );
    for result in [&results[2], &results[3], &results[4]] {
        assert!(result.is_ok(), "{result:?}");
    }
    let row = store.room(d).await.unwrap().unwrap();
    assert_eq!(row.status, RoomStatus::Closed);
    assert_eq!(row.password, "");
    assert_eq!(row.closed_at, Some(closed_at));
    assert_eq!(row.status_changed_at, closed_at);
    assert_eq!(row.close_reason, Some(CloseReason::Shutdown));
    let events = store.events(d).await.unwrap();
    assert_eq!(
        events.last().unwrap().close_reason,
        Some(CloseReason::Shutdown)
    );
    let row = store.room(e).await.unwrap().unwrap();
    assert_eq!(row.status, RoomStatus::Available);
    assert_eq!(row.status_changed_at, created_e, "a kick moves no status");
    assert_eq!(row.password, "pw-e");
    assert_eq!(
        kinds(&store, e).await,
        [EventKind::Created, EventKind::Kicked]
    );
    for (id, nick) in [(a, "Alice"), (c, "Carol")] {
        let row = store.room(id).await.unwrap().unwrap();
        assert_eq!(row.status, RoomStatus::StaffWaiting);
        assert_eq!(row.staff_nick.as_deref(), Some(nick));
        assert_eq!(
            kinds(&store, id).await,
            [EventKind::Created, EventKind::Entered]
        );
    }
    let row = store.room(b).await.unwrap().unwrap();
    assert_eq!(row.status, RoomStatus::Available);
    assert_eq!(row.staff_nick, None);
    assert_eq!(kinds(&store, b).await, [EventKind::Created]);

    if let Some(listener) = &mut listener {
        let mut payloads = Vec::new();
        while payloads.len() < 4 {
            let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
                .await
                .unwrap_or_else(|_| panic!("no notification after {payloads:?}"))
                .unwrap();
            payloads.push(n.payload().to_owned());
        }
        // The written changes in the batch's order (the listener started after the rooms
        // were created); nothing for b.
        assert_eq!(
            payloads,
            [
                format!("{a} staff_waiting"),
                format!("{c} staff_waiting"),
                format!("{d} closed"),
                format!("{e} available"),
            ]
        );
        let more = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
        assert!(more.is_err(), "an extra notification: {more:?}");
    }
}

/// Through the committer, changes of many rooms sent at once: one the database refuses for
/// good (a constraint the test adds against `entered` events) fails alone, with an error
/// that is not transient; a conflict fails alone; every other change is written.
async fn a_refused_change_fails_alone(backend: Backend, refuse: &str) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(room(&store, &format!("r{i}")).await);
    }
    store.connection().execute_unprepared(refuse).await.unwrap();
    let committer = Committer::start(store.clone());

    // Rooms 0..10: a kick each (allowed); room 10: a conflict; room 11, last so that it
    // shares its transaction with others: an entry, refused by the constraint.
    let mut changes: Vec<RoomChange> = ids[..10]
        .iter()
        .map(|&id| kicked(id, RoomStatus::Available))
        .collect();
    changes.push(kicked(ids[10], RoomStatus::Chatting));
    changes.push(entered(ids[11], RoomStatus::Available, "Alice"));
    let results = join_all(changes.into_iter().map(|c| committer.apply(c))).await;

    for (i, result) in results[..10].iter().enumerate() {
        assert!(result.is_ok(), "kick in room {i}: {result:?}");
        assert_eq!(
            kinds(&store, ids[i]).await,
            [EventKind::Created, EventKind::Kicked]
        );
    }
    assert!(
        matches!(results[10], Err(StoreError::Conflict { .. })),
        "{:?}",
        results[10]
    );
    match &results[11] {
        Err(error) => assert!(!error.is_transient(), "{error:?}"),
        Ok(()) => panic!("the refused entry was written"),
    }
    assert_eq!(kinds(&store, ids[10]).await, [EventKind::Created]);
    assert_eq!(kinds(&store, ids[11]).await, [EventKind::Created]);
    let row = store.room(ids[11]).await.unwrap().unwrap();
    assert_eq!(row.status, RoomStatus::Available);
}

const SQLITE_REFUSE: &str = "CREATE TRIGGER refuse_entered BEFORE INSERT ON room_event \
     WHEN NEW.kind = 'entered' BEGIN SELECT RAISE(ABORT, 'entries refused by the test'); END";
const CHECK_REFUSE: &str =
    "ALTER TABLE room_event ADD CONSTRAINT refuse_entered CHECK (kind <> 'entered')";

#[tokio::test]
async fn sqlite_a_conflict_in_a_batch_is_refused_alone() {
    a_conflict_is_refused_alone(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres_a_conflict_in_a_batch_is_refused_alone() {
    a_conflict_is_refused_alone(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_conflict_in_a_batch_is_refused_alone() {
    a_conflict_is_refused_alone(Backend::MariaDb).await;
}

#[tokio::test]
async fn sqlite_a_change_refused_for_good_fails_alone() {
    a_refused_change_fails_alone(Backend::SqliteFile, SQLITE_REFUSE).await;
}

#[tokio::test]
async fn postgres_a_change_refused_for_good_fails_alone() {
    a_refused_change_fails_alone(Backend::Postgres, CHECK_REFUSE).await;
}

#[tokio::test]
async fn mariadb_a_change_refused_for_good_fails_alone() {
    a_refused_change_fails_alone(Backend::MariaDb, CHECK_REFUSE).await;
}
