//! Whether the bot is ready to serve: the one answer behind `/readyz`, systemd's `READY=1`
//! and the watchdog's health line.
//!
//! Ready means: the lease on the bot JID is held, the XMPP session is up, the rooms
//! recorded before start-up are accounted for, the bot is not shutting down, and (checked
//! on demand, [`not_ready`]) the database answers. Each condition is set by the part of
//! the bot that knows it ([`crate::app`], the supervisor) and mirrored into its gauge
//! (`helpim_lease_held`, `helpim_xmpp_session_up`, `helpim_recovery_done`), so that the
//! probe and the metrics never disagree.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics::{self, Metrics};
use crate::store::Store;

/// How long a probe or a page waits for the database before answering without it.
pub const DATABASE_DEADLINE: Duration = Duration::from_secs(3);

/// The conditions of readiness that the bot's parts set as they change.
pub struct Readiness {
    /// Where each condition is mirrored as a gauge.
    metrics: &'static Metrics,
    /// This process holds (and renews) the bot JID's lease.
    lease_held: AtomicBool,
    /// The XMPP session is online.
    session_up: AtomicBool,
    /// The recorded rooms are accounted for after start-up.
    recovery_done: AtomicBool,
    /// Shutdown began: never ready again.
    stopping: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("not_ready", &self.missing())
            .finish_non_exhaustive()
    }
}

/// The process-wide readiness, mirrored into the process-wide metrics.
static READINESS: LazyLock<Readiness> = LazyLock::new(|| Readiness::new(metrics::metrics()));

/// The process-wide readiness.
pub fn readiness() -> &'static Readiness {
    &READINESS
}

impl Readiness {
    /// Nothing ready yet; each condition is mirrored into `metrics`.
    pub fn new(metrics: &'static Metrics) -> Readiness {
        Readiness {
            metrics,
            lease_held: AtomicBool::new(false),
            session_up: AtomicBool::new(false),
            recovery_done: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// Records whether this process holds its lease.
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.store(held, Ordering::Relaxed);
        self.metrics.lease_held.set(i64::from(held));
    }

    /// Records whether the XMPP session is online.
    pub fn set_session_up(&self, up: bool) {
        self.session_up.store(up, Ordering::Relaxed);
        self.metrics.xmpp_session_up.set(i64::from(up));
    }

    /// Records that the recorded rooms are accounted for after start-up.
    pub fn set_recovery_done(&self) {
        self.recovery_done.store(true, Ordering::Relaxed);
        self.metrics.recovery_done.set(1);
    }

    /// Records that the bot is shutting down: it is no longer ready.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// What readiness lacks besides the database, as one line for people; `None` when
    /// nothing.
    pub fn missing(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if !self.lease_held.load(Ordering::Relaxed) {
            Some("the lease on the bot JID is not held")
        } else if !self.session_up.load(Ordering::Relaxed) {
            Some("the XMPP session is not up")
        } else if !self.recovery_done.load(Ordering::Relaxed) {
            Some("the recorded rooms are still being recovered")
        } else {
            None
        }
    }
}

/// Why the bot is not ready, as one line; `None` when it is. Asks the database (within
/// three seconds) only when everything else is ready.
pub async fn not_ready(readiness: &Readiness, store: &Store) -> Option<String> {
    if let Some(why) = readiness.missing() {
        return Some(why.to_owned());
    }
    match tokio::time::timeout(DATABASE_DEADLINE, store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("the database does not answer ({error})")),
        Err(_) => Some(format!(
            "the database did not answer within {DATABASE_DEADLINE:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_missing_and_mirrors_it_into_the_gauges() {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let r = Readiness::new(metrics);
        assert_eq!(r.missing(), Some("the lease on the bot JID is not held"));
        r.set_lease_held(true);
        assert_eq!(metrics.lease_held.get(), 1);
        assert_eq!(r.missing(), Some("the XMPP session is not up"));
        r.set_session_up(true);
        assert_eq!(metrics.xmpp_session_up.get(), 1);
        assert_eq!(
            r.missing(),
            Some("the recorded rooms are still being recovered")
        );
        r.set_recovery_done();
        assert_eq!(metrics.recovery_done.get(), 1);
        assert_eq!(r.missing(), None);
        r.set_stopping();
        assert_eq!(r.missing(), Some("shutting down"));
    }
}
