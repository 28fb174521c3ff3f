//! Push on PostgreSQL: a real `LISTEN helpim_room` connection receives every committed
//! transition of a full chat, claims and released claims included, in commit order, and
//! nothing for a change that was refused: first through the store and the claim SQL, then
//! with the real bot on a real Prosody (needs `apt-get install -y prosody`).

mod common;

use std::time::Duration;

use common::bot::{BotOptions, wait_status};
use common::db::{Backend, TestDb};
use common::server::ServerKind;
use common::world::World;
use helpim_bot::claims;
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};
use helpim_bot::store::{NOTIFY_CHANNEL, NewRoom, RoomChange, Store, StoreError};
use sea_orm::sqlx::postgres::PgListener;

use EventKind as K;
use RoomStatus as S;

const BOT: &str = "bot@localhost";

/// A change of `room_id` with a nick and role, as the bot writes it.
fn change(room_id: i64, kind: EventKind, from: S, to: S, role: Option<Role>) -> RoomChange {
    RoomChange {
        nick: role.map(|r| format!("{r}-nick")),
        role,
        detail: format!("{kind}"),
        close_reason: (to == S::Closed).then_some(CloseReason::Completed),
        ..RoomChange::new(room_id, kind, from, to, helpim_bot::store::now())
    }
}

async fn new_room(store: &Store, name: &str) -> i64 {
    store
        .create_room(&NewRoom {
            jid: format!("helpim-{name}@conference.localhost"),
            password: format!("pw-{name}"),
            bot_jid: BOT.to_owned(),
            at: helpim_bot::store::now(),
        })
        .await
        .unwrap()
        .id
}

/// The next `n` payloads on the channel, each within 10 s.
async fn next(listener: &mut PgListener, n: usize) -> Vec<String> {
    let mut payloads = Vec::new();
    for _ in 0..n {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification after {payloads:?}"))
            .unwrap();
        assert_eq!(notification.channel(), NOTIFY_CHANNEL);
        payloads.push(notification.payload().to_owned());
    }
    payloads
}

#[tokio::test]
async fn postgres_announces_every_transition_of_a_full_chat_in_order() {
    let db = TestDb::new(Backend::Postgres);
    let store = db.store().await;
    let mut listener = PgListener::connect(&db.url).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();

    // A full chat: created, claimed for staff (the contract's SQL: the trigger announces
    // it), staff enters, claimed for a client, the client enters, changes nick, leaves, the
    // room closes.
    common::db::live_bot(&store, BOT).await;
    let id = new_room(&store, "chat").await;
    claims::claim_staff(&store, "staff:42").await.unwrap();
    store
        .apply(&change(
            id,
            K::Entered,
            S::Available,
            S::StaffWaiting,
            Some(Role::Staff),
        ))
        .await
        .unwrap();
    claims::claim_client(&store, "session:9f3c").await.unwrap();
    for step in [
        change(
            id,
            K::Entered,
            S::StaffWaiting,
            S::Chatting,
            Some(Role::Client),
        ),
        change(
            id,
            K::NickChanged,
            S::Chatting,
            S::Chatting,
            Some(Role::Client),
        ),
        change(id, K::Left, S::Chatting, S::OneLeft, Some(Role::Client)),
        change(id, K::Closed, S::OneLeft, S::Closed, None),
    ] {
        store.apply(&step).await.unwrap();
    }
    let expected: Vec<String> = [
        "available",
        "available",
        "staff_waiting",
        "staff_waiting",
        "chatting",
        "chatting",
        "one_left",
        "closed",
    ]
    .iter()
    .map(|status| format!("{id} {status}"))
    .collect();
    assert_eq!(next(&mut listener, expected.len()).await, expected);

    // A refused change (stale status) commits nothing and announces nothing; an expired
    // claim's release is announced like the claim.
    let stale = store
        .apply(&change(id, K::Left, S::Chatting, S::OneLeft, None))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let other = new_room(&store, "expiring").await;
    claims::claim_staff(&store, "staff:7").await.unwrap();
    let ttls = claims::ClaimTtls {
        staff: std::time::Duration::ZERO,
        client: std::time::Duration::ZERO,
    };
    let expired = claims::expired_claims(&store, BOT, &ttls).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert!(claims::release(&store, &expired[0], false).await.unwrap());
    // A last transition marks the end: notifications arrive in commit order, so anything
    // the refused change had sent would come before it.
    let last = new_room(&store, "last").await;
    assert_eq!(
        next(&mut listener, 4).await,
        [
            format!("{other} available"),
            format!("{other} available"),
            format!("{other} available"),
            format!("{last} available"),
        ]
    );
}

/// Listening costs the other databases nothing: the same writes work, and no statement
/// PostgreSQL-only runs there (the migration's trigger is PostgreSQL only too).
#[tokio::test]
async fn other_databases_write_without_notifying() {
    for backend in [Backend::SqliteFile, Backend::MariaDb] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        common::db::live_bot(&store, BOT).await;
        let id = new_room(&store, "plain").await;
        claims::claim_staff(&store, "staff:1").await.unwrap();
        store
            .apply(&change(
                id,
                K::Entered,
                S::Available,
                S::StaffWaiting,
                Some(Role::Staff),
            ))
            .await
            .unwrap();
        assert_eq!(
            store.room(id).await.unwrap().unwrap().status,
            S::StaffWaiting,
            "{backend:?}"
        );
    }
}

/// The real bot, a real Prosody, real people: every event the bot and the claims record for
/// the chat's room arrives as a notification, in the order of the history.
#[tokio::test]
async fn the_real_bot_announces_a_full_chat_in_order() {
    // Production default: claims required.
    let w = World::start(
        ServerKind::Prosody,
        Backend::Postgres,
        BotOptions {
            available: 1,
            max_rooms: 3,
            require_claims: true,
            ..Default::default()
        },
    )
    .await;
    let room = w.available(1).await.remove(0);
    let mut listener = PgListener::connect(&w.db.url).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();
    let listening_from = w.events(room.id).await.len();

    let claim = claims::claim_staff(&w.store, "staff:1").await.unwrap();
    assert_eq!(claim.room_id, room.id);
    let mut staff = w.person("staff").await;
    staff
        .join(&room.jid, "Counsellor", Some(&room.password))
        .await
        .expect("staff joins");
    wait_status(&w.store, room.id, S::StaffWaiting).await;
    let claim = claims::claim_client(&w.store, "session:1").await.unwrap();
    assert_eq!(claim.room_id, room.id);
    let mut client = w.person("client").await;
    client
        .join(&room.jid, "Guest", Some(&room.password))
        .await
        .expect("client joins");
    wait_status(&w.store, room.id, S::Chatting).await;
    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.id, S::OneLeft).await;
    staff.leave(&room.jid, "Counsellor").await;
    wait_status(&w.store, room.id, S::Closed).await;

    // Every event recorded since we listened, as the payload its transaction sent.
    let expected: Vec<String> = w.events(room.id).await[listening_from..]
        .iter()
        .map(|event| format!("{} {}", room.id, event.to_status))
        .collect();
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(expected.last(), Some(&format!("{} closed", room.id)));
    let mut received = Vec::new();
    let mine = format!("{} ", room.id);
    while received.len() < expected.len() {
        // Other rooms (the pool's replacements) are announced too: skipped here.
        let payload = next(&mut listener, 1).await.remove(0);
        if payload.starts_with(&mine) {
            received.push(payload);
        }
    }
    assert_eq!(received, expected);
}
