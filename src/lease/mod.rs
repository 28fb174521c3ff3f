//! The lease that makes one process, and only one, manage the rooms of a bot JID.
//!
//! Several bot instances with different JIDs share one database; two processes started with
//! the same JID (a second host, a forgotten terminal, a supervisor that restarts too early)
//! must never both manage its rooms. Each JID has at most one row in `bot_instance`, the
//! lease: the process that holds it writes a random token of its own in `holder` and renews
//! the row every [`Lease::renew_interval`] (a third of the ttl), bumping `renewals` and
//! `heartbeat_at`.
//!
//! # Atomicity
//!
//! Every change is one statement whose outcome the database decides: acquiring a free JID
//! is an `INSERT` (the primary key lets exactly one of several concurrent inserts through);
//! taking over a dead holder's lease is an `UPDATE … WHERE holder = <seen> AND renewals =
//! <seen>` (a compare-and-swap: exactly one taker matches, and a holder that renewed in the
//! meantime makes it match nothing); renewing and releasing are `UPDATE`/`DELETE … WHERE
//! holder = <my token>`, so a process whose lease was taken over finds out
//! ([`LeaseError::Lost`]) instead of overwriting the new holder. This holds on SQLite,
//! PostgreSQL and MySQL/MariaDB alike, without transactions or locks.
//!
//! # Clocks
//!
//! Who may take over never depends on machines' clocks agreeing: a would-be taker watches
//! the row and takes it only when `renewals` stayed unchanged for a whole ttl as measured by
//! its *own* monotonic clock ([`acquire`] therefore waits up to one ttl when it finds a
//! lease held). The holder, for its part, considers its lease valid only until three
//! quarters of a ttl after the *start* of its last successful renewal
//! ([`Lease::valid_until`], again its own monotonic clock); [`Lease::keep_alive`] returns
//! [`LeaseError::Expired`] then. Any renewal the taker did not see started before the
//! taker's first look, so the holder gives up at least a quarter of a ttl before a taker can
//! step in. The only assumption is that monotonic clocks run at about the same rate and that
//! a process is not frozen (suspended, stopped VM) for longer than that quarter: no lease
//! can guard against a holder that wakes up unaware that time has passed.
//!
//! `heartbeat_at` and `acquired_at` are UTC on the database's clock
//! ([`crate::store::now`]), microsecond precision like every timestamp of the store; they
//! are for people, for the claims' cutoff and for [`health`], which compares `heartbeat_at`
//! with the database's clock too.
//!
//! Layout: this file is the lease; `identity.rs` is who a process is (token, pid, host,
//! `/proc` scope and start time, and proving a holder dead by them); `health.rs` is the
//! report of `helpim-bot health`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::bot_instance;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, SqlErr,
};
use tokio::time::Instant;

use crate::store::{self, Store, StoreError};

mod health;
mod identity;

pub use health::{HealthReport, Holder, health};
use identity::{Identity, dead_here};

/// The lease's time to live when nothing else is configured: the bot renews every 10 s,
/// gives up 22.5 s after its last good renewal when it cannot renew (database unreachable),
/// and a restarted bot takes over from a killed one after watching it silent for 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Why a lease could not be acquired or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live process holds the lease on this JID: its lease changed while this
    /// process watched it. Running two processes with one JID is a mistake to fix, not to
    /// retry quickly.
    #[error(
        "{bot_jid} is already managed by {holder_description} (last heartbeat {}), which \
         renewed its lease while this process watched: stop that process first, or give \
         this instance its own xmpp.jid",
        heartbeat_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    Held {
        /// The bot JID asked for.
        bot_jid: String,
        /// Who holds it, e.g. `pid 123 on host x`.
        holder_description: String,
        /// The holder's last heartbeat (its clock, UTC).
        heartbeat_at: DateTime<Utc>,
    },
    /// Another process took the lease over (this one was silent for a whole ttl as that
    /// process saw it), or the row was deleted: this process must stop managing the
    /// JID's rooms at once and exit non-zero.
    #[error(
        "the lease on {bot_jid} was {}: this process must stop managing its rooms",
        taken_by.as_deref().map_or_else(
            || "deleted from the database".to_owned(),
            |by| format!("taken over by {by}"),
        )
    )]
    Lost {
        /// The bot JID of the lease.
        bot_jid: String,
        /// Who holds it now, when somebody does.
        taken_by: Option<String>,
    },
    /// The lease could not be renewed for so long that another process may soon take it
    /// over (database unreachable or too slow): this process must stop managing the JID's
    /// rooms before that can happen. Renewing may succeed again later if nobody took over.
    #[error(
        "the lease on {bot_jid} could not be renewed for {:.1} s: this process stops \
         managing its rooms before another one may take them over",
        silent_for.as_secs_f64()
    )]
    Expired {
        /// The bot JID of the lease.
        bot_jid: String,
        /// How long since the last successful renewal started.
        silent_for: Duration,
        /// The last renewal's error, if it failed rather than hung.
        #[source]
        last_error: Option<StoreError>,
    },
    /// The database failed a lease statement; the lease is neither known held nor lost.
    #[error("the lease table in the database")]
    Store(#[from] StoreError),
}

/// Lease statements are plain SeaORM calls: their failures are the store's database errors.
impl From<DbErr> for LeaseError {
    fn from(err: DbErr) -> Self {
        LeaseError::Store(StoreError::Db(err))
    }
}

/// This process's claim on a bot JID, held from [`acquire`] until [`Lease::release`].
///
/// Dropping a lease without releasing it leaves the row behind, as a crash does: another
/// process takes it over after watching it silent for a ttl.
#[derive(Debug)]
pub struct Lease {
    /// The database holding the row; a clone sharing the bot's pool.
    store: Store,
    /// The JID (the row's key).
    bot_jid: String,
    /// This process's random token, required by every renewal and the release.
    token: String,
    /// The time to live every process of this JID uses.
    ttl: Duration,
    /// When the last successful renewal (or the acquisition) was sent: the start of the
    /// validity window, on this process's monotonic clock.
    renewed: Mutex<Instant>,
    /// Session records are numbered when they are made ([`Lease::record_session`]) ...
    session_tickets: AtomicU64,
    /// ... and the number of the last one written is kept under this lock, so that an older
    /// record that runs late (a "down" after the "up" that followed it) is not written.
    session_written: tokio::sync::Mutex<u64>,
}

/// What a holder's XMPP session looks like to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionProbe {
    /// The server says no such session exists: the holder is gone.
    Gone,
    /// The session answered.
    Alive,
    /// No answer either way (a session in stream-management hibernation, a slow server).
    Unknown,
}

/// Asks the XMPP server about a full JID (the holder's session); given by the caller, so
/// that this module knows no XMPP.
pub type Prober =
    Box<dyn Fn(String) -> futures::future::BoxFuture<'static, SessionProbe> + Send + Sync>;

/// How [`acquire_with`] waits for a lease that another process holds.
#[derive(Default)]
pub struct AcquireOptions {
    /// Wait as a hot standby while the holder is alive, instead of failing with
    /// [`LeaseError::Held`]; take over as soon as it is proved dead or falls silent.
    pub standby: bool,
    /// Asks the server whether the holder's XMPP session still exists.
    pub probe: Option<Prober>,
    /// The resource of this process's XMPP session, recorded in the row.
    pub xmpp_resource: Option<String>,
}

/// `pid 123 on host x`: how a holder is named to operators.
fn describe(row: &bot_instance::Model) -> String {
    format!("pid {} on host {}", row.pid, row.host)
}

/// How often a would-be taker looks at the row while it waits, and how soon
/// [`Lease::keep_alive`] retries a failed renewal.
fn poll_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// How long a holder may act after its last good renewal started: three quarters of the
/// ttl, room for two renewals (every third) yet a quarter of a ttl before any taker.
fn validity(ttl: Duration) -> Duration {
    ttl - ttl / 4
}

/// The lease row of `bot_jid`, if any.
async fn find(
    db: &DatabaseConnection,
    bot_jid: &str,
) -> Result<Option<bot_instance::Model>, DbErr> {
    bot_instance::Entity::find_by_id(bot_jid.to_owned())
        .one(db)
        .await
}

/// The row's fields that a holder must change by renewing, for a taker to see it is alive.
fn liveness(row: &bot_instance::Model) -> (&str, i64) {
    (&row.holder, row.renewals)
}

/// The error for a lease found held by the live holder of `row`.
fn held(bot_jid: &str, row: &bot_instance::Model) -> LeaseError {
    LeaseError::Held {
        bot_jid: bot_jid.to_owned(),
        holder_description: describe(row),
        heartbeat_at: row.heartbeat_at,
    }
}

/// Acquires the lease on `bot_jid` for this process, with time to live `ttl`, failing
/// with [`LeaseError::Held`] when a live process holds it; see [`acquire_with`].
pub async fn acquire(store: &Store, bot_jid: &str, ttl: Duration) -> Result<Lease, LeaseError> {
    acquire_with(store, bot_jid, ttl, &AcquireOptions::default()).await
}

/// Acquires the lease on `bot_jid` for this process, with time to live `ttl`.
///
/// A free JID is taken at once. A JID whose holder is proved dead is taken over at once:
/// on the same host by its pid and start time (see `dead_here`), on any host by the server
/// saying that the holder's XMPP session is gone (`options.probe`). Otherwise the row is
/// watched for up to `ttl`: if the holder renews meanwhile it is alive, and the result is
/// [`LeaseError::Held`] (typically within a third of `ttl`), or with `options.standby` the
/// watch goes on (a hot standby) until the holder is proved dead or stays silent; if the
/// row stays unchanged for the whole `ttl`, its holder is dead (killed, crashed, cut off)
/// and the lease is taken over.
///
/// `ttl` should be some seconds at least (see [`DEFAULT_TTL`]); every process of one JID,
/// and its health check, must use the same.
pub async fn acquire_with(
    store: &Store,
    bot_jid: &str,
    ttl: Duration,
    options: &AcquireOptions,
) -> Result<Lease, LeaseError> {
    let me = Identity::of_this_process();
    let db = store.connection();
    let poll = poll_interval(ttl);
    let lease = |sent| Lease {
        store: store.clone(),
        bot_jid: bot_jid.to_owned(),
        token: me.token.clone(),
        ttl,
        renewed: Mutex::new(sent),
        session_tickets: AtomicU64::new(0),
        session_written: tokio::sync::Mutex::new(0),
    };
    // The standby names the active process once per holder, not at every look.
    let mut announced: Option<String> = None;
    'look: loop {
        let Some(seen) = find(db, bot_jid).await? else {
            let sent = Instant::now();
            let at = store::now();
            let row = bot_instance::ActiveModel {
                bot_jid: Set(bot_jid.to_owned()),
                ..held_by(&me, options, at)
            };
            match bot_instance::Entity::insert(row)
                .exec_without_returning(db)
                .await
            {
                Ok(_) => {
                    log::info!(
                        "lease on {bot_jid} acquired (pid {} on host {})",
                        me.pid,
                        me.host
                    );
                    return Ok(lease(sent));
                }
                // Another process inserted first: look at it like any holder.
                Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    continue 'look;
                }
                Err(err) => return Err(err.into()),
            }
        };

        match take_if_dead(db, &me, &seen, bot_jid, options).await? {
            Proof::Taken(sent) => return Ok(lease(sent)),
            Proof::Raced => continue 'look,
            Proof::Unproven => {}
        }
        // The row may belong to a live process or a dead one: only watching tells.
        if announced.as_deref() != Some(seen.holder.as_str()) {
            log::info!(
                "{bot_jid} is held by {} since {} (last heartbeat {}); watching it for up to \
                 {:.1} s to see whether it is alive",
                describe(&seen),
                seen.acquired_at.to_rfc3339(),
                seen.heartbeat_at.to_rfc3339(),
                ttl.as_secs_f64()
            );
        }
        // The window starts after the first look returned: any renewal not seen then
        // started before this instant (see the module documentation).
        let deadline = Instant::now() + ttl;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep_until((now + poll).min(deadline)).await;
            match find(db, bot_jid).await? {
                None => continue 'look,
                Some(row) if liveness(&row) != liveness(&seen) => {
                    if !options.standby {
                        return Err(held(bot_jid, &row));
                    }
                    if announced.as_deref() != Some(row.holder.as_str()) {
                        log::warn!(
                            "standby: {bot_jid} is active in {} (heartbeat {}); waiting to \
                             take over when it stops",
                            describe(&row),
                            row.heartbeat_at.to_rfc3339()
                        );
                        announced = Some(row.holder.clone());
                    }
                    continue 'look;
                }
                Some(row) => match take_if_dead(db, &me, &row, bot_jid, options).await? {
                    Proof::Taken(sent) => return Ok(lease(sent)),
                    Proof::Raced => continue 'look,
                    Proof::Unproven => {}
                },
            }
        }

        match take_over(db, &me, &seen, options).await? {
            Some(sent) => {
                log::warn!(
                    "lease on {bot_jid} taken over from {}, silent for {:.1} s",
                    describe(&seen),
                    ttl.as_secs_f64()
                );
                return Ok(lease(sent));
            }
            // The holder renewed at the last moment, released, or somebody else took over.
            None => match find(db, bot_jid).await? {
                None => continue 'look,
                Some(_) if options.standby => continue 'look,
                Some(row) => return Err(held(bot_jid, &row)),
            },
        }
    }
}

/// Why the holder of `row` is certainly dead, if it can be proved now: by pid on this host,
/// else by the server saying its XMPP session does not exist.
async fn proved_dead(
    me: &Identity,
    row: &bot_instance::Model,
    bot_jid: &str,
    options: &AcquireOptions,
) -> Option<String> {
    if let Some(why) = dead_here(me, row) {
        return Some(why);
    }
    let (probe, resource) = (options.probe.as_ref()?, row.xmpp_resource.as_deref()?);
    let full = format!("{bot_jid}/{resource}");
    match probe(full.clone()).await {
        SessionProbe::Gone => Some(format!("the server has no session {full}")),
        SessionProbe::Alive | SessionProbe::Unknown => None,
    }
}

/// The row of a lease held by this process from `at` (every column but the key).
fn held_by(
    me: &Identity,
    options: &AcquireOptions,
    at: DateTime<Utc>,
) -> bot_instance::ActiveModel {
    bot_instance::ActiveModel {
        holder: Set(me.token.clone()),
        pid: Set(me.pid),
        host: Set(me.host.clone()),
        acquired_at: Set(at),
        heartbeat_at: Set(at),
        renewals: Set(0),
        process_scope: Set(me.scope.clone()),
        process_start: Set(me.start),
        xmpp_resource: Set(options.xmpp_resource.clone()),
        xmpp_up: Set(false),
        ..Default::default()
    }
}

/// What a look for proof that a holder is dead came to.
enum Proof {
    /// No proof: the holder may be alive.
    Unproven,
    /// Proved dead and taken over; the takeover was sent at this instant.
    Taken(Instant),
    /// Proved dead, but the row changed before the takeover: look again.
    Raced,
}

/// Takes the lease over from the holder in `row` if it is proved dead ([`proved_dead`]).
async fn take_if_dead(
    db: &DatabaseConnection,
    me: &Identity,
    row: &bot_instance::Model,
    bot_jid: &str,
    options: &AcquireOptions,
) -> Result<Proof, LeaseError> {
    let Some(why) = proved_dead(me, row, bot_jid, options).await else {
        return Ok(Proof::Unproven);
    };
    Ok(match take_over(db, me, row, options).await? {
        Some(sent) => {
            log::warn!(
                "lease on {bot_jid} taken over from {} at once: {why}",
                describe(row)
            );
            Proof::Taken(sent)
        }
        None => Proof::Raced,
    })
}

/// Takes the lease of `seen` over (a compare-and-swap on its holder and renewals); `None`
/// when the row changed first.
async fn take_over(
    db: &DatabaseConnection,
    me: &Identity,
    seen: &bot_instance::Model,
    options: &AcquireOptions,
) -> Result<Option<Instant>, LeaseError> {
    let sent = Instant::now();
    let at = store::now();
    let taken = bot_instance::Entity::update_many()
        .set(held_by(me, options, at))
        .filter(bot_instance::Column::BotJid.eq(seen.bot_jid.as_str()))
        .filter(bot_instance::Column::Holder.eq(seen.holder.as_str()))
        .filter(bot_instance::Column::Renewals.eq(seen.renewals))
        .exec(db)
        .await?
        .rows_affected;
    Ok((taken == 1).then_some(sent))
}

impl Lease {
    /// The bot JID this lease is for.
    pub fn bot_jid(&self) -> &str {
        &self.bot_jid
    }

    /// This process's random token, as written in `bot_instance.holder`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The time to live the lease was acquired with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the holder should renew: a third of the ttl, so that one failed renewal
    /// is retried well before the lease expires.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// The instant (this process's monotonic clock) until which this process may act on
    /// the JID's rooms without a further successful renewal: three quarters of a ttl after
    /// the last successful renewal started, a quarter of a ttl before any other process
    /// can possibly take over.
    pub fn valid_until(&self) -> Instant {
        self.renewed_at() + validity(self.ttl)
    }

    /// When the last successful renewal (or the acquisition) started.
    fn renewed_at(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews the lease once: bumps `renewals` and writes a fresh `heartbeat_at`, if this
    /// process still holds the lease.
    ///
    /// [`LeaseError::Lost`] when another process took it over (or the row is gone);
    /// [`LeaseError::Store`] when the database failed, in which case the caller may retry
    /// until [`Lease::valid_until`]. A renewal that succeeds after the lease expired makes
    /// it valid again: nobody took it over meanwhile.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        // The heartbeat is judged by the claims on the database's clock: measured again
        // with every renewal (a third of the ttl), so a clock that drifts or jumps is
        // followed.
        if let Err(error) = self.store.sync_clock().await {
            log::debug!("cannot read the database's clock: {error}");
        }
        let sent = Instant::now();
        let db = self.store.connection();
        let renewed = bot_instance::Entity::update_many()
            .set(bot_instance::ActiveModel {
                heartbeat_at: Set(store::now()),
                ..Default::default()
            })
            .col_expr(
                bot_instance::Column::Renewals,
                Expr::col(bot_instance::Column::Renewals).add(1),
            )
            .filter(bot_instance::Column::BotJid.eq(self.bot_jid.as_str()))
            .filter(bot_instance::Column::Holder.eq(self.token.as_str()))
            .exec(db)
            .await?
            .rows_affected;
        if renewed == 0 {
            return Err(self.lost().await);
        }
        let mut renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        *renewed = (*renewed).max(sent);
        Ok(())
    }

    /// [`LeaseError::Lost`], naming the new holder if the database says who it is.
    async fn lost(&self) -> LeaseError {
        let taken_by = find(self.store.connection(), &self.bot_jid)
            .await
            .ok()
            .flatten()
            .map(|row| describe(&row));
        LeaseError::Lost {
            bot_jid: self.bot_jid.clone(),
            taken_by,
        }
    }

    /// Renews the lease every [`Lease::renew_interval`] for as long as it can, and returns
    /// why it cannot any longer: [`LeaseError::Lost`] at once when another process took the
    /// lease, [`LeaseError::Expired`] at [`Lease::valid_until`] when renewals kept failing
    /// or hanging (retried every tenth of a ttl, at most every second, meanwhile).
    ///
    /// Run it next to the bot's work (`select!`) and stop managing rooms when it returns;
    /// cancelling it (dropping the future) is safe.
    pub async fn keep_alive(&self) -> LeaseError {
        let retry = poll_interval(self.ttl);
        let mut next = self.renewed_at() + self.renew_interval();
        let mut last_error: Option<StoreError> = None;
        loop {
            let valid_until = self.valid_until();
            tokio::time::sleep_until(next.min(valid_until)).await;
            let now = Instant::now();
            if now >= valid_until {
                return LeaseError::Expired {
                    bot_jid: self.bot_jid.clone(),
                    silent_for: now - self.renewed_at(),
                    last_error,
                };
            }
            match tokio::time::timeout_at(valid_until, self.renew()).await {
                Ok(Ok(())) => {
                    last_error = None;
                    next = self.renewed_at() + self.renew_interval();
                }
                Ok(Err(LeaseError::Store(err))) => {
                    log::warn!(
                        "cannot renew the lease on {}: {}; retrying until it expires",
                        self.bot_jid,
                        crate::logging::chain(&err)
                    );
                    last_error = Some(err);
                    next = Instant::now() + retry;
                }
                Ok(Err(other)) => return other,
                // Hung until the lease expired: reported at the top of the loop.
                Err(_elapsed) => next = Instant::now(),
            }
        }
    }

    /// Records this process's XMPP session in the row: its resource and whether it is up.
    /// Claims take only rooms of a bot whose session is up; a taker asks the server about
    /// the resource. [`LeaseError::Lost`] when another process holds the lease.
    ///
    /// Records land in the order of the calls, whenever the returned futures run: one
    /// overtaken by a later call is skipped (`Ok(false)`), so a reconnect's "up" is never
    /// overwritten by the "down" of the drop before it. `Ok(true)`: written.
    pub fn record_session(
        self: &Arc<Self>,
        resource: Option<&str>,
        up: bool,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send + 'static {
        let ticket = self.session_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let lease = Arc::clone(self);
        let resource = resource.map(str::to_owned);
        async move {
            let mut written = lease.session_written.lock().await;
            if *written > ticket {
                return Ok(false);
            }
            let mut update = bot_instance::ActiveModel {
                xmpp_up: Set(up),
                ..Default::default()
            };
            if let Some(resource) = resource {
                update.xmpp_resource = Set(Some(resource));
            }
            let updated = bot_instance::Entity::update_many()
                .set(update)
                .filter(bot_instance::Column::BotJid.eq(lease.bot_jid.as_str()))
                .filter(bot_instance::Column::Holder.eq(lease.token.as_str()))
                .exec(lease.store.connection())
                .await?
                .rows_affected;
            if updated == 0 {
                return Err(lease.lost().await);
            }
            *written = ticket;
            Ok(true)
        }
    }

    /// Gives the lease up (deletes the row) so that the next process takes the JID at
    /// once; call it after the bot stopped managing rooms on a clean shutdown.
    /// [`LeaseError::Lost`] when another process had taken it over.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let deleted = bot_instance::Entity::delete_many()
            .filter(bot_instance::Column::BotJid.eq(self.bot_jid.as_str()))
            .filter(bot_instance::Column::Holder.eq(self.token.as_str()))
            .exec(self.store.connection())
            .await?
            .rows_affected;
        if deleted == 0 {
            return Err(self.lost().await);
        }
        log::info!("lease on {} released", self.bot_jid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::identity::{parse_start_time, process_start};
    use super::*;
    use crate::store::PoolCounts;
    use chrono::TimeZone;

    fn report(age_ms: Option<i64>) -> HealthReport {
        let checked_at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        HealthReport {
            bot_jid: "bot@example.org".into(),
            holder: age_ms.map(|ms| Holder {
                pid: 123,
                host: "x".into(),
                acquired_at: checked_at - chrono::TimeDelta::hours(1),
                heartbeat_at: checked_at - chrono::TimeDelta::milliseconds(ms),
                renewals: 7,
            }),
            checked_at,
            ttl: Duration::from_secs(30),
            counts: PoolCounts { ready: 3, open: 5 },
        }
    }

    #[test]
    fn a_fresh_heartbeat_is_healthy() {
        let fresh = report(Some(2_000));
        assert!(fresh.is_healthy());
        assert_eq!(
            fresh.to_string(),
            "healthy: bot@example.org held by pid 123 on host x, heartbeat 2.0 s ago, \
             3 rooms ready, 5 open"
        );
        assert!(report(Some(20_000)).is_healthy(), "exactly two intervals");
    }

    #[test]
    fn a_stale_heartbeat_is_unhealthy() {
        let stale = report(Some(95_000));
        assert!(!stale.is_healthy());
        assert_eq!(
            stale.to_string(),
            "unhealthy: bot@example.org held by pid 123 on host x, no heartbeat for 95 s \
             (limit 20 s), 3 rooms ready, 5 open"
        );
    }

    #[test]
    fn no_holder_is_unhealthy() {
        let none = report(None);
        assert!(!none.is_healthy());
        assert!(
            none.to_string()
                .starts_with("unhealthy: bot@example.org is held by no process")
        );
    }

    #[test]
    fn a_heartbeat_far_in_the_future_means_clocks_disagree() {
        assert!(report(Some(-1_000)).is_healthy(), "small skew is tolerated");
        let future = report(Some(-60_000));
        assert!(!future.is_healthy());
        assert!(
            future.to_string().contains("60 s in the future"),
            "{future}"
        );
    }

    #[test]
    fn the_holder_renews_twice_then_gives_up_a_quarter_ttl_before_a_taker() {
        let ttl = DEFAULT_TTL;
        assert_eq!(validity(ttl), Duration::from_millis(22_500));
        assert!(ttl / 3 * 2 < validity(ttl));
        assert_eq!(ttl - validity(ttl), ttl / 4);
        assert_eq!(poll_interval(ttl), Duration::from_secs(1));
        assert_eq!(
            poll_interval(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn the_start_time_is_field_22_even_with_spaces_in_the_command() {
        let stat = "4242 (helpim bot (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 \
                    5 0 987654 123 456";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        let me = process_start(i64::from(std::process::id()));
        assert!(me.is_some(), "this process has a start time");
    }

    #[test]
    fn a_holder_is_dead_here_only_with_our_scope_and_a_gone_or_reused_pid() {
        let me = Identity::of_this_process();
        let at = store::now();
        let row = |pid: i64, scope: Option<String>, start: Option<i64>| bot_instance::Model {
            bot_jid: "bot@localhost".into(),
            holder: "x".into(),
            pid,
            host: me.host.clone(),
            acquired_at: at,
            heartbeat_at: at,
            renewals: 0,
            process_scope: scope,
            process_start: start,
            xmpp_resource: None,
            xmpp_up: true,
        };
        // This very process: alive.
        assert_eq!(
            dead_here(&me, &row(me.pid, me.scope.clone(), me.start)),
            None
        );
        // Our pid with another start time: another process, the holder is dead.
        let reused = row(me.pid, me.scope.clone(), me.start.map(|s| s + 1));
        assert!(dead_here(&me, &reused).is_some());
        // A pid that runs nothing here.
        let gone = row(i64::from(i32::MAX), me.scope.clone(), Some(1));
        assert!(dead_here(&me, &gone).unwrap().contains("no longer running"));
        // Another boot or pid namespace (a container): nothing is proved.
        assert_eq!(
            dead_here(
                &me,
                &row(i64::from(i32::MAX), Some("other".into()), Some(1))
            ),
            None
        );
        // An older holder that recorded no start time: nothing is proved either.
        assert_eq!(
            dead_here(&me, &row(i64::from(i32::MAX), me.scope.clone(), None)),
            None
        );
    }

    #[test]
    fn held_tells_the_operator_what_to_do() {
        let err = LeaseError::Held {
            bot_jid: "bot@example.org".into(),
            holder_description: "pid 123 on host x".into(),
            heartbeat_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
        };
        assert_eq!(
            err.to_string(),
            "bot@example.org is already managed by pid 123 on host x (last heartbeat \
             2026-11-25T10:00:00Z), which renewed its lease while this process watched: stop \
             that process first, or give this instance its own xmpp.jid"
        );
    }
}
