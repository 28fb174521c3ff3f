//! One person, several sessions: a staff member who opens the chat on a second device (same
//! account, another nick) is that person, not a third person. Neither kicked nor counted
//! twice; the seat is left when the last of their sessions leaves.

#[macro_use]
mod common;

use std::time::Duration;

use helpim_bot::model::RoomStatus;

use common::bot::{BotOptions, wait_status};
use common::client::TestClient;
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

const WAIT: Duration = Duration::from_secs(15);

async fn a_second_device_of_the_staff_member_is_that_person(server: ServerKind, backend: Backend) {
    let w = World::start(server, backend, BotOptions::default()).await;
    let (room, mut staff, mut client) = w.chat("Counsellor", "Guest").await;

    // The same account, a second connection (another resource), another nick.
    let mut tablet = TestClient::connect(w.server.as_ref(), "staff", "pw").await;
    tablet
        .join(&room.jid, "Counsellor (tablet)", Some(&room.password))
        .await
        .expect("the server lets the second device in");
    // A stranger after it: the bot handles a room's presences in order, so once the
    // stranger is kicked, the tablet's entrance has been decided.
    let mut stranger = w.person("stranger").await;
    stranger
        .join(&room.jid, "Mallory", Some(&room.password))
        .await
        .expect("the server lets the stranger in");
    stranger.wait_kicked(&room.jid, WAIT).await;
    assert!(
        tablet
            .presence_within(
                &room.jid,
                |p| p.from_nick.as_deref() == Some("Counsellor (tablet)") && !p.available,
                Duration::from_secs(1),
            )
            .await
            .is_none(),
        "the second device was not kicked"
    );
    assert_eq!(w.row(room.room_id).await.status, RoomStatus::Chatting);

    // The first device goes: the staff member is still there, on the tablet.
    staff.leave(&room.jid, "Counsellor").await;
    let row = common::bot::eventually("the staff nick to follow the tablet", WAIT, || async {
        let row = w.row(room.room_id).await;
        match row.staff_nick.as_deref() {
            Some("Counsellor (tablet)") => Ok(row),
            other => Err(format!("staff_nick {other:?}")),
        }
    })
    .await;
    assert_eq!(row.status, RoomStatus::Chatting);
    // The last one goes: the seat is left.
    tablet.leave(&room.jid, "Counsellor (tablet)").await;
    wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;
    client.leave(&room.jid, "Guest").await;
    wait_status(&w.store, room.room_id, RoomStatus::Closed).await;
}

on_every_server_and_backend!(a_second_device_of_the_staff_member_is_that_person);
