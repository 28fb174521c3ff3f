//! A real XMPP client for integration tests (a staff member, a helpline client, ...),
//! built on tokio-xmpp 6 over plaintext loopback to a test server ([`XmppServer`]).
//!
//! Design (see /work/shared/notes/stack-facts.md):
//! - ONE spawned task owns the tokio-xmpp `Client` and polls it continuously (tokio-xmpp
//!   needs that; its internal queues are bounded). It forwards every received stanza as a
//!   raw `minidom::Element` through an unbounded channel and sends stanzas on command.
//!   Nothing is ever split or shared, so there is no lost wake-up.
//! - The `TestClient` keeps received stanzas that no call has asked for yet in a FIFO
//!   buffer: a presence that arrives before you wait for it is not lost, and waits look at
//!   the buffer first, oldest first.
//! - Every wait has a deadline and panics (or returns `Timeout`) with a clear message.
//! - The client answers nothing on its own (no disco, no pings to others).
//! - MUC presences are read from the RAW `<x xmlns='http://jabber.org/protocol/muc#user'/>`
//!   element: xmpp-parsers' `MucUser` rejects unknown status codes and drops `<destroy/>`.
//!
//! tokio-xmpp reconnects silently (new resource, rooms not rejoined): a `TestClient` is
//! meant to be one session; [`TestClient::sessions`] tells whether a reconnect happened.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::io::BufStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::xmlstream::{PendingFeaturesRecv, StreamHeader, Timeouts, initiate_stream};
use tokio_xmpp::{Client, Event, Stanza};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::muc::Muc;
use xmpp_parsers::muc::muc::History;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::server::XmppServer;

/// Deadline for reaching Online, joining, leaving, and IQ answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DATA_FORMS: &str = "jabber:x:data";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A connected test client; see the module documentation.
///
/// Dropped without `disconnect()`/`drop_connection()`, its task sees the command channel
/// close and drops the tokio-xmpp client, which closes the stream cleanly in the
/// background (if the runtime still runs).
pub struct TestClient {
    jid: FullJid,
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Received, not yet consumed, oldest first.
    buffer: VecDeque<Element>,
    task: Option<JoinHandle<()>>,
    kill: Arc<KillSwitch>,
    sessions: Arc<AtomicUsize>,
    next_id: u64,
}

/// Result of a successful [`TestClient::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Status codes of our own presence: 110 always, 201 when we created the room,
    /// 100 when the room is non-anonymous, ...
    pub status_codes: Vec<u16>,
    /// Nicks of the occupants present before us (presences received before our own).
    pub occupants: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The room answered with an error presence; `condition` is the RFC 6120 stanza error
    /// condition, e.g. "not-authorized" (wrong/missing password), "item-not-found" (room
    /// locked or absent and not creatable), "conflict" (nick taken), "not-allowed",
    /// "service-unavailable" (room full), "registration-required" (members only).
    Refused { condition: String },
    /// Neither our presence nor an error arrived within the deadline.
    Timeout,
}

/// Hand-written children of a client stanza (`<show>online</show><priority>1</priority>`),
/// parsed as they are, in `jabber:client`: added to a stanza's payloads, they are sent
/// verbatim, so that a test can send what xmpp-parsers itself would never produce.
pub fn raw_children(xml: &str) -> Vec<Element> {
    let wrapped = format!("<wrap xmlns='jabber:client'>{xml}</wrap>");
    let wrap: Element = wrapped
        .parse()
        .unwrap_or_else(|e| panic!("hand-written XML {xml:?} is not well-formed: {e}"));
    wrap.children().cloned().collect()
}

/// A presence from a MUC room, parsed from the raw stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceSeen {
    /// The occupant's nick (resource of the `from` JID); None if sent by the room itself.
    pub from_nick: Option<String>,
    /// False for `type="unavailable"` and `type="error"`.
    pub available: bool,
    /// All `<status code/>` values of the muc#user element, unknown ones included.
    pub status_codes: Vec<u16>,
    /// `<item><reason/>` (kick/ban) or else `<destroy><reason/>`.
    pub reason: Option<String>,
    /// The muc#user element holds `<destroy/>` (the room was destroyed).
    pub destroyed: bool,
    /// `<item affiliation/>`, e.g. "owner", "none".
    pub affiliation: Option<String>,
    /// `<item role/>`, e.g. "moderator", "participant", "none".
    pub role: Option<String>,
    /// `<item jid/>`: the occupant's real JID, if the room shows it to us.
    pub real_jid: Option<String>,
    /// For `type="error"`: the stanza error condition.
    pub error: Option<String>,
    /// The whole stanza.
    pub raw: Element,
}

/// Result of [`TestClient::disco_info`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoInfo {
    /// (category, type, name)
    pub identities: Vec<(String, String, Option<String>)>,
    pub features: Vec<String>,
    /// Fields of the `http://jabber.org/protocol/muc#roominfo` form, var → values, if the
    /// answer has one (FORM_TYPE itself left out).
    pub roominfo: Option<BTreeMap<String, Vec<String>>>,
}

impl DiscoInfo {
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// First value of a muc#roominfo field.
    pub fn roominfo_value(&self, var: &str) -> Option<&str> {
        self.roominfo
            .as_ref()?
            .get(var)?
            .first()
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The server refused the credentials; SASL condition, e.g. "not-authorized".
    AuthFailed(String),
    /// No TCP connection, or the stream broke during the login check.
    Io(String),
    /// Not Online within the deadline.
    Timeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::AuthFailed(c) => write!(f, "authentication failed: {c}"),
            ConnectError::Io(e) => write!(f, "connection failed: {e}"),
            ConnectError::Timeout => write!(f, "not online within the deadline"),
        }
    }
}

enum Command {
    Send(Box<Stanza>, oneshot::Sender<Result<(), String>>),
    End(oneshot::Sender<()>),
}

enum Incoming {
    Online(FullJid),
    Stanza(Element),
}

impl TestClient {
    /// Logs in as `user` (bare JID `user@domain`, server-assigned resource), waits until
    /// Online (deadline 10 s) and sends initial presence. Panics on failure.
    pub async fn connect(server: &dyn XmppServer, user: &str, password: &str) -> TestClient {
        match Self::try_connect(server, user, password, DEFAULT_TIMEOUT).await {
            Ok(client) => client,
            Err(e) => panic!(
                "TestClient::connect({}) failed: {e}\n{}",
                server.jid(user),
                server.log_tail(20)
            ),
        }
    }

    /// Like [`connect`](Self::connect) but returns the failure.
    ///
    /// A wrong password: tokio-xmpp retries a failed login forever and tells the
    /// application nothing, so before starting it this performs ONE explicit login
    /// (SASL over its own short-lived connection, with tokio-xmpp's own `client_login`)
    /// and returns `AuthFailed("not-authorized")` as soon as the server says so. The
    /// deadline on Online remains as a second line of defence.
    pub async fn try_connect(
        server: &dyn XmppServer,
        user: &str,
        password: &str,
        deadline: Duration,
    ) -> Result<TestClient, ConnectError> {
        // tokio-xmpp logs through `log` (e.g. "Received invalid stanza ... discarding",
        // reconnect failures): RUST_LOG=tokio_xmpp=debug shows them; captured per test.
        let _ = env_logger::builder().is_test(true).try_init();
        let deadline = Instant::now() + deadline;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        let bare = BareJid::from_str(&server.jid(user))
            .unwrap_or_else(|e| panic!("invalid user {user:?}: {e}"));
        let kill = Arc::new(KillSwitch::default());
        let connector = LoopbackConnector {
            addr,
            kill: kill.clone(),
        };

        match timeout_at(deadline, check_login(&connector, &bare, password)).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        // The check's socket is not the session's: forget it.
        kill.sockets.lock().unwrap().clear();

        let client =
            Client::new_with_connector(bare, password.to_owned(), connector, Timeouts::tight());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let sessions = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(client_task(
            client,
            command_rx,
            incoming_tx,
            sessions.clone(),
        ));
        let mut this = TestClient {
            // Placeholder until Online tells us the bound resource.
            jid: FullJid::from_str("placeholder@localhost/placeholder").unwrap(),
            commands,
            incoming,
            buffer: VecDeque::new(),
            task: Some(task),
            kill,
            sessions,
            next_id: 0,
        };
        loop {
            match timeout_at(deadline, this.incoming.recv()).await {
                Err(_) => {
                    this.abort_task();
                    return Err(ConnectError::Timeout);
                }
                Ok(None) => return Err(ConnectError::Io("client task ended".to_owned())),
                Ok(Some(Incoming::Online(jid))) => {
                    this.jid = jid;
                    break;
                }
                Ok(Some(Incoming::Stanza(el))) => this.buffer.push_back(el),
            }
        }
        let presence = Presence::new(PresenceType::None);
        if let Err(e) = this.send_stanza(presence.into(), deadline).await {
            this.abort_task();
            return Err(ConnectError::Io(e));
        }
        Ok(this)
    }

    /// The full JID bound at login.
    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// How many times this client has come Online: 1 unless tokio-xmpp reconnected (after
    /// which the session is a new one: new resource, rooms left).
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Joins (or creates) `room` (bare JID) as `nick`, with history maxstanzas=0.
    /// Consumes the room's presences up to our own (reported in `occupants`).
    pub async fn join(
        &mut self,
        room: &str,
        nick: &str,
        password: Option<&str>,
    ) -> Result<Joined, JoinError> {
        self.join_with(room, nick, password, "").await
    }

    /// [`TestClient::join`] with hand-written XML added to the join presence (children of
    /// `<presence/>` in `jabber:client`, e.g. `<show>online</show>`), sent as written even
    /// where xmpp-parsers would refuse it: what a hostile or broken client sends.
    pub async fn join_with(
        &mut self,
        room: &str,
        nick: &str,
        password: Option<&str>,
        extra_xml: &str,
    ) -> Result<Joined, JoinError> {
        let occupant = occupant_jid(room, nick);
        let mut muc = Muc::new().with_history(History::new().with_maxstanzas(0));
        if let Some(password) = password {
            muc = muc.with_password(password.to_owned());
        }
        let mut presence = Presence::new(PresenceType::None)
            .with_to(occupant)
            .with_payload(muc);
        presence.payloads.extend(raw_children(extra_xml));
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        if let Err(e) = self.send_stanza(presence.into(), deadline).await {
            panic!(
                "{}: cannot send the join presence for {room}: {e}",
                self.jid
            );
        }
        let mut occupants: Vec<String> = Vec::new();
        loop {
            let seen = self
                .wait_for_element(deadline, |el| {
                    el.name() == "presence" && from_bare_is(el, room)
                })
                .await;
            let Some(seen) = seen else {
                return Err(JoinError::Timeout);
            };
            let seen = parse_presence(&seen);
            if let Some(condition) = seen.error {
                return Err(JoinError::Refused { condition });
            }
            if seen.status_codes.contains(&110) && seen.available {
                return Ok(Joined {
                    status_codes: seen.status_codes,
                    occupants,
                });
            }
            if let Some(other) = seen.from_nick {
                occupants.retain(|n| *n != other);
                if seen.available {
                    occupants.push(other);
                }
            }
        }
    }

    /// Leaves `room`: unavailable presence to room/nick, then waits (10 s, else panics) for
    /// our own unavailable presence (status 110).
    pub async fn leave(&mut self, room: &str, nick: &str) {
        self.leave_with(room, nick, "").await
    }

    /// [`TestClient::leave`] with hand-written XML added to the unavailable presence (see
    /// [`TestClient::join_with`]).
    pub async fn leave_with(&mut self, room: &str, nick: &str, extra_xml: &str) {
        let mut presence =
            Presence::new(PresenceType::Unavailable).with_to(occupant_jid(room, nick));
        presence.payloads.extend(raw_children(extra_xml));
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        if let Err(e) = self.send_stanza(presence.into(), deadline).await {
            panic!(
                "{}: cannot send the leave presence for {room}: {e}",
                self.jid
            );
        }
        let found = self
            .wait_for_element(deadline, |el| {
                el.name() == "presence" && from_bare_is(el, room) && {
                    let seen = parse_presence(el);
                    !seen.available && seen.status_codes.contains(&110)
                }
            })
            .await;
        if found.is_none() {
            panic!(
                "{}: no own unavailable presence (110) from {room} within {DEFAULT_TIMEOUT:?} after leaving; presences from the room still buffered: {:#?}",
                self.jid,
                self.buffered_presences(room)
            );
        }
    }

    /// disco#info of any JID (room, MUC service, server). Err is the stanza error condition,
    /// e.g. "item-not-found" for a room that does not exist. Panics on timeout (10 s).
    pub async fn disco_info(&mut self, jid: &str) -> Result<DiscoInfo, String> {
        let query = Element::builder("query", NS_DISCO_INFO).build();
        let result = self.iq_get(jid, query).await?;
        let Some(query) = result else {
            return Ok(DiscoInfo::default());
        };
        let mut info = DiscoInfo::default();
        for child in query.children() {
            match child.name() {
                "identity" => info.identities.push((
                    child.attr("category").unwrap_or_default().to_owned(),
                    child.attr("type").unwrap_or_default().to_owned(),
                    child.attr("name").map(str::to_owned),
                )),
                "feature" => {
                    if let Some(var) = child.attr("var") {
                        info.features.push(var.to_owned());
                    }
                }
                "x" if child.ns() == NS_DATA_FORMS => {
                    let fields = form_fields(child);
                    let is_roominfo = fields.get("FORM_TYPE").and_then(|v| v.first())
                        == Some(&"http://jabber.org/protocol/muc#roominfo".to_owned());
                    if is_roominfo {
                        let mut fields = fields;
                        fields.remove("FORM_TYPE");
                        info.roominfo = Some(fields);
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// IQ get with a raw payload; Ok(payload of the result) or Err(error condition).
    /// Panics if no answer arrives within 10 s.
    pub async fn iq_get(&mut self, to: &str, payload: Element) -> Result<Option<Element>, String> {
        self.iq(to, payload, false).await
    }

    /// IQ set with a raw payload; Ok(payload of the result) or Err(error condition).
    /// Panics if no answer arrives within 10 s.
    pub async fn iq_set(&mut self, to: &str, payload: Element) -> Result<Option<Element>, String> {
        self.iq(to, payload, true).await
    }

    /// Sends any stanza (iq, message, presence) given as a raw element.
    pub async fn send(&mut self, stanza: Element) {
        let stanza = Stanza::try_from(stanza.clone())
            .unwrap_or_else(|e| panic!("not a valid stanza ({e}): {stanza:?}"));
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        if let Err(e) = self.send_stanza(stanza, deadline).await {
            panic!("{}: cannot send a stanza: {e}", self.jid);
        }
    }

    /// Waits for a presence from `room` (bare JID) that satisfies `pred`; consumes it and
    /// leaves non-matching ones buffered. Panics on timeout, listing the room's presences
    /// seen meanwhile.
    pub async fn wait_for_presence(
        &mut self,
        room: &str,
        pred: impl Fn(&PresenceSeen) -> bool,
        timeout: Duration,
    ) -> PresenceSeen {
        let deadline = Instant::now() + timeout;
        let found = self
            .wait_for_element(deadline, |el| {
                el.name() == "presence" && from_bare_is(el, room) && pred(&parse_presence(el))
            })
            .await;
        match found {
            Some(el) => parse_presence(&el),
            None => panic!(
                "{}: no matching presence from {room} within {timeout:?}; presences from the room seen and not consumed: {:#?}",
                self.jid,
                self.buffered_presences(room)
            ),
        }
    }

    /// A presence from `room` satisfying `pred` that is buffered or arrives within
    /// `timeout`, if any (consumed): for showing that something did not happen, after an
    /// event that proves the bot got that far.
    pub async fn presence_within(
        &mut self,
        room: &str,
        pred: impl Fn(&PresenceSeen) -> bool,
        timeout: Duration,
    ) -> Option<PresenceSeen> {
        let deadline = Instant::now() + timeout;
        self.wait_for_element(deadline, |el| {
            el.name() == "presence" && from_bare_is(el, room) && pred(&parse_presence(el))
        })
        .await
        .map(|el| parse_presence(&el))
    }

    /// Waits until this client is removed from `room` by a kick: its own unavailable
    /// presence with 110 and 307 (panics after `timeout`), which is returned.
    pub async fn wait_kicked(&mut self, room: &str, timeout: Duration) -> PresenceSeen {
        let kicked = self
            .wait_for_presence(
                room,
                |p| !p.available && p.status_codes.contains(&110) && p.status_codes.contains(&307),
                timeout,
            )
            .await;
        assert!(kicked.error.is_none(), "{kicked:?}");
        kicked
    }

    /// Waits for any stanza satisfying `pred` (e.g. a message); consumes it. Panics on
    /// timeout with `what` and the buffered stanzas.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&Element) -> bool,
        timeout: Duration,
    ) -> Element {
        let deadline = Instant::now() + timeout;
        match self.wait_for_element(deadline, pred).await {
            Some(el) => el,
            None => panic!(
                "{}: no {what} within {timeout:?}; stanzas buffered: {:#?}",
                self.jid,
                self.buffer
                    .iter()
                    .map(element_to_string)
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Simulates a lost connection: the TCP connection is shut down under tokio-xmpp's feet
    /// (FIN, no `</stream:stream>`, no unavailable presence, no reconnect) and the client
    /// task is aborted. Prosody notices at once (EOF) and makes the user leave its rooms.
    pub async fn drop_connection(mut self) {
        self.kill.kill();
        self.abort_task();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Clean logout: closes the XML stream (Prosody then sends unavailable presence to the
    /// rooms on our behalf). Panics if it takes more than 10 s.
    pub async fn disconnect(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::End(tx)).is_ok()
            && tokio::time::timeout(DEFAULT_TIMEOUT, rx).await.is_err()
        {
            panic!(
                "{}: clean disconnect took more than {DEFAULT_TIMEOUT:?}",
                self.jid
            );
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn iq(
        &mut self,
        to: &str,
        payload: Element,
        set: bool,
    ) -> Result<Option<Element>, String> {
        let to_jid = Jid::from_str(to).unwrap_or_else(|e| panic!("invalid JID {to:?}: {e}"));
        self.next_id += 1;
        let id = format!("testclient-{}", self.next_id);
        let iq = if set {
            Iq::Set {
                from: None,
                to: Some(to_jid),
                id: id.clone(),
                payload,
            }
        } else {
            Iq::Get {
                from: None,
                to: Some(to_jid),
                id: id.clone(),
                payload,
            }
        };
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        if let Err(e) = self.send_stanza(iq.into(), deadline).await {
            panic!("{}: cannot send an IQ to {to}: {e}", self.jid);
        }
        let answer = self
            .wait_for_element(deadline, |el| {
                el.name() == "iq"
                    && el.attr("id") == Some(id.as_str())
                    && matches!(el.attr("type"), Some("result" | "error"))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{}: no answer to IQ {id} ({}) from {to} within {DEFAULT_TIMEOUT:?}",
                    self.jid,
                    if set { "set" } else { "get" }
                )
            });
        if answer.attr("type") == Some("error") {
            return Err(error_condition(&answer).unwrap_or_else(|| "undefined-condition".into()));
        }
        Ok(answer.children().next().cloned())
    }

    async fn send_stanza(&mut self, stanza: Stanza, deadline: Instant) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(Box::new(stanza), tx))
            .map_err(|_| "client task has ended".to_owned())?;
        match timeout_at(deadline, rx).await {
            Err(_) => Err("not sent before the deadline (disconnected?)".to_owned()),
            Ok(Err(_)) => Err("client task has ended".to_owned()),
            Ok(Ok(result)) => result,
        }
    }

    /// First buffered element matching `pred`, else the first one to arrive before the
    /// deadline; everything else received meanwhile is buffered. None on timeout.
    async fn wait_for_element(
        &mut self,
        deadline: Instant,
        pred: impl Fn(&Element) -> bool,
    ) -> Option<Element> {
        if let Some(pos) = self.buffer.iter().position(&pred) {
            return self.buffer.remove(pos);
        }
        loop {
            match timeout_at(deadline, self.incoming.recv()).await {
                Err(_) | Ok(None) => return None,
                Ok(Some(Incoming::Online(_))) => {}
                Ok(Some(Incoming::Stanza(el))) => {
                    if pred(&el) {
                        return Some(el);
                    }
                    self.buffer.push_back(el);
                }
            }
        }
    }

    fn buffered_presences(&self, room: &str) -> Vec<String> {
        self.buffer
            .iter()
            .filter(|el| el.name() == "presence" && from_bare_is(el, room))
            .map(element_to_string)
            .collect()
    }

    fn abort_task(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The task owning the tokio-xmpp client.
async fn client_task(
    mut client: Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::UnboundedSender<Incoming>,
    sessions: Arc<AtomicUsize>,
) {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Send(stanza, reply)) => {
                    let result = client
                        .send_stanza(*stanza)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(result);
                }
                Some(Command::End(reply)) => {
                    let _ = tokio::time::timeout(DEFAULT_TIMEOUT, client.send_end()).await;
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
            event = client.next() => match event {
                Some(Event::Online { bound_jid, .. }) => {
                    let n = sessions.fetch_add(1, Ordering::SeqCst) + 1;
                    if n > 1 {
                        eprintln!("TestClient: {bound_jid} is online again (session {n}): tokio-xmpp reconnected");
                    }
                    if let Ok(full) = bound_jid.try_into_full() {
                        let _ = incoming.send(Incoming::Online(full));
                    }
                }
                Some(Event::Stanza(stanza)) => {
                    let _ = incoming.send(Incoming::Stanza(Element::from(stanza)));
                }
                // What another client wrote and xmpp-parsers refuses (a `<show/>` value, ...):
                // tests look at it like any other stanza.
                Some(Event::InvalidStanza(element)) => {
                    let _ = incoming.send(Incoming::Stanza(*element));
                }
                Some(Event::Disconnected(_)) => {}
                None => return,
            },
        }
    }
}

/// Logs in once over a separate connection and reports a SASL failure.
async fn check_login(
    connector: &LoopbackConnector,
    jid: &BareJid,
    password: &str,
) -> Result<(), ConnectError> {
    let io = |e: &dyn std::fmt::Display| ConnectError::Io(e.to_string());
    let (pending, _) = connector
        .connect(&Jid::from(jid.clone()), "jabber:client", Timeouts::tight())
        .await
        .map_err(|e| io(&e))?;
    let (features, stream) = pending.recv_features().await.map_err(|e| io(&e))?;
    let credentials = sasl::common::Credentials::default()
        .with_username(jid.node().map(|n| n.as_str()).unwrap_or_default())
        .with_password(password)
        .with_channel_binding(sasl::common::ChannelBinding::None);
    match tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials).await {
        // Dropping the authenticated, unbound stream just closes the TCP connection.
        Ok(_) => Ok(()),
        Err(tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::Fail(condition))) => Err(
            ConnectError::AuthFailed(Element::from(condition).name().to_owned()),
        ),
        Err(e) => Err(ConnectError::Io(e.to_string())),
    }
}

/// Shuts down the client's TCP connections from outside tokio-xmpp (to simulate a lost
/// connection) and stops it from reconnecting.
#[derive(Debug, Default)]
struct KillSwitch {
    killed: AtomicBool,
    /// Duplicates of the current connection's socket.
    sockets: Mutex<Vec<std::net::TcpStream>>,
}

impl KillSwitch {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for socket in self.sockets.lock().unwrap().drain(..) {
            // Affects the socket itself, shared with tokio-xmpp's copy: FIN goes out, its
            // reads see EOF, its writes fail (so no stream footer can follow).
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Plaintext TCP to 127.0.0.1:port, like tokio-xmpp's TcpServerConnector, but keeping a
/// duplicate of each socket for the kill switch.
#[derive(Debug, Clone)]
struct LoopbackConnector {
    addr: SocketAddr,
    kill: Arc<KillSwitch>,
}

impl ServerConnector for LoopbackConnector {
    type Stream = BufStream<tokio::net::TcpStream>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<
        (
            PendingFeaturesRecv<Self::Stream>,
            sasl::common::ChannelBinding,
        ),
        tokio_xmpp::Error,
    > {
        if self.kill.killed.load(Ordering::SeqCst) {
            // Killed: never connect again (tokio-xmpp would retry an error forever).
            std::future::pending::<()>().await;
        }
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let std_tcp = tcp.into_std()?;
        let duplicate = std_tcp.try_clone()?;
        let tcp = tokio::net::TcpStream::from_std(std_tcp)?;
        {
            let mut sockets = self.kill.sockets.lock().unwrap();
            if self.kill.killed.load(Ordering::SeqCst) {
                let _ = duplicate.shutdown(std::net::Shutdown::Both);
            }
            sockets.clear();
            sockets.push(duplicate);
        }
        let header = StreamHeader {
            to: Some(jid.domain().as_str().into()),
            from: None,
            id: None,
        };
        let pending = initiate_stream(BufStream::new(tcp), ns, header, timeouts).await?;
        Ok((pending, sasl::common::ChannelBinding::None))
    }
}

fn occupant_jid(room: &str, nick: &str) -> FullJid {
    FullJid::from_str(&format!("{room}/{nick}"))
        .unwrap_or_else(|e| panic!("invalid room JID {room:?} or nick {nick:?}: {e}"))
}

/// Whether the stanza's `from` has `room` as its bare part (case-insensitively: Prosody
/// answers with the nodeprep'd JID).
fn from_bare_is(el: &Element, room: &str) -> bool {
    el.attr("from")
        .map(|from| from.split('/').next().unwrap_or(from))
        .is_some_and(|bare| bare.eq_ignore_ascii_case(room))
}

/// Parses a presence (normally from a MUC room) from the raw element.
pub fn parse_presence(el: &Element) -> PresenceSeen {
    let type_ = el.attr("type").unwrap_or("available");
    let from_nick = el
        .attr("from")
        .and_then(|f| f.split_once('/'))
        .map(|(_, nick)| nick.to_owned());
    let mut seen = PresenceSeen {
        from_nick,
        available: type_ != "unavailable" && type_ != "error",
        status_codes: Vec::new(),
        reason: None,
        destroyed: false,
        affiliation: None,
        role: None,
        real_jid: None,
        error: None,
        raw: el.clone(),
    };
    if type_ == "error" {
        seen.error = Some(error_condition(el).unwrap_or_else(|| "undefined-condition".into()));
    }
    let Some(x) = el.get_child("x", NS_MUC_USER) else {
        return seen;
    };
    let mut destroy_reason = None;
    for child in x.children() {
        match child.name() {
            "status" => {
                if let Some(code) = child.attr("code").and_then(|c| c.parse().ok()) {
                    seen.status_codes.push(code);
                }
            }
            "item" => {
                seen.affiliation = child.attr("affiliation").map(str::to_owned);
                seen.role = child.attr("role").map(str::to_owned);
                seen.real_jid = child.attr("jid").map(str::to_owned);
                if let Some(reason) = child.get_child("reason", NS_MUC_USER) {
                    seen.reason = Some(reason.text());
                }
            }
            "destroy" => {
                seen.destroyed = true;
                destroy_reason = child.get_child("reason", NS_MUC_USER).map(Element::text);
            }
            _ => {}
        }
    }
    if seen.reason.is_none() {
        seen.reason = destroy_reason;
    }
    seen
}

/// The defined condition of a stanza's `<error/>` child, e.g. "not-authorized".
pub fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.children().find(|c| c.name() == "error")?;
    error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// var → values of a data form (fields without var are skipped).
pub fn form_fields(form: &Element) -> BTreeMap<String, Vec<String>> {
    form.children()
        .filter(|f| f.name() == "field")
        .filter_map(|f| {
            let values = f
                .children()
                .filter(|v| v.name() == "value")
                .map(Element::text)
                .collect();
            Some((f.attr("var")?.to_owned(), values))
        })
        .collect()
}

pub fn element_to_string(el: &Element) -> String {
    String::from(el)
}
