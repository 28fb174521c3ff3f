//! systemd's notify protocol (`Type=notify`): `READY=1` once the bot can serve, `WATCHDOG=1`
//! while it is healthy, `STOPPING=1` at shutdown, each with a one-line `STATUS=`.
//!
//! Every function does nothing when the process was not started by systemd (no
//! `NOTIFY_SOCKET`), so the same binary runs under any supervisor or in a terminal.
//!
//! Healthy means: the lease is held, the XMPP session is up, recovery is done, and the
//! supervisor actor answers a message within the watchdog interval (so that a wedged actor
//! system stops the pings and systemd restarts the process). A database outage alone does
//! not stop the pings: the bot rides it out by design, its writes waiting in order.

use std::time::Duration;

use actix::Addr;
use sd_notify::NotifyState;

use crate::actors::supervisor::{Alive, SupervisorActor};

/// Sends `states`; a failure is logged once per call and otherwise ignored (systemd then
/// times the start out or the watchdog fires, which is the right outcome).
fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(states) {
        log::warn!("cannot notify systemd: {error}");
    }
}

/// One-line `STATUS=` for `systemctl status`, without `READY`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// `STOPPING=1` with a status line: shutdown began.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down: closing unused rooms"),
    ]);
}

/// Waits until the bot is ready, sends `READY=1`, then keeps the watchdog fed while the bot
/// is healthy (when systemd asked for a watchdog). Runs until the process ends.
pub async fn supervise(supervisor: Addr<SupervisorActor>, bot: String) {
    let poll = Duration::from_millis(50);
    while crate::readiness::readiness().missing().is_some() {
        tokio::time::sleep(poll).await;
    }
    let line = format!("ready: {bot}, lease held, XMPP session up, recovery done");
    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
    log::info!("{line}");

    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = timeout / 2;
    log::info!("systemd watchdog: {timeout:?}; notifying every {every:?} while healthy");
    let mut tick = tokio::time::interval(every);
    let mut was_healthy = true;
    loop {
        tick.tick().await;
        let healthy = matches!(
            tokio::time::timeout(every, supervisor.send(Alive)).await,
            Ok(Ok(true))
        );
        if healthy {
            send(&[NotifyState::Watchdog]);
            if !was_healthy {
                status(&format!("healthy again: {bot}"));
            }
        } else if was_healthy {
            let why = crate::readiness::readiness()
                .missing()
                .unwrap_or("the supervisor does not answer");
            log::warn!("unhealthy ({why}): the systemd watchdog is no longer notified");
            status(&format!("unhealthy: {why}"));
        }
        was_healthy = healthy;
    }
}
