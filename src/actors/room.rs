//! `RoomActor`: one per room. Creates and configures the room, follows its occupants through
//! the [`lifecycle`](crate::lifecycle) machine, persists every transition in order, and
//! destroys the room when the chat is over.
//!
//! Errors stay inside the room: a failed kick, a refused destroy or a database outage is
//! logged with `room=<jid>` and never reaches another room or the connection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use jid::{BareJid, Jid};
use xmpp_parsers::message::Message;

use crate::lifecycle::{Action, Departure, Event, Timer};
use crate::model::{CloseReason, RoomStatus};
use crate::store::{self, NewRoom, RoomChange, Store};
use crate::xmpp::form::{self, RoomSettings};
use crate::xmpp::muc::{self, MucStatus, PresenceKind, RoomPresence};
use crate::xmpp::{IqError, XmppHandle};

use super::pool::{PoolActor, RoomFinished};
use super::supervisor::{Recovered, SupervisorActor, UnregisterRoom};
use super::writer::RoomWriter;

/// What every room needs to know, shared by all rooms.
#[derive(Debug, Clone)]
pub struct RoomContext {
    /// The XMPP connection.
    pub xmpp: XmppHandle,
    /// The database.
    pub store: Store,
    /// The bot's bare JID: the owner recorded on every row.
    pub bot_jid: String,
    /// The bot's nick in rooms.
    pub nick: String,
    /// Most people allowed inside at once, the bot not counted.
    pub max_chatters: u32,
    /// Messages of history a room replays.
    pub history_length: u32,
    /// Deadline for the room's answer to the bot's join.
    pub join_timeout: Duration,
    /// Cap of the backoff between database retries.
    pub retry_max: Duration,
    /// Whether people need an open claim for their role to enter.
    pub require_claims: bool,
    /// How long a person who left may come back and be the same person.
    pub rejoin_grace: Duration,
    /// How long one person may stay alone; `None`: forever.
    pub one_left: Option<Duration>,
    /// Interval of XEP-0410 self-pings, to notice that the bot silently dropped out.
    pub room_ping: Option<Duration>,
    /// Fault injection for tests: a room actor panics when a person with this nick enters
    /// (from `HELPIM_FAULT_PANIC_ON_NICK`; never set in production).
    pub panic_on_nick: Option<String>,
    /// Where rooms report that they are ready or finished.
    pub pool: Addr<PoolActor>,
    /// Where rooms deregister when they stop.
    pub supervisor: Addr<SupervisorActor>,
}

/// Where a room is, from the actor's point of view.
#[derive(Debug)]
enum Phase {
    /// Joining and configuring; no row yet.
    Creating,
    /// Joining a recorded room again (after a restart or a new XMPP session) to find out
    /// who is inside; `machine` is what the bot believed.
    Rejoining {
        room_id: i64,
        machine: crate::lifecycle::Room,
    },
    /// Recorded and followed by the lifecycle machine.
    Active {
        room_id: i64,
        machine: crate::lifecycle::Room,
    },
    /// Closed (or failed); destroying on the server and flushing writes.
    Finishing,
}

/// The actor of one room.
pub struct RoomActor {
    ctx: Arc<RoomContext>,
    jid: BareJid,
    password: String,
    phase: Phase,
    /// Waiting for the bot's own presence (or an error) answering its join.
    join_waiter: Option<oneshot::Sender<RoomPresence>>,
    /// People seen in the room before it was recorded: intruders, kicked once it is ready.
    early: BTreeSet<String>,
    writer: Option<RoomWriter>,
    /// Resolves once the room has finished (destroyed, writes flushed), for shutdown.
    finished: Option<Shared<oneshot::Receiver<()>>>,
    /// Leave the room before the next rejoin (the bot may still be inside).
    leave_first: bool,
}

/// A presence from this room, routed by the supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PresenceForRoom(pub RoomPresence);

/// The bot is shutting down: close the room if it is unused; answer when its writes are
/// flushed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ShutdownRoom;

/// Why creating a room failed.
#[derive(Debug, thiserror::Error)]
enum CreateError {
    #[error("join refused: {0}")]
    JoinRefused(String),
    #[error("no answer to the join within {0:?}")]
    JoinTimeout(Duration),
    #[error("the room already existed (no status 201): left it, a new name will be used")]
    NameTaken,
    #[error("configuration: {0}")]
    Iq(#[from] IqError),
    #[error("configuration: {0}")]
    Form(#[from] form::FormError),
    #[error("configuration: the owner query returned no form")]
    NoForm,
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
}

impl RoomActor {
    /// A new room with a fresh unguessable name and password (128 bits each from the OS
    /// CSPRNG, base32), created as soon as the actor starts.
    pub fn new_room(ctx: Arc<RoomContext>, service: &BareJid, prefix: &str) -> RoomActor {
        let name = format!("{prefix}{}", random_token());
        let jid = BareJid::new(&format!("{name}@{service}")).expect("prefix validated by config");
        RoomActor {
            ctx,
            jid,
            password: random_token(),
            phase: Phase::Creating,
            join_waiter: None,
            early: BTreeSet::new(),
            writer: None,
            finished: None,
            leave_first: false,
        }
    }

    /// An actor for a room recorded in the database (found at start-up): it rejoins the
    /// room and reconciles the row with what it finds there.
    pub fn recover(ctx: Arc<RoomContext>, row: &store::Room) -> Result<RoomActor, jid::Error> {
        Self::recover_inner(ctx, row, false)
    }

    /// An actor for a room whose previous actor died (a panic) while the bot was still in
    /// the room: it leaves and rejoins, so that the server lists the occupants again.
    pub fn recover_after_crash(
        ctx: Arc<RoomContext>,
        row: &store::Room,
    ) -> Result<RoomActor, jid::Error> {
        Self::recover_inner(ctx, row, true)
    }

    fn recover_inner(
        ctx: Arc<RoomContext>,
        row: &store::Room,
        leave_first: bool,
    ) -> Result<RoomActor, jid::Error> {
        let jid = BareJid::new(&row.jid)?;
        let machine = crate::lifecycle::Room::restore(
            row.status,
            row.staff_nick.clone(),
            row.client_nick.clone(),
            ctx.max_chatters as usize,
        );
        Ok(RoomActor {
            ctx,
            jid,
            password: row.password.clone(),
            phase: Phase::Rejoining {
                room_id: row.id,
                machine,
            },
            join_waiter: None,
            early: BTreeSet::new(),
            writer: None,
            finished: None,
            leave_first,
        })
    }

    /// The room's bare JID (the routing key).
    pub fn jid(&self) -> &BareJid {
        &self.jid
    }

    fn room(&self) -> &str {
        self.jid.as_str()
    }

    /// Handles a presence while the room is being created.
    fn presence_while_creating(&mut self, p: RoomPresence) {
        let own = p.is_self() || p.nick.as_deref() == Some(self.ctx.nick.as_str());
        if own && p.kind == PresenceKind::Unavailable {
            return; // the bot's own leave before a rejoin: not the answer to the join
        }
        if own || matches!(p.kind, PresenceKind::Error { .. }) {
            if let Some(waiter) = self.join_waiter.take() {
                let _ = waiter.send(p);
            }
            return;
        }
        if let Some(nick) = p.nick {
            match p.kind {
                PresenceKind::Available => self.early.insert(nick),
                _ => self.early.remove(&nick),
            };
        }
    }

    /// Turns a presence of an active room into lifecycle events and runs them.
    fn presence_while_active(&mut self, p: RoomPresence, ctx: &mut Context<Self>) {
        let own = p.is_self() || p.nick.as_deref() == Some(self.ctx.nick.as_str());
        // ejabberd sends the destroy to the bot from its own nick WITHOUT status 110.
        if p.destroyed.is_some() && (p.is_from_room() || own) {
            log::warn!(room = self.room(); "room destroyed by somebody else");
            self.run(Event::Vanished, ctx);
            return;
        }
        if own {
            if p.kind == PresenceKind::Unavailable {
                log::warn!(room = self.room(); "the bot was removed from the room");
                self.run(Event::Vanished, ctx);
            }
            return;
        }
        let Some(nick) = p.nick.clone() else {
            log::debug!(room = self.room(); "presence from the room itself ignored");
            return;
        };
        let event = match &p.kind {
            PresenceKind::Available => return self.entered(nick, ctx),
            PresenceKind::Unavailable if p.has(MucStatus::NickChanged) => {
                match p.item.as_ref().and_then(|i| i.nick.clone()) {
                    Some(new) => Event::NickChanged { old: nick, new },
                    None => Event::Left {
                        nick,
                        how: Departure::Left,
                    },
                }
            }
            PresenceKind::Unavailable => Event::Left {
                nick,
                how: departure(&p),
            },
            PresenceKind::Error { condition } => {
                log::warn!(room = self.room(); "error presence from the room: {condition}");
                return;
            }
        };
        self.run(event, ctx);
    }

    /// Somebody is present: feeds `Entered`, after looking up in the database whether the
    /// role they would take is claimed (when claims are required and it matters). The
    /// room handles nothing else meanwhile, so its events stay in order.
    fn entered(&mut self, nick: String, ctx: &mut Context<Self>) {
        if self.ctx.panic_on_nick.as_deref() == Some(nick.as_str()) {
            panic!("fault injection: {nick} entered {}", self.jid);
        }
        let Phase::Active { room_id, machine } = &self.phase else {
            return;
        };
        let status = machine.status;
        let needs_claim = self.ctx.require_claims
            && !machine.present.contains(&nick)
            && matches!(status, RoomStatus::Available | RoomStatus::StaffWaiting);
        if !needs_claim {
            self.run(
                Event::Entered {
                    nick,
                    claimed: true,
                },
                ctx,
            );
            return;
        }
        let (store, room_id) = (self.ctx.store.clone(), *room_id);
        let lookup = async move { store.room(room_id).await };
        ctx.wait(lookup.into_actor(self).map(move |row, act, ctx| {
            let claimed = match row {
                Ok(Some(row)) if status == RoomStatus::Available => row.staff_claimed_at.is_some(),
                Ok(Some(row)) => row.client_claimed_at.is_some(),
                Ok(None) => false,
                Err(error) => {
                    // Nobody but the web application knows the password: rather let a
                    // person in than turn away somebody in crisis while the database is out.
                    log::warn!(room = act.room(); "cannot check the claim of {nick} ({error}); letting them in");
                    true
                }
            };
            act.run(Event::Entered { nick, claimed }, ctx);
        }));
    }

    /// One lifecycle step and its actions, in order.
    fn run(&mut self, event: Event, ctx: &mut Context<Self>) {
        let Phase::Active { machine, .. } = &mut self.phase else {
            return;
        };
        let actions = machine.step(event);
        self.execute(actions, ctx);
    }

    /// Carries out a step's actions, in order.
    fn execute(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        let Phase::Active { room_id, .. } = &self.phase else {
            return;
        };
        let room_id = *room_id;
        for action in actions {
            match action {
                Action::Record(r) => {
                    log::info!(room = self.jid.as_str();
                        "{} {}→{}{} ({})", r.kind, r.from, r.to,
                        r.nick.as_deref().map(|n| format!(" nick={n}")).unwrap_or_default(), r.detail);
                    if let Some(writer) = &self.writer {
                        writer.push(RoomChange {
                            room_id,
                            kind: r.kind,
                            from: r.from,
                            to: r.to,
                            at: store::now(),
                            nick: r.nick,
                            role: r.role,
                            detail: r.detail,
                            set_staff_nick: r.set_staff_nick,
                            set_client_nick: r.set_client_nick,
                            set_staff_jid: None,
                            set_client_jid: None,
                            close_reason: r.close_reason,
                        });
                    }
                }
                Action::Kick { nick, reason } => self.kick(nick, reason),
                Action::Schedule(Timer::RejoinGrace { nick }) => {
                    ctx.run_later(self.ctx.rejoin_grace, move |act, ctx| {
                        act.run(Event::GraceExpired { nick }, ctx)
                    });
                }
                Action::Schedule(Timer::OneLeft { epoch }) => {
                    if let Some(after) = self.ctx.one_left {
                        ctx.run_later(after, move |act, ctx| {
                            act.run(Event::OneLeftTimeout { epoch }, ctx)
                        });
                    }
                }
                Action::Notify { text } => {
                    let message = Message::groupchat(Some(Jid::from(self.jid.clone())))
                        .with_body(Default::default(), text);
                    self.ctx.xmpp.send(message);
                }
                Action::Destroy { reason } => {
                    self.finish(Some(reason), ctx);
                    return;
                }
            }
        }
        if matches!(&self.phase, Phase::Active { machine, .. } if machine.status == RoomStatus::Closed)
        {
            self.finish(None, ctx); // closed without a destroy (vanished)
        }
    }

    /// XEP-0410 self-ping: asks the room whether the bot is still an occupant. A room that
    /// says no (`not-acceptable`, `item-not-found`) is rejoined and reconciled; no answer is
    /// inconclusive and changes nothing.
    fn self_ping(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Active { .. }) {
            return;
        }
        let Ok(nick) = jid::ResourcePart::new(&self.ctx.nick) else {
            return;
        };
        let target = Jid::from(self.jid.with_resource(&nick));
        let xmpp = self.ctx.xmpp.clone();
        let ping = async move {
            let ping = minidom::Element::builder("ping", xmpp_parsers::ns::PING).build();
            xmpp.get(target, ping).await
        };
        ctx.spawn(ping.into_actor(self).map(|answer, act, ctx| {
            if let Err(IqError::Refused { condition, .. }) = &answer
                && (condition == "not-acceptable" || condition == "item-not-found")
            {
                log::warn!(room = act.room(); "self-ping says the bot is no longer in the room ({condition}): rejoining");
                <Self as Handler<Rejoin>>::handle(act, Rejoin, ctx);
            }
        }));
    }

    fn start_writer(&self) -> RoomWriter {
        RoomWriter::start(
            self.ctx.store.clone(),
            self.jid.to_string(),
            self.ctx.retry_max,
            self.ctx.pool.clone().recipient(),
        )
    }

    /// Joins the room again and reconciles: the room may be gone (closed as `lost`), may
    /// have been re-created by this very join (destroyed, closed as `lost`), or may be there
    /// with some people inside (the row follows them). Tells the supervisor when done.
    fn rejoin(&mut self, ctx: &mut Context<Self>) {
        log::info!(room = self.room(); "rejoining to check the room");
        let (waiter, joined) = oneshot::channel();
        self.join_waiter = Some(waiter);
        self.early.clear();
        if std::mem::take(&mut self.leave_first) {
            self.ctx.xmpp.send(muc::leave(&self.jid, &self.ctx.nick));
        }
        let fut = rejoin(
            self.ctx.clone(),
            self.jid.clone(),
            self.password.clone(),
            joined,
        );
        ctx.spawn(fut.into_actor(self).map(|outcome, act, ctx| {
            let Phase::Rejoining { room_id, machine } = std::mem::replace(&mut act.phase, Phase::Finishing) else {
                return;
            };
            act.phase = Phase::Active { room_id, machine };
            act.ctx.supervisor.do_send(Recovered);
            match outcome {
                Rejoined::Present => {
                    let actual = std::mem::take(&mut act.early);
                    log::info!(room = act.room(); "back in the room; inside: {actual:?}");
                    if let Phase::Active { machine, .. } = &mut act.phase {
                        let actions = machine.reconcile(&actual);
                        act.execute(actions, ctx);
                    }
                }
                Rejoined::Recreated => {
                    log::warn!(room = act.room(); "the room no longer existed (re-created by the rejoin): closing it as lost");
                    act.run(Event::Vanished, ctx);
                    // run() finished the room without a destroy; the re-created room must go.
                    let xmpp = act.ctx.xmpp.clone();
                    let room = act.jid.clone();
                    actix::spawn(async move {
                        let _ = xmpp.set(Jid::from(room), muc::destroy("This chat is closed (lost).")).await;
                    });
                }
                Rejoined::Gone(why) => {
                    log::warn!(room = act.room(); "the room cannot be joined any more ({why}): closing it as lost");
                    act.run(Event::Vanished, ctx);
                }
            }
        }));
    }

    fn kick(&self, nick: String, reason: String) {
        let xmpp = self.ctx.xmpp.clone();
        let room = self.jid.clone();
        actix::spawn(async move {
            if let Err(error) = xmpp
                .set(Jid::from(room.clone()), muc::kick(&nick, &reason))
                .await
            {
                log::warn!(room = room.as_str(); "kick of {nick} failed: {error}");
            }
        });
    }

    /// Destroys the room on the server (when `destroy` is given), flushes the writes, tells
    /// the pool and the supervisor, and stops.
    fn finish(&mut self, destroy: Option<CloseReason>, ctx: &mut Context<Self>) {
        self.phase = Phase::Finishing;
        let (done, finished) = oneshot::channel();
        self.finished = Some(finished.shared());
        let xmpp = self.ctx.xmpp.clone();
        let room = self.jid.clone();
        let flushed = self.writer.as_mut().map(RoomWriter::finish);
        let fut = async move {
            if let Some(reason) = destroy {
                let text = format!("This chat is closed ({reason}).");
                if let Err(error) = xmpp.set(Jid::from(room.clone()), muc::destroy(&text)).await {
                    log::warn!(room = room.as_str(); "destroying the room failed: {error}");
                } else {
                    log::info!(room = room.as_str(); "room destroyed on the server");
                }
            }
            if let Some(flushed) = flushed {
                flushed.await;
            }
        };
        ctx.wait(fut.into_actor(self).map(|(), act, ctx| {
            act.ctx.supervisor.do_send(UnregisterRoom(act.jid.clone()));
            act.ctx.pool.do_send(RoomFinished { ready: false });
            let _ = done.send(());
            ctx.stop();
        }));
    }
}

/// How an occupant left, from the status codes of their unavailable presence.
fn departure(p: &RoomPresence) -> Departure {
    if p.has(MucStatus::Kicked) {
        Departure::Kicked
    } else if p.has(MucStatus::Banned) {
        Departure::Banned
    } else if p.has(MucStatus::ServiceShutdown) {
        Departure::ServiceShutdown
    } else if p.has(MucStatus::ConnectionLost) {
        Departure::ConnectionLost
    } else if p.has(MucStatus::AffiliationChanged) || p.has(MucStatus::MembersOnly) {
        Departure::Removed
    } else {
        Departure::Left
    }
}

/// 128 random bits from the OS-seeded CSPRNG, as 26 lowercase base32 characters: valid in
/// a JID localpart and easy to read aloud to support staff.
pub fn random_token() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits: u128 = rand::rng().random();
    (0..26)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

/// Joins, configures, verifies and records a new room; returns the row id.
async fn create(
    ctx: Arc<RoomContext>,
    jid: BareJid,
    password: String,
    joined: oneshot::Receiver<RoomPresence>,
) -> Result<i64, CreateError> {
    ctx.xmpp.send(muc::join(&jid, &ctx.nick, Some(&password)));
    let presence = match tokio::time::timeout(ctx.join_timeout, joined).await {
        Ok(Ok(p)) => p,
        _ => return Err(CreateError::JoinTimeout(ctx.join_timeout)),
    };
    if let PresenceKind::Error { condition } = presence.kind {
        return Err(CreateError::JoinRefused(condition));
    }
    if !presence.has(MucStatus::RoomCreated) {
        ctx.xmpp.send(muc::leave(&jid, &ctx.nick));
        return Err(CreateError::NameTaken);
    }
    configure(&ctx, &jid, &password).await?;
    let row = ctx
        .store
        .create_room(&NewRoom {
            jid: jid.to_string(),
            password,
            bot_jid: ctx.bot_jid.clone(),
            at: store::now(),
        })
        .await?;
    Ok(row.id)
}

/// What the bot found when it joined a recorded room again.
#[derive(Debug)]
enum Rejoined {
    /// The room is there (reconfigured); `early` holds who is inside.
    Present,
    /// The join created the room anew: the old one was lost.
    Recreated,
    /// The room refused the join (gone and not creatable, or the password changed).
    Gone(String),
}

/// Joins a recorded room again, and configures it again when it is there (a room the server
/// kept may have been reset or left locked).
async fn rejoin(
    ctx: Arc<RoomContext>,
    jid: BareJid,
    password: String,
    joined: oneshot::Receiver<RoomPresence>,
) -> Rejoined {
    ctx.xmpp.send(muc::join(&jid, &ctx.nick, Some(&password)));
    let presence = match tokio::time::timeout(ctx.join_timeout, joined).await {
        Ok(Ok(p)) => p,
        _ => {
            return Rejoined::Gone(format!(
                "no answer to the join within {:?}",
                ctx.join_timeout
            ));
        }
    };
    if let PresenceKind::Error { condition } = presence.kind {
        return Rejoined::Gone(condition);
    }
    if presence.has(MucStatus::RoomCreated) {
        return Rejoined::Recreated;
    }
    if let Err(error) = configure(&ctx, &jid, &password).await {
        log::warn!(room = jid.as_str(); "configuring the room again failed: {error}");
    }
    Rejoined::Present
}

/// Fetches the owner form, submits the bot's settings for the fields offered, and checks
/// with disco#info that the room is protected, hidden and temporary.
async fn configure(ctx: &RoomContext, jid: &BareJid, password: &str) -> Result<(), CreateError> {
    let room = Jid::from(jid.clone());
    let offered = ctx.xmpp.get(room.clone(), muc::owner_query()).await?;
    let offered = form::parse_offered(&offered.ok_or(CreateError::NoForm)?)?;
    let settings = RoomSettings {
        password: password.to_owned(),
        history_length: ctx.history_length,
        max_users: ctx.max_chatters + 1,
    };
    ctx.xmpp
        .set(room.clone(), form::submit(&offered, &settings)?)
        .await?;
    let info = ctx
        .xmpp
        .get(
            room,
            minidom::Element::builder("query", form::NS_DISCO_INFO).build(),
        )
        .await?;
    form::verify_features(&info.ok_or(CreateError::NoForm)?)?;
    Ok(())
}

/// The supervisor should rejoin: a new XMPP session started (the old one's rooms were left).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Rejoin;

impl Handler<Rejoin> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: Rejoin, ctx: &mut Self::Context) {
        if let Phase::Active { .. } = self.phase {
            let Phase::Active { room_id, machine } =
                std::mem::replace(&mut self.phase, Phase::Finishing)
            else {
                unreachable!("checked above")
            };
            self.phase = Phase::Rejoining { room_id, machine };
            self.rejoin(ctx);
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(every) = self.ctx.room_ping {
            ctx.run_interval(every, |act, ctx| act.self_ping(ctx));
        }
        if matches!(self.phase, Phase::Rejoining { .. }) {
            self.writer = Some(self.start_writer());
            self.rejoin(ctx);
            return;
        }
        log::debug!(room = self.room(); "creating room");
        let (waiter, joined) = oneshot::channel();
        self.join_waiter = Some(waiter);
        let fut = create(
            self.ctx.clone(),
            self.jid.clone(),
            self.password.clone(),
            joined,
        );
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(room_id) => {
                log::info!(room = act.room(); "room configured and recorded as available (id {room_id})");
                act.writer = Some(act.start_writer());
                act.phase = Phase::Active {
                    room_id,
                    machine: crate::lifecycle::Room::new(act.ctx.max_chatters as usize),
                };
                act.ctx.pool.do_send(RoomFinished { ready: true });
                for nick in std::mem::take(&mut act.early) {
                    log::warn!(room = act.room(); "{nick} entered before the room was recorded: kicking");
                    act.kick(nick, "This room is not open yet.".to_owned());
                }
            }
            Err(error) => {
                log::warn!(room = act.room(); "room creation failed: {error}");
                let destroy = !matches!(
                    error,
                    CreateError::NameTaken | CreateError::JoinRefused(_) | CreateError::JoinTimeout(_)
                );
                act.phase = Phase::Finishing;
                let xmpp = act.ctx.xmpp.clone();
                let room = act.jid.clone();
                ctx.wait(
                    async move {
                        if destroy {
                            let _ = xmpp.set(Jid::from(room), muc::destroy("configuration failed")).await;
                        }
                    }
                    .into_actor(act)
                    .map(|(), act, ctx| {
                        act.ctx.supervisor.do_send(UnregisterRoom(act.jid.clone()));
                        act.ctx.pool.do_send(super::pool::CreationFailed);
                        ctx.stop();
                    }),
                );
            }
        }));
    }
}

impl Handler<PresenceForRoom> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: PresenceForRoom, ctx: &mut Self::Context) {
        match self.phase {
            Phase::Creating | Phase::Rejoining { .. } => self.presence_while_creating(msg.0),
            Phase::Active { .. } => self.presence_while_active(msg.0, ctx),
            Phase::Finishing => {}
        }
    }
}

impl Handler<ShutdownRoom> for RoomActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ShutdownRoom, ctx: &mut Self::Context) -> Self::Result {
        self.run(Event::Shutdown, ctx);
        // Unused rooms are now finishing; rooms with people stay open on the server and only
        // their pending writes are flushed.
        match self.phase {
            Phase::Active { .. } => {
                let flushed = self.writer.as_mut().map(RoomWriter::finish);
                Box::pin(async move {
                    if let Some(flushed) = flushed {
                        flushed.await;
                    }
                })
            }
            Phase::Finishing => {
                let finished = self.finished.clone();
                Box::pin(async move {
                    if let Some(finished) = finished {
                        let _ = finished.await;
                    }
                })
            }
            Phase::Creating | Phase::Rejoining { .. } => Box::pin(async {}),
        }
    }
}
