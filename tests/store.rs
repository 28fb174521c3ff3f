mod common;

// The store against real databases: the same scenario on every supported backend.

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::db::{Backend, TestDb};
use entity::{room, room_event};
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};
use helpim_bot::store::{
    NewRoom, PoolCounts, Room, RoomChange, RoomEvent, RoomFilter, Store, StoreError,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, PaginatorTrait};

use EventKind as K;
use RoomStatus as S;

const BOT: &str = "bot@localhost";
const OTHER_BOT: &str = "other-bot@localhost";

/// The instant `step` seconds into the test, with distinct non-zero microseconds: what the
/// store must give back.
fn at(step: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
        + Duration::seconds(step)
        + Duration::microseconds(123_456 + step)
}

/// [`at`] with 789 extra nanoseconds, which the store must drop: what callers pass in.
fn at_ns(step: i64) -> DateTime<Utc> {
    at(step) + Duration::nanoseconds(789)
}

fn new_room(name: &str, bot_jid: &str, step: i64) -> NewRoom {
    NewRoom {
        jid: format!("helpim-{name}@conference.localhost"),
        password: format!("pw-{name}"),
        bot_jid: bot_jid.to_owned(),
        at: at_ns(step),
    }
}

/// A change with no nick, role, nick updates or close reason.
fn change(
    room_id: i64,
    kind: EventKind,
    from: RoomStatus,
    to: RoomStatus,
    step: i64,
) -> RoomChange {
    RoomChange {
        detail: format!("{kind} at step {step}"),
        ..RoomChange::new(room_id, kind, from, to, at_ns(step))
    }
}

/// The event a successful `change` must have recorded.
fn event_of(id: i64, change: &RoomChange) -> RoomEvent {
    RoomEvent {
        id,
        room_id: change.room_id,
        kind: change.kind,
        from_status: Some(change.from),
        to_status: change.to,
        at: change.at - Duration::nanoseconds(789),
        nick: change.nick.clone(),
        role: change.role,
        detail: change.detail.clone(),
        close_reason: change
            .close_reason
            .filter(|_| change.from != change.to && change.to == RoomStatus::Closed),
    }
}

async fn ids_of(store: &Store, status: Option<RoomStatus>, bot_jid: Option<&str>) -> Vec<i64> {
    let filter = RoomFilter {
        status,
        bot_jid: bot_jid.map(str::to_owned),
    };
    let rooms = store.rooms(&filter).await.unwrap();
    rooms.iter().map(|room| room.id).collect()
}

async fn exercise(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;
    store.ping().await.unwrap();

    // Migrations go down (the tables are gone) and up again.
    store.migrate_down().await.unwrap();
    assert!(
        matches!(
            store.rooms(&RoomFilter::default()).await,
            Err(StoreError::Db(_))
        ),
        "the room table should be gone after migrating down"
    );
    store.migrate().await.unwrap();
    assert_eq!(store.rooms(&RoomFilter::default()).await.unwrap(), []);

    // A new room is available, with exact timestamps, and readable by id and JID.
    let new = new_room("walk", BOT, 0);
    let created = store.create_room(&new).await.unwrap();
    let id = created.id;
    let fresh = Room {
        id,
        jid: new.jid.clone(),
        password: new.password.clone(),
        status: S::Available,
        bot_jid: BOT.to_owned(),
        staff_nick: None,
        client_nick: None,
        staff_claimed_at: None,
        staff_claimed_by: None,
        client_claimed_at: None,
        client_claimed_by: None,
        staff_jid: None,
        client_jid: None,
        staff_claimed_jid: None,
        client_claimed_jid: None,
        extra_claimed_at: None,
        extra_claimed_by: None,
        extra_claimed_jid: None,
        destroyed_at: None,
        personal_data_removed_at: None,
        created_at: at(0),
        status_changed_at: at(0),
        closed_at: None,
        close_reason: None,
    };
    assert_eq!(created, fresh);
    assert_eq!(store.room(id).await.unwrap(), Some(fresh.clone()));
    assert_eq!(
        store.room_by_jid(&new.jid).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        store
            .room_by_jid("nope@conference.localhost")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.room(id + 1000).await.unwrap(), None);

    // The whole life of a room, one event per step.
    let staff = Some("staff1".to_owned());
    let steps = [
        RoomChange {
            nick: staff.clone(),
            role: Some(Role::Staff),
            set_staff_nick: staff.clone(),
            ..change(id, K::Entered, S::Available, S::StaffWaiting, 1)
        },
        RoomChange {
            nick: Some("client1".to_owned()),
            role: Some(Role::Client),
            set_client_nick: Some("client1".to_owned()),
            ..change(id, K::Entered, S::StaffWaiting, S::Chatting, 2)
        },
        // Same status: status_changed_at stays; a close reason is ignored when not closing.
        RoomChange {
            nick: Some("client2".to_owned()),
            role: Some(Role::Client),
            set_client_nick: Some("client2".to_owned()),
            close_reason: Some(CloseReason::Error),
            ..change(id, K::NickChanged, S::Chatting, S::Chatting, 3)
        },
        // Changes no value in the row (MySQL's "affected rows" must not make it a conflict).
        change(id, K::Reconciled, S::Chatting, S::Chatting, 4),
        RoomChange {
            nick: Some("client2".to_owned()),
            role: Some(Role::Client),
            ..change(id, K::Left, S::Chatting, S::OneLeft, 5)
        },
        RoomChange {
            nick: staff.clone(),
            role: Some(Role::Staff),
            close_reason: Some(CloseReason::Completed),
            ..change(id, K::Closed, S::OneLeft, S::Closed, 6)
        },
    ];
    for (i, step) in steps.iter().enumerate() {
        store.apply(step).await.unwrap();
        if i == 3 {
            let chatting = Room {
                status: S::Chatting,
                staff_nick: staff.clone(),
                client_nick: Some("client2".to_owned()),
                status_changed_at: at(2),
                ..fresh.clone()
            };
            assert_eq!(store.room(id).await.unwrap(), Some(chatting));
        }
    }
    let closed = Room {
        status: S::Closed,
        staff_nick: staff.clone(),
        client_nick: Some("client2".to_owned()),
        status_changed_at: at(6),
        closed_at: Some(at(6)),
        close_reason: Some(CloseReason::Completed),
        // The transaction that closed the room cleared its password.
        password: String::new(),
        ..fresh.clone()
    };
    assert_eq!(store.room(id).await.unwrap(), Some(closed.clone()));

    let events = store.events(id).await.unwrap();
    assert_eq!(events.len(), 1 + steps.len());
    assert!(
        events.windows(2).all(|pair| pair[0].id < pair[1].id),
        "{events:#?}"
    );
    let mut expected = vec![RoomEvent {
        id: events[0].id,
        room_id: id,
        kind: K::Created,
        from_status: None,
        to_status: S::Available,
        at: at(0),
        nick: None,
        role: None,
        detail: events[0].detail.clone(),
        close_reason: None,
    }];
    expected.extend(
        steps
            .iter()
            .zip(&events[1..])
            .map(|(step, event)| event_of(event.id, step)),
    );
    assert_eq!(events, expected);
    assert!(
        events
            .windows(2)
            .all(|pair| pair[1].from_status == Some(pair[0].to_status)),
        "from/to must chain: {events:#?}"
    );

    // A stale `from` is refused and writes nothing; so is a change to a missing room.
    let stale = change(id, K::Left, S::Chatting, S::OneLeft, 7);
    match store.apply(&stale).await {
        Err(StoreError::Conflict {
            room_id,
            expected: S::Chatting,
            found: Some(S::Closed),
        }) if room_id == id => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.room(id).await.unwrap(), Some(closed));
    assert_eq!(store.events(id).await.unwrap(), events);
    match store
        .apply(&change(
            id + 1000,
            K::Entered,
            S::Available,
            S::StaffWaiting,
            7,
        ))
        .await
    {
        Err(StoreError::Conflict { found: None, .. }) => {}
        other => panic!("expected a conflict with no room, got {other:?}"),
    }
    assert_eq!(store.events(id + 1000).await.unwrap(), []);

    // Pool counts: a claimed room is not ready; a closed one is not open.
    let ready = store
        .create_room(&new_room("ready", BOT, 10))
        .await
        .unwrap();
    let claimed = store
        .create_room(&new_room("claimed", BOT, 11))
        .await
        .unwrap();
    room::ActiveModel {
        id: Set(claimed.id),
        staff_claimed_at: Set(Some(at(12))),
        staff_claimed_by: Set(Some("webapp-staff-7".to_owned())),
        ..Default::default()
    }
    .update(store.connection())
    .await
    .unwrap();
    let waiting = store
        .create_room(&new_room("waiting", BOT, 13))
        .await
        .unwrap();
    store
        .apply(&change(
            waiting.id,
            K::Entered,
            S::Available,
            S::StaffWaiting,
            14,
        ))
        .await
        .unwrap();
    let elsewhere = store
        .create_room(&new_room("elsewhere", OTHER_BOT, 15))
        .await
        .unwrap();
    assert_eq!(
        store.pool_counts(BOT).await.unwrap(),
        PoolCounts { ready: 1, open: 3 }
    );
    assert_eq!(
        store.pool_counts(OTHER_BOT).await.unwrap(),
        PoolCounts { ready: 1, open: 1 }
    );
    assert_eq!(
        store.pool_counts("nobody@localhost").await.unwrap(),
        PoolCounts::default()
    );
    let claimed_now = store.room(claimed.id).await.unwrap().unwrap();
    assert_eq!(claimed_now.staff_claimed_at, Some(at(12)));
    assert_eq!(
        claimed_now.staff_claimed_by.as_deref(),
        Some("webapp-staff-7")
    );

    // Filters, each ordered by id.
    assert_eq!(
        ids_of(&store, None, None).await,
        [id, ready.id, claimed.id, waiting.id, elsewhere.id]
    );
    assert_eq!(
        ids_of(&store, Some(S::Available), None).await,
        [ready.id, claimed.id, elsewhere.id]
    );
    assert_eq!(
        ids_of(&store, Some(S::Available), Some(BOT)).await,
        [ready.id, claimed.id]
    );
    assert_eq!(ids_of(&store, None, Some(OTHER_BOT)).await, [elsewhere.id]);
    assert_eq!(ids_of(&store, Some(S::Closed), None).await, [id]);
    assert_eq!(ids_of(&store, Some(S::OneLeft), None).await, [0_i64; 0]);

    // A JID is never recorded twice, and a refused room leaves no event behind.
    let event_rows = room_event::Entity::find()
        .count(store.connection())
        .await
        .unwrap();
    let again = NewRoom {
        password: "another".to_owned(),
        ..new_room("ready", OTHER_BOT, 16)
    };
    match store.create_room(&again).await {
        Err(StoreError::DuplicateJid { jid }) => assert_eq!(jid, again.jid),
        other => panic!("expected a duplicate JID error, got {other:?}"),
    }
    assert_eq!(ids_of(&store, None, None).await.len(), 5);
    assert_eq!(
        room_event::Entity::find()
            .count(store.connection())
            .await
            .unwrap(),
        event_rows
    );

    // Damaged rows are reported with table, id and column, never guessed at.
    room::ActiveModel {
        id: Set(waiting.id),
        status: Set("Chatting".to_owned()),
        ..Default::default()
    }
    .update(store.connection())
    .await
    .unwrap();
    // A read of that very row says so; a read of many rows leaves it out and quarantines it
    // (issue 21: one bad row must not fail the others).
    let names_the_bad_status = |err: Option<&StoreError>| match err {
        Some(StoreError::BadRow {
            table: "room",
            id,
            column: "status",
            source,
        }) => *id == waiting.id && source.value == "Chatting",
        Some(StoreError::Undecodable(bad)) => {
            bad.table == "room"
                && bad.id == waiting.id
                && bad.column == "status"
                && bad.value.contains("\"Chatting\"")
        }
        _ => false,
    };
    let is_bad_status = |err: Option<&StoreError>| {
        matches!(err, Some(StoreError::BadRow { table: "room", id, column: "status", source })
            if *id == waiting.id && source.value == "Chatting")
    };
    let read = store.room(waiting.id).await;
    assert!(names_the_bad_status(read.as_ref().err()), "{read:?}");
    let listed = store.rooms(&RoomFilter::default()).await.unwrap();
    assert!(
        listed.iter().all(|room| room.id != waiting.id),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 4, "every other room is read: {listed:?}");
    let quarantined = store.bad_rows();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].id, waiting.id);
    let applied = store
        .apply(&change(
            waiting.id,
            K::Entered,
            S::StaffWaiting,
            S::Chatting,
            17,
        ))
        .await;
    assert!(is_bad_status(applied.as_ref().err()), "{applied:?}");
    assert_eq!(store.room(ready.id).await.unwrap(), Some(ready.clone()));

    let first_event = store.events(ready.id).await.unwrap().remove(0);
    room_event::ActiveModel {
        id: Set(first_event.id),
        kind: Set("born".to_owned()),
        ..Default::default()
    }
    .update(store.connection())
    .await
    .unwrap();
    let history = store.events(ready.id).await.unwrap();
    assert!(
        history.iter().all(|event| event.id != first_event.id),
        "the bad event is left out: {history:?}"
    );
    let bad_event = store
        .bad_rows()
        .into_iter()
        .find(|bad| bad.table == "room_event")
        .expect("the bad event is quarantined");
    assert_eq!(bad_event.id, first_event.id);
    assert_eq!(bad_event.column, "kind");
    assert!(bad_event.value.contains("\"born\""), "{bad_event:?}");

    // Down again, with data in the tables.
    store.migrate_down().await.unwrap();
    assert!(matches!(store.room(id).await, Err(StoreError::Db(_))));
}

#[tokio::test]
async fn sqlite_file() {
    exercise(Backend::SqliteFile).await;
}

#[tokio::test]
async fn sqlite_memory() {
    exercise(Backend::SqliteMemory).await;
}

#[tokio::test]
async fn postgres() {
    exercise(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb() {
    exercise(Backend::MariaDb).await;
}
