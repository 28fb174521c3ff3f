//! `SupervisorActor`: owns the XMPP session on behalf of the other actors.
//!
//! It receives everything the connection task reports, routes each room presence to that
//! room's actor by the room's bare JID, answers pings and disco#info queries addressed to
//! the bot, starts the pool, and carries out the shutdown. A stanza it cannot read is
//! logged and dropped; it never stops the bot.
//!
//! Rooms found again (at start-up, after a crash of their actor, on every new session) are
//! rejoined through the [`JoinWindow`] shared with the pool's creations: at most
//! `pool.creation_window` rooms are entered at once, the rest wait in order.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::{mpsc, oneshot};
use jid::{BareJid, Jid};
use minidom::Element;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::store::Store;
use crate::texts::Text;
use crate::xmpp::form::NS_DISCO_INFO;
use crate::xmpp::muc::{parse_room_presence, presence_room};
use crate::xmpp::{XmppEvent, XmppHandle};

use super::pool::{
    JoinWindow, PoolActor, PoolSettings, RoomContextBase, StartCreating, StopCreating, WindowSlot,
};
use super::room::{
    CheckOccupants, ExpireClaim, Rejoin, RoomActor, RoomHandle, SessionEnded, ShutdownRoom,
};

/// Why the supervisor gave up; the process exits non-zero with this.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fatal {
    /// The database could not be read at start-up.
    #[error("database: {0}")]
    Database(String),
    /// The server stopped answering pings (a dead connection tokio-xmpp did not notice).
    #[error("the XMPP server did not answer {0} pings in a row")]
    ServerUnresponsive(u32),
    /// The server refused the bot's credentials on a reconnect.
    #[error("XMPP login failed: {0}")]
    LoginFailed(String),
    /// The XMPP stream ended without the bot asking for it.
    #[error("the XMPP stream ended unexpectedly")]
    StreamEnded,
}

/// The supervisor actor.
pub struct SupervisorActor {
    xmpp: XmppHandle,
    events: Option<mpsc::UnboundedReceiver<XmppEvent>>,
    store: Store,
    bot_jid: BareJid,
    pool_settings: PoolSettings,
    room_base: RoomContextBase,
    pool: Option<Addr<PoolActor>>,
    rooms: HashMap<BareJid, RoomHandle>,
    fatal: Option<oneshot::Sender<Fatal>>,
    shutting_down: bool,
    /// Recorded rooms still being checked after start-up; the pool starts when none are
    /// left, so that no room is created before the old ones are accounted for.
    recovering: HashSet<BareJid>,
    /// What rooms need; built once the pool's address exists.
    room_context: Option<std::sync::Arc<super::room::RoomContext>>,
    /// Interval of XEP-0199 pings to the server, if any.
    server_ping: Option<Duration>,
    /// Pings in a row the server did not answer.
    missed_pings: u32,
    /// The lease, where the XMPP session's state is recorded for the claims.
    lease: Option<std::sync::Arc<crate::lease::Lease>>,
    /// The resource of the current session.
    resource: Option<String>,
    /// The window of room entries, shared with the pool's creations.
    window: JoinWindow,
    /// Rooms waiting for a slot of the window, in order.
    entries: VecDeque<Entry>,
    /// The slots of the rejoins in flight, oldest first, with when each was taken.
    rejoining: VecDeque<(Instant, WindowSlot)>,
    /// A wait for a slot is running (one at a time, so that entries keep their order).
    acquiring: bool,
    /// The operator was told that ejabberd's `max_user_conferences` refuses joins (once).
    told_max_conferences: bool,
    /// Test-only fault: presences from occupants with these nicks arrive with a muc#user
    /// item the bot cannot read, as from a broken server (from
    /// `HELPIM_FAULT_UNREADABLE_NICKS`, comma-separated; only with the `fault-injection`
    /// feature). Neither Prosody nor ejabberd relays such a presence, so this is how the
    /// tests reach the check that asks the room who is inside.
    #[cfg(feature = "fault-injection")]
    unreadable_nicks: Vec<String>,
    /// Rows of this bot's open rooms that could not be decoded at start-up: no actor manages
    /// them until they are readable again ([`SupervisorActor::adopt_readable_rows`]).
    unreadable_rows: BTreeSet<i64>,
    /// Rooms whose actor died and whose row could not be read to restart it: tried again on
    /// every sweep, not given up.
    restart_later: HashSet<BareJid>,
}

/// How often rows that could not be decoded are read again.
const BAD_ROW_RECHECK: Duration = Duration::from_secs(10);

/// A room that must enter its room again, waiting for a slot of the window.
enum Entry {
    /// An actor built from the room's row, not started yet: it rejoins when it starts.
    Start(Box<RoomActor>),
    /// A running room actor, told to rejoin (a new session).
    Rejoin(BareJid),
}

/// A rejoin slot whose room never reported back (it stopped meanwhile, or was not in a
/// state to rejoin) is freed after this many join deadlines.
const REJOIN_SLOT_GUARD: u32 = 4;

impl SupervisorActor {
    /// A supervisor for an XMPP session that is already online.
    ///
    /// `fatal` is told when the bot cannot go on (the process then exits non-zero).
    pub fn new(
        xmpp: XmppHandle,
        events: mpsc::UnboundedReceiver<XmppEvent>,
        store: Store,
        bot_jid: BareJid,
        pool_settings: PoolSettings,
        room_base: RoomContextBase,
        fatal: oneshot::Sender<Fatal>,
    ) -> SupervisorActor {
        SupervisorActor {
            xmpp,
            events: Some(events),
            store,
            bot_jid,
            room_base,
            pool: None,
            rooms: HashMap::new(),
            fatal: Some(fatal),
            shutting_down: false,
            recovering: HashSet::new(),
            room_context: None,
            server_ping: None,
            missed_pings: 0,
            lease: None,
            resource: None,
            window: JoinWindow::new(pool_settings.creation_window),
            entries: VecDeque::new(),
            rejoining: VecDeque::new(),
            acquiring: false,
            told_max_conferences: false,
            unreadable_rows: BTreeSet::new(),
            restart_later: HashSet::new(),
            #[cfg(feature = "fault-injection")]
            unreadable_nicks: std::env::var("HELPIM_FAULT_UNREADABLE_NICKS")
                .map(|nicks| nicks.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            pool_settings,
        }
    }

    /// Queues `entry` for the window.
    fn enqueue(&mut self, entry: Entry, ctx: &mut Context<Self>) {
        self.entries.push_back(entry);
        self.pump(ctx);
    }

    /// Waits for a slot and hands it to the oldest waiting entry, then the next one.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.acquiring || self.entries.is_empty() || self.shutting_down {
            return;
        }
        self.acquiring = true;
        let window = self.window.clone();
        let slot = async move { window.enter().await };
        ctx.spawn(slot.into_actor(self).map(|slot, act, ctx| {
            act.acquiring = false;
            let mut slot = Some(slot);
            while let Some(entry) = act.entries.pop_front() {
                match entry {
                    Entry::Start(room) => {
                        let jid = room.jid().clone();
                        act.rooms.insert(jid, RoomHandle::start(*room));
                    }
                    Entry::Rejoin(jid) => match act.rooms.get(&jid) {
                        Some(addr) if addr.connected() => addr.do_send(Rejoin),
                        // The room finished meanwhile: next one.
                        _ => {
                            act.recovered(&jid);
                            continue;
                        }
                    },
                }
                act.rejoining
                    .push_back((Instant::now(), slot.take().expect("one slot per entry")));
                break;
            }
            act.pump(ctx);
        }));
    }

    /// Frees the slots of rejoins that never reported back.
    fn expire_rejoin_slots(&mut self) {
        let guard = self.room_base.join_timeout * REJOIN_SLOT_GUARD;
        let now = Instant::now();
        while self
            .rejoining
            .front()
            .is_some_and(|(taken, _)| now.duration_since(*taken) > guard)
        {
            self.rejoining.pop_front();
        }
    }

    /// Records the XMPP session's state in this lease's row: claims take only rooms of a bot
    /// whose session is up (and recovered), and a would-be taker asks about the resource.
    pub fn with_lease(mut self, lease: std::sync::Arc<crate::lease::Lease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Writes whether the session is up, with its resource, into the lease row.
    fn record_session(&self, up: bool) {
        actix::spawn(self.session_recorder(up));
    }

    /// The write of [`SupervisorActor::record_session`], to await.
    fn session_recorder(&self, up: bool) -> impl Future<Output = ()> + 'static {
        // Numbered now, in the actor's order: a late "down" never overwrites a later "up".
        let record = self
            .lease
            .as_ref()
            .map(|lease| lease.record_session(self.resource.as_deref(), up));
        async move {
            let Some(record) = record else {
                return;
            };
            match record.await {
                Ok(false) => log::debug!("a later XMPP session state was recorded already"),
                Ok(true) => log::info!(
                    "XMPP session recorded as {}: claims {} this bot's rooms",
                    if up { "up" } else { "down" },
                    if up { "may take" } else { "skip" }
                ),
                // A lost lease ends the process through the lease task.
                Err(error) => log::warn!("cannot record the XMPP session's state: {error}"),
            }
        }
    }

    /// Pings the server at this interval (XEP-0199); see [`Fatal::ServerUnresponsive`].
    pub fn with_server_ping(mut self, every: Option<Duration>) -> Self {
        self.server_ping = every;
        self
    }

    /// One XEP-0199 ping of the server; three misses in a row end the process (exit 1),
    /// the restart then recovers every room.
    fn ping_server(&mut self, ctx: &mut Context<Self>) {
        const MAX_MISSED: u32 = 3;
        let xmpp = self.xmpp.clone();
        let server = Jid::from(jid::BareJid::from_parts(None, self.bot_jid.domain()));
        let ping = async move {
            let ping = Element::builder("ping", xmpp_parsers::ns::PING).build();
            let sent = std::time::Instant::now();
            let answer = xmpp.get(server, ping).await;
            if answer.is_ok() {
                crate::throttle::record_ping(sent.elapsed());
            }
            answer
        };
        ctx.spawn(ping.into_actor(self).map(|answer, act, ctx| match answer {
            // Any answer, even an error, shows the connection is alive.
            Ok(_) | Err(crate::xmpp::IqError::Refused { .. }) => act.missed_pings = 0,
            Err(error) => {
                act.missed_pings += 1;
                log::warn!(
                    "server ping {} of {MAX_MISSED} unanswered: {error}",
                    act.missed_pings
                );
                if act.missed_pings >= MAX_MISSED && !act.shutting_down {
                    act.give_up(Fatal::ServerUnresponsive(act.missed_pings), ctx);
                }
            }
        }));
    }

    /// Starts one actor per recorded open room of this bot; each rejoins its room and
    /// reconciles the row. The pool starts creating once they all reported back.
    fn recover_rooms(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let bot = self.bot_jid.to_string();
        let load = async move { store.open_room_rows(&bot).await };
        ctx.wait(load.into_actor(self).map(|rows, act, ctx| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    log::error!("cannot read the recorded rooms: {error}");
                    return act.give_up(Fatal::Database(error.to_string()), ctx);
                }
            };
            // A row that cannot be decoded was logged by the store; its room is taken up
            // once the row is corrected, and every other room is managed meanwhile.
            act.unreadable_rows.extend(rows.bad.iter().map(|bad| bad.id));
            let rows = rows.rows;
            if !rows.is_empty() {
                log::info!("found {} open room(s) of this bot in the database: checking them", rows.len());
            }
            let room_context = act.room_context.clone().expect("set in started");
            for row in &rows {
                match RoomActor::recover(room_context.clone(), row) {
                    Ok(room) => {
                        act.recovering.insert(room.jid().clone());
                        act.enqueue(Entry::Start(Box::new(room)), ctx);
                    }
                    Err(error) => log::error!(room = row.jid.as_str(); "recorded room has an invalid JID ({error}); left alone"),
                }
            }
            act.start_pool_when_recovered();
        }));
    }

    /// Destroys the rooms of `closed` rows whose destruction the server never confirmed (a
    /// destroy cut short by a crash or a lost connection), then marks them destroyed. Rooms
    /// whose actor is still at it are left to the actor.
    fn destroy_leftovers(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let bot = self.bot_jid.to_string();
        let load = async move { store.undestroyed_rooms(&bot).await };
        ctx.spawn(load.into_actor(self).map(|rows, act, _| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    log::warn!("cannot read the closed rooms still to destroy: {error}");
                    return;
                }
            };
            for row in rows {
                let Ok(room) = BareJid::new(&row.jid) else {
                    log::error!(room = row.jid.as_str(); "recorded room has an invalid JID; left alone");
                    continue;
                };
                if act.rooms.contains_key(&room) {
                    continue;
                }
                log::warn!(room = room.as_str(); "closed, but its destruction was never confirmed: destroying it");
                let (xmpp, store) = (act.xmpp.clone(), act.store.clone());
                let texts = &act.room_base.texts;
                let (reason, lang) = (texts.get(Text::Closed).to_owned(), texts.language().tag());
                actix::spawn(async move {
                    if !super::room::destroy_until_confirmed(&xmpp, &room, &reason, lang).await {
                        return;
                    }
                    if let Err(error) = store.mark_destroyed(row.id).await {
                        log::warn!(room = room.as_str(); "cannot record the room as destroyed: {error}");
                    }
                });
            }
        }));
    }

    /// Restarts, from their database rows, the room actors that died (a panic ends only
    /// that room's task): each leaves and rejoins its room and reconciles. Other rooms and
    /// the connection are untouched.
    fn restart_dead_rooms(&mut self, ctx: &mut Context<Self>) {
        let dead: Vec<BareJid> = self
            .rooms
            .iter()
            .filter(|(_, addr)| !addr.connected())
            .map(|(jid, _)| jid.clone())
            .collect();
        let later: Vec<BareJid> = self.restart_later.drain().collect();
        for jid in dead.into_iter().chain(later) {
            self.rooms.remove(&jid);
            let store = self.store.clone();
            let key = jid.to_string();
            let load = async move { store.room_by_jid(&key).await };
            ctx.spawn(load.into_actor(self).map(move |row, act, ctx| {
                let room_context = act.room_context.clone().expect("set in started");
                match row {
                    Ok(Some(row)) if row.status != crate::model::RoomStatus::Closed => {
                        if act.rooms.contains_key(&jid) {
                            return; // restarted meanwhile
                        }
                        log::error!(room = jid.as_str(); "the room's actor died; restarting it from its database row");
                        match RoomActor::recover_after_crash(room_context, &row) {
                            Ok(room) => act.enqueue(Entry::Start(Box::new(room)), ctx),
                            Err(error) => log::error!(room = jid.as_str(); "cannot restart: {error}"),
                        }
                    }
                    // A room that finished normally, seen before its UnregisterRoom arrived.
                    Ok(_) => {}
                    Err(error) => {
                        // Not given up: tried again on the next sweep, until the row can be
                        // read (a bad row is logged once, by the store).
                        if !error.is_bad_row() {
                            log::warn!(room = jid.as_str(); "cannot read the room to restart it: {error}; trying again");
                        }
                        act.restart_later.insert(jid);
                    }
                }
            }));
        }
    }

    /// Reads the quarantined rows again ([`crate::quarantine`]), and starts an actor for each
    /// open room of this bot whose row could not be decoded at start-up and now can.
    fn adopt_readable_rows(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let ids: Vec<i64> = self.unreadable_rows.iter().copied().collect();
        let bot = self.bot_jid.to_string();
        let check = async move {
            if let Err(error) = store.recheck_bad_rows().await {
                log::warn!("cannot read the rows that could not be decoded again: {error}");
            }
            // The recheck read every quarantined row: only those that left the quarantine
            // are read again, to be taken up.
            let still_bad: HashSet<i64> = store
                .bad_rows()
                .into_iter()
                .filter(|bad| bad.table == "room")
                .map(|bad| bad.id)
                .collect();
            let mut readable = Vec::new();
            for id in ids.into_iter().filter(|id| !still_bad.contains(id)) {
                match store.room(id).await {
                    Ok(Some(row)) => readable.push((id, Some(row))),
                    Ok(None) => readable.push((id, None)),
                    Err(_) => {} // still unreadable (or the database is away): next time
                }
            }
            readable
        };
        ctx.spawn(check.into_actor(self).map(move |readable, act, ctx| {
            for (id, row) in readable {
                act.unreadable_rows.remove(&id);
                let Some(row) = row else { continue };
                let open = row.status != crate::model::RoomStatus::Closed;
                let known = BareJid::new(&row.jid).is_ok_and(|jid| act.rooms.contains_key(&jid));
                if row.bot_jid != bot || !open || known {
                    continue;
                }
                let room_context = act.room_context.clone().expect("set in started");
                match RoomActor::recover(room_context, &row) {
                    Ok(room) => {
                        log::warn!(room = row.jid.as_str(); "its row is readable again: rejoining the room");
                        act.enqueue(Entry::Start(Box::new(room)), ctx);
                    }
                    Err(error) => log::error!(room = row.jid.as_str(); "recorded room has an invalid JID ({error}); left alone"),
                }
            }
        }));
    }

    /// Once every room is accounted for: the session is recorded up (claims may take this
    /// bot's rooms again) and the pool creates rooms.
    fn start_pool_when_recovered(&mut self) {
        if self.recovering.is_empty()
            && let Some(pool) = &self.pool
        {
            crate::readiness::readiness().set_recovery_done();
            // Up first, then new rooms: a room that is ready can be claimed at once.
            let pool = pool.clone();
            let up = self.session_recorder(true);
            actix::spawn(async move {
                up.await;
                pool.do_send(StartCreating);
            });
        }
    }

    fn give_up(&mut self, why: Fatal, ctx: &mut Context<Self>) {
        log::error!("{why}");
        if let Some(fatal) = self.fatal.take() {
            let _ = fatal.send(why);
        }
        ctx.stop();
    }

    fn stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Presence(presence) => self.presence(Element::from(presence)),
            Stanza::Iq(iq) => self.iq(iq),
            // The bot reads no messages and stores no bodies; nothing to do.
            Stanza::Message(_) => {}
        }
    }

    /// Routes a presence to its room's actor. Only the bot's own rooms are listened to:
    /// a presence from anybody else (a forged error, a stranger's directed presence) is
    /// dropped before it can log about a room, count anything or open a room log.
    fn presence(&mut self, presence: Element) {
        let Some(room) = presence_room(&presence) else {
            log::debug!("presence without a readable sender ignored");
            return;
        };
        let Some(addr) = self.rooms.get(&room) else {
            log::debug!("presence from {room}, which is no room of ours: ignored");
            return;
        };
        if !addr.connected() {
            return; // its actor died; the sweep restarts it from the database
        }
        if !self.told_max_conferences && too_many_conferences(&presence) {
            self.told_max_conferences = true;
            log::error!(
                room = room.as_str();
                "the XMPP server refused the bot a room because its account {} is in too many \
                 rooms at once: raise ejabberd's mod_muc option max_user_conferences (default \
                 100) above pool.max_rooms ({}) and reload ejabberd",
                self.bot_jid,
                self.pool_settings.max_rooms
            );
        }
        #[cfg(feature = "fault-injection")]
        let presence = self.break_item(presence);
        match parse_room_presence(&presence) {
            Ok(parsed) => addr.presence(parsed),
            Err(error) if error.hides_an_occupant() => {
                log::warn!(room = room.as_str(); "unreadable presence ({error}): asking the room who is inside");
                let nick = presence
                    .attr("from")
                    .and_then(|from| Jid::new(from).ok())
                    .and_then(|from| from.resource().map(|r| r.as_str().to_owned()));
                let available = presence.attr("type").is_none();
                addr.do_send(CheckOccupants { nick, available });
            }
            Err(error) => {
                log::debug!(room = room.as_str(); "presence ignored: {error}")
            }
        }
    }

    /// Test-only fault (`unreadable_nicks`): the muc#user item of a presence from one of
    /// these nicks gets a real JID that is no JID.
    #[cfg(feature = "fault-injection")]
    fn break_item(&self, mut presence: Element) -> Element {
        let nick = presence
            .attr("from")
            .and_then(|from| from.split_once('/'))
            .map(|(_, nick)| nick.to_owned());
        if nick.is_some_and(|nick| self.unreadable_nicks.contains(&nick)) {
            for x in presence.children_mut() {
                if x.is("x", crate::xmpp::muc::NS_MUC_USER) {
                    for item in x.children_mut().filter(|c| c.name() == "item") {
                        item.set_attr(
                            minidom::rxml::Namespace::NONE,
                            minidom::rxml::xml_ncname!("jid").to_owned(),
                            "@broken@",
                        );
                    }
                }
            }
        }
        presence
    }

    /// Answers requests addressed to the bot: XEP-0199 ping, XEP-0030 disco#info; anything
    /// else gets `service-unavailable` as RFC 6120 asks.
    fn iq(&mut self, iq: Iq) {
        let (from, id, payload, is_get) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, payload, true),
            Iq::Set {
                from, id, payload, ..
            } => (from, id, payload, false),
            _ => return, // late answers to requests that already timed out
        };
        let reply = if is_get && payload.is("ping", xmpp_parsers::ns::PING) {
            Iq::Result {
                from: None,
                to: from,
                id,
                payload: None,
            }
        } else if is_get && payload.is("query", NS_DISCO_INFO) {
            let info = Element::builder("query", NS_DISCO_INFO)
                .append(
                    Element::builder("identity", NS_DISCO_INFO)
                        .attr(minidom::rxml::xml_ncname!("category").to_owned(), "client")
                        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "bot")
                        .attr(minidom::rxml::xml_ncname!("name").to_owned(), "helpim-bot"),
                )
                .append(feature(NS_DISCO_INFO))
                .append(feature(xmpp_parsers::ns::PING))
                .build();
            Iq::Result {
                from: None,
                to: from,
                id,
                payload: Some(info),
            }
        } else {
            let error = StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "helpim-bot does not offer this service",
            );
            Iq::Error {
                from: None,
                to: from,
                id,
                error,
                payload: None,
            }
        };
        self.xmpp.send(reply);
    }

    fn send_presence(&self) {
        self.xmpp.send(Presence::available());
    }
}

/// Whether `presence` is ejabberd's refusal of a join because the account is already in
/// `max_user_conferences` rooms: `resource-constraint` with the text "You have joined too
/// many conferences" (Prosody has no such limit).
fn too_many_conferences(presence: &Element) -> bool {
    use crate::xmpp::condition::{Condition, NS_STANZAS};
    presence.attr("type") == Some("error")
        && presence
            .children()
            .filter(|e| e.name() == "error")
            .any(|error| {
                Condition::of(error).0 == DefinedCondition::ResourceConstraint
                    && error.children().any(|c| {
                        c.is("text", NS_STANZAS)
                            && c.text()
                                .to_ascii_lowercase()
                                .contains("too many conferences")
                    })
            })
}

fn feature(var: &str) -> Element {
    Element::builder("feature", NS_DISCO_INFO)
        .attr(minidom::rxml::xml_ncname!("var").to_owned(), var)
        .build()
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(events);
        }
        self.send_presence();
        let pool = PoolActor::new(
            self.pool_settings.clone(),
            self.store.clone(),
            self.bot_jid.to_string(),
            ctx.address(),
            self.room_base.clone(),
            self.window.clone(),
        );
        let pool = pool.start();
        self.room_context = Some(PoolActor::room_context(
            &self.room_base,
            &self.pool_settings,
            &self.store,
            &self.bot_jid.to_string(),
            pool.clone(),
            ctx.address(),
        ));
        self.pool = Some(pool);
        self.recover_rooms(ctx);
        self.destroy_leftovers(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.restart_dead_rooms(ctx);
            act.expire_rejoin_slots();
        });
        ctx.run_interval(BAD_ROW_RECHECK, |act, ctx| act.adopt_readable_rows(ctx));
        if let Some(every) = self.server_ping {
            // One at once too, while the connection is still quiet: the round trip the
            // throttling check compares room creations with.
            self.ping_server(ctx);
            ctx.run_interval(every, |act, ctx| act.ping_server(ctx));
        }
    }
}

impl StreamHandler<XmppEvent> for SupervisorActor {
    fn handle(&mut self, event: XmppEvent, ctx: &mut Self::Context) {
        match event {
            XmppEvent::Online { bound_jid, .. } => {
                crate::readiness::readiness().set_session_up(true);
                crate::metrics::metrics().reconnects.inc();
                log::warn!(
                    "new XMPP session as {bound_jid}: rejoining {} room(s)",
                    self.rooms.len()
                );
                self.resource = Some(bound_jid.resource().to_string());
                // The server may have been reconfigured while the bot was away.
                self.room_base.owner_form.forget();
                self.send_presence();
                // Claims wait until every room is checked again.
                self.recovering = self.rooms.keys().cloned().collect();
                // Rooms still waiting from an earlier session are queued once, in order.
                self.entries
                    .retain(|entry| matches!(entry, Entry::Start(_)));
                let jids: Vec<BareJid> = self.rooms.keys().cloned().collect();
                for jid in jids {
                    self.enqueue(Entry::Rejoin(jid), ctx);
                }
                self.start_pool_when_recovered();
                self.destroy_leftovers(ctx);
                if let Some(pool) = &self.pool {
                    pool.do_send(super::pool::Replenish);
                }
            }
            XmppEvent::Resumed => {
                crate::readiness::readiness().set_session_up(true);
                self.record_session(self.recovering.is_empty());
                // A destroy cut short by the outage is confirmed now, as after any reconnect.
                self.destroy_leftovers(ctx);
            }
            XmppEvent::Suspended { resumable } => {
                crate::readiness::readiness().set_session_up(false);
                // At once: rooms may be gone with the session, and nobody watches them.
                self.record_session(false);
                if resumable {
                    log::warn!("XMPP connection lost; reconnecting to resume the session");
                } else {
                    // The server ends the session, and with it the rooms nobody else is
                    // in: their rows say so now, not at the next session.
                    log::warn!(
                        "XMPP connection lost and the session cannot resume (no XEP-0198); \
                         reconnecting; of the {} room(s), those nobody else is in are closed \
                         as lost",
                        self.rooms.len()
                    );
                    for room in self.rooms.values() {
                        room.do_send(SessionEnded);
                    }
                }
            }
            XmppEvent::LoginFailed { error, fatal: true } => {
                self.give_up(Fatal::LoginFailed(error), ctx)
            }
            XmppEvent::LoginFailed { error, .. } => log::warn!("XMPP reconnect failed: {error}"),
            XmppEvent::Stanza(stanza) => self.stanza(*stanza),
            XmppEvent::Presence(presence) => self.presence(*presence),
            XmppEvent::Closed if self.shutting_down => {
                crate::readiness::readiness().set_session_up(false)
            }
            XmppEvent::Closed => {
                crate::readiness::readiness().set_session_up(false);
                self.give_up(Fatal::StreamEnded, ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if !self.shutting_down {
            self.give_up(Fatal::StreamEnded, ctx);
        }
    }
}

/// Start a room actor and route its room's stanzas to it (sent by the pool). The route
/// exists before the actor sends its join, so no answer can arrive unrouted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SpawnRoom(pub RoomActor);

/// A claim on one of this bot's rooms expired unused (sent by the pool): the room's actor
/// changes the password and releases it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ClaimExpired(pub crate::claims::ExpiredClaim);

impl Handler<ClaimExpired> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: ClaimExpired, _: &mut Self::Context) {
        let room = BareJid::new(&msg.0.jid).ok();
        match room.and_then(|room| self.rooms.get(&room)) {
            Some(addr) => addr.do_send(ExpireClaim(msg.0)),
            // Its actor is being restarted; the next check finds the claim again.
            None => {
                log::debug!(room = msg.0.jid.as_str(); "expired claim of a room without an actor")
            }
        }
    }
}

/// A room finished rejoining (after start-up, a crash of its actor, or a new session).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Recovered(pub BareJid);

impl Handler<Recovered> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Recovered, _: &mut Self::Context) {
        // A rejoin ended: its slot is free for the next room waiting.
        self.rejoining.pop_front();
        self.recovered(&msg.0);
    }
}

impl SupervisorActor {
    /// Room `jid` is accounted for (rejoined, or finished): once every room of a recovery
    /// is, the session is recorded up and the pool creates rooms. A room that finishes
    /// or is skipped without rejoining counts too, or the bot would stay "down" for good.
    fn recovered(&mut self, jid: &BareJid) {
        if self.recovering.remove(jid) {
            self.start_pool_when_recovered();
        }
    }
}

/// A room actor stopped: stop routing to it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct UnregisterRoom(pub BareJid);

/// Shut down: stop creating rooms, close unused rooms, flush every room's writes, end the
/// XMPP stream; answers when done or after `deadline`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Bound on the whole shutdown.
    pub deadline: Duration,
}

impl Handler<SpawnRoom> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: SpawnRoom, _: &mut Self::Context) {
        let jid = msg.0.jid().clone();
        self.rooms.insert(jid, RoomHandle::start(msg.0));
    }
}

impl Handler<UnregisterRoom> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: UnregisterRoom, _: &mut Self::Context) {
        self.rooms.remove(&msg.0);
        self.recovered(&msg.0);
    }
}

impl Handler<Shutdown> for SupervisorActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        if let Some(pool) = &self.pool {
            pool.do_send(StopCreating);
        }
        let rooms: Vec<_> = self.rooms.values().cloned().collect();
        let xmpp = self.xmpp.clone();
        let deadline = msg.deadline;
        Box::pin(
            async move {
                let all = futures::future::join_all(rooms.iter().map(|r| r.send(ShutdownRoom)));
                if tokio::time::timeout(deadline, all).await.is_err() {
                    log::warn!("shutdown: some rooms did not finish within {deadline:?}");
                }
                xmpp.close(Duration::from_secs(3)).await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// Is the bot healthy? Answered by the supervisor itself, so that an answer also proves its
/// mailbox is being processed (the systemd watchdog asks this; a wedged actor system does
/// not answer and gets the process restarted).
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Alive;

impl Handler<Alive> for SupervisorActor {
    type Result = bool;

    fn handle(&mut self, _: Alive, _: &mut Self::Context) -> bool {
        !self.shutting_down && crate::readiness::readiness().missing().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn ejabberds_max_user_conferences_refusal_is_recognised() {
        let refusal = presence(
            "<presence xmlns='jabber:client' from='helpim-a@conference.localhost/HelpIM' \
             to='bot@localhost/r' type='error'><error type='wait'><resource-constraint \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xml:lang='en' \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>You have joined too many \
             conferences</text></error></presence>",
        );
        assert!(too_many_conferences(&refusal));
        // A full room is another resource-constraint: not this.
        let full = presence(
            "<presence xmlns='jabber:client' from='helpim-a@conference.localhost/HelpIM' \
             to='bot@localhost/r' type='error'><error type='wait'><resource-constraint \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xml:lang='en' \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Too many users in this \
             conference</text></error></presence>",
        );
        assert!(!too_many_conferences(&full));
    }
}
