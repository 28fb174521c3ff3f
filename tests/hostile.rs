//! Every presence from a room is seen (issue 20): a presence carrying XML that xmpp-parsers
//! refuses never hides a person from the bot. Real bot binary, real XMPP servers, real
//! clients sending hand-written XML.
//!
//! One test per payload class that a client can put in a presence, that Prosody relays to
//! the room as it is, and that xmpp-parsers refuses (tokio-xmpp 6 alone would drop the whole
//! stanza: "Received invalid stanza …; discarding silently"). Each shows, on one room:
//! - an intruder whose join carries it is removed, as fast as an ordinary intruder;
//! - a claimed client whose join carries it is admitted (the room becomes `chatting`);
//! - a client whose leave carries it is recorded leaving (the room becomes `one_left`).
//!
//! On ejabberd the same scenario runs: where ejabberd refuses such a presence itself
//! (`bad-request`), the test checks that the person is not inside, which is what matters.
//! Before issue 20 every Prosody test here failed: the intruder stayed, unseen; the client
//! never made the room `chatting`; the leave was never recorded.
//!
//! The bot runs with the production defaults (`require_claims = true`).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use helpim_bot::model::{EventKind, Role, RoomStatus};
use helpim_bot::store::RoomEvent;
use sea_orm::EntityTrait;

use common::bot::{BotOptions, eventually, wait_status};
use common::client::{JoinError, TestClient};
use common::db::Backend;
use common::raw::RawClient;
use common::server::ServerKind;
use common::world::World;

/// How long an intruder may stay inside: the bot kicks at once, so this is only the
/// deadline of the wait.
const KICK_DEADLINE: Duration = Duration::from_secs(5);

/// How long the scenario waits for the bot to record something it saw.
const WAIT: Duration = Duration::from_secs(20);

/// One test per server for each payload class (`payload_on_prosody::…`,
/// `payload_on_ejabberd::…`): `name => "<xml/>"`.
macro_rules! payload_classes {
    ($($name:ident => $xml:literal),+ $(,)?) => {
        mod payload_on_prosody {
            $(#[tokio::test] async fn $name() {
                super::a_payload_hides_nobody(super::ServerKind::Prosody, $xml).await
            })+
        }
        mod payload_on_ejabberd {
            $(#[tokio::test] async fn $name() {
                super::a_payload_hides_nobody(super::ServerKind::Ejabberd, $xml).await
            })+
        }
    };
}

// The same classes as the unit tests of `helpim_bot::xmpp::muc` (`REFUSED_PAYLOADS`).
payload_classes!(
    show_value_outside_rfc_6121 => "<show>online</show>",
    empty_show => "<show/>",
    two_shows => "<show>away</show><show>dnd</show>",
    priority_out_of_range => "<priority>200</priority>",
    priority_not_a_number => "<priority>high</priority>",
    two_priorities => "<priority>1</priority><priority>2</priority>",
);

on_every_server!(
    a_forged_too_many_conferences_error_is_not_believed,
    a_presence_type_outside_rfc_6121_hides_nobody,
    a_presence_the_bot_cannot_read_makes_it_ask_the_room,
);

/// Waits until `client` is removed from `room` by a kick (its own unavailable presence with
/// 110 and 307), and returns how long that took.
async fn kicked_within(client: &mut TestClient, room: &str, since: Instant) -> Duration {
    client.wait_kicked(room, KICK_DEADLINE).await;
    since.elapsed()
}

/// Waits for the `kicked` event of `nick` in this room, and checks it names an intruder.
async fn intruder_kick_recorded(w: &World, room_id: i64, nick: &str) {
    let kick = eventually(&format!("the kicked event of {nick}"), WAIT, || async {
        w.events(room_id)
            .await
            .into_iter()
            .find(|e| e.kind == EventKind::Kicked && e.nick.as_deref() == Some(nick))
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    assert_eq!(kick.role, Some(Role::Intruder), "{kick:?}");
}

/// Waits until the room is `one_left`, and returns the transition, checked to be `nick`'s.
async fn left_one_left(w: &World, room_id: i64, nick: &str) -> RoomEvent {
    wait_status(&w.store, room_id, RoomStatus::OneLeft).await;
    let left = w
        .events(room_id)
        .await
        .into_iter()
        .rfind(|e| e.to_status == RoomStatus::OneLeft)
        .expect("the one_left transition");
    assert_eq!(left.nick.as_deref(), Some(nick), "{left:?}");
    left
}

/// The scenario of one payload class: an intruder, a claimed client entering and the same
/// client leaving, each with `payload` in their presence.
async fn a_payload_hides_nobody(kind: ServerKind, payload: &str) {
    let w = World::start(kind, Backend::SqliteFile, BotOptions::default()).await;
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Staff").await;

    // An ordinary intruder first, for comparison.
    let mut eve = w.person("eve").await;
    let since = Instant::now();
    eve.join(&room.jid, "Eve", Some(&room.password))
        .await
        .expect("an intruder with the password gets in until the bot kicks");
    let ordinary = kicked_within(&mut eve, &room.jid, since).await;

    // The intruder whose join carries the payload.
    let mut mallory = w.person("mallory").await;
    let since = Instant::now();
    match mallory
        .join_with(&room.jid, "Mallory", Some(&room.password), payload)
        .await
    {
        Ok(_) => {
            let hostile = kicked_within(&mut mallory, &room.jid, since).await;
            eprintln!("kicked: ordinary intruder in {ordinary:?}, with {payload} in {hostile:?}");
            assert!(
                hostile < ordinary + Duration::from_secs(1),
                "the intruder with {payload} stayed {hostile:?}, an ordinary one {ordinary:?}"
            );
        }
        Err(JoinError::Refused { condition }) => {
            // The server itself refused the presence: nobody is inside unseen.
            assert_eq!(kind, ServerKind::Ejabberd, "Prosody relays {payload}");
            eprintln!("{kind:?} refuses a join with {payload} ({condition}): nothing to hide");
            assert_eq!(w.row(room.room_id).await.status, RoomStatus::StaffWaiting);
            return;
        }
        Err(other) => panic!("the intruder's join: {other:?}"),
    }
    intruder_kick_recorded(&w, room.room_id, "Mallory").await;

    // The claimed client whose join carries the payload is admitted.
    let mut client = w.person("client").await;
    let claim = w.claim_client().await;
    assert_eq!(claim.room_id, room.room_id);
    client
        .join_with(&claim.jid, "Guest", Some(&claim.password), payload)
        .await
        .unwrap_or_else(|e| panic!("the claimed client's join with {payload}: {e:?}"));
    let row = wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));

    // The same client leaves with the payload in the unavailable presence: recorded.
    client.leave_with(&claim.jid, "Guest", payload).await;
    left_one_left(&w, room.room_id, "Guest").await;
}

/// A presence error that says "too many conferences" (ejabberd's `max_user_conferences`
/// refusal), sent by a stranger to the bot, is not believed: the bot logs nothing about it
/// as a room and opens no room log for the stranger. Before issue 20 it logged an ERROR
/// telling the operator to change ejabberd, in a room log named after the stranger.
async fn a_forged_too_many_conferences_error_is_not_believed(kind: ServerKind) {
    let w = World::start(kind, Backend::SqliteFile, BotOptions::default()).await;
    w.available(3).await;
    let lease = entity::bot_instance::Entity::find_by_id(w.bot.jid.clone())
        .one(w.store.connection())
        .await
        .expect("read the lease")
        .expect("the bot holds a lease");
    let bot = format!(
        "{}/{}",
        w.bot.jid,
        lease.xmpp_resource.expect("the bot's resource")
    );
    let mut stranger = w.person("stranger").await;
    let forged: minidom::Element = format!(
        "<presence xmlns='jabber:client' to='{bot}' type='error'>
           <error type='wait'>
             <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>You have joined too many conferences</text>
           </error>
         </presence>"
    )
    .parse()
    .unwrap();
    stranger.send(forged).await;
    // The bot handles its stanzas in order: once it answers a ping sent after the forged
    // presence, it has read that presence.
    let ping = minidom::Element::builder("ping", "urn:xmpp:ping").build();
    stranger
        .iq_get(&bot, ping)
        .await
        .expect("the bot answers a ping");
    let log = w.bot.log_text();
    assert!(
        !log.contains("max_user_conferences"),
        "a stranger's forged error made the bot tell the operator to change ejabberd:\n{log}"
    );
    let stranger_jid = stranger.jid().to_bare().to_string();
    let room_logs: Vec<String> = std::fs::read_dir(&w.bot.room_dir)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !room_logs.iter().any(|name| name.contains(&stranger_jid)),
        "a room log was opened for a stranger: {room_logs:?}"
    );
}

/// A join whose `type` RFC 6121 does not define (`online`), written by a raw client: no XMPP
/// library would send it, and xmpp-parsers cannot read it. If the server relays it, the bot
/// cannot read the presence's type, asks the room who is inside, and judges whoever it finds
/// on their claims: the intruder is kicked, the claimed client admitted. If the server refuses
/// it, nobody got in. Either way nobody is inside unseen.
async fn a_presence_type_outside_rfc_6121_hides_nobody(kind: ServerKind) {
    let w = World::start(kind, Backend::SqliteFile, BotOptions::default()).await;
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Staff").await;
    let join = |nick: &str, password: &str| {
        format!(
            "<presence to='{}/{nick}' type='online'>\
               <x xmlns='http://jabber.org/protocol/muc'><password>{password}</password>\
               <history maxstanzas='0'/></x></presence>",
            room.jid
        )
    };

    w.server.register("mallory", "pw");
    let mut mallory = RawClient::connect(w.server.as_ref(), "mallory", "pw").await;
    mallory.send(&join("Mallory", &room.password)).await;
    // The answer to the join: the occupant list and our own presence, or an error.
    let answer = mallory.wait_for_text("</presence>").await;
    if answer.contains("type='error'") || answer.contains("type=\"error\"") {
        eprintln!("{kind:?} refuses a join of type online: {answer}");
        assert_eq!(w.row(room.room_id).await.status, RoomStatus::StaffWaiting);
        return;
    }
    let kicked = mallory.wait_for_text("307").await;
    eprintln!("{kind:?} relayed a join of type online; the intruder was kicked: {kicked}");
    intruder_kick_recorded(&w, room.room_id, "Mallory").await;

    let claim = w.claim_client().await;
    assert_eq!(claim.room_id, room.room_id);
    w.server.register("client", "pw");
    let mut client = RawClient::connect(w.server.as_ref(), "client", "pw").await;
    client.send(&join("Guest", &claim.password)).await;
    let row = wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));
}

/// A presence from one of the bot's rooms whose important parts the bot cannot read (here a
/// muc#user item whose real JID is no JID) makes the bot ask the room who is inside
/// (`muc#admin` role lists) and judge what it finds: an intruder is kicked, a claimed client
/// admitted with the real JID the room lists, and a departure the bot could not read is
/// recorded once the room no longer lists the person. Neither server relays such a
/// presence (they write muc#user themselves), so the test-only fault
/// `HELPIM_FAULT_UNREADABLE_NICKS` breaks the item of these nicks' presences as they arrive;
/// the room's answers are the servers' own.
async fn a_presence_the_bot_cannot_read_makes_it_ask_the_room(kind: ServerKind) {
    let options = BotOptions {
        env: vec![(
            "HELPIM_FAULT_UNREADABLE_NICKS".into(),
            "Mallory,Guest".into(),
        )],
        ..BotOptions::default()
    };
    let w = World::start(kind, Backend::SqliteFile, options).await;
    let mut staff = w.person("staff").await;
    let room = w.staff_enters(&mut staff, "Staff").await;

    let mut mallory = w.person("mallory").await;
    let since = Instant::now();
    mallory
        .join(&room.jid, "Mallory", Some(&room.password))
        .await
        .expect("an intruder with the password gets in until the bot kicks");
    let took = kicked_within(&mut mallory, &room.jid, since).await;
    eprintln!("{kind:?}: the intruder the bot could not read was kicked in {took:?}");
    intruder_kick_recorded(&w, room.room_id, "Mallory").await;

    let mut client = w.person("client").await;
    let claim = w.claim_client().await;
    client
        .join(&claim.jid, "Guest", Some(&claim.password))
        .await
        .expect("the claimed client's join");
    let row = wait_status(&w.store, room.room_id, RoomStatus::Chatting).await;
    assert_eq!(row.client_nick.as_deref(), Some("Guest"));
    assert_eq!(
        row.client_jid,
        Some(client.jid().to_bare().to_string()),
        "the client's real JID, as the room lists it"
    );

    client.leave(&claim.jid, "Guest").await;
    let left = left_one_left(&w, room.room_id, "Guest").await;
    assert!(left.detail.contains("no longer lists"), "{left:?}");
    assert!(w.bot.log_text().contains("asking the room who is inside"));
}
