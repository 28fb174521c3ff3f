//! The web-app contract: atomic claims on every database, longest-waiting staff first,
//! claim expiry, rejoin grace, the one_left timeout and unclaimed intruders — with the real
//! bot, a real Prosody and real XMPP clients where XMPP is involved.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use helpim_bot::claims::{self, Claim, ClaimError};
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};
use helpim_bot::store::{NewRoom, RoomChange, Store};

use common::bot::{BotOptions, eventually, wait_available, wait_status};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(10);

// --- 200 concurrent claimers on each database --------------------------------------------

/// Rooms of a fake bot: `available` ones, and `waiting` ones whose staff entered at
/// staggered times (so the client order is defined).
async fn seed_rooms(store: &Store, available: usize, waiting: usize) {
    common::db::live_bot(store, "seed-bot@test").await;
    let t0 = Utc::now() - chrono::Duration::hours(1);
    for i in 0..available + waiting {
        let room = store
            .create_room(&NewRoom {
                jid: format!("seed-{i}@conference.test"),
                password: format!("pw{i}"),
                bot_jid: "seed-bot@test".into(),
                at: t0,
            })
            .await
            .expect("create room");
        if i >= available {
            store
                .apply(&RoomChange {
                    nick: Some(format!("staff{i}")),
                    role: Some(Role::Staff),
                    detail: "staff entered".into(),
                    set_staff_nick: Some(format!("staff{i}")),
                    ..RoomChange::new(
                        room.id,
                        EventKind::Entered,
                        RoomStatus::Available,
                        RoomStatus::StaffWaiting,
                        // Later rooms' staff entered EARLIER: client order is the reverse of
                        // ids.
                        t0 + chrono::Duration::seconds(1000 - i as i64),
                    )
                })
                .await
                .expect("apply");
        }
    }
}

async fn two_hundred_claimers(backend: Backend) {
    const AVAILABLE: usize = 60;
    const WAITING: usize = 60;
    let db = TestDb::new(backend);
    let store = db.store().await;
    seed_rooms(&store, AVAILABLE, WAITING).await;
    // Several independent connections (pools), as several web-app workers would have.
    let mut stores = vec![store.clone()];
    for _ in 0..3 {
        stores.push(Store::connect(&db.url).await.expect("connect"));
    }
    let attempts = (0..200).map(|i| {
        let store = stores[i % stores.len()].clone();
        async move {
            let by = format!("worker-{i}");
            if i % 2 == 0 {
                (Role::Staff, claims::claim_staff(&store, &by).await)
            } else {
                (Role::Client, claims::claim_client(&store, &by).await)
            }
        }
    });
    let results = futures::future::join_all(attempts).await;

    let mut won: Vec<(Role, Claim)> = Vec::new();
    let mut none = 0;
    for (role, result) in results {
        match result {
            Ok(claim) => won.push((role, claim)),
            Err(ClaimError::NoneAvailable(r)) => {
                assert_eq!(r, role);
                none += 1
            }
            Err(other) => panic!("{backend:?}: a claim failed: {other:?}"),
        }
    }
    let staff: Vec<_> = won.iter().filter(|(r, _)| *r == Role::Staff).collect();
    let client: Vec<_> = won.iter().filter(|(r, _)| *r == Role::Client).collect();
    assert_eq!(
        staff.len(),
        AVAILABLE,
        "{backend:?}: every available room claimed once"
    );
    assert_eq!(
        client.len(),
        WAITING,
        "{backend:?}: every waiting room claimed once"
    );
    assert_eq!(none, 200 - AVAILABLE - WAITING);
    let distinct = |claims: &[&(Role, Claim)]| {
        claims
            .iter()
            .map(|(_, c)| c.room_id)
            .collect::<HashSet<_>>()
            .len()
    };
    assert_eq!(
        distinct(&staff),
        AVAILABLE,
        "{backend:?}: a room claimed twice for staff"
    );
    assert_eq!(
        distinct(&client),
        WAITING,
        "{backend:?}: a room claimed twice for a client"
    );

    // The database agrees: one claim event per claimed room, claim columns set.
    for (role, claim) in &won {
        let room = store.room(claim.room_id).await.unwrap().unwrap();
        assert_eq!(room.jid, claim.jid);
        assert_eq!(room.password, claim.password);
        let events = store.events(claim.room_id).await.unwrap();
        let kind = if *role == Role::Staff {
            EventKind::StaffClaimed
        } else {
            EventKind::ClientClaimed
        };
        assert_eq!(
            events.iter().filter(|e| e.kind == kind).count(),
            1,
            "{events:?}"
        );
        match role {
            Role::Staff => {
                assert!(room.staff_claimed_at.is_some() && room.status == RoomStatus::Available)
            }
            _ => {
                assert!(room.client_claimed_at.is_some() && room.status == RoomStatus::StaffWaiting)
            }
        }
    }
    // Nothing left to claim: a typed answer, not an error.
    assert!(matches!(
        claims::claim_staff(&store, "late").await,
        Err(ClaimError::NoneAvailable(Role::Staff))
    ));
    assert!(matches!(
        claims::claim_client(&store, "late").await,
        Err(ClaimError::NoneAvailable(Role::Client))
    ));
}

#[tokio::test]
async fn two_hundred_concurrent_claimers_on_sqlite() {
    two_hundred_claimers(Backend::SqliteFile).await;
}

#[tokio::test]
async fn two_hundred_concurrent_claimers_on_postgres() {
    two_hundred_claimers(Backend::Postgres).await;
}

#[tokio::test]
async fn two_hundred_concurrent_claimers_on_mariadb() {
    two_hundred_claimers(Backend::MariaDb).await;
}

#[tokio::test]
async fn clients_get_the_longest_waiting_staff_first_on_every_database() {
    for backend in [Backend::SqliteFile, Backend::Postgres, Backend::MariaDb] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        seed_rooms(&store, 0, 5).await;
        // seed-4's staff entered first, then seed-3, ...
        for expected in ["seed-4", "seed-3", "seed-2", "seed-1", "seed-0"] {
            let claim = claims::claim_client(&store, "web").await.expect("claim");
            assert!(
                claim.jid.starts_with(expected),
                "{backend:?}: got {} for {expected}",
                claim.jid
            );
        }
    }
}

/// A claim's "now" is taken before its statement finds the room; a room recorded in between
/// (here: recorded with a time ahead of the claimer's clock) must not get a claim event
/// earlier than its own last change. Found in CI as a `created` event after the
/// `staff_claimed` event of the same room, 31 ms apart.
#[tokio::test]
async fn a_claim_is_never_recorded_before_the_rooms_last_change_on_every_database() {
    for backend in [Backend::SqliteFile, Backend::Postgres, Backend::MariaDb] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        common::db::live_bot(&store, "seed-bot@test").await;
        let later = helpim_bot::store::now() + chrono::Duration::milliseconds(500);
        let room = store
            .create_room(&NewRoom {
                jid: "ahead@conference.test".into(),
                password: "pw".into(),
                bot_jid: "seed-bot@test".into(),
                at: later,
            })
            .await
            .unwrap();
        let claim = claims::claim_staff(&store, "web").await.expect("claim");
        assert_eq!(claim.room_id, room.id);
        let events = store.events(room.id).await.unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events[1].at >= events[0].at,
            "{backend:?}: the claim is recorded before the room: {events:?}"
        );
    }
}

/// A claim bound to a JID (`claim --jid`, the contract's bound statements) records that JID
/// in the row, where the bot reads it back, for staff and client, on every database: the
/// claim SQL differs per database (MariaDB's has no `RETURNING`).
#[tokio::test]
async fn a_bound_claim_records_its_jid_on_every_database() {
    for backend in [Backend::SqliteFile, Backend::Postgres, Backend::MariaDb] {
        let db = TestDb::new(backend);
        let store = db.store().await;
        seed_rooms(&store, 1, 1).await;
        for (role, jid) in [
            (Role::Staff, "counsellor@helpline.test"),
            (Role::Client, "visitor@helpline.test"),
        ] {
            let claim = claims::claim_bound(&store, role, "web", jid)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: bound {role:?} claim: {e}"));
            assert_eq!(claim.bound_jid.as_deref(), Some(jid), "{backend:?}");
            let row = store.room(claim.room_id).await.unwrap().expect("the row");
            let (recorded, other) = match role {
                Role::Staff => (row.staff_claimed_jid, row.client_claimed_jid),
                _ => (row.client_claimed_jid, row.staff_claimed_jid),
            };
            assert_eq!(recorded.as_deref(), Some(jid), "{backend:?}: {role:?}");
            assert_eq!(other, None, "{backend:?}: the other seat stays unbound");
        }
        // An unbound claim leaves the column empty.
        let db = TestDb::new(backend);
        let store = db.store().await;
        seed_rooms(&store, 1, 0).await;
        let claim = claims::claim_staff(&store, "web").await.expect("claim");
        assert_eq!(claim.bound_jid, None);
        let row = store.room(claim.room_id).await.unwrap().expect("the row");
        assert_eq!(row.staff_claimed_jid, None, "{backend:?}");
    }
}

// --- with the real bot, on every server -----------------------------------------------------

on_every_server!(
    three_clients_get_rooms_in_the_order_staff_entered,
    an_unclaimed_intruder_is_kicked_and_the_state_holds,
    claims_nobody_uses_expire_and_each_release_is_an_event,
    a_dropped_client_who_comes_back_in_grace_is_the_same_person,
    after_the_grace_a_returning_person_is_turned_away,
    one_left_too_long_ends_the_chat_with_a_notice,
    without_required_claims_whoever_has_the_password_takes_the_role,
    no_claim_takes_a_room_of_a_bot_whose_session_is_down,
);

/// A world on `kind` and SQLite; its bot requires claims (the harness default, as in
/// production).
async fn world(kind: ServerKind, options: BotOptions) -> World {
    assert!(options.require_claims, "these scenarios are about claims");
    World::start(kind, Backend::SqliteFile, options).await
}

fn timeouts(lines: &str) -> BotOptions {
    BotOptions {
        extra: format!("[timeouts]\n{lines}"),
        ..Default::default()
    }
}

async fn three_clients_get_rooms_in_the_order_staff_entered(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 3,
            max_rooms: 8,
            ..Default::default()
        },
    )
    .await;
    wait_available(&w.store, &w.bot.jid, 3).await;
    let mut claims = Vec::new();
    for i in 0..3 {
        claims.push(
            claims::claim_staff(&w.store, &format!("staff{i}"))
                .await
                .expect("staff claim"),
        );
    }
    // Staff enter in the order 2, 0, 1, a moment apart.
    let mut staff = Vec::new();
    for i in [2usize, 0, 1] {
        let mut person = w.person(&format!("staff{i}")).await;
        person
            .join(
                &claims[i].jid,
                &format!("Staff{i}"),
                Some(&claims[i].password),
            )
            .await
            .expect("join");
        wait_status(&w.store, claims[i].room_id, RoomStatus::StaffWaiting).await;
        staff.push(person);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in [2usize, 0, 1] {
        let claim = claims::claim_client(&w.store, "web")
            .await
            .expect("client claim");
        assert_eq!(
            claim.jid, claims[i].jid,
            "the client goes to the staff who waited longest"
        );
    }
    assert!(matches!(
        claims::claim_client(&w.store, "web").await,
        Err(ClaimError::NoneAvailable(_))
    ));
}

async fn an_unclaimed_intruder_is_kicked_and_the_state_holds(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 4,
            ..Default::default()
        },
    )
    .await;
    let room = wait_available(&w.store, &w.bot.jid, 1).await.remove(0);
    // Right password, but nobody claimed the room.
    let mut intruder = w.person("intruder").await;
    intruder
        .join(&room.jid, "Intruder", Some(&room.password))
        .await
        .expect("server admits");
    let kicked = intruder
        .wait_for_presence(
            &room.jid,
            |p| !p.available && p.status_codes.contains(&307),
            WAIT,
        )
        .await;
    assert_eq!(
        kicked.reason.as_deref(),
        Some("This room has not been assigned to you.")
    );
    let kick = eventually("the kick event", WAIT, || async {
        let events = w.events(room.id).await;
        events
            .into_iter()
            .find(|e| e.kind == EventKind::Kicked)
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(kick.role, Some(Role::Intruder));
    assert_eq!(
        w.store.room(room.id).await.unwrap().unwrap().status,
        RoomStatus::Available
    );

    // With a staff claim the same room works; an unclaimed second person is kicked too.
    let claim = claims::claim_staff(&w.store, "web").await.expect("claim");
    assert_eq!(claim.room_id, room.id);
    let mut staff = w.person("staff").await;
    staff
        .join(&room.jid, "Staff", Some(&room.password))
        .await
        .expect("join");
    let row = wait_status(&w.store, room.id, RoomStatus::StaffWaiting).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Staff"));
    intruder
        .join(&room.jid, "Intruder", Some(&room.password))
        .await
        .expect("server admits");
    intruder
        .wait_for_presence(
            &room.jid,
            |p| !p.available && p.status_codes.contains(&307),
            WAIT,
        )
        .await;
    let row = w.store.room(room.id).await.unwrap().unwrap();
    assert_eq!(row.status, RoomStatus::StaffWaiting);
    assert_eq!(
        row.client_nick, None,
        "an intruder is never taken for the client"
    );
}

async fn claims_nobody_uses_expire_and_each_release_is_an_event(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 4,
            ..timeouts("staff_claim_secs = 1\nclient_claim_secs = 1")
        },
    )
    .await;
    let room = wait_available(&w.store, &w.bot.jid, 1).await.remove(0);
    let claim = claims::claim_staff(&w.store, "web").await.expect("claim");
    assert_eq!(claim.room_id, room.id);
    // The claimed room is no longer ready: the pool makes another one at once.
    wait_available_unclaimed(&w, 1).await;
    // Nobody enters: the claim is released and the room is ready again.
    eventually("the staff claim to expire", WAIT, || async {
        let row = w
            .store
            .room(room.id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap();
        row.staff_claimed_at
            .is_none()
            .then_some(())
            .ok_or("still claimed".to_owned())
    })
    .await;
    let events = w.events(room.id).await;
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::ClaimExpired)
        .collect();
    assert_eq!(expired.len(), 1, "{events:?}");
    assert_eq!(expired[0].role, Some(Role::Staff));

    // A client claim on a waiting staff's room expires the same way. The staff member is
    // online before the claim: registering an account can take longer than the 1 s claim.
    let mut staff = w.person("staff").await;
    let claim = claims::claim_staff(&w.store, "web").await.expect("claim");
    staff
        .join(&claim.jid, "Staff", Some(&claim.password))
        .await
        .expect("join");
    wait_status(&w.store, claim.room_id, RoomStatus::StaffWaiting).await;
    let client_claim = claims::claim_client(&w.store, "web")
        .await
        .expect("client claim");
    assert_eq!(client_claim.room_id, claim.room_id);
    eventually("the client claim to expire", WAIT, || async {
        let row = w
            .store
            .room(claim.room_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap();
        row.client_claimed_at
            .is_none()
            .then_some(())
            .ok_or("still claimed".to_owned())
    })
    .await;
    let events = w.events(claim.room_id).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::ClaimExpired && e.role == Some(Role::Client)),
        "{events:?}"
    );
    // The staff member still waits, and is first in line again.
    let again = claims::claim_client(&w.store, "web")
        .await
        .expect("client claim");
    assert_eq!(again.room_id, claim.room_id);
}

/// Waits until `n` rooms are available AND unclaimed (ready).
async fn wait_available_unclaimed(w: &World, n: u64) {
    eventually(&format!("{n} ready rooms"), WAIT, || async {
        let counts = w
            .store
            .pool_counts(&w.bot.jid)
            .await
            .map_err(|e| e.to_string())?;
        (counts.ready == n)
            .then_some(())
            .ok_or(format!("{counts:?}"))
    })
    .await;
}

async fn a_dropped_client_who_comes_back_in_grace_is_the_same_person(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 4,
            ..timeouts("rejoin_grace_secs = 30")
        },
    )
    .await;
    let (claim, _staff, client) = w.chat("Staff", "Guest").await;
    client.drop_connection().await;
    wait_status(&w.store, claim.room_id, RoomStatus::OneLeft).await;
    // Back with a new session, same nick: the chat goes on, never a new client.
    let mut back = TestClient::connect(w.server.as_ref(), "client", "pw").await;
    back.join(&claim.jid, "Guest", Some(&claim.password))
        .await
        .expect("rejoin");
    let row = wait_status(&w.store, claim.room_id, RoomStatus::Chatting).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));
    let events = w.events(claim.room_id).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind, last.role),
        (EventKind::Rejoined, Some(Role::Client)),
        "{events:?}"
    );
}

async fn after_the_grace_a_returning_person_is_turned_away(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 4,
            ..timeouts("rejoin_grace_secs = 1\none_left_secs = 0")
        },
    )
    .await;
    let (claim, _staff, mut client) = w.chat("Staff", "Guest").await;
    client.leave(&claim.jid, "Guest").await;
    wait_status(&w.store, claim.room_id, RoomStatus::OneLeft).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .join(&claim.jid, "Guest", Some(&claim.password))
        .await
        .expect("server admits");
    let kicked = client
        .wait_for_presence(
            &claim.jid,
            |p| !p.available && p.status_codes.contains(&307),
            WAIT,
        )
        .await;
    assert_eq!(kicked.reason.as_deref(), Some("This chat has ended."));
    assert_eq!(
        w.store.room(claim.room_id).await.unwrap().unwrap().status,
        RoomStatus::OneLeft
    );
}

async fn one_left_too_long_ends_the_chat_with_a_notice(kind: ServerKind) {
    let w = world(
        kind,
        BotOptions {
            available: 1,
            max_rooms: 4,
            ..timeouts("one_left_secs = 1")
        },
    )
    .await;
    let (claim, mut staff, mut client) = w.chat("Staff", "Guest").await;
    client.leave(&claim.jid, "Guest").await;
    wait_status(&w.store, claim.room_id, RoomStatus::OneLeft).await;
    // The bot tells the staff member, then destroys the room.
    staff
        .wait_for(
            "the bot's notice",
            |m| {
                m.name() == "message"
                    && m.children()
                        .any(|c| c.name() == "body" && c.text().contains("chat has ended"))
            },
            WAIT,
        )
        .await;
    let gone = staff
        .wait_for_presence(&claim.jid, |p| !p.available && p.destroyed, WAIT)
        .await;
    assert!(gone.status_codes.contains(&110) || gone.from_nick.as_deref() == Some("Staff"));
    let row = wait_status(&w.store, claim.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Timeout));
    let events = w.events(claim.room_id).await;
    assert_eq!(
        events.last().unwrap().close_reason,
        Some(CloseReason::Timeout)
    );
}

/// With `require_claims = false` the password alone decides: whoever has it takes the next
/// role, with no claim and no kick.
async fn without_required_claims_whoever_has_the_password_takes_the_role(kind: ServerKind) {
    let w = World::start(
        kind,
        Backend::SqliteFile,
        BotOptions {
            available: 1,
            max_rooms: 4,
            // Off on purpose: this test is about the `require_claims = false` setting.
            require_claims: false,
            ..Default::default()
        },
    )
    .await;
    let room = wait_available(&w.store, &w.bot.jid, 1).await.remove(0);
    let mut staff = w.person("staff").await;
    let mut client = w.person("client").await;
    staff
        .join(&room.jid, "Staff", Some(&room.password))
        .await
        .expect("join");
    let row = wait_status(&w.store, room.id, RoomStatus::StaffWaiting).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Staff"));
    client
        .join(&room.jid, "Guest", Some(&room.password))
        .await
        .expect("join");
    let row = wait_status(&w.store, room.id, RoomStatus::Chatting).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));
    assert_eq!((row.staff_claimed_at, row.client_claimed_at), (None, None));
    let events = w.events(room.id).await;
    assert_eq!(
        events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Created, EventKind::Entered, EventKind::Entered],
        "no claim, no kick: {events:?}"
    );
}

/// Claims take only rooms that exist and are watched: while the bot's XMPP connection is
/// cut, its staff-waiting room (the row still says `staff_waiting`, and the staff member is
/// still inside) is not handed to a client, because nobody would check the client's claim
/// or follow the chat. Once the bot is back in the room, the same room is claimed.
async fn no_claim_takes_a_room_of_a_bot_whose_session_is_down(kind: ServerKind) {
    use common::proxy::CuttableProxy;
    let server = common::server::start(kind);
    let target = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = CuttableProxy::start(target).await;
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let bot = common::bot::TestBot::start(
        server.as_ref(),
        &db.url,
        BotOptions {
            available: 1,
            max_rooms: 3,
            port: Some(proxy.port),
            ..Default::default()
        },
    );
    server.register("staff", "pw");
    server.register("client", "pw");
    wait_available(&store, &bot.jid, 1).await;
    let mut staff = TestClient::connect(server.as_ref(), "staff", "pw").await;
    let room = common::world::staff_enters(&store, &mut staff, "Staff").await;

    proxy.cut();
    eventually("the session recorded down", WAIT, || async {
        let log = bot.log_text();
        log.contains("XMPP session recorded as down")
            .then_some(())
            .ok_or(bot.log_tail(5))
    })
    .await;
    assert_eq!(
        store.room(room.room_id).await.unwrap().unwrap().status,
        RoomStatus::StaffWaiting,
        "the row alone would offer the room"
    );
    for _ in 0..3 {
        assert!(
            matches!(
                claims::claim_client(&store, "web").await,
                Err(ClaimError::NoneAvailable(Role::Client))
            ),
            "a client claim took a room of a bot without a session"
        );
        assert!(matches!(
            claims::claim_staff(&store, "web").await,
            Err(ClaimError::NoneAvailable(Role::Staff))
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    proxy.restore();
    // Back in the room (rejoined, staff found inside): the same room goes to a client.
    let mut client = TestClient::connect(server.as_ref(), "client", "pw").await;
    let claim = common::world::client_enters(&store, &room, &mut client, "Guest").await;
    assert_eq!(claim.room_id, room.room_id);
    wait_status(&store, room.room_id, RoomStatus::Chatting).await;
    drop(proxy);
}
