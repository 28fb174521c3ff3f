//! The limit the bot is measured against: a minimal raw client that creates rooms with the
//! same stanzas as the bot (join, one fetch of the owner form per session, one submit per
//! room, one disco#info check) through the same window, with no actors, no database and no
//! logging. Whatever the bot spends beyond this client is the bot's own cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::oneshot;
use helpim_bot::config::{ServerAddress, TlsMode};
use helpim_bot::xmpp::connection::{self, ConnectSettings, XmppEvent};
use helpim_bot::xmpp::form::{self, OfferedForm, RoomSettings};
use helpim_bot::xmpp::muc::{self, MucStatus, RoomPresence};
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::Semaphore;
use xmpp_parsers::presence::Presence;

use crate::common::server::XmppServer;

/// What one raw fill measured.
pub struct RawFill {
    /// From the session being up to the first room verified.
    pub first: Duration,
    /// From the session being up to the last room verified.
    pub last: Duration,
    /// CPU (user + system) of this process between the first room and the last, in ms.
    pub client_cpu_ms: f64,
    /// CPU of the server process over the same span, in ms.
    pub server_cpu_ms: f64,
}

/// Who waits for the self-presence of which room.
type Waiters = Arc<Mutex<HashMap<BareJid, oneshot::Sender<RoomPresence>>>>;

/// Creates `rooms` rooms on `server` (process `server_pid`) as account `user`, at most
/// `window` at once, as the bot does; panics on any failure (a benchmark with a refused
/// room measures nothing).
pub async fn fill(
    server: &dyn XmppServer,
    server_pid: u32,
    user: &str,
    rooms: usize,
    window: usize,
) -> RawFill {
    let password = "raw-pw";
    server.register(user, password);
    let jid: FullJid = format!("{}/raw", server.jid(user))
        .parse()
        .expect("raw jid");
    let (xmpp, mut events) = connection::spawn(ConnectSettings {
        jid,
        password: password.to_owned(),
        servers: vec![ServerAddress {
            host: Some("127.0.0.1".to_owned()),
            port: server.port(),
        }],
        tls: TlsMode::None,
        iq_timeout: Duration::from_secs(60),
    });
    loop {
        match events.next().await.expect("the raw client's events") {
            XmppEvent::Online { .. } => break,
            XmppEvent::LoginFailed { error, .. } => panic!("raw client login: {error}"),
            _ => {}
        }
    }
    let up = Instant::now();
    xmpp.send(Presence::available());
    let waiters: Waiters = Arc::default();
    let dispatch = {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let XmppEvent::Presence(presence) = event else {
                    continue;
                };
                let Ok(seen) = muc::parse_room_presence(&presence) else {
                    continue;
                };
                let error = matches!(seen.kind, muc::PresenceKind::Error { .. });
                if seen.is_self() || error {
                    let waiter = waiters.lock().unwrap().remove(&seen.room);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(seen);
                    }
                }
            }
        })
    };
    let window = Arc::new(Semaphore::new(window));
    let offered: Arc<tokio::sync::OnceCell<OfferedForm>> = Arc::default();
    let service = server.muc_domain().to_owned();
    let mut tasks = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let (xmpp, window, offered, waiters) = (
            xmpp.clone(),
            window.clone(),
            offered.clone(),
            waiters.clone(),
        );
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = window.acquire_owned().await.expect("window");
            let room: BareJid =
                format!("raw-{}@{service}", helpim_bot::actors::room::random_token())
                    .parse()
                    .expect("room jid");
            let password = helpim_bot::actors::room::random_token();
            let (tx, rx) = oneshot::channel();
            waiters.lock().unwrap().insert(room.clone(), tx);
            xmpp.send(muc::join(&room, "raw", Some(&password)));
            let joined = rx.await.expect("a self-presence");
            assert!(
                joined.has(MucStatus::RoomCreated),
                "raw join of {room}: {joined:?}"
            );
            let to = Jid::from(room.clone());
            let offered = offered
                .get_or_init(async || {
                    let query = xmpp
                        .get(to.clone(), muc::owner_query())
                        .await
                        .expect("owner form")
                        .expect("a form");
                    form::parse_offered(&query).expect("a readable form")
                })
                .await;
            let settings = RoomSettings {
                password,
                history_length: 0,
                max_users: 3,
                lang: "en",
            };
            xmpp.set(to.clone(), form::submit(offered, &settings).expect("form"))
                .await
                .expect("submit");
            let info = xmpp
                .get(to, Element::builder("query", form::NS_DISCO_INFO).build())
                .await
                .expect("disco#info")
                .expect("an answer");
            form::verify_features(&info).expect("the room is configured");
            Instant::now()
        }));
    }
    let mut done = Vec::with_capacity(rooms);
    let mut at_first = None;
    for task in tasks {
        let at = task.await.expect("a raw room task");
        done.push(at);
        if at_first.is_none() {
            at_first = Some((
                crate::servers::cpu_ms(std::process::id()),
                crate::servers::cpu_ms(server_pid),
            ));
        }
    }
    let (client_end, server_end) = (
        crate::servers::cpu_ms(std::process::id()),
        crate::servers::cpu_ms(server_pid),
    );
    let (client_start, server_start) = at_first.expect("a first room");
    xmpp.close(Duration::from_secs(5)).await;
    dispatch.abort();
    RawFill {
        first: *done.iter().min().expect("rooms") - up,
        last: *done.iter().max().expect("rooms") - up,
        client_cpu_ms: client_end - client_start,
        server_cpu_ms: server_end - server_start,
    }
}
