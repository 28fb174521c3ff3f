//! What `helpim-bot health` reports: who holds a bot JID's lease, how fresh its heartbeat
//! is, and the JID's room counts. It only reads.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::find;
use crate::store::{self, PoolCounts, Store, StoreError};

/// The holder of a bot JID's lease as the health check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id.
    pub pid: i64,
    /// The holder's host name.
    pub host: String,
    /// When it acquired the lease (its clock).
    pub acquired_at: DateTime<Utc>,
    /// When it last renewed the lease (its clock).
    pub heartbeat_at: DateTime<Utc>,
    /// How many times it renewed the lease.
    pub renewals: i64,
}

/// What `helpim-bot health` reports: who holds the bot JID's lease, how fresh its heartbeat
/// is, and the JID's room counts. [`Display`](std::fmt::Display) gives the one line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The bot JID checked.
    pub bot_jid: String,
    /// The lease holder; `None` when no process holds the lease (not running, or stopped
    /// cleanly).
    pub holder: Option<Holder>,
    /// When the check ran (the database's clock, UTC, like the heartbeat).
    pub checked_at: DateTime<Utc>,
    /// The ttl the bot runs with.
    pub ttl: Duration,
    /// The JID's rooms ready to hand out and open.
    pub counts: PoolCounts,
}

impl HealthReport {
    /// How old the heartbeat is (negative when it is in the future: somebody wrote it with
    /// another clock); `None` without a holder.
    pub fn heartbeat_age(&self) -> Option<chrono::TimeDelta> {
        self.holder
            .as_ref()
            .map(|holder| self.checked_at - holder.heartbeat_at)
    }

    /// The age beyond which a heartbeat is stale: two renewal intervals (two thirds of the
    /// ttl), i.e. at least one renewal was missed.
    pub fn stale_after(&self) -> Duration {
        self.ttl * 2 / 3
    }

    /// Held, and the heartbeat no older (nor further in the future) than
    /// [`HealthReport::stale_after`].
    pub fn is_healthy(&self) -> bool {
        let limit =
            chrono::TimeDelta::from_std(self.stale_after()).unwrap_or(chrono::TimeDelta::MAX);
        self.heartbeat_age()
            .is_some_and(|age| age <= limit && -age <= limit)
    }
}

/// `2.5 s` below ten seconds, `95 s` above: precise where it matters, short otherwise.
fn seconds(delta: chrono::TimeDelta) -> String {
    let secs = delta.as_seconds_f64().abs();
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}

impl std::fmt::Display for HealthReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_healthy() {
            "healthy"
        } else {
            "unhealthy"
        };
        let rooms = format!(
            "{} rooms ready, {} open",
            self.counts.ready, self.counts.open
        );
        let (Some(holder), Some(age)) = (&self.holder, self.heartbeat_age()) else {
            return write!(
                f,
                "{state}: {} is held by no process (not running, or stopped cleanly), {rooms}",
                self.bot_jid
            );
        };
        let who = format!("pid {} on host {}", holder.pid, holder.host);
        let limit = seconds(chrono::TimeDelta::from_std(self.stale_after()).unwrap_or_default());
        if self.is_healthy() {
            write!(
                f,
                "{state}: {} held by {who}, heartbeat {} ago, {rooms}",
                self.bot_jid,
                seconds(age)
            )
        } else if age < chrono::TimeDelta::zero() {
            write!(
                f,
                "{state}: {} held by {who}, whose heartbeat is {} in the future (limit {limit}): \
                 this machine's clock disagrees with the bot's, {rooms}",
                self.bot_jid,
                seconds(age)
            )
        } else {
            write!(
                f,
                "{state}: {} held by {who}, no heartbeat for {} (limit {limit}), {rooms}",
                self.bot_jid,
                seconds(age)
            )
        }
    }
}

/// Checks the lease and room counts of `bot_jid` for an operator or a supervisor: healthy
/// when a process holds the lease and renewed it within two thirds of `ttl` (the bot
/// renews every third), on the database's clock. Reads only; never touches the lease.
pub async fn health(
    store: &Store,
    bot_jid: &str,
    ttl: Duration,
) -> Result<HealthReport, StoreError> {
    let row = find(store.connection(), bot_jid).await?;
    let counts = store.pool_counts(bot_jid).await?;
    Ok(HealthReport {
        bot_jid: bot_jid.to_owned(),
        holder: row.map(|row| Holder {
            pid: row.pid,
            host: row.host,
            acquired_at: row.acquired_at,
            heartbeat_at: row.heartbeat_at,
            renewals: row.renewals,
        }),
        checked_at: store::now(),
        ttl,
        counts,
    })
}
