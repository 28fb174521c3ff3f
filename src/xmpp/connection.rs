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

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use jid::{FullJid, Jid};
use minidom::Element;
use sasl::common::Credentials;
use tokio_xmpp::Stanza;
use tokio_xmpp::connect::{
    DnsConfig, ServerConnector, StartTlsServerConnector, TcpServerConnector,
};
use tokio_xmpp::stanzastream::{
    Connection, Event as StreamEvent, StanzaStream, StreamEvent as Lifecycle,
};
use tokio_xmpp::xmlstream::{StreamHeader, Timeouts};
use xmpp_parsers::iq::Iq;

use crate::config::TlsMode;

/// How to reach and log in to the XMPP server.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The bot's account and the resource it asks for.
    pub jid: FullJid,
    /// The account password.
    pub password: String,
    /// The server host to connect to (None: the JID's domain, with SRV lookup under TLS).
    pub host: Option<String>,
    /// The server port.
    pub port: u16,
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
    Suspended,
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
    /// A stanza for the bot (IQ responses to the bot's own requests are not reported here).
    Stanza(Box<Stanza>),
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
        condition: String,
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
    let stream = match settings.tls {
        TlsMode::None => {
            let dns = DnsConfig::no_srv(
                settings.host.as_deref().unwrap_or("127.0.0.1"),
                settings.port,
            );
            open_stream(TcpServerConnector::from(dns), &settings, event_tx.clone())
        }
        TlsMode::Required => {
            let dns = match &settings.host {
                Some(host) => DnsConfig::no_srv(host, settings.port),
                None => DnsConfig::srv_default_client(settings.jid.domain().as_str()),
            };
            open_stream(
                StartTlsServerConnector::from(dns),
                &settings,
                event_tx.clone(),
            )
        }
    };
    tokio::spawn(run(stream, command_rx, event_tx));
    (
        XmppHandle {
            commands: command_tx,
            iq_timeout: settings.iq_timeout,
        },
        event_rx,
    )
}

/// Builds the reconnecting stream with our own login loop as its connector.
fn open_stream<C: ServerConnector>(
    server: C,
    settings: &ConnectSettings,
    events: mpsc::UnboundedSender<XmppEvent>,
) -> StanzaStream {
    let jid = Jid::from(settings.jid.clone());
    let password = settings.password.clone();
    let connector = move |_location: Option<String>,
                          slot: tokio::sync::oneshot::Sender<Connection>| {
        let (server, jid, password, events) = (
            server.clone(),
            jid.clone(),
            password.clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match login(server.clone(), &jid, &password).await {
                    Ok(connection) => {
                        let _ = slot.send(connection);
                        return;
                    }
                    Err(error) => {
                        let fatal = matches!(error, tokio_xmpp::Error::Auth(_));
                        let _ = events.unbounded_send(XmppEvent::LoginFailed {
                            error: error.to_string(),
                            fatal,
                        });
                        if fatal {
                            return; // dropping the slot ends the stream for good
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    };
    StanzaStream::new(Box::new(connector), 64)
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

/// The task: forwards commands to the stream and events from it, answering IQs in flight.
async fn run(
    mut stream: StanzaStream,
    mut commands: mpsc::UnboundedReceiver<CommandBox>,
    events: mpsc::UnboundedSender<XmppEvent>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut close_done = None;
    loop {
        tokio::select! {
            command = commands.next() => match command.map(|c| c.0) {
                Some(Command::Send(stanza)) => {
                    drop(stream.send(stanza).await);
                }
                Some(Command::Iq { iq, reply }) => {
                    pending.retain(|_, p| !p.reply.is_canceled());
                    let (id, to) = match iq.as_ref() {
                        Iq::Get { id, to, .. } | Iq::Set { id, to, .. } => (id.clone(), to.clone()),
                        Iq::Result { id, to, .. } | Iq::Error { id, to, .. } => (id.clone(), to.clone()),
                    };
                    pending.insert(id, Pending { to, reply });
                    drop(stream.send(Box::new(Stanza::Iq(*iq))).await);
                }
                Some(Command::Close(done)) => {
                    close_done = Some(done);
                    break;
                }
                None => break,
            },
            event = stream.next() => match event {
                None => break,
                Some(StreamEvent::Stream(Lifecycle::Reset { bound_jid, .. })) => {
                    for (_, p) in pending.drain() {
                        let _ = p.reply.send(Err(IqError::Disconnected));
                    }
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
                    let _ = events.unbounded_send(XmppEvent::Suspended);
                }
                Some(StreamEvent::Stanza(Stanza::Iq(iq))) => {
                    if let Some(iq) = answer_pending(&mut pending, iq) {
                        let _ = events.unbounded_send(XmppEvent::Stanza(Box::new(Stanza::Iq(iq))));
                    }
                }
                Some(StreamEvent::Stanza(stanza)) => {
                    let _ = events.unbounded_send(XmppEvent::Stanza(Box::new(stanza)));
                }
            },
        }
    }
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(IqError::Disconnected));
    }
    stream.close().await;
    let _ = events.unbounded_send(XmppEvent::Closed);
    if let Some(done) = close_done {
        let _ = done.send(());
    }
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
                condition: super::muc::error_condition(&element)
                    .unwrap_or_else(|| "undefined-condition".to_owned()),
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
