//! Logging in: our own connector for the stream, so that every failed attempt is reported
//! (an authentication failure is final), trying the servers in turn.

use super::*;

/// Builds the reconnecting stream with our own login loop as its connector.
///
/// With several servers (the nodes of a cluster), every (re)connection starts with the one
/// that worked last and goes down the list from there; it waits (1 s, doubling up to 30 s)
/// only once every server has failed, so that losing a node costs one refused connection,
/// not a backoff.
pub(super) fn open_stream<C: ServerConnector>(
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
pub(super) async fn login<C: ServerConnector>(
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
