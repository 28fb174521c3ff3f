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
//!
//! Layout: this file is the handle and the task; `login.rs` the connector, `iq.rs` the
//! requests in flight, `outbox.rs` the stanzas on their way out and the hold.

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

mod iq;
mod login;
mod outbox;
#[cfg(test)]
mod tests;

use iq::{Pending, PendingIqs, answer_pending, answer_pending_raw, bad_request};
use login::open_stream;
use outbox::{Outbox, STREAM_QUEUE_DEPTH, send_or_hold};

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
