//! `PoolActor`: keeps `pool.available` rooms ready while the open rooms stay under
//! `pool.max_rooms`.
//!
//! The counts come from the database (the truth the web application also sees), plus the
//! rooms this process is creating right now. One check runs at a time, so two checks can
//! never both decide to fill the same gap; a room counts as "creating" until its row exists,
//! so the cap holds even while many rooms change at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use jid::BareJid;

use crate::store::{PoolCounts, Store};

use super::room::{RoomActor, RoomContext};
use super::supervisor::{SpawnRoom, SupervisorActor};

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
    /// Consecutive failed creations, for the backoff.
    failures: u32,
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
    /// Interval of XEP-0410 self-pings in each room.
    pub room_ping: Option<Duration>,
}

impl PoolActor {
    /// A pool for the bot `bot_jid`; rooms are spawned through `supervisor`.
    pub fn new(
        settings: PoolSettings,
        store: Store,
        bot_jid: String,
        supervisor: Addr<SupervisorActor>,
        room_base: RoomContextBase,
    ) -> PoolActor {
        PoolActor {
            settings,
            store,
            bot_jid,
            supervisor,
            room_template: None,
            room_base,
            creating: 0,
            failures: 0,
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
            bot_jid: bot_jid.to_owned(),
            nick: base.nick,
            max_chatters: base.max_chatters,
            history_length: base.history_length,
            join_timeout: base.join_timeout,
            retry_max: settings.retry_max,
            require_claims: base.require_claims,
            rejoin_grace: base.rejoin_grace,
            one_left: base.one_left,
            room_ping: base.room_ping,
            panic_on_nick: std::env::var("HELPIM_FAULT_PANIC_ON_NICK").ok(),
            pool,
            supervisor,
        })
    }

    /// Starts as many creations as the counts allow.
    fn top_up(&mut self, counts: PoolCounts) {
        if self.stopping {
            return;
        }
        let s = &self.settings;
        let ready = counts.ready as u32 + self.creating;
        let open = counts.open as u32 + self.creating;
        let wanted = s.available.saturating_sub(ready);
        let room_left = s.max_rooms.saturating_sub(open);
        let n = wanted.min(room_left);
        if wanted > room_left {
            log::warn!(
                "pool: {} ready of {} wanted, but {open} of max {} rooms are open",
                counts.ready,
                s.available,
                s.max_rooms
            );
        }
        let template = self.room_template.clone().expect("set in started");
        for _ in 0..n {
            self.creating += 1;
            crate::throttle::creation_started();
            let room = RoomActor::new_room(template.clone(), &s.service, &s.room_prefix);
            self.supervisor.do_send(SpawnRoom(room));
        }
    }
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
        let ttl = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let (staff_ttl, client_ttl) = (
            ttl(self.settings.staff_claim),
            ttl(self.settings.client_claim),
        );
        let now = std::time::Instant::now();
        let sweep = self
            .last_sweep
            .is_none_or(|last| now - last >= self.settings.check);
        if sweep {
            self.last_sweep = Some(now);
        }
        let check = async move {
            // Released claims make rooms ready again before they are counted.
            if sweep {
                crate::claims::release_expired(&store, &bot, staff_ttl, client_ttl).await?;
            }
            store.pool_counts(&bot).await
        };
        ctx.spawn(check.into_actor(self).map(|counts, act, ctx| {
            act.checking = false;
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
            self.creating = self.creating.saturating_sub(1);
            self.failures = 0;
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
        self.creating = self.creating.saturating_sub(1);
        self.failures += 1;
        let delay = Duration::from_secs(1u64 << self.failures.min(6)).min(self.settings.retry_max);
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
