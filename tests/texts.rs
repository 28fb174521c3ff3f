//! The words people read are the helpline's: with `texts.language = "nl"` an unclaimed
//! intruder is kicked in Dutch and the person left alone is told in Dutch that the chat
//! ended; an overridden text is what arrives; the room's history keeps the English words.
//! On Prosody and ejabberd, with real clients.

#[macro_use]
mod common;

use std::time::Duration;

use helpim_bot::model::{EventKind, RoomStatus};
use minidom::Element;

use common::bot::{BotOptions, wait_status};
use common::client::{PresenceSeen, TestClient};
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(15);

/// A Dutch bot. `one_left_secs = 2` instead of the default ten minutes, so that the
/// `one_left` timer closes the room within the test.
fn dutch(overrides: &str) -> BotOptions {
    BotOptions {
        extra: format!("one_left_secs = 2\n[texts]\nlanguage = \"nl\"\n{overrides}"),
        ..Default::default()
    }
}

/// A stranger with the password enters the staff member's room before any client claim:
/// returns the room, the staff member (inside while the value lives) and the stranger's kick.
async fn stranger_enters_a_waiting_room(
    w: &World,
) -> (helpim_bot::claims::Claim, TestClient, PresenceSeen) {
    let mut staff = w.person("staff").await;
    let claim = w.staff_enters(&mut staff, "Counsellor").await;
    let mut stranger = w.person("stranger").await;
    stranger
        .join(&claim.jid, "Mallory", Some(&claim.password))
        .await
        .expect("the server lets the stranger in: they have the password");
    let kicked = stranger.wait_kicked(&claim.jid, WAIT).await;
    (claim, staff, kicked)
}

async fn dutch_words_reach_the_people_and_the_history_stays_english(server: ServerKind) {
    let w = World::start(server, Backend::SqliteFile, dutch("")).await;
    let (claim, mut staff, kicked) = stranger_enters_a_waiting_room(&w).await;
    assert_eq!(
        kicked.reason.as_deref(),
        Some("Dit gesprek is niet voor jou bedoeld."),
        "{kicked:?}"
    );
    let kick = w.first_event(claim.room_id, EventKind::Kicked).await;
    assert_eq!(kick.detail, "This room has not been assigned to you.");

    let mut client = w.person("client").await;
    w.client_enters(&claim, &mut client, "Gast").await;
    client.leave(&claim.jid, "Gast").await;
    wait_status(&w.store, claim.room_id, RoomStatus::OneLeft).await;

    // The one_left timer: the staff member is told, in Dutch, then the room goes.
    let notice = staff
        .wait_for(
            "the bot's notice",
            |el: &Element| {
                el.name() == "message"
                    && el.attr("type") == Some("groupchat")
                    && el.get_child("body", "jabber:client").is_some()
            },
            WAIT,
        )
        .await;
    let body = notice.get_child("body", "jabber:client").unwrap();
    assert_eq!(
        body.text(),
        "Dit gesprek is afgelopen: de ander is weggegaan."
    );
    assert_eq!(
        body.attr_ns("http://www.w3.org/XML/1998/namespace", "lang"),
        Some("nl"),
        "{}",
        common::client::element_to_string(&notice)
    );
    let destroyed = staff
        .wait_for_presence(&claim.jid, |p| p.destroyed, WAIT)
        .await;
    assert_eq!(
        destroyed.reason.as_deref(),
        Some("Dit gesprek is afgelopen: de ander is weggegaan.")
    );
    wait_status(&w.store, claim.room_id, RoomStatus::Closed).await;
}

async fn an_overridden_text_is_what_arrives(server: ServerKind) {
    let words = "Sorry, dit gesprek is voor iemand anders. Neem gerust contact met ons op.";
    let w = World::start(
        server,
        Backend::SqliteFile,
        dutch(&format!("kick_not_assigned = {words:?}")),
    )
    .await;
    let (claim, _staff, kicked) = stranger_enters_a_waiting_room(&w).await;
    assert_eq!(kicked.reason.as_deref(), Some(words), "{kicked:?}");
    // The history keeps the stable English words, whatever the helpline wrote.
    let kick = w.first_event(claim.room_id, EventKind::Kicked).await;
    assert_eq!(kick.detail, "This room has not been assigned to you.");
}

on_every_server!(
    dutch_words_reach_the_people_and_the_history_stays_english,
    an_overridden_text_is_what_arrives,
);
