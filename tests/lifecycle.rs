//! The room lifecycle over real XMPP: the real `helpim-bot` binary, a real XMPP server,
//! real XMPP clients playing staff and client, and the database the web application reads.
//!
//! Every scenario runs on every supported server (Prosody, ejabberd) with every database
//! backend tested here (SQLite, PostgreSQL): modules `prosody_sqlite`, `prosody_postgres`,
//! `ejabberd_sqlite`, `ejabberd_postgres` (e.g. `cargo test --test lifecycle ejabberd`).
//! Needs Prosody (`apt-get install -y prosody`), ejabberd (`apt-get install -y ejabberd`)
//! and PostgreSQL on 127.0.0.1:5432; a missing one fails the test with the fix.
//!
//! The bot runs with the production default `require_claims = true`: people get to rooms
//! as the web application sends them, through a claim (`common::world`), and only the
//! strangers of the intruder scenarios come without one.

#[macro_use]
mod common;

use std::time::Duration;

use futures::StreamExt;

use helpim_bot::claims::Claim;
use helpim_bot::model::{CloseReason, EventKind, Role, RoomStatus};

use common::bot::{BotOptions, rooms_with, wait_status};
use common::client::{JoinError, TestClient};
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(10);

/// The (kind, from, to) of a room's history.
fn history(
    events: &[helpim_bot::store::RoomEvent],
) -> Vec<(EventKind, Option<RoomStatus>, RoomStatus)> {
    events
        .iter()
        .map(|e| (e.kind, e.from_status, e.to_status))
        .collect()
}

/// The history of a room up to `chatting`, as the web application and the bot write it: the
/// staff claim, the staff member entering, the client claim, the client entering.
fn claimed_until_chatting() -> Vec<(EventKind, Option<RoomStatus>, RoomStatus)> {
    vec![
        (EventKind::Created, None, RoomStatus::Available),
        (
            EventKind::StaffClaimed,
            Some(RoomStatus::Available),
            RoomStatus::Available,
        ),
        (
            EventKind::Entered,
            Some(RoomStatus::Available),
            RoomStatus::StaffWaiting,
        ),
        (
            EventKind::ClientClaimed,
            Some(RoomStatus::StaffWaiting),
            RoomStatus::StaffWaiting,
        ),
        (
            EventKind::Entered,
            Some(RoomStatus::StaffWaiting),
            RoomStatus::Chatting,
        ),
    ]
}

/// `claimed_until_chatting` followed by `rest`.
fn claimed_chat_then(
    rest: &[(EventKind, Option<RoomStatus>, RoomStatus)],
) -> Vec<(EventKind, Option<RoomStatus>, RoomStatus)> {
    let mut all = claimed_until_chatting();
    all.extend_from_slice(rest);
    all
}

/// A chat's end: the client leaves, then the staff member (or the other way round).
const LEFT_THEN_CLOSED: [(EventKind, Option<RoomStatus>, RoomStatus); 2] = [
    (
        EventKind::Left,
        Some(RoomStatus::Chatting),
        RoomStatus::OneLeft,
    ),
    (
        EventKind::Closed,
        Some(RoomStatus::OneLeft),
        RoomStatus::Closed,
    ),
];

fn assert_timestamps_ordered(events: &[helpim_bot::store::RoomEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].at <= pair[1].at,
            "event timestamps go backwards: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

on_every_server_and_backend!(
    start_fills_the_pool_with_protected_hidden_temporary_rooms,
    a_full_chat_walks_every_status_and_the_room_is_destroyed,
    staff_leaving_before_a_client_closes_with_no_client,
    staff_leaving_first_then_the_client_closes_completed,
    a_third_person_does_not_get_in_and_the_chat_goes_on,
    a_stranger_entering_after_the_chat_is_kicked,
    fifty_chats_at_once_end_right_within_the_cap,
);

async fn start_fills_the_pool_with_protected_hidden_temporary_rooms(
    server: ServerKind,
    backend: Backend,
) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 3,
            max_rooms: 5,
            ..Default::default()
        },
    )
    .await;
    let rooms = w.available(3).await;
    let mut probe = w.person("probe").await;
    for room in &rooms {
        assert_eq!(room.bot_jid, w.bot.jid);
        assert!(room.jid.starts_with("helpim-"), "{}", room.jid);
        assert!(
            room.jid.len() >= "helpim-".len() + 26,
            "128-bit name: {}",
            room.jid
        );
        assert!(room.password.len() >= 26, "128-bit password");
        let info = w.server_disco(&mut probe, &room.jid).await;
        for feature in ["muc_passwordprotected", "muc_hidden", "muc_temporary"] {
            assert!(
                info.has_feature(feature),
                "{} lacks {feature}: {:?}",
                room.jid,
                info.features
            );
        }
        for feature in ["muc_unsecured", "muc_public", "muc_persistent"] {
            assert!(!info.has_feature(feature), "{} has {feature}", room.jid);
        }
        // No password, or a wrong one: refused by the server.
        for password in [None, Some("wrong")] {
            let refused = probe.join(&room.jid, "probe", password).await;
            assert_eq!(
                refused,
                Err(JoinError::Refused {
                    condition: "not-authorized".into()
                }),
                "join of {} with {password:?}",
                room.jid
            );
        }
        let events = w.events(room.id).await;
        assert_eq!(
            history(&events),
            [(EventKind::Created, None, RoomStatus::Available)]
        );
    }
    // Exactly `available` rooms: no more are created while nobody uses them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rooms_with(&w.store, &w.bot.jid, RoomStatus::Available)
            .await
            .len(),
        3
    );
}

impl World {
    async fn server_disco(&self, client: &mut TestClient, jid: &str) -> common::client::DiscoInfo {
        client
            .disco_info(jid)
            .await
            .unwrap_or_else(|e| panic!("disco#info {jid}: {e}"))
    }
}

async fn a_full_chat_walks_every_status_and_the_room_is_destroyed(
    server: ServerKind,
    backend: Backend,
) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 2,
            max_rooms: 4,
            ..Default::default()
        },
    )
    .await;
    w.available(2).await;
    let mut staff = w.person("staff").await;
    let mut client = w.person("client").await;

    let room = w.staff_enters(&mut staff, "Counsellor").await;
    let row = w.row(room.room_id).await;
    assert_eq!(row.staff_nick.as_deref(), Some("Counsellor"));
    // The room left the pool: a replacement is made.
    w.available(2).await;

    w.client_enters(&room, &mut client, "Guest").await;
    let row = w.row(room.room_id).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));

    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;

    staff.leave(&room.jid, "Counsellor").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
    let closed_at = row.closed_at.expect("closed_at set");

    let events = w.events(room.room_id).await;
    assert_eq!(history(&events), claimed_chat_then(&LEFT_THEN_CLOSED));
    assert_eq!(events[1].role, Some(Role::Staff));
    assert_eq!(events[2].role, Some(Role::Staff));
    assert_eq!(events[2].nick.as_deref(), Some("Counsellor"));
    assert_eq!(events[3].role, Some(Role::Client));
    assert_eq!(events[4].role, Some(Role::Client));
    assert_eq!(events[4].nick.as_deref(), Some("Guest"));
    assert_eq!(events[5].nick.as_deref(), Some("Guest"));
    assert_eq!(events[6].nick.as_deref(), Some("Counsellor"));
    assert_eq!(events.last().unwrap().at, closed_at);
    assert_eq!(events[6].close_reason, Some(CloseReason::Completed));
    assert_timestamps_ordered(&events);

    // Gone from the server; a replacement keeps the pool full.
    let mut probe = w.person("probe").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match probe.disco_info(&room.jid).await {
            Err(condition) if condition.contains("item-not-found") => break,
            other if std::time::Instant::now() > deadline => {
                panic!("room {} still on the server: {other:?}", room.jid)
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    w.available(2).await;

    // The per-room log tells the same story.
    let log = std::fs::read_to_string(w.bot.room_dir.join(format!("{}.log", room.jid)))
        .expect("per-room log file");
    for expected in [
        "available→staff_waiting",
        "staff_waiting→chatting",
        "one_left→closed",
        "destroyed",
    ] {
        assert!(log.contains(expected), "room log lacks {expected}:\n{log}");
    }
    assert!(
        log.lines()
            .all(|l| l.contains(&format!("room={}", room.jid)))
    );
}

async fn staff_leaving_before_a_client_closes_with_no_client(server: ServerKind, backend: Backend) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    w.available(1).await;
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Counsellor").await;
    staff.leave(&room.jid, "Counsellor").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::NoClient));
    assert_eq!(row.client_nick, None);
    let events = w.events(room.room_id).await;
    assert_eq!(
        history(&events).last(),
        Some(&(
            EventKind::Closed,
            Some(RoomStatus::StaffWaiting),
            RoomStatus::Closed
        ))
    );
    w.available(1).await;
}

async fn staff_leaving_first_then_the_client_closes_completed(
    server: ServerKind,
    backend: Backend,
) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Guest").await;
    staff.leave(&room.jid, "Counsellor").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;
    // The client sees the staff leave; the room still works for them until they go.
    client.leave(&room.jid, "Guest").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
    let events = w.events(room.room_id).await;
    assert_eq!(history(&events), claimed_chat_then(&LEFT_THEN_CLOSED));
    assert_eq!(events[5].role, Some(Role::Staff), "{events:?}");
    assert_eq!(events[6].role, Some(Role::Client), "{events:?}");
    assert_timestamps_ordered(&events);
}

/// A third person with the password: the server lets them in (Prosody has no occupant
/// limit; ejabberd's `maxusers` leaves room for further sessions of the people inside,
/// `lifecycle::SESSIONS_MAX`) and the bot kicks them, or a server whose room is full refuses
/// them itself. Either way they do not get in and the chat goes on.
/// The third person has no claim: the web application cannot claim a room that is chatting.
async fn a_third_person_does_not_get_in_and_the_chat_goes_on(server: ServerKind, backend: Backend) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Guest").await;
    let mut third = w.person("third").await;

    let kicked_by_the_bot = match third.join(&room.jid, "Extra", Some(&room.password)).await {
        Ok(_) => {
            // The server admitted them; the bot kicks them.
            let kicked = third
                .wait_for_presence(
                    &room.jid,
                    |p| !p.available && p.status_codes.contains(&307),
                    WAIT,
                )
                .await;
            assert!(
                kicked.status_codes.contains(&110),
                "the kick is about the third person"
            );
            assert_eq!(kicked.reason.as_deref(), Some("This chat is full."));
            let kick = common::bot::eventually("the kick event", WAIT, || async {
                let events = w
                    .store
                    .events(room.room_id)
                    .await
                    .map_err(|e| e.to_string())?;
                events
                    .into_iter()
                    .find(|e| e.kind == EventKind::Kicked)
                    .ok_or_else(|| "no kick event yet".to_owned())
            })
            .await;
            assert_eq!(kick.nick.as_deref(), Some("Extra"));
            assert_eq!(kick.role, Some(Role::Intruder));
            assert_eq!(
                (kick.from_status, kick.to_status),
                (Some(RoomStatus::Chatting), RoomStatus::Chatting)
            );
            true
        }
        Err(JoinError::Refused { condition }) => {
            assert!(
                w.server.limits_occupants(),
                "{} refused the third person ({condition}) although it has no occupant limit",
                w.server.name()
            );
            assert!(
                ["resource-constraint", "service-unavailable"].contains(&condition.as_str()),
                "a full room refuses with resource-constraint or service-unavailable, got {condition}"
            );
            false
        }
        Err(JoinError::Timeout) => panic!(
            "no answer to the third person's join\n{}",
            w.server.log_tail(30)
        ),
    };

    let row = w.row(room.room_id).await;
    assert_eq!(row.status, RoomStatus::Chatting);
    assert_eq!(row.staff_nick.as_deref(), Some("Counsellor"));
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));

    // The chat goes on and ends normally.
    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;
    staff.leave(&room.jid, "Counsellor").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
    let events = w.events(room.room_id).await;
    assert_eq!(
        events.iter().filter(|e| e.kind == EventKind::Left).count(),
        1,
        "the third person is not counted: {events:?}"
    );
    let kicks = events
        .iter()
        .filter(|e| e.kind == EventKind::Kicked)
        .count();
    let expected_kicks = usize::from(kicked_by_the_bot);
    assert_eq!(kicks, expected_kicks, "kick events: {events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.nick.as_deref() != Some("Extra") || e.kind == EventKind::Kicked),
        "the third person only ever appears as kicked: {events:?}"
    );
}

/// After the client left, a stranger with the password enters (the room has space on every
/// server): the bot kicks them as an intruder, and the staff member can still end the chat.
/// This proves the bot's own kick on every server. The stranger has no claim: nobody can
/// claim a room in `one_left`; they only know the password.
async fn a_stranger_entering_after_the_chat_is_kicked(server: ServerKind, backend: Backend) {
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: 1,
            max_rooms: 3,
            ..Default::default()
        },
    )
    .await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Guest").await;
    let mut stranger = w.person("stranger").await;
    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;

    stranger
        .join(&room.jid, "Stranger", Some(&room.password))
        .await
        .expect("the server admits the stranger: the room has space");
    let kicked = stranger
        .wait_for_presence(
            &room.jid,
            |p| !p.available && p.status_codes.contains(&307),
            WAIT,
        )
        .await;
    assert!(kicked.status_codes.contains(&110), "{kicked:?}");
    assert_eq!(kicked.reason.as_deref(), Some("This chat has ended."));
    let kick = common::bot::eventually("the kick event", WAIT, || async {
        let events = w
            .store
            .events(room.room_id)
            .await
            .map_err(|e| e.to_string())?;
        events
            .into_iter()
            .find(|e| e.kind == EventKind::Kicked)
            .ok_or_else(|| "no kick event yet".to_owned())
    })
    .await;
    assert_eq!(kick.nick.as_deref(), Some("Stranger"));
    assert_eq!(kick.role, Some(Role::Intruder));
    assert_eq!(
        (kick.from_status, kick.to_status),
        (Some(RoomStatus::OneLeft), RoomStatus::OneLeft)
    );

    staff.leave(&room.jid, "Counsellor").await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
    assert_eq!(row.close_reason, Some(CloseReason::Completed));
    let events = w.events(room.room_id).await;
    assert_eq!(
        history(&events),
        claimed_chat_then(&[
            (
                EventKind::Left,
                Some(RoomStatus::Chatting),
                RoomStatus::OneLeft
            ),
            (
                EventKind::Kicked,
                Some(RoomStatus::OneLeft),
                RoomStatus::OneLeft
            ),
            (
                EventKind::Closed,
                Some(RoomStatus::OneLeft),
                RoomStatus::Closed
            ),
        ])
    );
    assert_timestamps_ordered(&events);
}

/// The rest of one chat once its staff member waits: the client enters with their claim,
/// leaves, and the staff member leaves, as fast as the clients can go (the bot sees the
/// presences in the server's order).
async fn one_chat(claim: &Claim, i: usize, mut staff: TestClient, mut client: TestClient) {
    let (s, c) = (format!("Staff{i}"), format!("Guest{i}"));
    client
        .join(&claim.jid, &c, Some(&claim.password))
        .await
        .expect("client joins");
    client.leave(&claim.jid, &c).await;
    staff.leave(&claim.jid, &s).await;
    // Dropping the clients ends their streams in the background; how fast a hundred
    // logouts go under load is not what this test is about.
}

async fn fifty_chats_at_once_end_right_within_the_cap(server: ServerKind, backend: Backend) {
    const CHATS: usize = 50;
    const MAX: u64 = 60;
    let w = World::start(
        server,
        backend,
        BotOptions {
            available: CHATS as u32,
            max_rooms: MAX as u32,
            ..Default::default()
        },
    )
    .await;
    w.server.register("staff", "pw");
    w.server.register("client", "pw");
    w.available(CHATS).await;
    // 100 logins first, ten at a time (logging in is not what is tested here).
    let people: Vec<(TestClient, TestClient)> = futures::stream::iter(0..CHATS)
        .map(|_| async {
            (
                TestClient::connect(w.server.as_ref(), "staff", "pw").await,
                TestClient::connect(w.server.as_ref(), "client", "pw").await,
            )
        })
        .buffered(10)
        .collect()
        .await;
    let (mut staff, clients): (Vec<TestClient>, Vec<TestClient>) = people.into_iter().unzip();

    // Sample the open-room count while the chats run; it must never pass the cap (each
    // staff claim takes a room out of the pool, so the bot makes replacements meanwhile).
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let sampler = async {
        let mut max_open = 0;
        while sampling.load(std::sync::atomic::Ordering::Relaxed) {
            let counts = w.store.pool_counts(&w.bot.jid).await.expect("counts");
            max_open = max_open.max(counts.open);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max_open
    };
    let chats = async {
        // One claim per staff member, then all fifty enter at once.
        let mut rooms = Vec::new();
        for _ in 0..CHATS {
            rooms.push(w.claim_staff().await);
        }
        let entering = staff.iter_mut().zip(&rooms).enumerate();
        futures::future::join_all(entering.map(|(i, (person, room))| async move {
            person
                .join(&room.jid, &format!("Staff{i}"), Some(&room.password))
                .await
                .expect("staff joins")
        }))
        .await;
        for room in &rooms {
            wait_status(&w.store, room.room_id, RoomStatus::StaffWaiting).await;
        }
        // One claim per client: each goes to the staff member who has waited longest, so
        // in the server's order; every waiting room gets exactly one.
        let mut client_claims = std::collections::BTreeMap::new();
        for _ in 0..CHATS {
            let claim = w.claim_client().await;
            assert!(
                rooms.iter().any(|r| r.room_id == claim.room_id),
                "a client claim for a room no staff member of this test waits in: {claim:?}"
            );
            assert!(
                client_claims.insert(claim.room_id, claim).is_none(),
                "a room claimed twice for a client"
            );
        }
        let chats = staff.into_iter().zip(clients).zip(&rooms).enumerate();
        futures::future::join_all(
            chats.map(|(i, ((s, c), room))| one_chat(&client_claims[&room.room_id], i, s, c)),
        )
        .await;
        for room in &rooms {
            wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
        }
        // The pool refills to `available` (now possible: the chats' rooms are closed).
        w.available(CHATS).await;
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        rooms
    };
    let (max_open, rooms) = futures::join!(sampler, chats);
    assert!(max_open <= MAX, "{max_open} rooms open at once, cap {MAX}");

    for (i, room) in rooms.iter().enumerate() {
        let events = w.events(room.room_id).await;
        assert_eq!(
            history(&events),
            claimed_chat_then(&LEFT_THEN_CLOSED),
            "room {}",
            room.jid
        );
        assert_eq!(
            events[2].nick.as_deref(),
            Some(format!("Staff{i}").as_str())
        );
        assert_eq!(
            events[4].nick.as_deref(),
            Some(format!("Guest{i}").as_str())
        );
        assert_timestamps_ordered(&events);
        let row = w.row(room.room_id).await;
        assert_eq!(row.close_reason, Some(CloseReason::Completed));
    }
}
