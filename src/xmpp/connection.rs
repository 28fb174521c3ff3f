//! The XMPP connection task: one task owns the stream; everybody else talks to it through
//! channels.
//!
//! Why not `tokio_xmpp::Client`: its split receiver can lose a wake-up when sender and
//! receiver contend (a hang in about one run in six under actix), its `send_stanza` waits
//! for the stanza to be written while nobody reads, and its reconnect loop retries a wrong
//! password forever without telling anybody. So the task drives a
//! [`tokio_xmpp::stanzastream::StanzaStream`] directly (which still
//! reconnects and negotiates XEP-0198 stream management by itself), logs in through its own
//! connector so that every failed attempt is reported (an authentication failure is final),
//! and matches IQ responses to their requests itself, each with a deadline.
//!
//! The task never awaits a send (see `Outbox`): while the stream is disconnected and its
//! queues are full, it still reads, expires IQs and takes commands, so a reconnect is never
//! held up behind a send. Answers are matched by id in a hash map and expiry walks a
//! deadline queue, so the cost per IQ does not grow with the number in flight.
//!
//! A stanza that xmpp-parsers refuses arrives raw (tokio-xmpp is patched for this, see
//! `vendor/tokio-xmpp/PATCHED.md`) and is read for what the bot needs (`invalid_stanza`):
//! a presence goes on like any other, an answer still answers its request, and a request
//! gets `bad-request`. Presences reach the supervisor as raw elements
//! ([`XmppEvent::Presence`]), read leniently in [`crate::xmpp::muc`].

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use jid::{FullJid, Jid};
use minidom::Element;
use sasl::common::Credentials;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::connect::{
    DnsConfig, ServerConnector, StartTlsServerConnector, TcpServerConnector,
};
use tokio_xmpp::stanzastream::{
    Connection, Event as StreamEvent, StanzaStage, StanzaStream, StanzaToken,
    StreamEvent as Lifecycle,
};
use tokio_xmpp::xmlstream::{StreamHeader, Timeouts};
use xmpp_parsers::iq::Iq;

use super::condition::Condition;
use crate::backoff::Backoff;
use crate::config::{ServerAddress, TlsMode};

/// How to reach and log in to the XMPP server.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The bot's account and the resource it asks for.
    pub jid: FullJid,
    /// The account password.
    pub password: String,
    /// The servers to try, in order (never empty); a host of `None` is the JID's domain,
    /// with an SRV lookup under TLS.
    pub servers: Vec<ServerAddress>,
    /// Whether STARTTLS is required or plaintext (loopback only) is used.
    pub tls: TlsMode,
    /// Deadline for an answer to any IQ request.
    pub iq_timeout: Duration,
}

/// What the connection task reports.
#[derive(Debug)]
pub enum XmppEvent {
    /// A session is up. A session that is not `resumed` is a fresh one: presence must be
    /// sent again and every room rejoined; IQs in flight were answered with
    /// [`IqError::Disconnected`].
    Online {
        /// The full JID the server bound.
        bound_jid: FullJid,
        /// Whether XEP-0198 resumed the previous session without loss.
        resumed: bool,
    },
    /// The connection dropped; the stream reconnects by itself.
    Suspended {
        /// Whether the server offered XEP-0198 on this session, so that it may keep the
        /// session (and the bot in its rooms) until the stream resumes. Without it, the
        /// session is over: the bot is out of every room, and empty rooms are gone.
        resumable: bool,
    },
    /// The dropped connection's session was resumed (XEP-0198): nothing was lost, the rooms
    /// are as they were.
    Resumed,
    /// A login attempt failed. `fatal` failures (wrong credentials) are not retried.
    LoginFailed {
        /// What went wrong, for the log and the exit message.
        error: String,
        /// True when retrying cannot help.
        fatal: bool,
    },
    /// An IQ request to the bot or a message (IQ responses to the bot's own requests are not
    /// reported here, presences come as [`XmppEvent::Presence`]).
    Stanza(Box<Stanza>),
    /// A presence, as the raw element: also one that xmpp-parsers refuses for a payload
    /// the bot does not read (see [`crate::xmpp::muc::parse_room_presence`]), so that no
    /// person is hidden from the bot by a `<show/>` value.
    Presence(Box<Element>),
    /// The stream ended for good (closed by the bot, or failed fatally).
    Closed,
}

/// Why an IQ request got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqError {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered with an error.
    #[error("the server answered {condition}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// The defined condition (`item-not-found`, `forbidden`, ...).
        condition: Condition,
        /// The human text, if the server gave one.
        text: Option<String>,
    },
    /// The session ended before the answer came.
    #[error("the XMPP session ended before the answer came")]
    Disconnected,
}

/// Commands to the connection task.
enum Command {
    Send(Box<Stanza>),
    Iq {
        iq: Box<Iq>,
        reply: oneshot::Sender<Result<Option<Element>, IqError>>,
    },
    Close(oneshot::Sender<()>),
    /// Hold back (true) or release (false) what the bot does on XMPP; see
    /// [`XmppHandle::hold`].
    Hold(bool),
}

/// A cheap, cloneable handle to the connection task: send stanzas, make IQ requests.
#[derive(Debug, Clone)]
pub struct XmppHandle {
    commands: mpsc::UnboundedSender<CommandBox>,
    iq_timeout: Duration,
}

/// Wrapper so that `Command` needs no `Debug`.
struct CommandBox(Command);

impl std::fmt::Debug for CommandBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl XmppHandle {
    /// Queues a stanza for sending. Returns false when the connection task is gone.
    pub fn send(&self, stanza: impl Into<Stanza>) -> bool {
        self.commands
            .unbounded_send(CommandBox(Command::Send(Box::new(stanza.into()))))
            .is_ok()
    }

    /// Sends an IQ `get` and waits (bounded) for its result payload.
    pub async fn get(&self, to: Jid, payload: Element) -> Result<Option<Element>, IqError> {
        self.request(Iq::Get {
            from: None,
            to: Some(to),
            id: new_id(),
            payload,
        })
        .await
    }

    /// Sends an IQ `set` and waits (bounded) for its result payload.
    pub async fn set(&self, to: Jid, payload: Element) -> Result<Option<Element>, IqError> {
        self.request(Iq::Set {
            from: None,
            to: Some(to),
            id: new_id(),
            payload,
        })
        .await
    }

    async fn request(&self, iq: Iq) -> Result<Option<Element>, IqError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Iq {
            iq: Box::new(iq),
            reply,
        };
        if self.commands.unbounded_send(CommandBox(command)).is_err() {
            return Err(IqError::Disconnected);
        }
        match tokio::time::timeout(self.iq_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IqError::Disconnected),
            Err(_) => Err(IqError::Timeout(self.iq_timeout)),
        }
    }

    /// While held, stanzas that act on rooms or people wait in the connection task instead
    /// of being sent; releasing sends them in order (IQ requests whose requester gave up
    /// meanwhile are dropped). Answers to the server and pings to the server's own domain
    /// (the keepalive, session probes) still go out, so the session stays alive. The
    /// lease holds the bot while it cannot prove it still owns the JID.
    pub fn hold(&self, held: bool) {
        let _ = self
            .commands
            .unbounded_send(CommandBox(Command::Hold(held)));
    }

    /// Ends the stream cleanly (the server then sends unavailable for the bot in every room)
    /// and waits until it is closed, at most `deadline`.
    pub async fn close(&self, deadline: Duration) {
        let (done, closed) = oneshot::channel();
        if self
            .commands
            .unbounded_send(CommandBox(Command::Close(done)))
            .is_ok()
        {
            let _ = tokio::time::timeout(deadline, closed).await;
        }
    }
}

/// A random stanza id: unguessable, so that answers cannot be forged by a peer.
pub fn new_id() -> String {
    use rand::RngExt;
    format!("hb-{:016x}", rand::rng().random::<u64>())
}

/// Starts the connection task on the current runtime. Events arrive on the returned
/// receiver until [`XmppEvent::Closed`].
pub fn spawn(settings: ConnectSettings) -> (XmppHandle, mpsc::UnboundedReceiver<XmppEvent>) {
    let (command_tx, command_rx) = mpsc::unbounded();
    let (event_tx, event_rx) = mpsc::unbounded();
    let domain = settings.jid.domain().as_str();
    let stream = match settings.tls {
        TlsMode::None => {
            let servers = settings.servers.iter().map(|server| {
                let host = server.host.as_deref().unwrap_or("127.0.0.1");
                let dns = DnsConfig::no_srv(host, server.port);
                (server.name(domain), TcpServerConnector::from(dns))
            });
            open_stream(servers.collect(), &settings, event_tx.clone())
        }
        TlsMode::Required => {
            let servers = settings.servers.iter().map(|server| {
                let dns = match &server.host {
                    Some(host) => DnsConfig::no_srv(host, server.port),
                    None => DnsConfig::srv_default_client(domain),
                };
                (server.name(domain), StartTlsServerConnector::from(dns))
            });
            open_stream(servers.collect(), &settings, event_tx.clone())
        }
    };
    let domain = domain.to_owned();
    tokio::spawn(run(
        stream,
        command_rx,
        event_tx,
        settings.iq_timeout,
        domain,
    ));
    (
        XmppHandle {
            commands: command_tx,
            iq_timeout: settings.iq_timeout,
        },
        event_rx,
    )
}

/// Builds the reconnecting stream with our own login loop as its connector.
///
/// With several servers (the nodes of a cluster), every (re)connection starts with the one
/// that worked last and goes down the list from there; it waits (1 s, doubling up to 30 s)
/// only once every server has failed, so that losing a node costs one refused connection,
/// not a backoff.
fn open_stream<C: ServerConnector>(
    servers: Vec<(String, C)>,
    settings: &ConnectSettings,
    events: mpsc::UnboundedSender<XmppEvent>,
) -> StanzaStream {
    let jid = Jid::from(settings.jid.clone());
    let password = settings.password.clone();
    // The index of the server of the last session.
    let last_good = Arc::new(AtomicUsize::new(0));
    let connector = move |_location: Option<String>,
                          slot: tokio::sync::oneshot::Sender<Connection>| {
        let (servers, last_good, jid, password, events) = (
            servers.clone(),
            last_good.clone(),
            jid.clone(),
            password.clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let mut waits = Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).waits();
            loop {
                let first = last_good.load(Ordering::Relaxed);
                for step in 0..servers.len() {
                    let index = (first + step) % servers.len();
                    let (name, server) = &servers[index];
                    match login(server.clone(), &jid, &password).await {
                        Ok(connection) => {
                            if step > 0 {
                                log::warn!(
                                    "connected to {name}, after {step} server(s) of xmpp.servers \
                                     that did not answer"
                                );
                            }
                            last_good.store(index, Ordering::Relaxed);
                            let _ = slot.send(connection);
                            return;
                        }
                        Err(error) => {
                            let fatal = matches!(error, tokio_xmpp::Error::Auth(_));
                            let error = if servers.len() > 1 {
                                format!("{name}: {error}")
                            } else {
                                error.to_string()
                            };
                            let _ = events.unbounded_send(XmppEvent::LoginFailed { error, fatal });
                            if fatal {
                                return; // dropping the slot ends the stream for good
                            }
                        }
                    }
                }
                tokio::time::sleep(waits.next().expect("backoff waits never end")).await;
            }
        });
    };
    StanzaStream::new(Box::new(connector), STREAM_QUEUE_DEPTH)
}

/// Connects, authenticates and restarts the stream: a [`Connection`] ready for binding.
async fn login<C: ServerConnector>(
    server: C,
    jid: &Jid,
    password: &str,
) -> Result<Connection, tokio_xmpp::Error> {
    let timeouts = Timeouts::tight();
    let (pending, channel_binding) = server
        .connect(jid, xmpp_parsers::ns::JABBER_CLIENT, timeouts)
        .await?;
    let (features, stream) = pending.recv_features().await?;
    let username = jid.node().map(|n| n.as_str()).unwrap_or_default();
    let credentials = Credentials::default()
        .with_username(username)
        .with_password(password)
        .with_channel_binding(channel_binding);
    let stream = tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials).await?;
    let stream = stream
        .send_header(StreamHeader {
            to: Some(Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await?;
    let (features, stream) = stream.recv_features().await?;
    Ok(Connection {
        stream: stream.box_stream(),
        features,
        identity: jid.clone(),
    })
}

/// An IQ in flight: who it went to and where the answer goes.
struct Pending {
    to: Option<Jid>,
    reply: oneshot::Sender<Result<Option<Element>, IqError>>,
}

/// The IQs in flight: answers are matched by id in O(1), and expiry walks a deadline queue
/// from its oldest end, so neither a new IQ nor an answer scans the others.
///
/// Every IQ gets the same timeout, so deadlines are pushed in increasing order and the
/// queue is sorted by construction. An answered IQ leaves its deadline entry behind; it is
/// skipped (and dropped) when its time comes, which keeps every operation O(1) amortised.
struct PendingIqs {
    by_id: HashMap<String, Pending>,
    deadlines: VecDeque<(Instant, String)>,
    timeout: Duration,
}

impl PendingIqs {
    /// No IQ in flight; each will expire `timeout` after it was registered.
    fn new(timeout: Duration) -> PendingIqs {
        PendingIqs {
            by_id: HashMap::new(),
            deadlines: VecDeque::new(),
            timeout,
        }
    }

    /// Registers a request sent at `now`.
    fn insert(&mut self, id: String, pending: Pending, now: Instant) {
        self.deadlines.push_back((now + self.timeout, id.clone()));
        self.by_id.insert(id, pending);
    }

    /// Whether request `id` is still waited for.
    fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// When the oldest entry of the deadline queue falls due (None: nothing to expire).
    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    /// Answers [`IqError::Timeout`] to every request whose deadline is `now` or earlier, and
    /// forgets it; returns how many expired.
    fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some((at, _)) = self.deadlines.front() {
            if *at > now {
                break;
            }
            let (_, id) = self.deadlines.pop_front().expect("front exists");
            if let Some(waiting) = self.by_id.remove(&id) {
                let _ = waiting.reply.send(Err(IqError::Timeout(self.timeout)));
                expired += 1;
            }
        }
        expired
    }

    /// Answers [`IqError::Disconnected`] to every request (the session that would answer
    /// them is gone).
    fn fail_all(&mut self) {
        self.deadlines.clear();
        for (_, waiting) in self.by_id.drain() {
            let _ = waiting.reply.send(Err(IqError::Disconnected));
        }
    }

    /// How many requests wait for an answer.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// How many stanzas the stream's own queues hold (each direction). The [`Outbox`] hands a
/// stanza over as soon as the oldest one has left, so a modest depth does not slow a burst.
const STREAM_QUEUE_DEPTH: usize = 64;

/// Stanzas on their way into the [`StanzaStream`], which is never awaited.
///
/// The stream's transmit queue is bounded ([`STREAM_QUEUE_DEPTH`]) and its worker stops
/// draining it while disconnected; awaiting `send` there would stop the task from reading,
/// and with the event queue full as well the reconnect could stall. So a stanza is handed
/// over only when the queue surely has room: every accepted stanza's [`StanzaToken`] is
/// kept until it has left the queue (sent, failed or dropped), and the number of tokens
/// still queued bounds how full the queue can be. The rest waits here, in order; the task
/// waits on the oldest token, not on the stream.
struct Outbox {
    waiting: VecDeque<Box<Stanza>>,
    queued: VecDeque<StanzaToken>,
    depth: usize,
}

impl Outbox {
    /// An empty outbox for a stream whose transmit queue holds `depth` stanzas.
    fn new(depth: usize) -> Outbox {
        Outbox {
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            depth,
        }
    }

    /// Queues `stanza` behind the ones already waiting and hands over what fits.
    fn push(&mut self, stream: &StanzaStream, stanza: Box<Stanza>) {
        self.waiting.push_back(stanza);
        self.flush(stream);
    }

    /// Forgets the tokens of stanzas that have left the stream's queue.
    fn reap(&mut self) {
        while self
            .queued
            .front()
            .is_some_and(|token| token.state() != StanzaStage::Queued)
        {
            self.queued.pop_front();
        }
    }

    /// Hands waiting stanzas to the stream while its queue surely has room; never waits.
    fn flush(&mut self, stream: &StanzaStream) {
        self.reap();
        while self.queued.len() < self.depth {
            let Some(stanza) = self.waiting.pop_front() else {
                break;
            };
            // The queue has room (fewer tokens queued than its depth), so the send completes
            // on its first poll; `unconstrained` keeps tokio's cooperative budget from
            // deferring it.
            match tokio::task::unconstrained(stream.send(stanza)).now_or_never() {
                Some(token) => self.queued.push_back(token),
                None => log::error!("the XMPP stream refused a stanza despite room; dropped"),
            }
        }
    }

    /// Whether stanzas wait for room in the stream's queue.
    fn is_blocked(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Resolves once the oldest stanza in the stream's queue has left it (or never, when
    /// none is queued).
    async fn room_freed(&mut self) {
        match self.queued.front_mut() {
            Some(token) => {
                let _ = token.wait_for(StanzaStage::Sent).await;
                self.queued.pop_front();
            }
            None => std::future::pending().await,
        }
    }

    /// Drops the IQ requests not handed over yet: their requesters were already told
    /// [`IqError::Disconnected`], and a fresh session must not answer them.
    fn drop_iqs(&mut self) {
        self.waiting
            .retain(|stanza| !matches!(**stanza, Stanza::Iq(_)));
    }
}

/// Whether `stanza` goes out while the bot is held ([`XmppHandle::hold`]): answers (IQ
/// results and errors), and pings to a JID of the bot's own `domain` (the server, a session
/// probe). Anything addressed to a room waits.
fn may_pass_a_hold(stanza: &Stanza, domain: &str) -> bool {
    match stanza {
        Stanza::Iq(Iq::Result { .. } | Iq::Error { .. }) => true,
        Stanza::Iq(Iq::Get { to, payload, .. }) => {
            payload.is("ping", xmpp_parsers::ns::PING)
                && to.as_ref().is_none_or(|to| to.domain().as_str() == domain)
        }
        _ => false,
    }
}

/// Hands `stanza` to the outbox, or to the `held` queue while a hold is on and the stanza
/// may not pass it.
fn send_or_hold(
    outbox: &mut Outbox,
    stream: &StanzaStream,
    held: &mut Option<VecDeque<Box<Stanza>>>,
    stanza: Box<Stanza>,
    domain: &str,
) {
    match held {
        Some(queue) if !may_pass_a_hold(&stanza, domain) => queue.push_back(stanza),
        _ => outbox.push(stream, stanza),
    }
}

/// The task: forwards commands to the stream and events from it, answering IQs in flight.
///
/// It never awaits a send: stanzas go through the [`Outbox`], so reading (and with it
/// reconnecting, which reports through the event queue) goes on whatever the transmit queue
/// holds.
async fn run(
    mut stream: StanzaStream,
    mut commands: mpsc::UnboundedReceiver<CommandBox>,
    events: mpsc::UnboundedSender<XmppEvent>,
    iq_timeout: Duration,
    domain: String,
) {
    let mut pending = PendingIqs::new(iq_timeout);
    let mut outbox = Outbox::new(STREAM_QUEUE_DEPTH);
    // Stanzas held back while the bot may not act (`Command::Hold`), in order.
    let mut held: Option<VecDeque<Box<Stanza>>> = None;
    let mut close_done = None;
    // Whether the current session may survive a lost connection (XEP-0198 offered).
    let mut resumable = false;
    let expiry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(expiry);
    loop {
        let next_expiry = pending.next_deadline();
        if let Some(at) = next_expiry
            && expiry.deadline() != at
        {
            expiry.as_mut().reset(at);
        }
        tokio::select! {
            command = commands.next() => match command.map(|c| c.0) {
                Some(Command::Send(stanza)) => send_or_hold(&mut outbox, &stream, &mut held, stanza, &domain),
                Some(Command::Iq { iq, reply }) => {
                    let (id, to) = match iq.as_ref() {
                        Iq::Get { id, to, .. } | Iq::Set { id, to, .. } => (id.clone(), to.clone()),
                        Iq::Result { id, to, .. } | Iq::Error { id, to, .. } => (id.clone(), to.clone()),
                    };
                    pending.insert(id, Pending { to, reply }, Instant::now());
                    send_or_hold(&mut outbox, &stream, &mut held, Box::new(Stanza::Iq(*iq)), &domain);
                }
                Some(Command::Hold(true)) => {
                    if held.is_none() {
                        log::warn!("holding back every room action on XMPP until the lease is renewed");
                        held = Some(VecDeque::new());
                    }
                }
                Some(Command::Hold(false)) => {
                    if let Some(queue) = held.take() {
                        let mut sent = 0;
                        for stanza in queue {
                            // A request whose requester gave up (timed out) is not sent late.
                            if let Stanza::Iq(Iq::Get { id, .. } | Iq::Set { id, .. }) = stanza.as_ref()
                                && !pending.contains(id)
                            {
                                continue;
                            }
                            outbox.push(&stream, stanza);
                            sent += 1;
                        }
                        log::info!("lease renewed: {sent} held stanza(s) sent, room actions resume");
                    }
                }
                Some(Command::Close(done)) => {
                    close_done = Some(done);
                    break;
                }
                None => break,
            },
            () = outbox.room_freed(), if outbox.is_blocked() => outbox.flush(&stream),
            () = &mut expiry, if next_expiry.is_some() => {
                pending.expire(Instant::now());
            }
            event = stream.next() => match event {
                None => break,
                Some(StreamEvent::Stream(Lifecycle::Reset { bound_jid, features })) => {
                    resumable = features.stream_management.is_some();
                    pending.fail_all();
                    outbox.drop_iqs();
                    match bound_jid.try_into_full() {
                        Ok(bound_jid) => {
                            let _ = events.unbounded_send(XmppEvent::Online { bound_jid, resumed: false });
                        }
                        Err(jid) => log::error!("server bound a bare JID {jid}; ignoring the session"),
                    }
                }
                Some(StreamEvent::Stream(Lifecycle::Resumed)) => {
                    log::info!("XMPP stream resumed (XEP-0198): no rejoin needed");
                    let _ = events.unbounded_send(XmppEvent::Resumed);
                }
                Some(StreamEvent::Stream(Lifecycle::Suspended)) => {
                    let _ = events.unbounded_send(XmppEvent::Suspended { resumable });
                }
                Some(StreamEvent::Stanza(Stanza::Iq(iq))) => {
                    if let Some(iq) = answer_pending(&mut pending.by_id, iq) {
                        let _ = events.unbounded_send(XmppEvent::Stanza(Box::new(Stanza::Iq(iq))));
                    }
                }
                Some(StreamEvent::Stanza(Stanza::Presence(presence))) => {
                    let _ = events.unbounded_send(XmppEvent::Presence(Box::new(presence.into())));
                }
                Some(StreamEvent::Stanza(stanza)) => {
                    let _ = events.unbounded_send(XmppEvent::Stanza(Box::new(stanza)));
                }
                Some(StreamEvent::InvalidStanza { element, error }) => {
                    invalid_stanza(*element, &error, &mut pending.by_id, &mut outbox, &stream, &events);
                }
            },
        }
    }
    pending.fail_all();
    // What is still waiting for room goes out before the stream closes, where it can.
    outbox.flush(&stream);
    stream.close().await;
    let _ = events.unbounded_send(XmppEvent::Closed);
    if let Some(done) = close_done {
        let _ = done.send(());
    }
}

/// A stanza that xmpp-parsers refused (tokio-xmpp hands it on raw, see
/// `vendor/tokio-xmpp/PATCHED.md`), read for what the bot needs from it:
/// - a presence goes to the supervisor like any other: the bot reads only sender, type and
///   the muc#user element, so a payload it does not read never hides a person;
/// - an answer to one of the bot's requests answers it (a result with its first child, an
///   error with its condition), so that no request waits for its deadline and no room
///   acts on a timeout that was in truth an answer;
/// - a request to the bot is answered `bad-request` (RFC 6120 §8.3.3.1);
/// - a message is dropped: the bot reads no messages.
fn invalid_stanza(
    element: Element,
    error: &dyn std::fmt::Display,
    pending: &mut HashMap<String, Pending>,
    outbox: &mut Outbox,
    stream: &StanzaStream,
    events: &mpsc::UnboundedSender<XmppEvent>,
) {
    match element.name() {
        "presence" => {
            let _ = events.unbounded_send(XmppEvent::Presence(Box::new(element)));
        }
        "iq" => match element.attr("type") {
            Some("result" | "error") => answer_pending_raw(pending, &element),
            Some("get" | "set") => {
                log::debug!("IQ request the bot cannot read ({error}): answered bad-request");
                if let Some(reply) = bad_request(&element) {
                    outbox.push(stream, Box::new(Stanza::Iq(reply)));
                }
            }
            _ => log::debug!("IQ of no known type dropped ({error})"),
        },
        _ => log::debug!("unreadable {} dropped ({error})", element.name()),
    }
}

/// Hands a raw IQ answer (one that xmpp-parsers refused) to the request waiting for it,
/// under the same rules as [`answer_pending`]: matched by id, and only from the entity
/// asked.
fn answer_pending_raw(pending: &mut HashMap<String, Pending>, iq: &Element) {
    let Some(id) = iq.attr("id") else { return };
    let Some(waiting) = pending.get(id) else {
        return; // an answer to nothing of ours (late, or forged)
    };
    let from = iq.attr("from").map(Jid::new);
    match (&from, &waiting.to) {
        (Some(Ok(from)), Some(to)) if from != to => {
            log::warn!(
                "IQ answer {id} from {from} does not match the request's recipient; ignored"
            );
            return;
        }
        (Some(Err(_)), _) => {
            log::warn!("IQ answer {id} from an unreadable sender ignored");
            return;
        }
        _ => {}
    }
    let waiting = pending.remove(id).expect("checked above");
    let result = if iq.attr("type") == Some("error") {
        let error = iq.children().find(|c| c.name() == "error");
        Err(IqError::Refused {
            condition: Condition::of_stanza(iq),
            text: error
                .and_then(|e| e.children().find(|c| c.name() == "text"))
                .map(Element::text),
        })
    } else {
        Ok(iq.children().next().cloned())
    };
    let _ = waiting.reply.send(result);
}

/// The `bad-request` answer to a raw IQ request, if it has a readable sender and an id.
fn bad_request(request: &Element) -> Option<Iq> {
    use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
    let to = Jid::new(request.attr("from")?).ok()?;
    let id = request.attr("id")?.to_owned();
    Some(Iq::Error {
        from: None,
        to: Some(to),
        id,
        error: StanzaError::new(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "en",
            "helpim-bot cannot read this request",
        ),
        payload: None,
    })
}

/// Hands an IQ result or error to the request waiting for it; returns IQs that answer no
/// request of ours (requests to the bot, or forged answers from the wrong sender).
fn answer_pending(pending: &mut HashMap<String, Pending>, iq: Iq) -> Option<Iq> {
    let (id, from) = match &iq {
        Iq::Result { id, from, .. } | Iq::Error { id, from, .. } => (id, from),
        _ => return Some(iq),
    };
    let Some(waiting) = pending.get(id) else {
        return Some(iq);
    };
    // An answer must come from the entity asked (or our own server for requests without `to`).
    if from.is_some() && waiting.to.is_some() && from != &waiting.to {
        log::warn!("IQ answer {id} from {from:?} does not match the request's recipient; ignored");
        return None;
    }
    let waiting = pending.remove(id).expect("checked above");
    let result = match iq {
        Iq::Result { payload, .. } => Ok(payload),
        Iq::Error { error, .. } => {
            let element = Element::from(error);
            Err(IqError::Refused {
                condition: Condition::of(&element),
                text: element
                    .children()
                    .find(|c| c.name() == "text")
                    .map(Element::text),
            })
        }
        _ => unreachable!("only answers reach here"),
    };
    let _ = waiting.reply.send(result);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::stanza_error::DefinedCondition;

    fn stanza(xml: &str) -> Stanza {
        let element: Element = xml.parse().expect("XML");
        Stanza::try_from(element).expect("a stanza")
    }

    #[test]
    fn a_hold_lets_answers_and_pings_of_the_own_domain_through_and_nothing_for_rooms() {
        let passes = |xml: &str| may_pass_a_hold(&stanza(xml), "localhost");
        // The keepalive to the server, and a probe of a session of the bot's own JID.
        assert!(passes(
            "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        assert!(passes(
            "<iq xmlns='jabber:client' type='get' id='p2' to='bot@localhost/r.abc'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        // Answers to the server's own requests.
        assert!(passes(
            "<iq xmlns='jabber:client' type='result' id='s1' to='localhost'/>"
        ));
        // A self-ping in a room, a kick, a destroy, a message, a join: held.
        assert!(!passes(
            "<iq xmlns='jabber:client' type='get' id='p3' to='room@conference.localhost/HelpIM'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        assert!(!passes(
            "<iq xmlns='jabber:client' type='set' id='k1' to='room@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='x' role='none'/></query></iq>"
        ));
        assert!(!passes(
            "<message xmlns='jabber:client' type='groupchat' to='room@conference.localhost'><body>bye</body></message>"
        ));
        assert!(!passes(
            "<presence xmlns='jabber:client' to='room@conference.localhost/HelpIM'/>"
        ));
    }

    fn pending() -> (Pending, oneshot::Receiver<Result<Option<Element>, IqError>>) {
        let (reply, answer) = oneshot::channel();
        (Pending { to: None, reply }, answer)
    }

    fn result(id: &str) -> Iq {
        Iq::Result {
            from: None,
            to: None,
            id: id.to_owned(),
            payload: None,
        }
    }

    #[test]
    fn an_answer_xmpp_parsers_refuses_still_answers_its_request() {
        let raw = |xml: &str| -> Element { xml.parse().expect("XML") };
        let room: Jid = "room@conf.example".parse().unwrap();
        let mut iqs = PendingIqs::new(Duration::from_secs(5));
        let mut asked = |id: &str| {
            let (reply, answer) = oneshot::channel();
            let to = Some(room.clone());
            iqs.insert(id.into(), Pending { to, reply }, Instant::now());
            answer
        };
        let (mut refused, mut listed, mut forged) = (asked("k1"), asked("q1"), asked("f1"));
        // An error without the `type` RFC 6120 requires: xmpp-parsers refuses the stanza.
        let error = raw(
            "<iq xmlns='jabber:client' type='error' id='k1' from='room@conf.example'>
               <error><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error>
             </iq>",
        );
        assert!(
            Iq::try_from(error.clone()).is_err(),
            "xmpp-parsers refuses it"
        );
        answer_pending_raw(&mut iqs.by_id, &error);
        assert_eq!(
            refused.try_recv().unwrap(),
            Some(Err(IqError::Refused {
                condition: DefinedCondition::NotAllowed.into(),
                text: Some("no".into())
            }))
        );
        let result = raw(
            "<iq xmlns='jabber:client' type='result' id='q1' from='room@conf.example'>
               <query xmlns='http://jabber.org/protocol/muc#admin'/></iq>",
        );
        answer_pending_raw(&mut iqs.by_id, &result);
        let payload = listed.try_recv().unwrap().unwrap().unwrap().unwrap();
        assert!(payload.is("query", "http://jabber.org/protocol/muc#admin"));
        // From somebody else than the room asked: no answer, the request waits on.
        let wrong = raw("<iq xmlns='jabber:client' type='result' id='f1' from='x@example/y'/>");
        answer_pending_raw(&mut iqs.by_id, &wrong);
        assert_eq!(forged.try_recv().unwrap(), None);
        assert!(iqs.contains("f1"));
    }

    #[test]
    fn an_unreadable_request_is_answered_bad_request() {
        let request: Element =
            "<iq xmlns='jabber:client' type='get' id='r1' from='x@example/y'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>"
                .parse()
                .unwrap();
        let Some(Iq::Error { to, id, error, .. }) = bad_request(&request) else {
            panic!("no bad-request answer");
        };
        assert_eq!(to.map(|j| j.to_string()).as_deref(), Some("x@example/y"));
        assert_eq!(id, "r1");
        assert_eq!(
            error.defined_condition,
            xmpp_parsers::stanza_error::DefinedCondition::BadRequest
        );
        let anonymous: Element = "<iq xmlns='jabber:client' type='get' id='r2'/>"
            .parse()
            .unwrap();
        assert!(bad_request(&anonymous).is_none(), "nobody to answer");
    }

    #[test]
    fn answers_are_matched_by_id_and_expiry_skips_answered_requests() {
        let timeout = Duration::from_secs(5);
        let mut iqs = PendingIqs::new(timeout);
        let t0 = Instant::now();
        let (a, mut answer_a) = pending();
        let (b, mut answer_b) = pending();
        let (c, mut answer_c) = pending();
        iqs.insert("a".into(), a, t0);
        iqs.insert("b".into(), b, t0 + Duration::from_secs(1));
        iqs.insert("c".into(), c, t0 + Duration::from_secs(2));
        assert_eq!(iqs.next_deadline(), Some(t0 + timeout));

        assert!(answer_pending(&mut iqs.by_id, result("b")).is_none());
        assert_eq!(answer_b.try_recv().unwrap(), Some(Ok(None)));
        assert!(
            answer_pending(&mut iqs.by_id, result("zz")).is_some(),
            "an answer to no request of ours is passed on"
        );

        assert_eq!(iqs.expire(t0 + Duration::from_millis(4_999)), 0);
        assert_eq!(
            iqs.expire(t0 + Duration::from_secs(6)),
            1,
            "a expires, b was answered"
        );
        assert_eq!(
            answer_a.try_recv().unwrap(),
            Some(Err(IqError::Timeout(timeout)))
        );
        assert_eq!(iqs.next_deadline(), Some(t0 + Duration::from_secs(7)));
        assert_eq!(iqs.len(), 1);

        iqs.fail_all();
        assert_eq!(
            answer_c.try_recv().unwrap(),
            Some(Err(IqError::Disconnected))
        );
        assert_eq!(iqs.next_deadline(), None);
    }

    #[test]
    fn many_requests_expire_in_order_without_rescanning() {
        let timeout = Duration::from_secs(1);
        let mut iqs = PendingIqs::new(timeout);
        let t0 = Instant::now();
        let mut answers = Vec::new();
        for n in 0..10_000u64 {
            let (p, answer) = pending();
            iqs.insert(format!("id{n}"), p, t0 + Duration::from_micros(n));
            answers.push(answer);
        }
        assert_eq!(
            iqs.expire(t0 + timeout + Duration::from_micros(4_999)),
            5_000
        );
        assert_eq!(iqs.len(), 5_000);
        assert!(matches!(
            answers[4_999].try_recv(),
            Ok(Some(Err(IqError::Timeout(_))))
        ));
        assert!(matches!(answers[5_000].try_recv(), Ok(None)), "not yet due");
    }

    /// A stream that never connects: its worker never drains the transmit queue, as during
    /// a disconnect.
    fn disconnected_stream() -> StanzaStream {
        let mut held = Vec::new();
        StanzaStream::new(Box::new(move |_, slot| held.push(slot)), STREAM_QUEUE_DEPTH)
    }

    #[tokio::test]
    async fn a_full_transmit_queue_never_blocks_the_task() {
        let (command_tx, command_rx) = mpsc::unbounded();
        let (event_tx, _event_rx) = mpsc::unbounded();
        let timeout = Duration::from_millis(200);
        let task = tokio::spawn(run(
            disconnected_stream(),
            command_rx,
            event_tx,
            timeout,
            "localhost".into(),
        ));

        // Four times what the stream's queue takes, while it cannot send anything.
        for n in 0..4 * STREAM_QUEUE_DEPTH {
            let presence = xmpp_parsers::presence::Presence::available()
                .with_to(Jid::new(&format!("room{n}@conference.localhost/bot")).unwrap());
            command_tx
                .unbounded_send(CommandBox(Command::Send(Box::new(presence.into()))))
                .unwrap();
        }
        // The task still takes commands and expires IQs itself (no timeout on this side).
        let (reply, answer) = oneshot::channel();
        let iq = Iq::Get {
            from: None,
            to: Some(Jid::new("conference.localhost").unwrap()),
            id: new_id(),
            payload: Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
        };
        command_tx
            .unbounded_send(CommandBox(Command::Iq {
                iq: Box::new(iq),
                reply,
            }))
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("the task answered the IQ: it is not stuck in a send");
        assert_eq!(answered.unwrap(), Err(IqError::Timeout(timeout)));
        assert!(!task.is_finished());
        task.abort();
    }
}
