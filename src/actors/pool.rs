//! `PoolActor`: keeps `pool.available` rooms ready while the open rooms stay under
//! `pool.max_rooms`.
//!
//! The counts come from the database (the truth the web application also sees), plus the
//! rooms this process is creating right now. One check runs at a time, so two checks can
//! never both decide to fill the same gap; a room counts as "creating" until its row exists,
//! so the cap holds even while many rooms change at once.
//!
//! Creations go through the [`JoinWindow`] shared with the supervisor's rejoins: at most
//! `pool.creation_window` rooms are being entered at once, so a large pool is a queue the
//! server works through (rooms become ready one after another, the first within a round
//! trip or two) rather than a flood that makes every room wait for all the others. After a
//! failed creation the pool waits out its backoff before it tries again, with one room,
//! whatever else asks it to count.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use jid::BareJid;

use crate::store::{PoolCounts, Store};

use super::room::{RoomActor, RoomContext};
use super::supervisor::{ClaimExpired, SpawnRoom, SupervisorActor};

/// The bounded window of room entries in flight: creations (the pool) and rejoins (the
/// supervisor) together, so that neither floods the server.
///
/// A slot is held from the moment a room starts entering until it reports back (ready,
/// failed, or rejoined); dropping the [`WindowSlot`] frees it. Waiters are served in order,
/// and a freed slot goes to a waiting rejoin before a new creation can take it (creations
/// only take free slots, they never wait).
#[derive(Debug, Clone)]
pub struct JoinWindow {
    permits: Arc<tokio::sync::Semaphore>,
}

/// One room entry in flight; dropping it frees the slot.
#[derive(Debug)]
pub struct WindowSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl JoinWindow {
    /// A window of `size` slots (at least one).
    pub fn new(size: u32) -> JoinWindow {
        JoinWindow {
            permits: Arc::new(tokio::sync::Semaphore::new(size.max(1) as usize)),
        }
    }

    /// A free slot now, if any (and no rejoin is waiting for one).
    pub fn try_enter(&self) -> Option<WindowSlot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(WindowSlot { _permit: permit })
    }

    /// Waits for a slot, in order with the other waiters.
    pub async fn enter(&self) -> WindowSlot {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the window's semaphore is never closed");
        WindowSlot { _permit: permit }
    }

    /// How many slots are free.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Pool sizes and what new rooms need.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Rooms to keep ready.
    pub available: u32,
    /// Hard cap on open rooms (ready, in use, or being created).
    pub max_rooms: u32,
    /// The MUC service rooms are created on.
    pub service: BareJid,
    /// The prefix of room names.
    pub room_prefix: String,
    /// Cap of the backoff after failed creations.
    pub retry_max: Duration,
    /// Most rooms being entered at once (creations and rejoins together): the size of the
    /// [`JoinWindow`].
    pub creation_window: u32,
    /// How often the pool looks at the database even when nothing told it to (the web
    /// application claims rooms without telling the bot).
    pub check: Duration,
    /// Staff claims older than this on rooms still `available` are released.
    pub staff_claim: Duration,
    /// Client claims older than this on rooms still `staff_waiting` are released.
    pub client_claim: Duration,
}

/// The pool actor.
pub struct PoolActor {
    settings: PoolSettings,
    store: Store,
    bot_jid: String,
    supervisor: Addr<SupervisorActor>,
    /// Built in `started`, once the pool has its own address.
    room_template: Option<Arc<RoomContext>>,
    /// What every room needs, except the pool's address.
    room_base: RoomContextBase,
    /// Rooms being created by this process (not yet in the database).
    creating: u32,
    /// The window shared with the supervisor's rejoins.
    window: JoinWindow,
    /// The slots of the creations in flight, one per room in `creating`.
    slots: VecDeque<WindowSlot>,
    /// Consecutive failed creations, for the backoff.
    failures: u32,
    /// After a failure: no creation before this instant, and then one at a time until one
    /// succeeds.
    retry_at: Option<Instant>,
    /// A check is running; another request waits for it to end.
    checking: bool,
    again: bool,
    /// A room became ready while a check was counting: that count may predate the room's
    /// row while `creating` no longer includes it, so the check's result is discarded.
    stale: bool,
    /// When expired claims were last released: once per `check` interval is enough, not on
    /// every recount that a room's write triggers.
    last_sweep: Option<std::time::Instant>,
    /// Shutting down: create nothing more.
    stopping: bool,
    /// Rooms are created only once the supervisor has accounted for the recorded rooms.
    started: bool,
}

/// The parts of a [`RoomContext`] known before the pool exists.
#[derive(Debug, Clone)]
pub struct RoomContextBase {
    /// The XMPP connection.
    pub xmpp: crate::xmpp::XmppHandle,
    /// The bot's nick.
    pub nick: String,
    /// Occupant limit, the bot not counted.
    pub max_chatters: u32,
    /// Room history length.
    pub history_length: u32,
    /// Join deadline.
    pub join_timeout: Duration,
    /// Whether people need an open claim for their role to enter.
    pub require_claims: bool,
    /// Rejoin grace.
    pub rejoin_grace: Duration,
    /// `one_left` timeout.
    pub one_left: Option<Duration>,
    /// The words people in rooms read.
    pub texts: crate::texts::Texts,
    /// Interval of XEP-0410 self-pings in each room.
    pub room_ping: Option<Duration>,
    /// The service's owner form, shared by every room of a session.
    pub owner_form: crate::xmpp::form::OwnerFormCache,
}

impl PoolSettings {
    /// The claims' times-to-live.
    pub fn claim_ttls(&self) -> crate::claims::ClaimTtls {
        crate::claims::ClaimTtls {
            staff: self.staff_claim,
            client: self.client_claim,
        }
    }
}

impl PoolActor {
    /// A pool for the bot `bot_jid`; rooms are spawned through `supervisor`, each
    /// creation holding a slot of `window`.
    pub fn new(
        settings: PoolSettings,
        store: Store,
        bot_jid: String,
        supervisor: Addr<SupervisorActor>,
        room_base: RoomContextBase,
        window: JoinWindow,
    ) -> PoolActor {
        PoolActor {
            settings,
            store,
            bot_jid,
            supervisor,
            room_template: None,
            room_base,
            creating: 0,
            window,
            slots: VecDeque::new(),
            failures: 0,
            retry_at: None,
            checking: false,
            again: false,
            stale: false,
            last_sweep: None,
            stopping: false,
            started: false,
        }
    }

    /// What every room needs, for rooms of this pool (`pool`) routed by `supervisor`.
    pub fn room_context(
        base: &RoomContextBase,
        settings: &PoolSettings,
        store: &Store,
        bot_jid: &str,
        pool: Addr<PoolActor>,
        supervisor: Addr<SupervisorActor>,
    ) -> Arc<RoomContext> {
        let base = base.clone();
        Arc::new(RoomContext {
            xmpp: base.xmpp,
            store: store.clone(),
            committer: super::committer::Committer::start(store.clone()),
            bot_jid: bot_jid.to_owned(),
            policy: crate::lifecycle::Policy {
                max_chatters: base.max_chatters as usize,
                require_claims: base.require_claims,
                rejoin_grace: base.rejoin_grace,
                one_left: base.one_left,
                bot_nick: base.nick,
            },
            texts: base.texts,
            history_length: base.history_length,
            join_timeout: base.join_timeout,
            retry_max: settings.retry_max,
            claim_ttls: settings.claim_ttls(),
            room_ping: base.room_ping,
            owner_form: base.owner_form,
            #[cfg(feature = "fault-injection")]
            panic_on_nick: std::env::var("HELPIM_FAULT_PANIC_ON_NICK").ok(),
            #[cfg(feature = "fault-injection")]
            wedge_on_nick: std::env::var("HELPIM_FAULT_WEDGE_ON_NICK").ok(),
            pool,
            supervisor,
        })
    }

    /// Starts as many creations as the counts, the backoff and the window allow.
    fn top_up(&mut self, counts: PoolCounts) {
        if self.stopping {
            return;
        }
        let s = &self.settings;
        let ready = counts.ready as u32 + self.creating;
        let open = counts.open as u32 + self.creating;
        let wanted = s.available.saturating_sub(ready);
        let room_left = s.max_rooms.saturating_sub(open);
        if wanted > room_left {
            log::warn!(
                "pool: {} ready of {} wanted, but {open} of max {} rooms are open",
                counts.ready,
                s.available,
                s.max_rooms
            );
        }
        let n = allowed_creations(
            wanted.min(room_left),
            self.creating,
            self.failures,
            self.retry_at,
            Instant::now(),
        );
        let template = self.room_template.clone().expect("set in started");
        for _ in 0..n {
            // Creations take only free slots: a freed slot goes to a waiting rejoin first,
            // and the next count (after every room's write, at least every check) tries again.
            let Some(slot) = self.window.try_enter() else {
                log::debug!("pool: the join window is full; creating more later");
                break;
            };
            self.creating += 1;
            self.slots.push_back(slot);
            crate::throttle::creation_started();
            let room = RoomActor::new_room(template.clone(), &s.service, &s.room_prefix);
            self.supervisor.do_send(SpawnRoom(room));
        }
    }

    /// A creation ended (ready or failed): its slot is free for the next room.
    fn creation_ended(&mut self) {
        self.creating = self.creating.saturating_sub(1);
        self.slots.pop_front();
    }
}

/// How many creations may start now, out of `wanted`: none while a failure's backoff runs
/// (until `retry_at`), then one probe at a time until a creation succeeds again.
fn allowed_creations(
    wanted: u32,
    creating: u32,
    failures: u32,
    retry_at: Option<Instant>,
    now: Instant,
) -> u32 {
    if failures == 0 {
        return wanted;
    }
    if retry_at.is_some_and(|at| now < at) || creating > 0 {
        return 0;
    }
    wanted.min(1)
}

/// The backoff after `failures` failed creations in a row: 2 s, 4 s, ... up to `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    crate::backoff::Backoff::new(Duration::from_secs(2), max).nth(failures)
}

impl Actor for PoolActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.room_template = Some(PoolActor::room_context(
            &self.room_base,
            &self.settings,
            &self.store,
            &self.bot_jid,
            ctx.address(),
            self.supervisor.clone(),
        ));
        ctx.run_interval(self.settings.check, |_, ctx| ctx.notify(Replenish));
    }
}

/// Look at the counts and create rooms if some are missing.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Replenish;

/// A room finished creating (`ready`) or finished its life (`!ready`).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RoomFinished {
    /// True when the room just became ready, false when it closed.
    pub ready: bool,
}

/// A room could not be created (it has been cleaned up).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CreationFailed;

/// Start creating rooms: the recorded rooms are accounted for.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StartCreating;

impl Handler<StartCreating> for PoolActor {
    type Result = ();

    fn handle(&mut self, _: StartCreating, ctx: &mut Self::Context) {
        self.started = true;
        ctx.notify(Replenish);
    }
}

/// Stop creating rooms (shutdown).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopCreating;

impl Handler<Replenish> for PoolActor {
    type Result = ();

    fn handle(&mut self, _: Replenish, ctx: &mut Self::Context) {
        if self.stopping || !self.started {
            return;
        }
        if self.checking {
            self.again = true;
            return;
        }
        self.checking = true;
        let store = self.store.clone();
        let bot = self.bot_jid.clone();
        let ttls = self.settings.claim_ttls();
        let now = std::time::Instant::now();
        let sweep = self
            .last_sweep
            .is_none_or(|last| now - last >= self.settings.check);
        if sweep {
            self.last_sweep = Some(now);
        }
        let check = async move {
            // Expired claims go to their rooms, which change the password and release them.
            let expired = if sweep {
                crate::claims::expired_claims(&store, &bot, &ttls).await?
            } else {
                Vec::new()
            };
            Ok::<_, crate::store::StoreError>((expired, store.pool_counts(&bot).await?))
        };
        ctx.spawn(check.into_actor(self).map(|checked, act, ctx| {
            act.checking = false;
            let counts = checked.map(|(expired, counts)| {
                for claim in expired {
                    act.supervisor.do_send(ClaimExpired(claim));
                }
                counts
            });
            match counts {
                Ok(_) if std::mem::take(&mut act.stale) => act.again = true,
                Ok(counts) => act.top_up(counts),
                Err(error) => {
                    // Never create a room that cannot be recorded.
                    log::warn!("pool: cannot count rooms ({error}); creating none until the database answers");
                }
            }
            if act.again {
                act.again = false;
                ctx.notify(Replenish);
            }
        }));
    }
}

impl Handler<RoomFinished> for PoolActor {
    type Result = ();

    fn handle(&mut self, msg: RoomFinished, ctx: &mut Self::Context) {
        if msg.ready {
            crate::metrics::metrics().rooms_created.inc();
            crate::throttle::creation_finished();
            self.creation_ended();
            self.failures = 0;
            self.retry_at = None;
            self.stale |= self.checking;
        }
        ctx.notify(Replenish);
    }
}

impl Handler<CreationFailed> for PoolActor {
    type Result = ();

    fn handle(&mut self, _: CreationFailed, ctx: &mut Self::Context) {
        crate::metrics::metrics().room_creation_failures.inc();
        crate::throttle::creation_failed();
        self.creation_ended();
        let now = Instant::now();
        // Creations that were already in flight when the backoff began fail for the same
        // reason: they do not lengthen it.
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.failures += 1;
        let delay = backoff(self.failures, self.settings.retry_max);
        self.retry_at = Some(now + delay);
        log::warn!(
            "pool: room creation failed ({} in a row); next try in {delay:?}",
            self.failures
        );
        ctx.notify_later(Replenish, delay);
    }
}

impl Handler<StopCreating> for PoolActor {
    type Result = ();

    fn handle(&mut self, _: StopCreating, _: &mut Self::Context) {
        self.stopping = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_failures_every_wanted_creation_may_start() {
        let now = Instant::now();
        assert_eq!(allowed_creations(500, 0, 0, None, now), 500);
        assert_eq!(allowed_creations(7, 16, 0, None, now), 7);
    }

    #[test]
    fn a_failure_s_backoff_is_honoured_whoever_asks() {
        let now = Instant::now();
        let retry_at = Some(now + Duration::from_secs(2));
        // The periodic check and every write ask again: nothing during the backoff.
        assert_eq!(allowed_creations(10, 0, 1, retry_at, now), 0);
        assert_eq!(
            allowed_creations(10, 0, 1, retry_at, now + Duration::from_millis(1_999)),
            0
        );
        // Then one probe, and no second one while it is in flight.
        assert_eq!(
            allowed_creations(10, 0, 1, retry_at, now + Duration::from_secs(2)),
            1
        );
        assert_eq!(
            allowed_creations(10, 1, 1, retry_at, now + Duration::from_secs(3)),
            0
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_secs(2));
        assert_eq!(backoff(2, max), Duration::from_secs(4));
        assert_eq!(backoff(5, max), Duration::from_secs(32));
        assert_eq!(backoff(6, max), Duration::from_secs(60));
        assert_eq!(backoff(40, max), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn the_window_bounds_entries_and_a_waiting_rejoin_goes_first() {
        let window = JoinWindow::new(2);
        let a = window.try_enter().expect("a free slot");
        let _b = window.try_enter().expect("a second free slot");
        assert!(window.try_enter().is_none(), "the window is full");

        let waiting = {
            let window = window.clone();
            tokio::spawn(async move { window.enter().await })
        };
        tokio::task::yield_now().await;
        drop(a);
        let _rejoin = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting rejoin got the freed slot")
            .unwrap();
        assert!(
            window.try_enter().is_none(),
            "a creation cannot take the slot the rejoin got"
        );
        assert_eq!(window.free(), 0);
        assert_eq!(JoinWindow::new(0).free(), 1, "at least one slot");
    }
}
