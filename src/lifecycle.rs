//! The room lifecycle: one pure state machine, `(state, now, event) → (state, actions)`.
//!
//! This module knows nothing of actix, XMPP or SQL, so that a room's whole life, and who may
//! enter it, can be checked against the protocol text (`docs/protocol.txt`) and unit-tested
//! without a server or a database. In the style of a sans-IO protocol crate, everything
//! comes in as an [`Event`] with the time it happened (timers that run out included), and
//! everything to do goes out as an [`Action`]: the actor gathers plain facts (a nick, the
//! real bare JID the bot sees as owner of a semi-anonymous room, the web application's
//! claims, the server's answers) and carries out the actions, in order. The machine's state
//! is private; what the actor needs to know, the actions say.
//!
//! ```text
//! WHO MAY ENTER (a newcomer: not inside, not being kicked)
//! state          the newcomer                                    → decision
//! ─────────────  ──────────────────────────────────────────────  ───────────────────────────
//! any            claims not required (muc.require_claims off)    every seat's claim is open
//! available      staff claim open, and bound to nobody or to     admit as staff
//!                their JID
//! staff_waiting  client claim open, bound as above; nobody       admit as client
//!                being kicked is still inside
//! chatting,      the staff's or client's JID, within grace       admit back (rejoined)
//!  one_left
//! chatting       below max_chatters, extra-seat claim open,      admit as extra (uses up
//!                bound as above                                  the claim)
//! open           the real JID of a person counted inside,        the same person: not
//!                under another nick (another device or tab)     counted, not kicked (up to
//!                                                                SESSIONS_MAX more; past
//!                                                                it kicked as full)
//! staff_waiting  somebody being kicked is still inside           hold
//! any            the claim that decides cannot be checked        hold
//!                (database down)
//! any            a held person's recheck timer runs out          look up the claims again
//!                (their presences meanwhile change nothing: one
//!                recheck per held person)
//! any            anything else (no claim, expired, bound to      kick, record kicked; the
//!                another JID, full, chat over, grace over)       kick must be confirmed
//!
//! WHAT HAPPENS TO THE ROOM
//! state          event                               → state          actions
//! ─────────────  ──────────────────────────────────  ─────────────  ───────────────────────────
//! available      staff admitted                      staff_waiting  record (staff nick + JID)
//! staff_waiting  client admitted                     chatting       record (client nick + JID)
//! staff_waiting  staff leaves                        closed         record no_client, destroy
//! chatting       one leaves, one stays               one_left       record, grace for that
//!                                                                   role, one_left timer
//! one_left       the one who left comes back         chatting       record rejoined
//! open           a person's first session leaves,    (same)         record nick_changed (the
//!                another of theirs stays                            one left is their nick)
//! one_left       the last person leaves              closed         record completed, destroy
//! open           the last person is removed by a     closed         record lost, destroy
//!                server shutdown (332)
//! one_left       one_left timer runs out             closed         notice, record timeout,
//!                                                                   destroy
//! available,     a kicked intruder cannot be removed closed         record error, destroy
//!  staff_waiting  (or the server refuses the kick)
//! chatting,      a kicked intruder cannot be removed (same)         notice, record kick_failed
//!  one_left                                                         (the actor keeps trying)
//! open           a present person changes nick       (same)         record nick_changed
//! open           a nick change or kick while a       (same)         count it (the kick goes
//!                window is open (COALESCE_WINDOW)                   out at once)
//! open           the window ends, something counted (same)         record them together,
//!                                                                   open the next window
//! open           a JID is kicked the BAN_AFTER-th    (same)         ban it (outcast); look at
//!                time                                               the claims every
//!                                                                   BAN_RECHECK
//! open           a claim names a banned JID          (same)         unban it
//! open           a person counted inside holds the   (same)         kick (kick_bot_nick),
//!                bot's nick (taken while it was                     record; their seat waits
//!                away)                                              for them (grace)
//! available,     the claim of that state's seat      (same)         staff, client: change the
//!  staff_waiting, expired unused                                    password, then release the
//!  chatting                                                         claim; extra: release it
//! open           the new password could not be set   (same)         change it again
//! open           ... for the ROTATE_ATTEMPTS-th time closed         record error, destroy
//! available      bot shuts down                      closed         record shutdown, destroy
//! open           the room is unusable (re-created,   closed         record lost, destroy
//!                removed the bot, cannot be joined
//!                or set up again)
//! open           the database refused a change for   closed         destroy (the writer has
//!                good                                               closed the row as error)
//! open           the room was destroyed by others    closed         record lost
//! open, nobody   the bot's XMPP session ended and    closed         record lost, destroy
//!  inside        cannot resume (the server drops                    (confirmed once a new
//!                the empty room)                                    session is up)
//! closed         anything                            closed         nothing
//!
//! A ROOM THAT COULD NOT BE CREATED (no row yet, see [`destroy_after_failed_creation`])
//! the name was taken, the join refused or unanswered   leave it: nothing of ours is there
//! the room could not be configured or recorded         destroy it
//! ```
//! "open" means any status but `closed`. A role belongs to the real bare JID that entered in
//! it: a nick change keeps it, and somebody else with the same nick is a stranger. Presence
//! updates of people already inside and departures of people never counted (the kicked, the
//! held, the bot) change no status. After a restart or reconnect,
//! [`RoomMachine::reconcile`] applies the same rules to whoever the bot finds inside. Each
//! row has a unit test named after what it shows (`mod tests`), and
//! `tests/machine_properties.rs` checks the whole table's invariants on random sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{CloseReason, EventKind, KickReason, Role, RoomChange, RoomStatus};
use crate::texts::Text;

/// How long a held person waits before their claim is looked up again.
pub const HOLD_RECHECK: Duration = Duration::from_secs(2);
/// After a nick change or a kick is recorded, the room's next ones within this window beyond
/// [`COALESCE_BURST`] are counted and recorded together when it ends (one row per person
/// renamed, one for all the kicks): whoever floods, with whatever JIDs, a room writes at
/// most `COALESCE_BURST` + 1 + (one per person inside) such rows every five seconds. The
/// kicks themselves are never delayed.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(5);
/// Nick changes and kicks a coalescing window records one by one, with their nick, before it
/// counts the rest: the few of an ordinary chat keep their own rows.
pub const COALESCE_BURST: u32 = 3;
/// Further sessions (a second device or tab, under another nick) one counted person may
/// have in the room besides their first: they are that person, neither kicked nor counted
/// again. One more is kicked as the chat being full.
pub const SESSIONS_MAX: usize = 2;
/// Kicks of one JID from one room after which the server is asked to keep it out
/// (affiliation `outcast`): a person who comes back again and again costs the bot nothing
/// more. Lifted when a claim names the JID, and gone with the room.
pub const BAN_AFTER: u32 = 3;
/// JIDs whose kicks a room counts (the oldest forgotten first): anonymous logins bring a new
/// JID each time, and no count may grow without bound.
pub const KICKS_TRACKED: usize = 64;
/// JIDs one room keeps banned at most; past it, strangers are kicked as before.
pub const BANS_MAX: usize = 32;
/// How often a room with banned JIDs looks at its claims, to let in a JID a claim names.
pub const BAN_RECHECK: Duration = Duration::from_secs(3);
/// Failed attempts to give a room its new password after a claim expired, before the room
/// is given up (closed `error`, destroyed): whoever holds the old password must not walk in.
pub const ROTATE_ATTEMPTS: u32 = 3;

/// The helpline's settings the machine decides by (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The most people allowed inside at once (the bot not counted).
    pub max_chatters: usize,
    /// Whether people need an open claim for their seat to enter (`muc.require_claims`).
    pub require_claims: bool,
    /// How long a person who left may come back and be the same person.
    pub rejoin_grace: Duration,
    /// How long one person may stay alone; `None`: forever.
    pub one_left: Option<Duration>,
    /// The bot's own nick (`xmpp.nick`), which nobody else may hold.
    pub bot_nick: String,
}

/// The status in which a claim on `role`'s seat is used: the web application claims the
/// staff seat of an `available` room, the client seat of a `staff_waiting` one, an extra
/// seat of a `chatting` one.
pub fn claimed_status(role: Role) -> RoomStatus {
    match role {
        Role::Staff => RoomStatus::Available,
        Role::Client => RoomStatus::StaffWaiting,
        _ => RoomStatus::Chatting,
    }
}

/// Why a room could not be created (before it had a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationFailure {
    /// The name belonged to an existing room: the bot left it.
    NameTaken,
    /// The server refused the join.
    JoinRefused,
    /// The server did not answer the join.
    JoinUnanswered,
    /// The room was created but could not be configured.
    NotConfigured,
    /// The room was configured but could not be recorded in the database.
    NotRecorded,
}

/// Whether a room that could not be created is destroyed: a room the bot created and then
/// could not configure or record must not stay on the server unfollowed; a room it never
/// created (a taken name, a refused or unanswered join) is not the bot's to destroy.
pub fn destroy_after_failed_creation(failure: CreationFailure) -> bool {
    match failure {
        CreationFailure::NameTaken
        | CreationFailure::JoinRefused
        | CreationFailure::JoinUnanswered => false,
        CreationFailure::NotConfigured | CreationFailure::NotRecorded => true,
    }
}

/// Why a room cannot be used any more, as the actor found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The bot's own occupant was removed from the room.
    BotRemoved,
    /// Rejoining created the room anew: the old one, and whoever was in it, is gone.
    Recreated,
    /// The room refuses the bot's join (gone and not creatable, or its password changed).
    Unjoinable(String),
    /// The room is there but cannot be configured or verified again.
    Unconfigurable(String),
    /// No answer to this many joins in a row.
    Unanswered(u32),
}

impl Unusable {
    /// The words for the room's history.
    fn describe(&self) -> String {
        match self {
            Unusable::BotRemoved => "the bot was removed from the room".to_owned(),
            Unusable::Recreated => "the room no longer existed when the bot came back".to_owned(),
            Unusable::Unjoinable(why) => format!("the room could not be joined again: {why}"),
            Unusable::Unconfigurable(why) => {
                format!("the room could not be configured again: {why}")
            }
            Unusable::Unanswered(joins) => format!("no answer to {joins} rejoins"),
        }
    }
}

/// How a person left a room, read from the MUC status codes of their unavailable presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// A normal leave (the person closed the chat or went offline cleanly).
    Left,
    /// Kicked by a moderator (status 307).
    Kicked,
    /// Banned (status 301).
    Banned,
    /// Removed because the MUC service shut down (status 332).
    ServiceShutdown,
    /// Removed because their connection failed (status 333).
    ConnectionLost,
    /// Removed for another reason (affiliation change, members-only: 321, 322).
    Removed,
    /// Not in the room when the bot came back (after a restart or a lost connection).
    GoneWhileAway,
    /// No longer listed by the room when the bot asked it, after a presence the bot could
    /// not read (see [`RoomMachine::listed`]).
    Unlisted,
}

impl Departure {
    /// A short human text for the event's `detail`.
    pub fn describe(self) -> &'static str {
        match self {
            Departure::Left => "left",
            Departure::Kicked => "kicked (307)",
            Departure::Banned => "banned (301)",
            Departure::ServiceShutdown => "removed by server shutdown (332)",
            Departure::ConnectionLost => "connection lost (333)",
            Departure::Removed => "removed by the server",
            Departure::GoneWhileAway => "gone when the bot came back",
            Departure::Unlisted => "gone: the room no longer lists them (unreadable presence)",
        }
    }
}

/// A person in the room as the bot sees them: the room nick, and the real bare JID (the bot
/// is owner of a semi-anonymous room, so the server shows it the JID; participants do not
/// see each other's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The room nick.
    pub nick: String,
    /// The real bare JID; `None` when the server did not show it (then nobody can prove to
    /// be this person again, see [`RoomMachine::is_holder`]).
    pub jid: Option<String>,
}

impl Person {
    /// A person with this nick and real bare JID.
    pub fn new(nick: impl Into<String>, jid: Option<String>) -> Person {
        Person {
            nick: nick.into(),
            jid,
        }
    }
}

/// The web application's claim on one seat of the room, as the actor found it in the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatClaim {
    /// Claimed and not expired; `bound` is the only bare JID it admits, when the web
    /// application named one.
    Open {
        /// The JID the claim is bound to.
        bound: Option<String>,
    },
    /// Not claimed, released, or expired.
    Missing,
    /// The database could not be asked: nobody is admitted on this claim until it can be.
    Unknown,
}

/// The claims on a room's seats: what decides whether a newcomer may take one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The staff seat (decides in `available`).
    pub staff: SeatClaim,
    /// The client seat (decides in `staff_waiting`).
    pub client: SeatClaim,
    /// One extra seat of a chat in progress (decides in `chatting`).
    pub extra: SeatClaim,
}

impl Claims {
    /// Every seat open to anybody: `muc.require_claims = false`.
    pub fn not_required() -> Claims {
        let open = SeatClaim::Open { bound: None };
        Claims {
            staff: open.clone(),
            client: open.clone(),
            extra: open,
        }
    }

    /// No seat is open: whoever enters is kicked.
    pub fn missing() -> Claims {
        Claims {
            staff: SeatClaim::Missing,
            client: SeatClaim::Missing,
            extra: SeatClaim::Missing,
        }
    }

    /// Nothing could be checked (the database is unreachable).
    pub fn unknown() -> Claims {
        Claims {
            staff: SeatClaim::Unknown,
            client: SeatClaim::Unknown,
            extra: SeatClaim::Unknown,
        }
    }
}

/// Something that happened to a room, as the lifecycle sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A person other than the bot is present in the room (a join or a presence update; the
    /// machine tells them apart), with the claims the actor found.
    Entered {
        /// Who.
        person: Person,
        /// The room's claims at this moment.
        claims: Claims,
    },
    /// A person other than the bot left the room.
    Left {
        /// The nick they had.
        nick: String,
        /// How they left.
        how: Departure,
    },
    /// A present person changed nick (status 303): the same person, a new name.
    NickChanged {
        /// The nick before.
        old: String,
        /// The nick after.
        new: String,
    },
    /// Somebody the machine asked to kick is still inside after the actor's attempts.
    KickFailed {
        /// Who.
        nick: String,
    },
    /// The server answered a kick with an error: it will not remove this person now. Before a
    /// client came, the room is given up at once rather than after the actor's retries, so
    /// that no client is sent in meanwhile; in a chat the actor keeps trying.
    KickRefused {
        /// Who.
        nick: String,
    },
    /// The bot is shutting down: unused rooms are closed, rooms with people stay.
    Shutdown,
    /// The room was destroyed on the server by somebody else: nothing left to destroy.
    Vanished,
    /// The bot's XMPP session ended without a way to resume it (no XEP-0198): the bot is out
    /// of the room, and a room nobody else is in is gone with it. A room with people inside
    /// lives on and is rejoined on the next session.
    SessionEnded,
    /// The room cannot be used any more: closed `lost` and destroyed.
    Unusable(Unusable),
    /// The database refused one of the room's changes for good; the writer has closed the
    /// row `error` itself (its last write), so only the room on the server is left.
    WriteRefused,
    /// A claim on the room's `role` seat expired unused (found by the periodic check).
    ClaimExpired {
        /// The seat.
        role: Role,
    },
    /// The room's new password (after [`Action::ChangePassword`]) could not be set.
    PasswordNotChanged {
        /// The seat whose claim expired.
        role: Role,
    },
    /// The coalescing window `epoch` ran out ([`COALESCE_WINDOW`]).
    WindowEnded {
        /// Which window (stale timers are ignored).
        epoch: u32,
    },
    /// The ban recheck timer ran out ([`BAN_RECHECK`]).
    BanRecheckDue,
    /// The JIDs the room keeps out, found when the bot came back (after a restart the
    /// machine knows of no ban): followed like the bans it set.
    BansFound {
        /// The banned JIDs (only the first [`BANS_MAX`] are followed).
        jids: Vec<String>,
    },
    /// The room's claims, looked up after [`Action::CheckBans`]: a banned JID a claim names
    /// is let in again.
    BansChecked {
        /// The claims now.
        claims: Claims,
    },
    /// The recheck timer of a held person ran out.
    RecheckDue {
        /// Who was held.
        person: Person,
    },
    /// The rejoin grace of a role whose holder left ran out.
    GraceExpired {
        /// The role.
        role: Role,
        /// Which grace this was (a later leave starts a new one: stale timers are ignored).
        epoch: u32,
    },
    /// The `one_left` timer started on the room's `epoch`-th entry into `one_left` ran out.
    OneLeftTimeout {
        /// Which entry into `one_left` the timer belongs to (stale timers are ignored).
        epoch: u32,
    },
}

/// A timer the actor must start; when it runs out the actor feeds the matching event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// `timeouts.rejoin_grace_secs`, then [`Event::GraceExpired`].
    RejoinGrace {
        /// The role whose holder left.
        role: Role,
        /// The grace this timer belongs to.
        epoch: u32,
    },
    /// `timeouts.one_left_secs` (never scheduled when 0), then [`Event::OneLeftTimeout`].
    OneLeft {
        /// The entry into `one_left` this timer belongs to.
        epoch: u32,
    },
    /// [`HOLD_RECHECK`], then [`Event::RecheckDue`].
    Recheck {
        /// Who is held.
        person: Person,
    },
    /// [`BAN_RECHECK`], then [`Event::BanRecheckDue`].
    BanRecheck,
    /// [`COALESCE_WINDOW`], then [`Event::WindowEnded`].
    Window {
        /// Which window.
        epoch: u32,
    },
}

impl Timer {
    /// The event to feed when the timer runs out.
    pub fn event(self) -> Event {
        match self {
            Timer::RejoinGrace { role, epoch } => Event::GraceExpired { role, epoch },
            Timer::OneLeft { epoch } => Event::OneLeftTimeout { epoch },
            Timer::Recheck { person } => Event::RecheckDue { person },
            Timer::Window { epoch } => Event::WindowEnded { epoch },
            Timer::BanRecheck => Event::BanRecheckDue,
        }
    }
}

/// What the actor must do after a step, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Persist a transition or an event (and the matching update of the `room` row), in
    /// order.
    Record(RoomChange),
    /// Remove a person from the room (MUC role `none`) with this reason, until the server
    /// confirms it (their unavailable presence); [`Event::KickFailed`] if it cannot.
    Kick {
        /// Who.
        nick: String,
        /// Why: the words the person is shown ([`Text::kick`]) and the label the
        /// metrics count.
        reason: KickReason,
    },
    /// Neither admit nor kick this person yet (a [`Timer::Recheck`] follows); for the log.
    Hold {
        /// Who.
        person: Person,
        /// Why, for the log.
        why: &'static str,
    },
    /// Look up the room's claims and feed this person's [`Event::Entered`] with them.
    LookUpClaims {
        /// Who.
        person: Person,
    },
    /// Start a timer; when it runs out, feed [`Timer::event`].
    Schedule {
        /// Which.
        timer: Timer,
        /// When it runs out, from now.
        after: Duration,
    },
    /// Give the room a new password, in the row (only while `role`'s claim is still there)
    /// and on the server, then release the expired claim; [`Event::PasswordNotChanged`] if
    /// the server does not take it.
    ChangePassword {
        /// The seat whose claim expired.
        role: Role,
    },
    /// Release the expired claim on `role`'s seat; the password stays.
    ReleaseClaim {
        /// The seat.
        role: Role,
    },
    /// Ask the server to keep `jid` out of the room (affiliation `outcast`).
    Ban {
        /// The real bare JID.
        jid: String,
    },
    /// Let `jid` into the room again (affiliation `none`).
    Unban {
        /// The real bare JID.
        jid: String,
    },
    /// Look up the room's claims and feed them as [`Event::BansChecked`].
    CheckBans,
    /// For the metrics: `count` events of `kind` were recorded together in one record.
    Coalesced {
        /// What kind.
        kind: EventKind,
        /// How many.
        count: u32,
    },
    /// Tell everybody in the room something (a message from the bot, not stored), in the
    /// helpline's words for `text`.
    Notify {
        /// Which text.
        text: Text,
    },
    /// Destroy the room on the server (until the server confirms); the room is closed.
    Destroy {
        /// Why (also given to anybody still inside).
        reason: CloseReason,
    },
}

/// What the admission rules decide for a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Takes this seat for the first time.
    Seat(Role),
    /// The holder of this role, back within grace.
    Back(Role),
    /// Not yet decidable.
    Hold(&'static str),
    /// Not allowed in, for this reason.
    Kick(KickReason),
}

/// The state of one room: its status and who is in it. Private: the actor learns what it
/// needs from the actions; the accessors below answer the few questions it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMachine {
    /// The row the room's changes go to.
    room_id: i64,
    /// The helpline's settings.
    policy: Policy,
    /// The time of the event being handled (stamped on its records).
    now: DateTime<Utc>,
    /// The status, as stored in the database.
    status: RoomStatus,
    /// The staff member, once somebody entered as staff.
    staff: Option<Person>,
    /// The client, once somebody entered as client.
    client: Option<Person>,
    /// The people counted inside now, nick → real JID (never the bot, the kicked or the
    /// held).
    present: BTreeMap<String, Option<String>>,
    /// People inside but neither admitted nor kicked yet, nick → real JID.
    held: BTreeMap<String, Option<String>>,
    /// People being kicked who have not left yet.
    intruders: BTreeSet<String>,
    /// Roles whose holder left and may still come back, with the grace's epoch.
    departed: BTreeMap<Role, u32>,
    /// How many graces were started (tells stale grace timers apart).
    grace_epoch: u32,
    /// How many times the room entered `one_left` (tells stale timers apart).
    one_left_epoch: u32,
    /// Failed attempts to set a new password since the last claim expired.
    password_failures: u32,
    /// Nick changes and kicks waiting to be recorded together.
    pending: Pending,
    /// A person counted inside holds the bot's nick and is being asked to leave it.
    bot_nick_taken: bool,
    /// Kicks per real JID, oldest first (at most [`KICKS_TRACKED`]).
    kicked_jids: std::collections::VecDeque<(String, u32)>,
    /// JIDs the server keeps out of the room for the bot (at most [`BANS_MAX`]).
    banned: BTreeSet<String>,
    /// Further sessions of people counted inside, nick → their real JID (at most
    /// [`SESSIONS_MAX`] per person).
    sessions: BTreeMap<String, String>,
}

/// The coalescing window ([`COALESCE_WINDOW`]): what happened in it beyond its first event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pending {
    /// A window is open: the event that opened it was recorded at once.
    open: bool,
    /// Rows of their own written in this window (at most [`COALESCE_BURST`]).
    written: u32,
    /// How many windows were opened (tells stale timers apart).
    epoch: u32,
    /// People who changed nick in the window: their nick now → (their role, changes). At
    /// most one entry per person counted inside.
    nicks: BTreeMap<String, (Option<Role>, u32)>,
    /// Kicks in the window not recorded one by one, by their metric label (a closed set).
    kicks: BTreeMap<&'static str, u32>,
}

impl RoomMachine {
    /// A freshly configured, empty room, recorded as row `room_id`.
    pub fn new(room_id: i64, policy: Policy) -> RoomMachine {
        RoomMachine {
            room_id,
            policy,
            now: DateTime::UNIX_EPOCH,
            status: RoomStatus::Available,
            staff: None,
            client: None,
            present: BTreeMap::new(),
            held: BTreeMap::new(),
            intruders: BTreeSet::new(),
            departed: BTreeMap::new(),
            grace_epoch: 0,
            one_left_epoch: 0,
            password_failures: 0,
            pending: Pending::default(),
            bot_nick_taken: false,
            kicked_jids: std::collections::VecDeque::new(),
            banned: BTreeSet::new(),
            sessions: BTreeMap::new(),
        }
    }

    /// A room as its database row describes it, for a bot that restarted: the people the
    /// status implies are taken as present until [`RoomMachine::reconcile`] says who really is.
    pub fn restore(
        room_id: i64,
        status: RoomStatus,
        staff: Option<Person>,
        client: Option<Person>,
        policy: Policy,
    ) -> RoomMachine {
        let mut room = RoomMachine::new(room_id, policy);
        room.status = status;
        let open = status != RoomStatus::Available && status != RoomStatus::Closed;
        if let Some(staff) = staff.as_ref().filter(|_| open) {
            room.present.insert(staff.nick.clone(), staff.jid.clone());
        }
        let with_client = matches!(status, RoomStatus::Chatting | RoomStatus::OneLeft);
        if let Some(client) = client.as_ref().filter(|_| with_client) {
            room.present.insert(client.nick.clone(), client.jid.clone());
        }
        room.staff = staff;
        room.client = client;
        room
    }

    /// The room's status, as last recorded.
    pub fn status(&self) -> RoomStatus {
        self.status
    }

    /// Who holds `role`'s seat (staff or client), once somebody took it.
    pub fn seat_holder(&self, role: Role) -> Option<&Person> {
        self.holder(role)
    }

    /// How many people are counted inside (never the bot, the kicked or the held).
    pub fn counted(&self) -> usize {
        self.present.len()
    }

    /// Whether the machine wants the room's claims to decide about `person`: they are a
    /// newcomer, and not the holder of a role coming back. Others are decided without them.
    pub fn needs_claims(&self, person: &Person) -> bool {
        self.policy.require_claims
            && !self.present.contains_key(&person.nick)
            && !self.is_held(person)
            && !self.sessions.contains_key(&person.nick)
            && self.counted_jid(person).is_none()
            && !self.intruders.contains(&person.nick)
            && self.returning_role(person).is_none()
    }

    /// Whether `nick` is being kicked and has not left yet: an intruder, or a person
    /// counted inside who holds the bot's nick.
    pub fn is_being_removed(&self, nick: &str) -> bool {
        self.intruders.contains(nick) || self.bot_nick_taken && nick == self.policy.bot_nick
    }

    /// Brings the machine in line with the people actually in the room, seen when the bot
    /// rejoined it, by the same rules as a live room: recorded people who are not inside
    /// (by JID) leave; anybody else inside is a newcomer, admitted on a claim or kicked. A
    /// `one_left` room gets fresh timers.
    pub fn reconcile(
        &mut self,
        now: DateTime<Utc>,
        actual: &[Person],
        claims: &Claims,
    ) -> Vec<Action> {
        // Whatever was held or being kicked is looked at anew.
        self.held.clear();
        self.intruders.clear();
        let (events, newcomers) = self.compare(actual, Departure::GoneWhileAway);
        let mut actions = Vec::new();
        for event in events {
            actions.extend(self.step(now, event));
        }
        for person in newcomers {
            actions.extend(self.step(
                now,
                Event::Entered {
                    person,
                    claims: claims.clone(),
                },
            ));
        }
        if self.status == RoomStatus::OneLeft
            && !actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Schedule {
                        timer: Timer::OneLeft { .. },
                        ..
                    }
                )
            })
        {
            for role in [Role::Staff, Role::Client] {
                let away = self
                    .holder(role)
                    .is_some_and(|h| !self.present.contains_key(&h.nick));
                if away && !self.departed.contains_key(&role) {
                    actions.push(self.start_grace(role));
                }
            }
            actions.extend(self.start_one_left());
        }
        actions
    }

    /// What the room's own list of occupants says happened, when the bot asked it after a
    /// presence it could not read: the departures (and nick changes) of people the machine
    /// counts, holds or is kicking who are not listed, as events to step through, and the
    /// listed people the machine does not know, for the actor to feed as
    /// [`Event::Entered`] with their claims. Unlike [`RoomMachine::reconcile`], nothing else
    /// changes: the bot never left the room, so timers and kicks in progress stand.
    pub fn listed(&self, actual: &[Person]) -> (Vec<Event>, Vec<Person>) {
        self.compare(actual, Departure::Unlisted)
    }

    /// Who the room's occupants `actual` are to the machine: the events for the people it
    /// counts, holds or is kicking who are not among them (departures `how`, or nick
    /// changes of the same JID), and the people it does not know. Shared by
    /// [`RoomMachine::reconcile`] and [`RoomMachine::listed`].
    fn compare(&self, actual: &[Person], how: Departure) -> (Vec<Event>, Vec<Person>) {
        let mut events = Vec::new();
        let mut unmatched: Vec<&Person> = actual.iter().collect();
        for (nick, jid) in &self.present {
            let found = unmatched
                .iter()
                .position(|p| same_person(nick, jid.as_deref(), p));
            match found.map(|i| unmatched.remove(i)) {
                Some(p) if &p.nick != nick => events.push(Event::NickChanged {
                    old: nick.clone(),
                    new: p.nick.clone(),
                }),
                Some(_) => {}
                None => events.push(Event::Left {
                    nick: nick.clone(),
                    how,
                }),
            }
        }
        let others = self
            .held
            .keys()
            .chain(self.intruders.iter())
            .chain(self.sessions.keys());
        for nick in others {
            match unmatched.iter().position(|p| &p.nick == nick) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => events.push(Event::Left {
                    nick: nick.clone(),
                    how,
                }),
            }
        }
        (events, unmatched.into_iter().cloned().collect())
    }

    /// The role a present nick plays in this room, if it is the staff's or the client's.
    pub fn role_of(&self, nick: &str) -> Option<Role> {
        if self.staff.as_ref().is_some_and(|p| p.nick == nick) {
            Some(Role::Staff)
        } else if self.client.as_ref().is_some_and(|p| p.nick == nick) {
            Some(Role::Client)
        } else if self.present.contains_key(nick) {
            Some(Role::Extra)
        } else {
            None
        }
    }

    /// Feeds one event, which happened at `now`, to the machine; returns the actions to
    /// carry out, in order.
    pub fn step(&mut self, now: DateTime<Utc>, event: Event) -> Vec<Action> {
        use RoomStatus::*;
        self.now = now;
        if self.status == Closed {
            return Vec::new();
        }
        match event {
            Event::Entered { person, claims } => self.entered(person, &claims),
            Event::Left { nick, how } => {
                if self.intruders.remove(&nick)
                    || self.held.remove(&nick).is_some()
                    || self.sessions.remove(&nick).is_some()
                {
                    // A kick confirmed, a held person gone, or one of a person's further
                    // sessions closed (the person is still inside).
                    return Vec::new();
                }
                if let Some(jid) = self.present.get(&nick).cloned().flatten()
                    && let Some(other) = self.session_of(&jid)
                {
                    // The person's first session left, another stays: they are still
                    // inside, now under that session's nick.
                    self.sessions.remove(&other);
                    return self.nick_changed(nick, other);
                }
                let role = self.role_of(&nick);
                if nick == self.policy.bot_nick {
                    self.bot_nick_taken = false;
                }
                if self.present.remove(&nick).is_none() {
                    return Vec::new(); // never counted: the bot, an unknown nick
                }
                let detail = how.describe();
                match self.status {
                    // The server shutting down emptied the room: the chat was cut off.
                    _ if self.present.is_empty() && how == Departure::ServiceShutdown => {
                        self.close(&nick, role, detail, CloseReason::Lost)
                    }
                    StaffWaiting if self.present.is_empty() => {
                        self.close(&nick, role, detail, CloseReason::NoClient)
                    }
                    _ if self.present.is_empty() => {
                        self.close(&nick, role, detail, CloseReason::Completed)
                    }
                    Chatting => {
                        let to = self.status_for_count();
                        let mut actions =
                            vec![self.record(EventKind::Left, to, &nick, role, detail)];
                        if let Some(role @ (Role::Staff | Role::Client)) = role {
                            actions.push(self.start_grace(role));
                        }
                        if to == OneLeft {
                            actions.extend(self.start_one_left());
                        }
                        actions
                    }
                    _ => vec![self.record(EventKind::Left, self.status, &nick, role, detail)],
                }
            }
            Event::GraceExpired { role, epoch } => {
                if self.departed.get(&role) == Some(&epoch) {
                    self.departed.remove(&role);
                }
                Vec::new()
            }
            Event::OneLeftTimeout { epoch }
                if self.status == OneLeft && epoch == self.one_left_epoch =>
            {
                let mut actions = vec![Action::Notify {
                    text: Text::ChatEndedOtherLeft,
                }];
                actions.extend(self.close_without_person(
                    "alone in the room for too long",
                    CloseReason::Timeout,
                    true,
                ));
                actions
            }
            Event::OneLeftTimeout { .. } => Vec::new(),
            Event::NickChanged { old, new } => self.nick_changed(old, new),
            Event::KickRefused { nick }
                if self.intruders.contains(&nick) && matches!(self.status, Available | StaffWaiting) =>
            {
                self.close_without_person(
                    &format!("{nick} could not be removed before a client came (the server refused the kick)"),
                    CloseReason::Error,
                    true,
                )
            }
            Event::KickRefused { .. } => Vec::new(),
            Event::KickFailed { nick } if self.intruders.contains(&nick) => match self.status {
                Available | StaffWaiting => self.close_without_person(
                    &format!("{nick} could not be removed before a client came"),
                    CloseReason::Error,
                    true,
                ),
                _ => vec![
                    Action::Notify {
                        text: Text::IntruderNotRemoved,
                    },
                    self.event(
                        EventKind::KickFailed,
                        Some(&nick),
                        Some(Role::Intruder),
                        "the server has not removed the intruder; still trying",
                    ),
                ],
            },
            Event::KickFailed { .. } => Vec::new(),
            Event::Shutdown if self.status == Available => {
                self.close_without_person("bot shut down", CloseReason::Shutdown, true)
            }
            Event::Shutdown => Vec::new(),
            Event::Vanished => self.close_without_person(
                "room destroyed on the server by somebody else",
                CloseReason::Lost,
                false,
            ),
            Event::Unusable(why) => {
                self.close_without_person(&why.describe(), CloseReason::Lost, true)
            }
            Event::WriteRefused => {
                // No record: the writer's last write closed the row `error` itself.
                self.status = Closed;
                self.clear_people();
                vec![Action::Destroy {
                    reason: CloseReason::Error,
                }]
            }
            Event::ClaimExpired { role } if self.status == claimed_status(role) => match role {
                Role::Staff | Role::Client => {
                    self.password_failures = 0;
                    vec![Action::ChangePassword { role }]
                }
                _ => vec![Action::ReleaseClaim { role }],
            },
            // Used meanwhile: the row follows the room's own records.
            Event::ClaimExpired { .. } => Vec::new(),
            Event::PasswordNotChanged { role } => {
                self.password_failures += 1;
                if self.password_failures < ROTATE_ATTEMPTS {
                    vec![Action::ChangePassword { role }]
                } else {
                    self.close_without_person(
                        "the password could not be changed after a claim expired",
                        CloseReason::Error,
                        true,
                    )
                }
            }
            Event::RecheckDue { person } if self.is_held(&person) => {
                // Decided afresh on the claims the actor looks up now.
                self.held.remove(&person.nick);
                vec![Action::LookUpClaims { person }]
            }
            Event::RecheckDue { .. } => Vec::new(),
            Event::WindowEnded { epoch } if self.pending.open && epoch == self.pending.epoch => {
                let mut actions = self.flush();
                if actions.is_empty() {
                    self.pending.open = false; // a quiet window: the next event is recorded at once
                } else {
                    actions.push(self.open_window());
                }
                actions
            }
            Event::WindowEnded { .. } => Vec::new(),
            Event::BanRecheckDue if !self.banned.is_empty() => vec![Action::CheckBans],
            Event::BanRecheckDue => Vec::new(),
            Event::BansFound { jids } => {
                let first = self.banned.is_empty();
                for jid in jids {
                    if self.banned.len() < BANS_MAX {
                        self.banned.insert(jid);
                    }
                }
                if first && !self.banned.is_empty() {
                    vec![Action::Schedule {
                        timer: Timer::BanRecheck,
                        after: BAN_RECHECK,
                    }]
                } else {
                    Vec::new()
                }
            }
            Event::BansChecked { claims } => {
                let named: Vec<String> = [&claims.staff, &claims.client, &claims.extra]
                    .into_iter()
                    .filter_map(|c| match c {
                        SeatClaim::Open { bound: Some(jid) } => Some(jid.clone()),
                        _ => None,
                    })
                    .filter(|jid| self.banned.contains(jid))
                    .collect();
                let mut actions = Vec::new();
                for jid in named {
                    self.banned.remove(&jid);
                    self.kicked_jids.retain(|(j, _)| *j != jid);
                    actions.push(Action::Unban { jid });
                }
                if !self.banned.is_empty() {
                    actions.push(Action::Schedule {
                        timer: Timer::BanRecheck,
                        after: BAN_RECHECK,
                    });
                }
                actions
            }
            Event::SessionEnded if self.nobody_inside() => self.close_without_person(
                "the bot's XMPP session ended: the server drops a room nobody else is in",
                CloseReason::Lost,
                // In case the server still keeps it (it has not noticed the lost connection
                // yet): the destroy goes out, and is confirmed, on the next session.
                true,
            ),
            Event::SessionEnded => Vec::new(),
        }
    }

    /// A person is inside: a presence update of somebody counted, or a newcomer to decide.
    fn entered(&mut self, person: Person, claims: &Claims) -> Vec<Action> {
        if self.present.contains_key(&person.nick)
            || self.intruders.contains(&person.nick)
            || self.is_held(&person)
            || self.sessions.contains_key(&person.nick)
        {
            // A presence update of somebody already inside, being kicked, held (whose one
            // recheck is scheduled already), or a further session of somebody inside.
            return Vec::new();
        }
        if let Some(jid) = self.counted_jid(&person) {
            // Another device or tab of a person inside: the same person, not counted again.
            let theirs = self.sessions.values().filter(|j| **j == jid).count();
            if theirs < SESSIONS_MAX {
                self.sessions.insert(person.nick, jid);
                return Vec::new();
            }
            self.intruders.insert(person.nick.clone());
            return self.kick(&person.nick, Some(Role::Intruder), KickReason::Full);
        }
        self.held.remove(&person.nick);
        let nick = person.nick.clone();
        let open = Claims::not_required();
        let claims = if self.policy.require_claims {
            claims
        } else {
            &open
        };
        match self.admission(&person, claims) {
            Admission::Hold(why) => {
                self.held.insert(nick, person.jid.clone());
                vec![
                    Action::Hold {
                        person: person.clone(),
                        why,
                    },
                    Action::Schedule {
                        timer: Timer::Recheck { person },
                        after: HOLD_RECHECK,
                    },
                ]
            }
            Admission::Kick(reason) => {
                self.intruders.insert(nick.clone());
                let mut actions = self.kick(&nick, Some(Role::Intruder), reason);
                if let Some(jid) = person.jid {
                    actions.extend(self.count_kick_of(jid));
                }
                actions
            }
            Admission::Back(role) => {
                self.departed.remove(&role);
                let holder = self.holder_mut(role).expect("a departed role has a holder");
                let renamed = holder.nick != nick;
                holder.nick = nick.clone();
                self.present.insert(nick.clone(), person.jid);
                let to = self.status_for_count();
                let mut actions =
                    vec![self.record(EventKind::Rejoined, to, &nick, Some(role), "came back")];
                if renamed && let Some(Action::Record(r)) = actions.first_mut() {
                    set_nick(r, Some(role), &nick);
                }
                actions.extend(self.off_bot_nick(&nick, Some(role)));
                actions
            }
            Admission::Seat(role) => {
                self.present.insert(nick.clone(), person.jid.clone());
                let (to, detail) = match role {
                    Role::Staff => (RoomStatus::StaffWaiting, "staff entered"),
                    Role::Client => (RoomStatus::Chatting, "client entered"),
                    _ => (self.status, "entered on an extra-seat claim"),
                };
                match role {
                    Role::Staff => self.staff = Some(person.clone()),
                    Role::Client => self.client = Some(person.clone()),
                    _ => {}
                }
                let Action::Record(mut record) =
                    self.record(EventKind::Entered, to, &nick, Some(role), detail)
                else {
                    unreachable!("record() builds a Record")
                };
                match role {
                    Role::Staff => {
                        record.set_staff_nick = Some(nick.clone());
                        record.set_staff_jid = person.jid;
                    }
                    Role::Client => {
                        record.set_client_nick = Some(nick.clone());
                        record.set_client_jid = person.jid;
                    }
                    _ => record.use_extra_claim = true,
                }
                let mut actions = vec![Action::Record(record)];
                actions.extend(self.off_bot_nick(&nick, Some(role)));
                actions
            }
        }
    }

    /// The admission rules (the first table at the top of this module).
    fn admission(&self, person: &Person, claims: &Claims) -> Admission {
        use RoomStatus::*;
        if let Some(role) = self.returning_role(person) {
            return Admission::Back(role);
        }
        match self.status {
            Available => seat(Role::Staff, &claims.staff, person),
            StaffWaiting if !self.intruders.is_empty() => {
                Admission::Hold("somebody who was kicked is still inside")
            }
            StaffWaiting => seat(Role::Client, &claims.client, person),
            Chatting if self.present.len() >= self.policy.max_chatters => {
                Admission::Kick(KickReason::Full)
            }
            Chatting => seat(Role::Extra, &claims.extra, person),
            OneLeft | Closed => Admission::Kick(KickReason::ChatEnded),
        }
    }

    /// The role `person` holds and may come back to now (its holder left, grace runs).
    fn returning_role(&self, person: &Person) -> Option<Role> {
        self.departed
            .keys()
            .copied()
            .find(|&role| self.is_holder(role, person))
    }

    /// Whether `person` is the one who holds `role`: the same real JID when the holder's is
    /// known (a different JID with the same nick is a stranger), else the same nick.
    pub fn is_holder(&self, role: Role, person: &Person) -> bool {
        self.holder(role)
            .is_some_and(|h| same_person(&h.nick, h.jid.as_deref(), person))
    }

    fn holder(&self, role: Role) -> Option<&Person> {
        match role {
            Role::Staff => self.staff.as_ref(),
            Role::Client => self.client.as_ref(),
            _ => None,
        }
    }

    fn holder_mut(&mut self, role: Role) -> Option<&mut Person> {
        match role {
            Role::Staff => self.staff.as_mut(),
            Role::Client => self.client.as_mut(),
            _ => None,
        }
    }

    /// Starts a new rejoin grace for `role`; an older one's timer becomes stale.
    fn start_grace(&mut self, role: Role) -> Action {
        self.grace_epoch += 1;
        let epoch = self.grace_epoch;
        self.departed.insert(role, epoch);
        Action::Schedule {
            timer: Timer::RejoinGrace { role, epoch },
            after: self.policy.rejoin_grace,
        }
    }

    /// Enters `one_left` anew: an older `one_left` timer becomes stale, and a new one starts
    /// unless one person may stay alone forever.
    fn start_one_left(&mut self) -> Option<Action> {
        self.one_left_epoch += 1;
        let epoch = self.one_left_epoch;
        self.policy.one_left.map(|after| Action::Schedule {
            timer: Timer::OneLeft { epoch },
            after,
        })
    }

    /// The real JID of `person` when somebody counted inside has it (under another nick):
    /// `person` is a further session of theirs.
    fn counted_jid(&self, person: &Person) -> Option<String> {
        let jid = person.jid.as_ref()?;
        self.present
            .values()
            .any(|j| j.as_ref() == Some(jid))
            .then(|| jid.clone())
    }

    /// A further session (its nick) of the person with `jid`, if they have one.
    fn session_of(&self, jid: &str) -> Option<String> {
        self.sessions
            .iter()
            .find(|(_, j)| j.as_str() == jid)
            .map(|(nick, _)| nick.clone())
    }

    /// Whether `person` (this nick with this JID) is held.
    pub fn is_held(&self, person: &Person) -> bool {
        self.held.get(&person.nick) == Some(&person.jid)
    }

    fn nick_changed(&mut self, old: String, new: String) -> Vec<Action> {
        if self.intruders.remove(&old) {
            // Still to be removed, under the new nick.
            self.intruders.insert(new.clone());
            return vec![Action::Kick {
                nick: new,
                reason: KickReason::StillRemoved,
            }];
        }
        if let Some(jid) = self.held.remove(&old) {
            self.held.insert(new, jid);
            return Vec::new();
        }
        if let Some(jid) = self.sessions.remove(&old) {
            self.sessions.insert(new, jid);
            return Vec::new();
        }
        let Some(jid) = self.present.remove(&old) else {
            return Vec::new();
        };
        self.present.insert(new.clone(), jid);
        let role = self.role_of(&old).or(Some(Role::Extra));
        match role {
            Some(Role::Staff) => {
                if let Some(staff) = &mut self.staff {
                    staff.nick = new.clone();
                }
            }
            Some(Role::Client) => {
                if let Some(client) = &mut self.client {
                    client.nick = new.clone();
                }
            }
            _ => {}
        }
        if old == self.policy.bot_nick {
            self.bot_nick_taken = false; // they let it go
        }
        let off_bot_nick = self.off_bot_nick(&new, role);
        let mut actions = off_bot_nick;
        if !self.own_row(&mut actions) {
            let (role, changes) = self.pending.nicks.remove(&old).unwrap_or((role, 0));
            self.pending.nicks.insert(new, (role, changes + 1));
            return actions;
        }
        let detail = format!("changed nick from {old}");
        let mut record = self.change(EventKind::NickChanged, Some(&new), role, &detail);
        set_nick(&mut record, role, &new);
        actions.push(Action::Record(record));
        actions
    }

    /// Counts a kick of `jid`; at the [`BAN_AFTER`]-th the server is asked to keep it out
    /// (while fewer than [`BANS_MAX`] are), and the claims are looked at every
    /// [`BAN_RECHECK`] for one that names a banned JID.
    fn count_kick_of(&mut self, jid: String) -> Vec<Action> {
        let count = match self.kicked_jids.iter_mut().find(|(j, _)| *j == jid) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                if self.kicked_jids.len() == KICKS_TRACKED {
                    self.kicked_jids.pop_front();
                }
                self.kicked_jids.push_back((jid.clone(), 1));
                1
            }
        };
        if count < BAN_AFTER || self.banned.len() >= BANS_MAX || self.banned.contains(&jid) {
            return Vec::new();
        }
        let first = self.banned.is_empty();
        self.banned.insert(jid.clone());
        let mut actions = vec![Action::Ban { jid }];
        if first {
            actions.push(Action::Schedule {
                timer: Timer::BanRecheck,
                after: BAN_RECHECK,
            });
        }
        actions
    }

    /// Whether the next nick change or kick gets a row of its own: the first
    /// [`COALESCE_BURST`] of a window do (the first opens the window, whose timer goes into
    /// `actions`), the rest are counted.
    fn own_row(&mut self, actions: &mut Vec<Action>) -> bool {
        if !self.pending.open {
            actions.push(self.open_window());
        }
        if self.pending.written == COALESCE_BURST {
            return false;
        }
        self.pending.written += 1;
        true
    }

    /// A person counted inside under the bot's nick (taken while the bot was away) is asked
    /// to come back under another: kicked, the kick recorded, their seat kept for them (their
    /// departure is a normal one, with its grace).
    fn off_bot_nick(&mut self, nick: &str, role: Option<Role>) -> Vec<Action> {
        if nick != self.policy.bot_nick {
            return Vec::new();
        }
        self.bot_nick_taken = true;
        self.kick(nick, role, KickReason::BotNick)
    }

    /// Kicks `nick` (in `role`) at once, and records it: on its own ([`Self::own_row`]), or
    /// counted for the window's record.
    fn kick(&mut self, nick: &str, role: Option<Role>, reason: KickReason) -> Vec<Action> {
        let mut actions = vec![Action::Kick {
            nick: nick.to_owned(),
            reason,
        }];
        if self.own_row(&mut actions) {
            let text = Text::kick(reason).english();
            actions.push(self.event(EventKind::Kicked, Some(nick), role, text));
        } else {
            *self.pending.kicks.entry(reason.label()).or_default() += 1;
        }
        actions
    }

    /// Opens a coalescing window: until it ends, nick changes and kicks are counted.
    fn open_window(&mut self) -> Action {
        self.pending.open = true;
        self.pending.written = 0;
        self.pending.epoch += 1;
        Action::Schedule {
            timer: Timer::Window {
                epoch: self.pending.epoch,
            },
            after: COALESCE_WINDOW,
        }
    }

    /// Records what the window counted: one nick change per person renamed (with their nick
    /// now, for the row), one kick event for all the kicks; empty when nothing was counted.
    fn flush(&mut self) -> Vec<Action> {
        let window = COALESCE_WINDOW.as_secs();
        let mut actions = Vec::new();
        let nicks = std::mem::take(&mut self.pending.nicks);
        let renames: u32 = nicks.values().map(|(_, n)| n).sum();
        for (nick, (role, changes)) in nicks {
            let detail = format!("changed nick {changes} more times within {window} s");
            let mut record = self.change(EventKind::NickChanged, Some(&nick), role, &detail);
            set_nick(&mut record, role, &nick);
            actions.push(Action::Record(record));
        }
        if renames > 1 {
            actions.push(Action::Coalesced {
                kind: EventKind::NickChanged,
                count: renames,
            });
        }
        let kicks = std::mem::take(&mut self.pending.kicks);
        let count: u32 = kicks.values().sum();
        if count > 0 {
            let by_reason: Vec<String> = kicks.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let detail = format!(
                "{count} more people kicked within {window} s ({})",
                by_reason.join(", ")
            );
            actions.push(self.event(EventKind::Kicked, None, Some(Role::Intruder), &detail));
            actions.push(Action::Coalesced {
                kind: EventKind::Kicked,
                count,
            });
        }
        actions
    }

    /// `chatting` while two or more people are inside after a client came, else `one_left`.
    fn status_for_count(&self) -> RoomStatus {
        if self.present.len() >= 2 {
            RoomStatus::Chatting
        } else {
            RoomStatus::OneLeft
        }
    }

    /// Moves to `to` and builds the record naming `nick` in `role`.
    fn record(
        &mut self,
        kind: EventKind,
        to: RoomStatus,
        nick: &str,
        role: Option<Role>,
        detail: &str,
    ) -> Action {
        let from = self.status;
        self.status = to;
        Action::Record(RoomChange {
            from,
            to,
            ..self.change(kind, Some(nick), role, detail)
        })
    }

    /// An event that changes no status.
    fn event(
        &self,
        kind: EventKind,
        nick: Option<&str>,
        role: Option<Role>,
        detail: &str,
    ) -> Action {
        Action::Record(self.change(kind, nick, role, detail))
    }

    /// A change of this room at the current event's time, naming `nick` in `role`, that
    /// keeps the status.
    fn change(
        &self,
        kind: EventKind,
        nick: Option<&str>,
        role: Option<Role>,
        detail: &str,
    ) -> RoomChange {
        RoomChange {
            nick: nick.map(str::to_owned),
            role,
            detail: detail.to_owned(),
            ..RoomChange::new(self.room_id, kind, self.status, self.status, self.now)
        }
    }

    /// Closes the room because `nick` (in `role`) was the last to leave.
    fn close(
        &mut self,
        nick: &str,
        role: Option<Role>,
        detail: &str,
        reason: CloseReason,
    ) -> Vec<Action> {
        let mut actions = self.flush();
        let from = self.status;
        self.status = RoomStatus::Closed;
        self.clear_people();
        let record = RoomChange {
            from,
            to: RoomStatus::Closed,
            close_reason: Some(reason),
            ..self.change(EventKind::Closed, Some(nick), role, detail)
        };
        actions.extend([Action::Record(record), Action::Destroy { reason }]);
        actions
    }

    /// Closes the room with nobody involved; `destroy`: the room may still be on the server.
    fn close_without_person(
        &mut self,
        detail: &str,
        reason: CloseReason,
        destroy: bool,
    ) -> Vec<Action> {
        let mut actions = self.flush();
        let from = self.status;
        self.status = RoomStatus::Closed;
        self.clear_people();
        let record = RoomChange {
            from,
            to: RoomStatus::Closed,
            close_reason: Some(reason),
            ..self.change(EventKind::Closed, None, None, detail)
        };
        actions.push(Action::Record(record));
        if destroy {
            actions.push(Action::Destroy { reason });
        }
        actions
    }

    /// Nobody but the bot is in the room: nobody counted, held or being kicked.
    fn nobody_inside(&self) -> bool {
        self.present.is_empty() && self.held.is_empty() && self.intruders.is_empty()
    }

    fn clear_people(&mut self) {
        self.present.clear();
        self.held.clear();
        self.intruders.clear();
        self.departed.clear();
        self.sessions.clear();
        // Bans go with the room.
        self.banned.clear();
        self.kicked_jids.clear();
    }
}

/// Sets the row's nick of `role` (staff or client) to `nick`.
fn set_nick(record: &mut RoomChange, role: Option<Role>, nick: &str) {
    match role {
        Some(Role::Staff) => record.set_staff_nick = Some(nick.to_owned()),
        Some(Role::Client) => record.set_client_nick = Some(nick.to_owned()),
        _ => {}
    }
}

/// Whether `person` is the one recorded as `nick`/`jid`: by JID when it is known, else by
/// nick.
fn same_person(nick: &str, jid: Option<&str>, person: &Person) -> bool {
    match jid {
        Some(jid) => person.jid.as_deref() == Some(jid),
        None => person.nick == nick,
    }
}

/// Whether `claim` lets `person` take the seat of `role`.
fn seat(role: Role, claim: &SeatClaim, person: &Person) -> Admission {
    match claim {
        SeatClaim::Open { bound: None } => Admission::Seat(role),
        SeatClaim::Open { bound: Some(bound) } if person.jid.as_deref() == Some(bound.as_str()) => {
            Admission::Seat(role)
        }
        SeatClaim::Open { bound: Some(_) } => Admission::Kick(KickReason::AssignedToAnother),
        SeatClaim::Missing => Admission::Kick(KickReason::NotAssigned),
        SeatClaim::Unknown => Admission::Hold("the claim cannot be checked (database unreachable)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RoomStatus::*;

    /// The row of the room under test.
    const ROOM: i64 = 7;

    /// The time every test event happens at.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
    }

    /// The production defaults, with `max_chatters` seats.
    fn policy(max_chatters: usize) -> Policy {
        Policy {
            max_chatters,
            require_claims: true,
            rejoin_grace: Duration::from_secs(60),
            one_left: Some(Duration::from_secs(600)),
            bot_nick: "HelpIM".to_owned(),
        }
    }

    /// A person whose JID is derived from the nick (`alice` → `alice@example.org`).
    fn who(nick: &str) -> Person {
        Person::new(nick, Some(format!("{nick}@example.org")))
    }

    /// `who(nick)` enters with every seat claimed for anybody.
    fn enter(nick: &str) -> Event {
        enter_as(who(nick), Claims::not_required())
    }

    fn enter_as(person: Person, claims: Claims) -> Event {
        Event::Entered { person, claims }
    }

    fn leave(nick: &str) -> Event {
        Event::Left {
            nick: nick.into(),
            how: Departure::Left,
        }
    }

    fn claims(staff: SeatClaim, client: SeatClaim, extra: SeatClaim) -> Claims {
        Claims {
            staff,
            client,
            extra,
        }
    }

    fn open() -> SeatClaim {
        SeatClaim::Open { bound: None }
    }

    fn bound(jid: &str) -> SeatClaim {
        SeatClaim::Open {
            bound: Some(jid.into()),
        }
    }

    fn timers(actions: &[Action]) -> Vec<&Timer> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Schedule { timer, .. } => Some(timer),
                _ => None,
            })
            .collect()
    }

    /// The (from, to, kind) of every record in `actions`.
    fn records(actions: &[Action]) -> Vec<(RoomStatus, RoomStatus, EventKind)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(r) => Some((r.from, r.to, r.kind)),
                _ => None,
            })
            .collect()
    }

    fn record(actions: &[Action]) -> &RoomChange {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Record(r) => Some(r),
                _ => None,
            })
            .expect("a record")
    }

    fn destroys(actions: &[Action]) -> Option<CloseReason> {
        actions.iter().find_map(|a| match a {
            Action::Destroy { reason } => Some(*reason),
            _ => None,
        })
    }

    fn kicks(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Kick { nick, .. } => Some(nick.as_str()),
                _ => None,
            })
            .collect()
    }

    fn holds(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Hold { person, .. } => Some(person.nick.as_str()),
                _ => None,
            })
            .collect()
    }

    /// A chat of alice (staff) and bob (client).
    fn chat() -> RoomMachine {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        room.step(t0(), enter("bob"));
        room
    }

    /// The grace timer started by `actions` for `role`.
    fn grace(actions: &[Action], role: Role) -> u32 {
        timers(actions)
            .into_iter()
            .find_map(|t| match t {
                Timer::RejoinGrace { role: r, epoch } if *r == role => Some(*epoch),
                _ => None,
            })
            .expect("a grace timer")
    }

    // ── asking the room, after a presence the bot could not read ──────────────────────

    #[test]
    fn the_rooms_list_gives_the_unread_departure_and_the_unread_newcomer() {
        let room = chat();
        // bob left with a presence the bot could not read; mallory entered with one.
        let (events, newcomers) = room.listed(&[who("alice"), who("mallory")]);
        assert_eq!(
            events,
            [Event::Left {
                nick: "bob".into(),
                how: Departure::Unlisted
            }]
        );
        assert_eq!(newcomers, [who("mallory")]);
    }

    #[test]
    fn the_rooms_list_gives_an_unread_nick_change_by_jid() {
        let room = chat();
        let renamed = Person::new("robert", who("bob").jid);
        let (events, newcomers) = room.listed(&[who("alice"), renamed]);
        assert_eq!(
            events,
            [Event::NickChanged {
                old: "bob".into(),
                new: "robert".into()
            }]
        );
        assert!(newcomers.is_empty());
    }

    #[test]
    fn the_rooms_list_changes_nothing_when_it_matches() {
        let mut room = chat();
        let (events, newcomers) = room.listed(&[who("alice"), who("bob")]);
        assert!(events.is_empty() && newcomers.is_empty());
        // An unread departure is a departure like any other: one_left, grace, timer.
        let (events, _) = room.listed(&[who("alice")]);
        let actions: Vec<Action> = events
            .into_iter()
            .flat_map(|e| room.step(t0(), e))
            .collect();
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert!(record(&actions).detail.contains("no longer lists"));
    }

    #[test]
    fn the_rooms_list_clears_kicked_and_held_people_who_are_gone() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let nobody = claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing);
        assert_eq!(
            kicks(&room.step(t0(), enter_as(who("eve"), nobody))),
            ["eve"]
        );
        let (events, newcomers) = room.listed(&[who("alice")]);
        assert_eq!(
            events,
            [Event::Left {
                nick: "eve".into(),
                how: Departure::Unlisted
            }]
        );
        assert!(newcomers.is_empty());
        // Still listed: neither a departure nor a newcomer (the kick goes on).
        let (events, newcomers) = room.listed(&[who("alice"), who("eve")]);
        assert!(events.is_empty() && newcomers.is_empty());
    }

    // ── who may enter ───────────────────────────────────────────────────────────────────

    #[test]
    fn the_first_person_in_on_a_staff_claim_is_staff_with_their_jid() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let actions = room.step(t0(), enter("alice"));
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Staff));
        assert_eq!(r.set_staff_nick.as_deref(), Some("alice"));
        assert_eq!(r.set_staff_jid.as_deref(), Some("alice@example.org"));
        assert_eq!((&r.set_client_nick, &r.set_client_jid), (&None, &None));
    }

    #[test]
    fn the_second_person_in_on_a_client_claim_is_the_client_with_their_jid() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let actions = room.step(t0(), enter("bob"));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Chatting, EventKind::Entered)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Client));
        assert_eq!(r.set_client_jid.as_deref(), Some("bob@example.org"));
        assert_eq!(room.seat_holder(Role::Client), Some(&who("bob")));
    }

    #[test]
    fn nobody_enters_without_an_open_claim_for_their_seat() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let none = claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing);
        let actions = room.step(t0(), enter_as(who("mallory"), none.clone()));
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(
            records(&actions),
            [(Available, Available, EventKind::Kicked)]
        );
        assert_eq!(record(&actions).role, Some(Role::Intruder));
        room.step(t0(), leave("mallory")); // the kick confirmed
        // The staff claim does not let anybody in as client.
        room.step(
            t0(),
            enter_as(
                who("alice"),
                claims(open(), SeatClaim::Missing, SeatClaim::Missing),
            ),
        );
        let actions = room.step(
            t0(),
            enter_as(who("eve"), claims(open(), SeatClaim::Missing, open())),
        );
        assert_eq!(kicks(&actions), ["eve"]);
        assert_eq!(room.status(), StaffWaiting);
        assert_eq!(
            room.seat_holder(Role::Client),
            None,
            "an intruder is never taken for the client"
        );
    }

    #[test]
    fn a_bound_claim_admits_only_its_jid() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let staff_for_alice = claims(
            bound("alice@example.org"),
            SeatClaim::Missing,
            SeatClaim::Missing,
        );
        let actions = room.step(t0(), enter_as(who("mallory"), staff_for_alice.clone()));
        assert_eq!(kicks(&actions), ["mallory"]);
        room.step(t0(), leave("mallory"));
        let actions = room.step(t0(), enter_as(who("alice"), staff_for_alice));
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let client_for_bob = claims(open(), bound("bob@example.org"), SeatClaim::Missing);
        // Bob's nick without bob's JID is not bob.
        let impostor = Person::new("bob", Some("eve@example.org".into()));
        assert_eq!(
            kicks(&room.step(t0(), enter_as(impostor, client_for_bob.clone()))),
            ["bob"]
        );
        room.step(t0(), leave("bob")); // the kick confirmed
        let actions = room.step(t0(), enter_as(who("bob"), client_for_bob));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Chatting, EventKind::Entered)]
        );
    }

    #[test]
    fn a_person_whose_claim_cannot_be_checked_is_held_then_decided() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let actions = room.step(t0(), enter_as(who("alice"), Claims::unknown()));
        assert_eq!(holds(&actions), ["alice"]);
        assert!(records(&actions).is_empty(), "held: not counted");
        assert!(kicks(&actions).is_empty(), "held: not kicked");
        assert_eq!(room.status(), Available);
        // A presence update while held changes nothing, however many come: one recheck.
        for _ in 0..3 {
            let again = room.step(t0(), enter_as(who("alice"), Claims::unknown()));
            assert!(again.is_empty(), "{again:?}");
        }
        assert!(!room.needs_claims(&who("alice")));
        // The recheck decides anew, on the claims looked up then.
        let recheck = room.step(
            t0(),
            Event::RecheckDue {
                person: who("alice"),
            },
        );
        assert_eq!(
            recheck,
            [Action::LookUpClaims {
                person: who("alice")
            }]
        );
        assert!(room.needs_claims(&who("alice")));
        let actions = room.step(
            t0(),
            enter_as(
                who("alice"),
                claims(open(), SeatClaim::Missing, SeatClaim::Missing),
            ),
        );
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        // A held person who leaves is forgotten.
        room.step(t0(), enter_as(who("bob"), Claims::unknown()));
        assert!(room.step(t0(), leave("bob")).is_empty());
        assert!(!room.is_held(&who("bob")));
    }

    #[test]
    fn with_more_than_two_chatters_every_extra_person_needs_an_extra_seat_claim() {
        let mut room = RoomMachine::new(ROOM, policy(3));
        room.step(t0(), enter("alice"));
        room.step(t0(), enter("bob"));
        let actions = room.step(
            t0(),
            enter_as(who("carol"), claims(open(), open(), SeatClaim::Missing)),
        );
        assert_eq!(kicks(&actions), ["carol"]);
        room.step(t0(), leave("carol"));
        let actions = room.step(t0(), enter_as(who("carol"), claims(open(), open(), open())));
        assert_eq!(
            records(&actions),
            [(Chatting, Chatting, EventKind::Entered)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Extra));
        assert!(r.use_extra_claim, "the claim is used up");
        // Full now, claim or not.
        assert_eq!(kicks(&room.step(t0(), enter("dave"))), ["dave"]);
        // One of three leaves: still two inside, still chatting.
        let actions = room.step(t0(), leave("carol"));
        assert_eq!(records(&actions), [(Chatting, Chatting, EventKind::Left)]);
    }

    #[test]
    fn a_third_person_is_kicked_and_the_status_holds() {
        let mut room = chat();
        let actions = room.step(t0(), enter("mallory"));
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(records(&actions), [(Chatting, Chatting, EventKind::Kicked)]);
        // The kick comes back as mallory's unavailable presence: not counted.
        assert!(room.step(t0(), leave("mallory")).is_empty());
        assert_eq!(room.status(), Chatting);
        assert_eq!(room.counted(), 2);
    }

    #[test]
    fn a_role_comes_back_only_with_the_same_jid_within_grace() {
        let mut room = chat();
        room.step(
            t0(),
            Event::Left {
                nick: "bob".into(),
                how: Departure::ConnectionLost,
            },
        );
        // A stranger, and a stranger with bob's nick, are kicked.
        assert_eq!(kicks(&room.step(t0(), enter("eve"))), ["eve"]);
        let impostor = Person::new("bob", Some("eve@example.org".into()));
        assert_eq!(
            kicks(&room.step(t0(), enter_as(impostor, Claims::not_required()))),
            ["bob"]
        );
        room.step(t0(), leave("bob"));
        assert_eq!(room.status(), OneLeft);
        // Bob himself, even under another nick, is back.
        let actions = room.step(
            t0(),
            enter_as(
                Person::new("bobby", Some("bob@example.org".into())),
                Claims::unknown(),
            ),
        );
        assert_eq!(
            records(&actions),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Client));
        assert_eq!(r.set_client_nick.as_deref(), Some("bobby"));
        assert_eq!(r.set_client_jid, None, "the client's JID never changes");
    }

    #[test]
    fn a_returning_person_needs_no_claim_and_a_newcomer_does() {
        let mut room = chat();
        room.step(t0(), leave("bob"));
        assert!(!room.needs_claims(&who("bob")));
        assert!(room.needs_claims(&who("eve")));
        assert!(!room.needs_claims(&who("alice")), "alice is inside");
    }

    #[test]
    fn leave_rejoin_leave_runs_the_second_grace_in_full() {
        let mut room = chat();
        let first = grace(&room.step(t0(), leave("bob")), Role::Client);
        room.step(t0(), enter("bob"));
        let second = grace(&room.step(t0(), leave("bob")), Role::Client);
        assert_ne!(first, second);
        // The first grace's timer runs out: stale, bob may still come back.
        assert!(
            room.step(
                t0(),
                Event::GraceExpired {
                    role: Role::Client,
                    epoch: first
                }
            )
            .is_empty()
        );
        assert_eq!(
            records(&room.step(t0(), enter("bob"))),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
        // Once the current grace is over, he may not.
        let third = grace(&room.step(t0(), leave("bob")), Role::Client);
        room.step(
            t0(),
            Event::GraceExpired {
                role: Role::Client,
                epoch: third,
            },
        );
        assert_eq!(kicks(&room.step(t0(), enter("bob"))), ["bob"]);
        assert_eq!(room.status(), OneLeft);
    }

    #[test]
    fn a_nick_change_keeps_the_role_with_the_jid() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let actions = room.step(
            t0(),
            Event::NickChanged {
                old: "alice".into(),
                new: "alice2".into(),
            },
        );
        assert_eq!(
            records(&actions),
            [(StaffWaiting, StaffWaiting, EventKind::NickChanged)]
        );
        assert_eq!(record(&actions).set_staff_nick.as_deref(), Some("alice2"));
        assert!(
            room.step(
                t0(),
                enter_as(
                    Person::new("alice2", Some("alice@example.org".into())),
                    Claims::unknown()
                )
            )
            .is_empty()
        );
        assert_eq!(
            room.seat_holder(Role::Staff),
            Some(&Person::new("alice2", Some("alice@example.org".into())))
        );
        room.step(t0(), enter("bob"));
        room.step(t0(), leave("alice2"));
        // Her grace is bound to her JID, not to either nick.
        let back = Person::new("alice", Some("alice@example.org".into()));
        assert_eq!(
            records(&room.step(t0(), enter_as(back, Claims::unknown()))),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
    }

    // ── kicks that do not work ─────────────────────────────────────────────────────────

    #[test]
    fn an_intruder_who_cannot_be_removed_before_a_client_came_closes_the_room_as_error() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        room.step(
            t0(),
            enter_as(
                who("mallory"),
                claims(open(), SeatClaim::Missing, SeatClaim::Missing),
            ),
        );
        // A client arriving while mallory is still inside is held, never admitted.
        assert_eq!(holds(&room.step(t0(), enter("bob"))), ["bob"]);
        let actions = room.step(
            t0(),
            Event::KickFailed {
                nick: "mallory".into(),
            },
        );
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Closed, EventKind::Closed)]
        );
        assert_eq!(destroys(&actions), Some(CloseReason::Error));
    }

    #[test]
    fn a_refused_kick_before_a_client_came_closes_the_room_at_once() {
        for staff_inside in [false, true] {
            let mut room = RoomMachine::new(ROOM, policy(2));
            if staff_inside {
                room.step(t0(), enter("alice"));
            }
            let from = room.status();
            room.step(
                t0(),
                enter_as(
                    who("mallory"),
                    claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing),
                ),
            );
            let actions = room.step(
                t0(),
                Event::KickRefused {
                    nick: "mallory".into(),
                },
            );
            assert_eq!(records(&actions), [(from, Closed, EventKind::Closed)]);
            assert_eq!(destroys(&actions), Some(CloseReason::Error));
        }
    }

    #[test]
    fn a_refused_kick_in_a_chat_leaves_the_retries_to_the_actor() {
        let mut room = chat();
        room.step(t0(), enter("mallory"));
        let refused = Event::KickRefused {
            nick: "mallory".into(),
        };
        assert!(
            room.step(t0(), refused.clone()).is_empty(),
            "the chat goes on"
        );
        assert_eq!(room.status(), Chatting);
        // A refusal about somebody who is gone (or was never an intruder) changes nothing.
        room.step(t0(), leave("mallory"));
        assert!(room.step(t0(), refused).is_empty());
    }

    #[test]
    fn an_intruder_who_cannot_be_removed_from_a_chat_is_announced_and_recorded() {
        let mut room = chat();
        room.step(t0(), enter("mallory"));
        let actions = room.step(
            t0(),
            Event::KickFailed {
                nick: "mallory".into(),
            },
        );
        assert!(matches!(actions[0], Action::Notify { .. }), "{actions:?}");
        assert_eq!(
            records(&actions),
            [(Chatting, Chatting, EventKind::KickFailed)]
        );
        assert_eq!(destroys(&actions), None, "the chat goes on");
        // Once the kick works, nothing else happens.
        assert!(room.step(t0(), leave("mallory")).is_empty());
        assert!(
            room.step(
                t0(),
                Event::KickFailed {
                    nick: "mallory".into()
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn an_intruder_renaming_is_kicked_under_the_new_nick() {
        let mut room = chat();
        room.step(t0(), enter("mallory"));
        let actions = room.step(
            t0(),
            Event::NickChanged {
                old: "mallory".into(),
                new: "bob2".into(),
            },
        );
        assert_eq!(kicks(&actions), ["bob2"]);
        assert!(records(&actions).is_empty());
    }

    // ── the room's life ────────────────────────────────────────────────────────────────

    #[test]
    fn a_full_chat_walks_every_status_and_ends_destroyed() {
        let mut room = chat();
        let actions = room.step(t0(), leave("bob"));
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert_eq!(record(&actions).role, Some(Role::Client));
        assert_eq!(destroys(&actions), None);
        let actions = room.step(t0(), leave("alice"));
        assert_eq!(records(&actions), [(OneLeft, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).role, Some(Role::Staff));
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Completed));
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn a_room_emptied_by_a_server_shutdown_is_lost_not_completed() {
        let mut room = chat();
        let shutdown = |nick: &str| Event::Left {
            nick: nick.into(),
            how: Departure::ServiceShutdown,
        };
        room.step(t0(), shutdown("bob"));
        let actions = room.step(t0(), shutdown("alice"));
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
    }

    /// Table row "open: the last person is removed by a server shutdown (332)": lost in any
    /// state, also before a client came. The staff member did not give up waiting, so
    /// `no_client` would be untrue.
    #[test]
    fn a_room_emptied_by_a_server_shutdown_before_any_client_is_lost() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let actions = room.step(
            t0(),
            Event::Left {
                nick: "alice".into(),
                how: Departure::ServiceShutdown,
            },
        );
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Closed, EventKind::Closed)]
        );
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
    }

    /// Table row "staff_waiting: somebody being kicked is still inside → hold": only the
    /// client waits for an intruder to be gone, so that no chat starts beside a stranger. A
    /// staff member entering an `available` room is let in at once: no chat runs yet.
    #[test]
    fn an_intruder_still_inside_holds_the_client_only() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let nobody = claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing);
        assert_eq!(
            kicks(&room.step(t0(), enter_as(who("eve"), nobody))),
            ["eve"]
        );
        let staff = room.step(t0(), enter_as(who("alice"), claims(open(), open(), open())));
        assert_eq!(
            records(&staff),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let client = room.step(t0(), enter_as(who("bob"), claims(open(), open(), open())));
        assert_eq!(holds(&client), ["bob"]);
        assert!(records(&client).is_empty());
    }

    #[test]
    fn staff_leaving_before_any_client_closes_with_no_client() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let actions = room.step(t0(), leave("alice"));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Closed, EventKind::Closed)]
        );
        assert_eq!(destroys(&actions), Some(CloseReason::NoClient));
    }

    #[test]
    fn leaving_a_chat_starts_the_rejoin_grace_and_the_one_left_timer() {
        let mut room = chat();
        let actions = room.step(t0(), leave("bob"));
        assert_eq!(
            timers(&actions),
            [
                &Timer::RejoinGrace {
                    role: Role::Client,
                    epoch: 1
                },
                &Timer::OneLeft { epoch: 1 }
            ]
        );
        // Grace over: bob can no longer come back; the room stays one_left.
        assert!(
            room.step(
                t0(),
                Event::GraceExpired {
                    role: Role::Client,
                    epoch: 1
                }
            )
            .is_empty()
        );
        assert_eq!(kicks(&room.step(t0(), enter("bob"))), ["bob"]);
        assert_eq!(room.status(), OneLeft);
    }

    #[test]
    fn the_one_left_timer_closes_the_room_with_a_notice() {
        let mut room = chat();
        room.step(t0(), leave("bob"));
        let actions = room.step(t0(), Event::OneLeftTimeout { epoch: 1 });
        assert!(matches!(actions[0], Action::Notify { .. }), "{actions:?}");
        assert_eq!(records(&actions), [(OneLeft, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Timeout));
        assert_eq!(destroys(&actions), Some(CloseReason::Timeout));
    }

    #[test]
    fn a_stale_one_left_timer_is_ignored() {
        let mut room = chat();
        room.step(t0(), leave("bob"));
        room.step(t0(), enter("bob")); // back within grace: chatting again
        room.step(t0(), leave("bob")); // one_left again: epoch 2
        assert!(
            room.step(t0(), Event::OneLeftTimeout { epoch: 1 })
                .is_empty()
        );
        assert_eq!(room.status(), OneLeft);
        assert!(
            !room
                .step(t0(), Event::OneLeftTimeout { epoch: 2 })
                .is_empty()
        );
        assert_eq!(room.status(), Closed);
    }

    #[test]
    fn presence_updates_and_unknown_departures_change_nothing() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        assert!(room.step(t0(), enter("alice")).is_empty());
        assert!(room.step(t0(), leave("nobody")).is_empty());
        assert_eq!(room.status(), StaffWaiting);
    }

    #[test]
    fn departures_are_described_by_how() {
        let mut room = chat();
        let actions = room.step(
            t0(),
            Event::Left {
                nick: "bob".into(),
                how: Departure::Banned,
            },
        );
        assert_eq!(record(&actions).detail, "banned (301)");
    }

    #[test]
    fn shutdown_closes_only_unused_rooms() {
        let mut unused = RoomMachine::new(ROOM, policy(2));
        let actions = unused.step(t0(), Event::Shutdown);
        assert_eq!(records(&actions), [(Available, Closed, EventKind::Closed)]);
        assert_eq!(destroys(&actions), Some(CloseReason::Shutdown));

        let mut busy = RoomMachine::new(ROOM, policy(2));
        busy.step(t0(), enter("alice"));
        assert!(busy.step(t0(), Event::Shutdown).is_empty());
        assert_eq!(busy.status(), StaffWaiting);
    }

    #[test]
    fn a_room_destroyed_by_others_is_lost_without_destroying() {
        let mut room = chat();
        let actions = room.step(t0(), Event::Vanished);
        assert_eq!(records(&actions), [(Chatting, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
        assert_eq!(destroys(&actions), None);
    }

    #[test]
    fn an_unusable_room_is_closed_and_destroyed() {
        let mut room = chat();
        let actions = room.step(t0(), Event::Unusable(Unusable::Recreated));
        assert_eq!(records(&actions), [(Chatting, Closed, EventKind::Closed)]);
        assert_eq!(
            record(&actions).detail,
            "the room no longer existed when the bot came back"
        );
        assert_eq!(destroys(&actions), Some(CloseReason::Lost));
    }

    #[test]
    fn an_ended_session_closes_only_rooms_nobody_else_is_in() {
        let mut unused = RoomMachine::new(ROOM, policy(2));
        let actions = unused.step(t0(), Event::SessionEnded);
        assert_eq!(records(&actions), [(Available, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
        assert_eq!(destroys(&actions), Some(CloseReason::Lost));

        // Staff inside: the room lives on, to be rejoined.
        let mut waiting = RoomMachine::new(ROOM, policy(2));
        waiting.step(t0(), enter("alice"));
        assert!(waiting.step(t0(), Event::SessionEnded).is_empty());
        assert_eq!(waiting.status(), StaffWaiting);
        assert!(chat().step(t0(), Event::SessionEnded).is_empty());

        // An intruder still being kicked is somebody inside too.
        let mut kicking = RoomMachine::new(ROOM, policy(2));
        let none = claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing);
        assert_eq!(
            kicks(&kicking.step(t0(), enter_as(who("mallory"), none))),
            ["mallory"]
        );
        assert!(kicking.step(t0(), Event::SessionEnded).is_empty());
    }

    #[test]
    fn a_closed_room_ignores_everything() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        room.step(t0(), leave("alice"));
        for event in [
            enter("bob"),
            leave("alice"),
            Event::Shutdown,
            Event::Vanished,
            Event::SessionEnded,
        ] {
            assert!(room.step(t0(), event).is_empty());
        }
        assert_eq!(room.status(), Closed);
    }

    // ── rows added when the actor's decisions moved here ──────────────────────────────

    #[test]
    fn without_required_claims_every_seat_is_open() {
        let mut room = RoomMachine::new(
            ROOM,
            Policy {
                require_claims: false,
                ..policy(2)
            },
        );
        assert!(!room.needs_claims(&who("alice")));
        let actions = room.step(t0(), enter_as(who("alice"), no_claims()));
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let actions = room.step(t0(), enter_as(who("bob"), Claims::unknown()));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Chatting, EventKind::Entered)]
        );
        // The seats stay limited.
        let actions = room.step(t0(), enter_as(who("eve"), no_claims()));
        assert_eq!(kicks(&actions), ["eve"]);
    }

    #[test]
    fn a_held_persons_recheck_looks_up_the_claims_again_while_they_are_held() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let actions = room.step(t0(), enter_as(who("alice"), Claims::unknown()));
        assert_eq!(holds(&actions), ["alice"]);
        let recheck = Timer::Recheck {
            person: who("alice"),
        };
        assert!(
            actions.contains(&Action::Schedule {
                timer: recheck.clone(),
                after: HOLD_RECHECK,
            }),
            "{actions:?}"
        );
        assert_eq!(
            room.step(t0(), recheck.clone().event()),
            [Action::LookUpClaims {
                person: who("alice")
            }]
        );
        // Gone, or somebody else under that nick: the timer is stale.
        room.step(t0(), leave("alice"));
        assert!(room.step(t0(), recheck.event()).is_empty());
    }

    #[test]
    fn an_expired_claim_of_the_current_seat_changes_the_password_then_releases() {
        let mut room = RoomMachine::new(ROOM, policy(3));
        let staff = Event::ClaimExpired { role: Role::Staff };
        assert_eq!(
            room.step(t0(), staff.clone()),
            [Action::ChangePassword { role: Role::Staff }]
        );
        room.step(t0(), enter("alice"));
        // Used meanwhile: the staff seat is taken, its claim is the row's business.
        assert!(room.step(t0(), staff).is_empty());
        assert_eq!(
            room.step(t0(), Event::ClaimExpired { role: Role::Client }),
            [Action::ChangePassword { role: Role::Client }]
        );
        room.step(t0(), enter("bob"));
        // An extra seat belongs to a chat in progress: its password stays.
        assert_eq!(
            room.step(t0(), Event::ClaimExpired { role: Role::Extra }),
            [Action::ReleaseClaim { role: Role::Extra }]
        );
    }

    #[test]
    fn a_password_that_cannot_be_changed_is_tried_again_then_the_room_is_given_up() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), Event::ClaimExpired { role: Role::Staff });
        let failed = Event::PasswordNotChanged { role: Role::Staff };
        for _ in 1..ROTATE_ATTEMPTS {
            assert_eq!(
                room.step(t0(), failed.clone()),
                [Action::ChangePassword { role: Role::Staff }]
            );
        }
        let actions = room.step(t0(), failed);
        assert_eq!(records(&actions), [(Available, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Error));
        assert_eq!(destroys(&actions), Some(CloseReason::Error));
    }

    #[test]
    fn a_change_refused_for_good_destroys_the_room_without_another_record() {
        let mut room = chat();
        let actions = room.step(t0(), Event::WriteRefused);
        assert_eq!(
            actions,
            [Action::Destroy {
                reason: CloseReason::Error
            }]
        );
        assert_eq!(room.status(), Closed);
    }

    #[test]
    fn a_room_that_could_not_be_created_is_destroyed_only_when_it_is_the_bots() {
        use CreationFailure::*;
        for kept in [NameTaken, JoinRefused, JoinUnanswered] {
            assert!(!destroy_after_failed_creation(kept), "{kept:?}");
        }
        for ours in [NotConfigured, NotRecorded] {
            assert!(destroy_after_failed_creation(ours), "{ours:?}");
        }
    }

    #[test]
    fn records_carry_the_room_and_the_time_of_their_event() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        let later = t0() + chrono::Duration::seconds(5);
        let actions = room.step(later, enter("alice"));
        assert_eq!(record(&actions).room_id, ROOM);
        assert_eq!(record(&actions).at, later);
    }

    #[test]
    fn timers_come_with_the_policys_durations_and_none_when_one_may_stay_alone() {
        let mut room = chat();
        let actions = room.step(t0(), leave("bob"));
        assert!(actions.contains(&Action::Schedule {
            timer: Timer::OneLeft { epoch: 1 },
            after: Duration::from_secs(600),
        }));
        assert!(actions.contains(&Action::Schedule {
            timer: Timer::RejoinGrace {
                role: Role::Client,
                epoch: 1,
            },
            after: Duration::from_secs(60),
        }));
        let mut forever = RoomMachine::new(
            ROOM,
            Policy {
                one_left: None,
                ..policy(2)
            },
        );
        forever.step(t0(), enter("alice"));
        forever.step(t0(), enter("bob"));
        let actions = forever.step(t0(), leave("bob"));
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert!(
            !timers(&actions)
                .iter()
                .any(|t| matches!(t, Timer::OneLeft { .. })),
            "{actions:?}"
        );
    }

    // ── floods: nick changes and kicks recorded together ─────────────────────────────

    /// The window timers scheduled by `actions`.
    fn windows(actions: &[Action]) -> Vec<u32> {
        timers(actions)
            .into_iter()
            .filter_map(|t| match t {
                Timer::Window { epoch } => Some(*epoch),
                _ => None,
            })
            .collect()
    }

    fn rename(old: &str, new: &str) -> Event {
        Event::NickChanged {
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn a_nick_change_flood_is_recorded_a_few_times_then_together_with_the_current_nick() {
        let mut room = chat();
        let mut written = Vec::new();
        let mut nick = "alice".to_owned();
        for i in 1..=300 {
            let next = format!("a{i}");
            let actions = room.step(t0(), rename(&nick, &next));
            written.extend(records(&actions));
            if i == 1 {
                assert_eq!(windows(&actions), [1]);
            }
            nick = next;
        }
        let burst = COALESCE_BURST as usize;
        assert_eq!(
            written,
            vec![(Chatting, Chatting, EventKind::NickChanged); burst],
            "the first {burst} on their own"
        );
        let end = room.step(t0(), Event::WindowEnded { epoch: 1 });
        assert_eq!(
            records(&end),
            [(Chatting, Chatting, EventKind::NickChanged)]
        );
        let row = record(&end);
        assert_eq!(row.set_staff_nick.as_deref(), Some("a300"));
        assert_eq!(row.nick.as_deref(), Some("a300"));
        let rest = 300 - COALESCE_BURST;
        assert!(
            row.detail.contains(&format!("{rest} more times")),
            "{}",
            row.detail
        );
        assert!(end.contains(&Action::Coalesced {
            kind: EventKind::NickChanged,
            count: rest
        }));
        // The flood went on, so a new window is open; a quiet one closes it.
        assert_eq!(windows(&end), [2]);
        assert!(room.step(t0(), Event::WindowEnded { epoch: 2 }).is_empty());
        assert!(
            room.step(t0(), Event::WindowEnded { epoch: 1 }).is_empty(),
            "stale"
        );
        let later = room.step(t0(), rename("a300", "alice"));
        assert_eq!(records(&later).len(), 1, "recorded at once again");
        assert_eq!(room.seat_holder(Role::Staff).unwrap().nick, "alice");
    }

    #[test]
    fn every_stranger_is_kicked_at_once_and_the_kicks_are_recorded_together() {
        let mut room = chat();
        let mut written = 0;
        for i in 0..60 {
            let nick = format!("eve{i}");
            let actions = room.step(t0(), enter_as(who(&nick), no_claims()));
            assert_eq!(kicks(&actions), [nick.as_str()], "kicked at once");
            written += records(&actions).len();
        }
        assert_eq!(written, COALESCE_BURST as usize);
        let end = room.step(t0(), Event::WindowEnded { epoch: 1 });
        assert_eq!(records(&end), [(Chatting, Chatting, EventKind::Kicked)]);
        let rest = 60 - COALESCE_BURST;
        assert!(
            record(&end)
                .detail
                .contains(&format!("{rest} more people kicked"))
        );
        assert!(end.contains(&Action::Coalesced {
            kind: EventKind::Kicked,
            count: rest
        }));
    }

    #[test]
    fn a_room_closing_in_a_window_records_what_it_counted_first() {
        let mut room = chat();
        let mut nick = "bob".to_owned();
        for i in 0..=COALESCE_BURST {
            let next = format!("b{i}");
            room.step(t0(), rename(&nick, &next));
            nick = next;
        }
        room.step(t0(), leave("alice"));
        let actions = room.step(t0(), leave(&nick));
        assert_eq!(
            records(&actions),
            [
                (OneLeft, OneLeft, EventKind::NickChanged),
                (OneLeft, Closed, EventKind::Closed)
            ]
        );
        assert_eq!(
            record(&actions).set_client_nick.as_deref(),
            Some(nick.as_str())
        );
    }

    #[test]
    fn a_person_in_the_chat_under_the_bots_nick_is_asked_to_leave_it_and_keeps_the_seat() {
        let mut room = chat();
        let actions = room.step(t0(), rename("bob", "HelpIM"));
        assert_eq!(kicks(&actions), ["HelpIM"]);
        assert!(room.is_being_removed("HelpIM"));
        // Their kick is a departure like any other: the grace keeps their seat.
        let gone = room.step(
            t0(),
            Event::Left {
                nick: "HelpIM".into(),
                how: Departure::Kicked,
            },
        );
        assert_eq!(records(&gone), [(Chatting, OneLeft, EventKind::Left)]);
        assert!(!room.is_being_removed("HelpIM"));
        let back = room.step(t0(), enter_as(who("bob"), no_claims()));
        assert_eq!(records(&back), [(OneLeft, Chatting, EventKind::Rejoined)]);
    }

    #[test]
    fn a_jid_kicked_again_and_again_is_kept_out_until_a_claim_names_it() {
        let mut room = RoomMachine::new(ROOM, policy(2));
        room.step(t0(), enter("alice"));
        let mallory = "mallory@example.org".to_owned();
        for i in 1..=BAN_AFTER {
            let actions = room.step(t0(), enter_as(who("mallory"), no_claims()));
            assert_eq!(kicks(&actions), ["mallory"]);
            let banned = actions.contains(&Action::Ban {
                jid: mallory.clone(),
            });
            assert_eq!(banned, i == BAN_AFTER, "kick {i}");
            room.step(
                t0(),
                Event::Left {
                    nick: "mallory".into(),
                    how: Departure::Kicked,
                },
            );
        }
        // New JIDs each time (anonymous logins) are kicked, never banned.
        for i in 0..100 {
            let anon = Person::new(format!("anon{i}"), Some(format!("{i}@anon.example.org")));
            let actions = room.step(t0(), enter_as(anon, no_claims()));
            assert!(!actions.iter().any(|a| matches!(a, Action::Ban { .. })));
            room.step(
                t0(),
                Event::Left {
                    nick: format!("anon{i}"),
                    how: Departure::Kicked,
                },
            );
        }
        // While a JID is banned, the claims are looked at every BAN_RECHECK.
        assert_eq!(room.step(t0(), Event::BanRecheckDue), [Action::CheckBans]);
        let nothing = room.step(
            t0(),
            Event::BansChecked {
                claims: no_claims(),
            },
        );
        assert_eq!(timers(&nothing), [&Timer::BanRecheck]);
        let named = room.step(
            t0(),
            Event::BansChecked {
                claims: claims(SeatClaim::Missing, bound(&mallory), SeatClaim::Missing),
            },
        );
        assert_eq!(named, [Action::Unban { jid: mallory }]);
        assert!(room.step(t0(), Event::BanRecheckDue).is_empty());
        // Let in by the claim: admitted as the client.
        let actions = room.step(
            t0(),
            enter_as(
                who("mallory"),
                claims(
                    SeatClaim::Missing,
                    bound("mallory@example.org"),
                    SeatClaim::Missing,
                ),
            ),
        );
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Chatting, EventKind::Entered)]
        );
    }

    #[test]
    fn another_device_of_a_person_inside_is_that_person_and_the_seat_is_left_with_the_last() {
        let mut room = chat();
        let alice = |nick: &str| Person::new(nick, Some("alice@example.org".into()));
        assert!(!room.needs_claims(&alice("alice-tablet")));
        assert!(
            room.step(t0(), enter_as(alice("alice-tablet"), no_claims()))
                .is_empty()
        );
        assert!(
            room.step(t0(), enter_as(alice("alice-phone"), no_claims()))
                .is_empty()
        );
        assert_eq!(room.counted(), 2, "not counted again");
        // Past SESSIONS_MAX further sessions: the chat is full.
        let third = room.step(t0(), enter_as(alice("alice-3"), no_claims()));
        assert_eq!(kicks(&third), ["alice-3"]);
        // The first session leaves: alice is still inside, under another session's nick.
        let actions = room.step(t0(), leave("alice"));
        assert_eq!(
            records(&actions),
            [(Chatting, Chatting, EventKind::NickChanged)]
        );
        assert_eq!(
            record(&actions).set_staff_nick.as_deref(),
            Some("alice-phone")
        );
        assert!(room.step(t0(), leave("alice-tablet")).is_empty());
        // The last one leaves: the seat is left.
        let last = room.step(t0(), leave("alice-phone"));
        assert_eq!(records(&last), [(Chatting, OneLeft, EventKind::Left)]);
    }

    // ── after a restart or reconnect ──────────────────────────────────────────────────

    fn restored(status: RoomStatus) -> RoomMachine {
        RoomMachine::restore(
            ROOM,
            status,
            Some(who("alice")),
            Some(who("bob")),
            policy(2),
        )
    }

    fn people(nicks: &[&str]) -> Vec<Person> {
        nicks.iter().map(|n| who(n)).collect()
    }

    fn no_claims() -> Claims {
        claims(SeatClaim::Missing, SeatClaim::Missing, SeatClaim::Missing)
    }

    #[test]
    fn after_a_restart_an_empty_chat_is_closed_as_completed() {
        let mut room = restored(Chatting);
        let actions = room.reconcile(t0(), &people(&[]), &no_claims());
        assert_eq!(
            records(&actions),
            [
                (Chatting, OneLeft, EventKind::Left),
                (OneLeft, Closed, EventKind::Closed)
            ]
        );
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn after_a_restart_a_chat_with_one_person_is_one_left() {
        let mut room = restored(Chatting);
        let actions = room.reconcile(t0(), &people(&["alice"]), &no_claims());
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert_eq!(record(&actions).detail, "gone when the bot came back");
        // bob may still come back within the grace.
        assert_eq!(
            records(&room.step(t0(), enter("bob"))),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
    }

    #[test]
    fn after_a_restart_somebody_who_came_meanwhile_without_a_claim_is_kicked() {
        let mut room = RoomMachine::restore(ROOM, Available, None, None, policy(2));
        let actions = room.reconcile(t0(), &people(&["mallory"]), &no_claims());
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(
            records(&actions),
            [(Available, Available, EventKind::Kicked)]
        );
        // In a chat, anybody but the recorded two is kicked; the row does not change.
        let mut chatting = restored(Chatting);
        let actions = chatting.reconcile(
            t0(),
            &people(&["alice", "bob", "mallory"]),
            &Claims::not_required(),
        );
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(records(&actions), [(Chatting, Chatting, EventKind::Kicked)]);
    }

    #[test]
    fn after_a_restart_the_clients_nick_with_another_jid_is_a_stranger() {
        let mut room = restored(Chatting);
        let impostor = Person::new("bob", Some("eve@example.org".into()));
        let actions = room.reconcile(t0(), &[who("alice"), impostor], &no_claims());
        assert_eq!(kicks(&actions), ["bob"]);
        assert_eq!(
            records(&actions),
            [
                (Chatting, OneLeft, EventKind::Left),
                (OneLeft, OneLeft, EventKind::Kicked)
            ]
        );
    }

    #[test]
    fn after_a_restart_a_claimed_newcomer_is_admitted_by_the_same_rules() {
        let mut room = RoomMachine::restore(ROOM, Available, None, None, policy(2));
        let actions = room.reconcile(
            t0(),
            &people(&["alice"]),
            &claims(
                bound("alice@example.org"),
                SeatClaim::Missing,
                SeatClaim::Missing,
            ),
        );
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let mut waiting =
            RoomMachine::restore(ROOM, StaffWaiting, Some(who("alice")), None, policy(2));
        assert!(
            waiting
                .reconcile(t0(), &people(&["alice"]), &no_claims())
                .is_empty(),
            "nothing changed"
        );
        // Unknown claims hold the newcomer.
        let mut unknown = RoomMachine::restore(ROOM, Available, None, None, policy(2));
        assert_eq!(
            holds(&unknown.reconcile(t0(), &people(&["alice"]), &Claims::unknown())),
            ["alice"]
        );
    }

    #[test]
    fn after_a_restart_a_one_left_room_gets_fresh_timers() {
        let mut room = restored(OneLeft);
        let actions = room.reconcile(t0(), &people(&["alice"]), &no_claims());
        assert_eq!(records(&actions), [(OneLeft, OneLeft, EventKind::Left)]);
        assert!(
            timers(&actions).contains(&&Timer::OneLeft { epoch: 1 }),
            "{actions:?}"
        );
        // The client may still come back within grace.
        let back = room.step(t0(), enter("bob"));
        assert_eq!(records(&back), [(OneLeft, Chatting, EventKind::Rejoined)]);
        let mut empty = restored(OneLeft);
        let actions = empty.reconcile(t0(), &people(&[]), &no_claims());
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn after_a_restart_a_renamed_participant_keeps_the_role() {
        let mut room = restored(Chatting);
        let renamed = Person::new("robert", Some("bob@example.org".into()));
        let actions = room.reconcile(t0(), &[who("alice"), renamed], &no_claims());
        assert_eq!(
            records(&actions),
            [(Chatting, Chatting, EventKind::NickChanged)]
        );
        assert_eq!(record(&actions).set_client_nick.as_deref(), Some("robert"));
    }
}
