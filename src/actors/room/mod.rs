//! `RoomActor`: one per room. Creates and configures the room, gathers the facts the
//! [`lifecycle`] machine decides on (who entered, with which real JID,
//! which claims the row holds), carries out its actions, persists every transition in order,
//! and destroys the room when the chat is over.
//!
//! The actor decides nothing about the room itself: admission, holds and their rechecks,
//! password changes after an expired claim and when to give up on them, a write refused for
//! good, unusable rooms and closes are the machine's (its table is the one place to read
//! them). What the actor owns is the mechanics of carrying actions out: a kick is repeated
//! until the server confirms it (the occupant's unavailable presence) and reported to the
//! machine when it does not work; a destroy is repeated until the server confirms it, and
//! only then is the row marked destroyed; a rejoin that gets no answer is tried again a few
//! times; the machine's timers run on the actor's context and come back as events.

//! Errors stay inside the room: a failed kick, a refused destroy or a database outage is
//! logged with `room=<jid>` and never reaches another room or the connection.
//!
//! Layout: this file is the actor, its messages and their handlers; `presence.rs` turns room
//! presences into lifecycle events; `setup.rs` creates, configures, rejoins and destroys the
//! room on the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::backoff::Backoff;
use crate::claims::{self, ClaimTtls, ExpiredClaim};
use crate::lifecycle::{self, Action, Claims, Departure, Event, Person, Policy, Unusable};
use crate::model::{CloseReason, Role, RoomStatus};
use crate::store::{self, NewRoom, Store};
use crate::texts::{Text, Texts};
use crate::xmpp::form::{self, RoomSettings};
use crate::xmpp::muc::{self, MucStatus, PresenceKind, RoomPresence};
use crate::xmpp::{IqError, XmppHandle};

use super::pool::{PoolActor, Replenish, RoomFinished};
use super::supervisor::{Recovered, SupervisorActor, UnregisterRoom};
use super::writer::{RoomWriter, WriteStopped};

mod inbox;
mod presence;
mod setup;

pub use inbox::Inbox;

use setup::{Rejoined, configure, create, rejoin};
pub use setup::{destroy_until_confirmed, random_token};

/// How long the first kick of somebody waits for the server's confirmation; every further
/// attempt waits twice as long, up to [`RETRY_MAX`].
const KICK_CONFIRM: Duration = Duration::from_secs(1);
/// Unconfirmed kicks after which the machine is told that the person cannot be removed.
const KICK_ATTEMPTS: u32 = 3;
/// The longest wait between two attempts of a kick or a destroy.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Joins of a recorded room that time out before it is given up as lost.
const REJOIN_ATTEMPTS: u32 = 3;
/// How often a room whose row turned bad reads it again.
const ROW_RECHECK: Duration = Duration::from_secs(5);

/// What every room needs to know, shared by all rooms.
#[derive(Debug, Clone)]
pub struct RoomContext {
    /// The XMPP connection.
    pub xmpp: XmppHandle,
    /// The database.
    pub store: Store,
    /// Where room writers commit their changes, together with other rooms' changes.
    pub committer: super::committer::Committer,
    /// The bot's bare JID: the owner recorded on every row.
    pub bot_jid: String,
    /// What the room machine decides by: seats, claims, timeouts.
    pub policy: Policy,
    /// The words people in the room read, in the helpline's language.
    pub texts: Texts,
    /// Messages of history a room replays.
    pub history_length: u32,
    /// Deadline for the room's answer to the bot's join.
    pub join_timeout: Duration,
    /// Cap of the backoff between database retries.
    pub retry_max: Duration,
    /// How long claims stay open unused.
    pub claim_ttls: ClaimTtls,
    /// Interval of XEP-0410 self-pings, to notice that the bot silently dropped out.
    pub room_ping: Option<Duration>,
    /// The service's owner form, fetched once per session.
    pub owner_form: form::OwnerFormCache,
    /// Fault injection for tests: a room actor panics when a person with this nick enters
    /// (from `HELPIM_FAULT_PANIC_ON_NICK`; only in builds with the `fault-injection`
    /// feature, which production builds do not have).
    #[cfg(feature = "fault-injection")]
    pub panic_on_nick: Option<String>,
    /// Fault injection for tests: a room actor blocks its thread for an hour when a person
    /// with this nick enters, wedging the actor system (from `HELPIM_FAULT_WEDGE_ON_NICK`;
    /// only with the `fault-injection` feature). The systemd watchdog must starve.
    #[cfg(feature = "fault-injection")]
    pub wedge_on_nick: Option<String>,
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
        machine: lifecycle::RoomMachine,
    },
    /// Recorded and followed by the lifecycle machine.
    Active {
        room_id: i64,
        machine: lifecycle::RoomMachine,
    },
    /// Closed (or failed); destroying on the server and flushing writes.
    Finishing,
}

/// A kick the server has not confirmed yet.
#[derive(Debug)]
struct PendingKick {
    /// The reason the person is shown.
    reason: String,
    /// Kick requests sent so far.
    attempts: u32,
}

/// The actor of one room.
pub struct RoomActor {
    ctx: Arc<RoomContext>,
    jid: BareJid,
    /// The bot's nick in this room: its own (`policy.bot_nick`), or an alternative while somebody
    /// else holds that one ([`Rejoined::NickTaken`]).
    nick: String,
    password: String,
    phase: Phase,
    /// Waiting for the bot's own presence (or an error) answering its join.
    join_waiter: Option<oneshot::Sender<RoomPresence>>,
    /// People seen in the room while it was being created or rejoined, nick → real JID:
    /// intruders of a new room, or who is inside a recorded one.
    early: BTreeMap<String, Option<String>>,
    /// Kicks not confirmed yet, by nick.
    kicks: HashMap<String, PendingKick>,
    /// Presences routed here and not yet handled.
    inbox: Inbox,
    /// Expired claims being released, by seat (at most one per seat).
    expired: HashMap<Role, ExpiredClaim>,
    /// Joins of this rejoin that timed out.
    rejoin_timeouts: u32,
    writer: Option<RoomWriter>,
    /// Resolves once the room has finished (destroyed, writes flushed), for shutdown.
    finished: Option<Shared<oneshot::Receiver<()>>>,
    /// Leave the room before the next rejoin (the bot may still be inside).
    leave_first: bool,
    /// The XMPP session ended and no new one has started ([`SessionEnded`]): the server
    /// cannot be asked anything, so a destroy is left to the sweep of closed, undestroyed
    /// rooms on the next session instead of holding this actor (and the recovery, which
    /// waits for its answer) for as long as the session is down.
    session_ended: bool,
    /// The room is being asked who is inside ([`CheckOccupants`]); at most one such
    /// question is in flight per room, however many unreadable presences arrive.
    checking: bool,
    /// The room's row turned bad: the room waits, as it is, for the row to be corrected
    /// ([`RoomActor::restart_from_row`]).
    row_unreadable: bool,
    /// An unreadable presence arrived while a check was in flight (or before the room was
    /// active): one more check follows, the latest such presence's facts with it.
    check_next: Option<CheckOccupants>,
}

/// After a presence from this room that the bot could not read (a broken sender, type or
/// muc#user element): ask the room who is inside, and bring the machine in line with its
/// answer. What could be read of the presence is the fallback when the room cannot be
/// asked: a newcomer who cannot be judged is kicked.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CheckOccupants {
    /// The occupant's nick, when the sender could be read.
    pub nick: Option<String>,
    /// Whether the presence was an available one (somebody entering or inside).
    pub available: bool,
}

/// Presences wait in the room's [`Inbox`]: handle the oldest (and wake again while more
/// wait). One presence per message, so that a claim lookup (`ctx.wait`) keeps the order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct PresencesWaiting;

/// A started room actor with its inbox: what the supervisor routes presences through (and,
/// as an address, sends every other message to).
#[derive(Debug, Clone)]
pub struct RoomHandle {
    /// The actor.
    addr: Addr<RoomActor>,
    /// Its presences not yet handled.
    inbox: Inbox,
}

impl RoomHandle {
    /// Starts `room`.
    pub fn start(room: RoomActor) -> RoomHandle {
        let inbox = room.inbox.clone();
        RoomHandle {
            addr: room.start(),
            inbox,
        }
    }

    /// Hands a presence from the room to its actor, coalesced with the occupant's older
    /// updates not yet handled ([`Inbox::put`]); wakes the actor when none were waiting.
    pub fn presence(&self, presence: RoomPresence) {
        if self.inbox.put(presence) {
            self.addr.do_send(PresencesWaiting);
        }
    }
}

impl std::ops::Deref for RoomHandle {
    type Target = Addr<RoomActor>;

    fn deref(&self) -> &Addr<RoomActor> {
        &self.addr
    }
}

/// The bot is shutting down: close the room if it is unused; answer when its writes are
/// flushed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ShutdownRoom;

/// A claim on this room expired unused: release it, and for a staff or client claim give
/// the room a new password first, so that nobody holding the old one can walk in.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ExpireClaim(pub ExpiredClaim);

impl RoomActor {
    /// A new room with a fresh unguessable name and password (128 bits each from the OS
    /// CSPRNG, base32), created as soon as the actor starts.
    pub fn new_room(ctx: Arc<RoomContext>, service: &BareJid, prefix: &str) -> RoomActor {
        let name = format!("{prefix}{}", random_token());
        let jid = BareJid::new(&format!("{name}@{service}")).expect("prefix validated by config");
        RoomActor::with(ctx, jid, random_token(), Phase::Creating, false)
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
        let person = |nick: &Option<String>, jid: &Option<String>| {
            nick.as_ref().map(|n| Person::new(n.clone(), jid.clone()))
        };
        let machine = lifecycle::RoomMachine::restore(
            row.id,
            row.status,
            person(&row.staff_nick, &row.staff_jid),
            person(&row.client_nick, &row.client_jid),
            ctx.policy.clone(),
        );
        let phase = Phase::Rejoining {
            room_id: row.id,
            machine,
        };
        Ok(RoomActor::with(
            ctx,
            jid,
            row.password.clone(),
            phase,
            leave_first,
        ))
    }

    fn with(
        ctx: Arc<RoomContext>,
        jid: BareJid,
        password: String,
        phase: Phase,
        leave_first: bool,
    ) -> RoomActor {
        RoomActor {
            nick: ctx.policy.bot_nick.clone(),
            ctx,
            jid,
            password,
            phase,
            join_waiter: None,
            early: BTreeMap::new(),
            kicks: HashMap::new(),
            inbox: Inbox::default(),
            expired: HashMap::new(),
            rejoin_timeouts: 0,
            writer: None,
            finished: None,
            leave_first,
            session_ended: false,
            checking: false,
            check_next: None,
            row_unreadable: false,
        }
    }

    /// The room's bare JID (the routing key).
    pub fn jid(&self) -> &BareJid {
        &self.jid
    }

    fn room(&self) -> &str {
        self.jid.as_str()
    }

    /// Somebody is present: feeds `Entered` with the claims of the row, looked up when the
    /// machine needs them ([`lifecycle::RoomMachine::needs_claims`]). The room handles nothing else
    /// meanwhile, so its events stay in order. A lookup that fails gives
    /// [`Claims::unknown`]: the machine holds the person, it never admits them.
    fn entered(&mut self, person: Person, ctx: &mut Context<Self>) {
        #[cfg(feature = "fault-injection")]
        if self.ctx.panic_on_nick.as_deref() == Some(person.nick.as_str()) {
            panic!("fault injection: {} entered {}", person.nick, self.jid);
        }
        #[cfg(feature = "fault-injection")]
        if self.ctx.wedge_on_nick.as_deref() == Some(person.nick.as_str()) {
            log::error!(room = self.room(); "fault injection: {} entered; wedging the actor thread", person.nick);
            std::thread::sleep(Duration::from_secs(3600));
        }
        let Phase::Active { room_id, machine } = &self.phase else {
            return;
        };
        if !machine.needs_claims(&person) {
            // Claims not required, or inside already, being kicked, or a role holder coming
            // back: no claim decides.
            let claims = Claims::unknown();
            return self.run(Event::Entered { person, claims }, ctx);
        }
        let lookup = lookup_claims(self.ctx.clone(), *room_id, self.jid.clone());
        ctx.wait(lookup.into_actor(self).map(move |claims, act, ctx| {
            act.run(Event::Entered { person, claims }, ctx);
        }));
    }

    /// The row disagreed with a change: the room starts again from its row, as it is now.
    /// While the row cannot be decoded (it turned bad: [`crate::quarantine`]) there is
    /// nothing to start from; the room is left as it is, the people inside stay, newcomers
    /// are kept out (their claims cannot be read), and the row is read again every
    /// [`ROW_RECHECK`] until it can be.
    fn restart_from_row(&mut self, ctx: &mut Context<Self>) {
        let room_id = match &self.phase {
            Phase::Active { room_id, .. } | Phase::Rejoining { room_id, .. } => *room_id,
            Phase::Creating | Phase::Finishing => {
                ctx.stop();
                return;
            }
        };
        let store = self.ctx.store.clone();
        let read = async move { store.room(room_id).await };
        ctx.spawn(read.into_actor(self).map(move |row, act, ctx| match row {
            Err(error) if error.is_bad_row() => {
                if !act.row_unreadable {
                    log::error!(room = act.room(); "the room's row cannot be read ({error}): the people inside stay, nobody else is let in, and the room is taken up again once the row is corrected");
                    act.row_unreadable = true;
                }
                ctx.run_later(ROW_RECHECK, |act, ctx| act.restart_from_row(ctx));
            }
            _ => {
                log::warn!(room = act.room(); "restarting the room from its database row");
                ctx.stop();
            }
        }));
    }

    /// Asks the room who is inside ([`CheckOccupants`]): one question per role, then the
    /// machine's view is brought in line with the answer ([`crate::lifecycle::RoomMachine::listed`]):
    /// people no longer listed have left, listed people it does not know are newcomers,
    /// judged on their claims like anybody entering. At most one check is in flight; what
    /// arrives meanwhile makes one more check afterwards.
    fn check_occupants(&mut self, unread: CheckOccupants, ctx: &mut Context<Self>) {
        if self.checking || !matches!(self.phase, Phase::Active { .. }) {
            // Not active yet: the creation or rejoin in progress reads who is inside, and
            // the check follows it (`check_deferred`), since this presence was not read.
            self.check_next = Some(unread);
            return;
        }
        self.checking = true;
        let xmpp = self.ctx.xmpp.clone();
        let room = Jid::from(self.jid.clone());
        let own = self.nick.clone();
        let ask = async move {
            let mut inside = Vec::new();
            for role in muc::OCCUPANT_ROLES {
                let answer = xmpp.get(room.clone(), muc::role_query(role)).await?;
                let listed = answer.as_ref().map(muc::occupant_list).unwrap_or_default();
                inside.extend(listed.into_iter().filter(|(nick, _)| *nick != own).map(
                    |(nick, jid)| {
                        let jid = jid.and_then(|j| Jid::new(&j).ok());
                        Person::new(nick, jid.map(|j| j.to_bare().to_string()))
                    },
                ));
            }
            Ok::<_, IqError>(inside)
        };
        ctx.spawn(ask.into_actor(self).map(move |answer, act, ctx| {
            act.checking = false;
            let Phase::Active { machine, .. } = &act.phase else {
                return;
            };
            match answer {
                Ok(inside) => {
                    let (events, newcomers) = machine.listed(&inside);
                    let nicks: Vec<&str> = inside.iter().map(|p| p.nick.as_str()).collect();
                    log::info!(room = act.room(); "the room lists {nicks:?} inside");
                    for event in events {
                        act.run(event, ctx);
                    }
                    for person in newcomers {
                        act.entered(person, ctx);
                    }
                }
                Err(error) => {
                    log::warn!(room = act.room(); "cannot ask the room who is inside: {error}");
                    // The safe case: somebody entering whom the bot can neither read nor
                    // look up holds no claim the bot could check (the machine ignores this
                    // for people it counts or is kicking already).
                    if let Some(nick) = unread.nick.filter(|_| unread.available) {
                        let person = Person::new(nick, None);
                        let claims = Claims::missing();
                        act.run(Event::Entered { person, claims }, ctx);
                    }
                }
            }
            act.check_deferred(ctx);
        }));
    }

    /// Runs the occupant check that waited for the room to become active or for the check
    /// before it.
    fn check_deferred(&mut self, ctx: &mut Context<Self>) {
        if let Some(next) = self.check_next.take() {
            self.check_occupants(next, ctx);
        }
    }

    /// One lifecycle step and its actions, in order.
    fn run(&mut self, event: Event, ctx: &mut Context<Self>) {
        let Phase::Active { machine, .. } = &mut self.phase else {
            return;
        };
        let actions = machine.step(store::now(), event);
        self.execute(actions, ctx);
    }

    /// Carries out a step's actions, in order.
    fn execute(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Active { .. }) {
            return;
        }
        for action in actions {
            match action {
                Action::Record(r) => {
                    log::info!(room = self.jid.as_str();
                        "{} {}→{}{} ({})", r.kind, r.from, r.to,
                        r.nick.as_deref().map(|n| format!(" nick={n}")).unwrap_or_default(), r.detail);
                    if let Some(writer) = &self.writer {
                        writer.push(r);
                    }
                }
                Action::Kick { nick, reason } => {
                    crate::metrics::metrics().count_kick(reason);
                    self.kick(nick, self.ctx.texts.get(Text::kick(reason)).to_owned(), ctx)
                }
                Action::Hold { person, why } => {
                    log::warn!(room = self.room(); "{} is held, neither admitted nor kicked: {why}", person.nick);
                }
                Action::LookUpClaims { person } => self.entered(person, ctx),
                Action::Schedule { timer, after } => {
                    ctx.run_later(after, move |act, ctx| act.run(timer.event(), ctx));
                }
                Action::Coalesced { kind, count } => {
                    crate::metrics::metrics().count_coalesced(kind, count);
                }
                Action::Ban { jid } => {
                    log::warn!(room = self.room(); "{jid} was kicked {} times: the room keeps them out until a claim names them", lifecycle::BAN_AFTER);
                    crate::metrics::metrics().bans.inc();
                    self.set_affiliation(jid, "outcast", ctx);
                }
                Action::Unban { jid } => {
                    log::info!(room = self.room(); "a claim names {jid}: the room lets them in again");
                    self.set_affiliation(jid, "none", ctx);
                }
                Action::CheckBans => {
                    let Phase::Active { room_id, .. } = &self.phase else {
                        continue;
                    };
                    let lookup = lookup_claims(self.ctx.clone(), *room_id, self.jid.clone());
                    ctx.spawn(lookup.into_actor(self).map(|claims, act, ctx| {
                        act.run(Event::BansChecked { claims }, ctx);
                    }));
                }
                Action::ChangePassword { role } => self.change_password(role, ctx),
                Action::ReleaseClaim { role } => self.release_claim(role, false, ctx),
                Action::Notify { text } => {
                    let texts = &self.ctx.texts;
                    let lang = xmpp_parsers::message::Lang::from(texts.language().tag());
                    let message = Message::groupchat(Some(Jid::from(self.jid.clone())))
                        .with_body(lang, texts.get(text).to_owned());
                    self.ctx.xmpp.send(message);
                }
                Action::Destroy { reason } => {
                    self.finish(Some(reason), ctx);
                    return;
                }
            }
        }
        if matches!(&self.phase, Phase::Active { machine, .. } if machine.status() == RoomStatus::Closed)
        {
            self.finish(None, ctx); // closed without a destroy (destroyed by somebody else)
        }
    }

    /// Gives `jid` this affiliation in the room (`outcast`: kept out; `none`: let in); a
    /// refusal is logged (the kicks go on as before).
    fn set_affiliation(&mut self, jid: String, affiliation: &'static str, ctx: &mut Context<Self>) {
        let xmpp = self.ctx.xmpp.clone();
        let room = Jid::from(self.jid.clone());
        let request = muc::set_affiliation(&jid, affiliation);
        let sent = async move { xmpp.set(room, request).await };
        ctx.spawn(sent.into_actor(self).map(move |answer, act, _| {
            if let Err(error) = answer {
                log::warn!(room = act.room(); "cannot make {jid} {affiliation}: {error}");
            }
        }));
    }

    /// After a rejoin: reads the room's banned JIDs, so that a claim can still let them in.
    fn find_bans(&mut self, ctx: &mut Context<Self>) {
        let xmpp = self.ctx.xmpp.clone();
        let room = Jid::from(self.jid.clone());
        let ask = async move { xmpp.get(room, muc::outcast_query()).await };
        ctx.spawn(ask.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(Some(list)) => {
                let jids = muc::jid_list(&list);
                if !jids.is_empty() {
                    act.run(Event::BansFound { jids }, ctx);
                }
            }
            Ok(None) => {}
            Err(error) => {
                log::warn!(room = act.room(); "cannot read the room's banned JIDs: {error}")
            }
        }));
    }

    /// Starts removing `nick`: the kick is sent, and repeated with backoff until the
    /// server confirms it with the occupant's unavailable presence.
    fn kick(&mut self, nick: String, reason: String, ctx: &mut Context<Self>) {
        self.kicks.entry(nick.clone()).or_insert(PendingKick {
            reason,
            attempts: 0,
        });
        self.try_kick(nick, ctx);
    }

    /// One kick request for a pending kick, and the check of its confirmation.
    fn try_kick(&mut self, nick: String, ctx: &mut Context<Self>) {
        let still_inside =
            matches!(&self.phase, Phase::Active { machine, .. } if machine.is_being_removed(&nick));
        if !still_inside {
            self.kicks.remove(&nick);
            return;
        }
        let Some(kick) = self.kicks.get_mut(&nick) else {
            return;
        };
        kick.attempts += 1;
        let attempt = kick.attempts;
        let request = muc::kick(&nick, &kick.reason, self.ctx.texts.language().tag());
        let xmpp = self.ctx.xmpp.clone();
        let room = self.jid.clone();
        let who = nick.clone();
        let sent = async move { xmpp.set(Jid::from(room), request).await };
        ctx.spawn(sent.into_actor(self).map(move |answer, act, ctx| {
            let Err(error) = answer else { return };
            log::warn!(room = act.room(); "kick {attempt} of {who} failed: {error}");
            if matches!(error, IqError::Refused { .. }) {
                // The machine decides whether a refusal ends the room now.
                act.run(Event::KickRefused { nick: who }, ctx);
            }
        }));
        let wait = Backoff::new(KICK_CONFIRM, RETRY_MAX).nth(attempt);
        ctx.run_later(wait, move |act, ctx| {
            if !act.kicks.contains_key(&nick) {
                return; // confirmed
            }
            if attempt == KICK_ATTEMPTS {
                log::error!(room = act.room(); "{nick} is still inside after {attempt} kicks");
                act.run(Event::KickFailed { nick: nick.clone() }, ctx);
            }
            act.try_kick(nick, ctx);
        });
    }

    /// XEP-0410 self-ping: asks the room whether the bot is still an occupant. A room that
    /// says no (`not-acceptable`, `item-not-found`) is rejoined and reconciled; no answer is
    /// inconclusive and changes nothing.
    fn self_ping(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Active { .. }) {
            return;
        }
        let Ok(nick) = jid::ResourcePart::new(&self.nick) else {
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
                && matches!(
                    condition.0,
                    DefinedCondition::NotAcceptable | DefinedCondition::ItemNotFound
                )
            {
                log::warn!(room = act.room(); "self-ping says the bot is no longer in the room ({condition}): rejoining");
                <Self as Handler<Rejoin>>::handle(act, Rejoin, ctx);
            }
        }));
    }

    fn start_writer(&self, ctx: &Context<Self>) -> RoomWriter {
        RoomWriter::start(
            self.ctx.store.clone(),
            self.ctx.committer.clone(),
            self.jid.to_string(),
            self.ctx.retry_max,
            self.ctx.pool.clone().recipient(),
            ctx.address().recipient(),
        )
    }

    /// Joins the room again and reconciles: the room may be gone, may have been re-created
    /// by this very join, or may refuse to be configured (each: destroyed, closed `lost`),
    /// or may be there with people inside, who are admitted or kicked by the machine's rules
    /// and the row's claims. A join that times out is tried again a few times. Tells the
    /// supervisor when done.
    fn rejoin(&mut self, ctx: &mut Context<Self>) {
        log::info!(room = self.room(); "rejoining to check the room");
        let (waiter, joined) = oneshot::channel();
        self.join_waiter = Some(waiter);
        self.early.clear();
        if std::mem::take(&mut self.leave_first) {
            self.ctx.xmpp.send(muc::leave(&self.jid, &self.nick));
        }
        let Phase::Rejoining { room_id, machine } = &self.phase else {
            return;
        };
        let fut = rejoin(
            self.ctx.clone(),
            self.jid.clone(),
            self.password.clone(),
            (*room_id, machine.status(), self.nick.clone()),
            joined,
        );
        ctx.spawn(fut.into_actor(self).map(|outcome, act, ctx| {
            if let Rejoined::TimedOut = outcome {
                act.rejoin_timeouts += 1;
                if act.rejoin_timeouts < REJOIN_ATTEMPTS {
                    log::warn!(room = act.room(); "no answer to the rejoin ({} of {REJOIN_ATTEMPTS}): trying again", act.rejoin_timeouts);
                    return act.rejoin(ctx);
                }
            }
            if let Rejoined::NickTaken = outcome
                && act.nick == act.ctx.policy.bot_nick
            {
                // Somebody took the bot's nick while it was away: the bot comes back under
                // another, and the machine asks whoever holds it to leave it; the bot takes
                // its own back once it is free (`presence_while_active`).
                act.nick = format!("{}~", act.ctx.policy.bot_nick);
                log::warn!(room = act.room(); "somebody holds the bot's nick {} in the room: rejoining as {}", act.ctx.policy.bot_nick, act.nick);
                return act.rejoin(ctx);
            }
            act.rejoin_timeouts = 0;
            let Phase::Rejoining { room_id, machine } = std::mem::replace(&mut act.phase, Phase::Finishing) else {
                return;
            };
            act.phase = Phase::Active { room_id, machine };
            act.ctx.supervisor.do_send(Recovered(act.jid.clone()));
            match outcome {
                Rejoined::Present(claims) => {
                    let actual: Vec<Person> = std::mem::take(&mut act.early)
                        .into_iter()
                        .map(|(nick, jid)| Person::new(nick, jid))
                        .collect();
                    let nicks: Vec<&str> = actual.iter().map(|p| p.nick.as_str()).collect();
                    log::info!(room = act.room(); "back in the room; inside: {nicks:?}");
                    if let Phase::Active { machine, .. } = &mut act.phase {
                        let actions = machine.reconcile(store::now(), &actual, &claims);
                        act.execute(actions, ctx);
                    }
                    act.find_bans(ctx);
                    act.check_deferred(ctx);
                }
                Rejoined::Recreated => {
                    log::warn!(room = act.room(); "the room no longer existed (re-created by the rejoin): closing it as lost");
                    act.run(Event::Unusable(Unusable::Recreated), ctx);
                }
                Rejoined::Unconfigurable(why) => {
                    log::warn!(room = act.room(); "the room cannot be configured again ({why}): closing it as lost");
                    act.run(Event::Unusable(Unusable::Unconfigurable(why)), ctx);
                }
                Rejoined::Gone(why) => {
                    log::warn!(room = act.room(); "the room cannot be joined any more ({why}): closing it as lost");
                    act.run(Event::Unusable(Unusable::Unjoinable(why)), ctx);
                }
                Rejoined::TimedOut => {
                    log::warn!(room = act.room(); "no answer to {REJOIN_ATTEMPTS} rejoins: closing the room as lost");
                    act.run(Event::Unusable(Unusable::Unanswered(REJOIN_ATTEMPTS)), ctx);
                }
                Rejoined::NickTaken => {
                    let why = format!("both {} and {} are taken", act.ctx.policy.bot_nick, act.nick);
                    log::warn!(room = act.room(); "the room cannot be joined again ({why}): closing it as lost");
                    act.run(Event::Unusable(Unusable::Unjoinable(why)), ctx);
                }
            }
        }));
    }

    /// Destroys the room on the server (when `destroy` is given) until the server confirms
    /// it, flushes the writes, marks the row destroyed, tells the pool and the supervisor,
    /// and stops.
    fn finish(&mut self, destroy: Option<CloseReason>, ctx: &mut Context<Self>) {
        let room_id = match &self.phase {
            Phase::Active { room_id, .. } | Phase::Rejoining { room_id, .. } => Some(*room_id),
            Phase::Creating | Phase::Finishing => None,
        };
        self.phase = Phase::Finishing;
        self.kicks.clear();
        let (done, finished) = oneshot::channel();
        self.finished = Some(finished.shared());
        let xmpp = self.ctx.xmpp.clone();
        let store = self.ctx.store.clone();
        let room = self.jid.clone();
        let flushed = self.writer.as_mut().map(RoomWriter::finish);
        // Without a session the destroy is the next session's sweep: the row stays
        // undestroyed until then.
        let swept_later = destroy.is_some() && self.session_ended;
        if swept_later {
            log::info!(room = self.room(); "no XMPP session: the room's destroy is left to the next session");
        }
        let destroy = destroy
            .filter(|_| !swept_later)
            .map(|reason| self.ctx.texts.get(Text::closed(reason)).to_owned());
        let lang = self.ctx.texts.language().tag();
        let room_id = room_id.filter(|_| !swept_later);
        let fut = async move {
            let destroyed = match destroy {
                Some(reason) => destroy_until_confirmed(&xmpp, &room, &reason, lang).await,
                None => true,
            };
            let room_id = room_id.filter(|_| destroyed);
            if let Some(flushed) = flushed {
                flushed.await;
            }
            if let Some(room_id) = room_id
                && let Err(error) = store.mark_destroyed(room_id).await
            {
                // The start-up sweep finds the row again and confirms with the server.
                log::warn!(room = room.as_str(); "cannot record the room as destroyed: {error}");
            }
        };
        ctx.wait(fut.into_actor(self).map(|(), act, ctx| {
            act.ctx.supervisor.do_send(UnregisterRoom(act.jid.clone()));
            act.ctx.pool.do_send(RoomFinished { ready: false });
            // Its log file has had its last line.
            crate::logging::close_room(act.jid.as_str());
            let _ = done.send(());
            ctx.stop();
        }));
    }
}

/// The claims on a room's seats, from its row; [`Claims::unknown`] when the row cannot be
/// read, so that nobody is admitted on a claim nobody checked.
async fn lookup_claims(ctx: Arc<RoomContext>, room_id: i64, jid: BareJid) -> Claims {
    match ctx.store.room(room_id).await {
        Ok(Some(row)) => claims::seats(&row, store::now(), &ctx.claim_ttls),
        Ok(None) => {
            log::error!(room = jid.as_str(); "the room's row is gone: nobody is admitted");
            Claims::missing()
        }
        // The row cannot be decoded (quarantined, logged by the store): its claims cannot be
        // trusted, and it may stay so for long; nobody is let in until it is corrected.
        Err(error) if error.is_bad_row() => Claims::missing(),
        Err(error) => {
            log::warn!(room = jid.as_str(); "cannot read the room's claims: {error}");
            Claims::unknown()
        }
    }
}

/// The bot's XMPP session ended and cannot resume (sent by the supervisor): the bot is out
/// of the room; if nobody else is in it, the server drops it, and the row says so at once.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionEnded;

impl Handler<SessionEnded> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: SessionEnded, ctx: &mut Self::Context) {
        self.session_ended = true;
        if matches!(self.phase, Phase::Active { .. }) {
            self.run(Event::SessionEnded, ctx);
        }
    }
}

/// The supervisor should rejoin: a new XMPP session started (the old one's rooms were left).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Rejoin;

impl Handler<Rejoin> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: Rejoin, ctx: &mut Self::Context) {
        self.session_ended = false;
        if let Phase::Active { .. } = self.phase {
            let Phase::Active { room_id, machine } =
                std::mem::replace(&mut self.phase, Phase::Finishing)
            else {
                unreachable!("checked above")
            };
            self.kicks.clear();
            self.phase = Phase::Rejoining { room_id, machine };
            self.rejoin(ctx);
        } else if !matches!(self.phase, Phase::Rejoining { .. }) {
            // Being created or finishing: nothing to rejoin, but the supervisor counts on
            // an answer. (A room already rejoining answers when its rejoin ends.)
            self.ctx.supervisor.do_send(Recovered(self.jid.clone()));
        }
    }
}

impl Handler<ExpireClaim> for RoomActor {
    type Result = ();

    /// An expired claim: the machine decides whether the room gets a new password first
    /// ([`Action::ChangePassword`]) or the claim is only released ([`Action::ReleaseClaim`]),
    /// or nothing (the claim was used meanwhile).
    fn handle(&mut self, msg: ExpireClaim, ctx: &mut Self::Context) {
        let role = msg.0.role;
        if !matches!(self.phase, Phase::Active { .. }) {
            return;
        }
        self.expired.insert(role, msg.0);
        self.run(Event::ClaimExpired { role }, ctx);
    }
}

impl RoomActor {
    /// Gives the room a new password after `role`'s claim expired, in the row (while the
    /// claim still keeps the room from being claimed) and on the server, so that the person
    /// who was sent with the old one cannot enter after the next person was sent; then
    /// releases the claim. A server that does not take the password is the machine's
    /// [`Event::PasswordNotChanged`].
    fn change_password(&mut self, role: Role, ctx: &mut Context<Self>) {
        let Some(expired) = self.expired.get(&role).cloned() else {
            return;
        };
        let password = random_token();
        let ctx2 = self.ctx.clone();
        let jid = self.jid.clone();
        let new = password.clone();
        let fut = async move {
            let store = &ctx2.store;
            let claimed = claims::set_password_while_claimed(store, expired.room_id, role, &new)
                .await
                .map_err(|e| (false, e.to_string()))?;
            if !claimed {
                return Ok(false); // used meanwhile: the password stays
            }
            configure(&ctx2, &jid, &new)
                .await
                .map_err(|e| (true, e.to_string()))?;
            Ok(true)
        };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(true) => {
                act.password = password;
                act.release_claim(role, true, ctx);
            }
            Ok(false) => {
                act.expired.remove(&role);
            }
            Err((true, why)) => {
                log::error!(room = act.room(); "cannot give the room its new password ({why})");
                act.run(Event::PasswordNotChanged { role }, ctx);
            }
            Err((false, why)) => {
                act.expired.remove(&role);
                log::warn!(room = act.room(); "cannot release the expired claim yet ({why}); the next check tries again");
            }
        }));
    }

    /// Releases `role`'s expired claim; `password_changed`: the room got a new password for
    /// it.
    fn release_claim(&mut self, role: Role, password_changed: bool, ctx: &mut Context<Self>) {
        let Some(expired) = self.expired.remove(&role) else {
            return;
        };
        let store = self.ctx.store.clone();
        let fut = async move { claims::release(&store, &expired, password_changed).await };
        ctx.wait(fut.into_actor(self).map(|result, act, _| match result {
            Ok(true) => act.ctx.pool.do_send(Replenish),
            Ok(false) => {}
            Err(why) => {
                log::warn!(room = act.room(); "cannot release the expired claim yet ({why}); the next check tries again");
            }
        }));
    }
}

/// The writer stopped. On a conflict this actor's picture of the room is wrong: it starts
/// again from its row (`RoomActor::restart_from_row`). When the database refused a change
/// for good, the row was closed `error`: the machine closes the room
/// ([`Event::WriteRefused`]).
impl Handler<WriteStopped> for RoomActor {
    type Result = ();

    fn handle(&mut self, stopped: WriteStopped, ctx: &mut Self::Context) {
        match stopped {
            WriteStopped::Conflict => self.restart_from_row(ctx),
            WriteStopped::Failed => {
                log::error!(room = self.room(); "the room's changes cannot be recorded");
                self.run(Event::WriteRefused, ctx);
            }
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
            self.writer = Some(self.start_writer(ctx));
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
                act.writer = Some(act.start_writer(ctx));
                let mut machine = lifecycle::RoomMachine::new(room_id, act.ctx.policy.clone());
                // Nobody can hold a claim of a room that was not recorded yet.
                let early: Vec<Person> = std::mem::take(&mut act.early)
                    .into_iter()
                    .map(|(nick, jid)| Person::new(nick, jid))
                    .collect();
                let actions = machine.reconcile(store::now(), &early, &Claims::missing());
                act.phase = Phase::Active { room_id, machine };
                act.ctx.pool.do_send(RoomFinished { ready: true });
                act.execute(actions, ctx);
                act.check_deferred(ctx);
            }
            Err(error) => {
                log::warn!(room = act.room(); "room creation failed: {error}");
                let destroy = lifecycle::destroy_after_failed_creation(error.failure());
                act.phase = Phase::Finishing;
                let xmpp = act.ctx.xmpp.clone();
                let room = act.jid.clone();
                let reason = act.ctx.texts.get(Text::Closed).to_owned();
                let lang = act.ctx.texts.language().tag();
                ctx.wait(
                    async move {
                        if destroy {
                            let _ = xmpp.set(Jid::from(room), muc::destroy(&reason, lang)).await;
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

impl Handler<PresencesWaiting> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: PresencesWaiting, ctx: &mut Self::Context) {
        let Some(presence) = self.inbox.take() else {
            return;
        };
        match self.phase {
            Phase::Creating | Phase::Rejoining { .. } => self.presence_while_creating(presence),
            Phase::Active { .. } => self.presence_while_active(presence, ctx),
            Phase::Finishing => {}
        }
        if !self.inbox.is_empty() {
            // After whatever this presence started with `ctx.wait` (a claim lookup).
            ctx.notify(PresencesWaiting);
        }
    }
}

impl Handler<CheckOccupants> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: CheckOccupants, ctx: &mut Self::Context) {
        if !matches!(self.phase, Phase::Finishing) {
            self.check_occupants(msg, ctx);
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
