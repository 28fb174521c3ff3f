//! One clock (issue 21): the bot's host clock two minutes ahead of the database's, or two
//! minutes behind, changes nothing. Every time is on the database's clock. Real bot binary
//! under Debian's `faketime` (its monotonic clock left alone), real Prosody, PostgreSQL and
//! MariaDB. SQLite runs on one host, so its clock is the host's: not tested here.
//!
//! The test process plays the web application, on the true clock, through the contract's
//! statements (`helpim_bot::claims`).
//!
//! Before issue 21:
//! - bot ahead: a claim expired the moment it was made, and a staff member who followed a
//!   fresh claim was kicked as unclaimed;
//! - bot behind: no claim found any room, because the bot's heartbeat looked stale.
//!
//! `staff_claim_secs = 20` instead of the default 120, so that the expiry is seen within the
//! test: long enough to tell "after its time to live" from "at once".

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use helpim_bot::model::RoomStatus;

use common::bot::{BotOptions, eventually};
use common::db::Backend;
use common::server::ServerKind;
use common::world::World;

/// The claim time to live of these tests (see the module doc).
const TTL: Duration = Duration::from_secs(20);

/// One test per database and skew: `on_postgres::bot_ahead`, ….
macro_rules! on_every_skew {
    ($($module:ident: $backend:ident),+ $(,)?) => {
        $(mod $module {
            #[tokio::test]
            async fn bot_two_minutes_ahead() {
                super::one_clock(super::Backend::$backend, "+120s").await
            }
            #[tokio::test]
            async fn bot_two_minutes_behind() {
                super::one_clock(super::Backend::$backend, "-120s").await
            }
        })+
    };
}

on_every_skew!(on_postgres: Postgres, on_mariadb: MariaDb);

/// `faketime` is needed; say how to get it when it is missing.
fn faketime() -> String {
    let found = std::process::Command::new("faketime")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "faketime is not installed: apt-get install faketime (scripts/test-all does)"
    );
    "faketime".to_owned()
}

/// A full chat, then an unused claim that expires after its time to live, with the bot's
/// clock `skew` off.
async fn one_clock(backend: Backend, skew: &str) {
    let options = BotOptions {
        wrapper: vec![faketime(), "-f".into(), skew.into()],
        env: vec![("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into())],
        extra: format!("staff_claim_secs = {}", TTL.as_secs()),
        ..BotOptions::default()
    };
    let w = World::start(ServerKind::Prosody, backend, options).await;
    w.available(3).await;
    assert!(
        w.bot.log_text().contains("the database's clock is"),
        "the bot measured no offset: is faketime working?\n{}",
        w.bot.log_tail(20)
    );

    // A whole chat: claims find rooms (the heartbeat is fresh on the database's clock) and
    // the staff member who follows a fresh claim is let in.
    let (room, _staff, mut client) = w.chat("Staff", "Guest").await;
    client.leave(&room.jid, "Guest").await;
    common::bot::wait_status(&w.store, room.room_id, RoomStatus::OneLeft).await;

    // An unused staff claim is released after its time to live: not at once, not never.
    let claim = w.claim_staff().await;
    let made = Instant::now();
    let released = eventually("the unused claim released", TTL * 3, || async {
        let row = w.row(claim.room_id).await;
        match row.staff_claimed_at {
            None => Ok(made.elapsed()),
            Some(_) => Err(format!("claimed {:?} ago", made.elapsed())),
        }
    })
    .await;
    eprintln!("{backend:?}, bot {skew}: the claim was released after {released:?}");
    assert!(
        released >= TTL - Duration::from_secs(1),
        "released after {released:?}, before its time to live ({TTL:?})"
    );
}
