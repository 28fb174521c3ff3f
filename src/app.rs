//! Start-up and shutdown: database and migrations, the XMPP session, the actors, signals.
//!
//! [`run`] is what the binary calls and what tests can call in-process: it returns when the
//! `shutdown` future resolves (exit 0) or with the error that made the bot give up (exit
//! non-zero, so that a process supervisor restarts it).

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use futures::channel::oneshot;

use crate::actors::pool::{PoolSettings, RoomContextBase};
use crate::actors::supervisor::{Fatal, Shutdown, SupervisorActor};
use crate::config::Config;
use crate::lease::{self, LeaseError};
use crate::store::{Store, StoreError};
use crate::xmpp::XmppEvent;
use crate::xmpp::connection::{self, ConnectSettings};

/// Why the bot stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database could not be opened or migrated.
    #[error("database {url}")]
    Database {
        /// The URL, password redacted.
        url: String,
        /// What the database said.
        #[source]
        source: StoreError,
    },
    /// The server refused the bot's credentials.
    #[error("XMPP login as {jid} failed: {error} (check xmpp.jid and xmpp.password)")]
    LoginRefused {
        /// The account.
        jid: String,
        /// What the server said.
        error: String,
    },
    /// No session within `timeouts.connect_secs`.
    #[error("could not reach the XMPP server {server} within {deadline:?}{}",
        last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Unreachable {
        /// host:port.
        server: String,
        /// The deadline that passed.
        deadline: Duration,
        /// The last connection error seen.
        last_error: Option<String>,
    },
    /// The bot lost its XMPP session for good while running.
    #[error(transparent)]
    Fatal(#[from] Fatal),
    /// Another process manages this bot JID, or this process lost or could not renew its
    /// lease: it must not (or no longer) manage the JID's rooms.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The HTTP listener (`http.listen`) could not bind its address.
    #[error("cannot listen on {addr} (http.listen; set http.enabled = false to run without it)")]
    Http {
        /// The address from the configuration.
        addr: std::net::SocketAddr,
        /// What the system said (address in use, not an address of this host, ...).
        #[source]
        source: std::io::Error,
    },
}

/// Opens the database named in the config and brings its schema up to date.
pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    let url = &config.database.url;
    let wrap = |source| AppError::Database {
        url: crate::config::redact_url(url),
        source,
    };
    let store = Store::connect(url).await.map_err(wrap)?;
    store.migrate().await.map_err(wrap)?;
    Ok(store)
}

/// Runs the bot until `shutdown` resolves or it cannot go on.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    // Both tokio-xmpp and sqlx use rustls; name the crypto provider once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    log::info!("starting: {}", config.summary());
    let store = open_store(&config).await?;
    let mut shutdown = std::pin::pin!(shutdown);
    let metrics = crate::metrics::metrics();
    metrics.set_pool_target(config.pool.available, config.pool.max_rooms);
    if let Err(error) = metrics.start_counting_claims(&store).await {
        log::warn!("metrics: cannot read the event history; claims will not be counted: {error}");
    }
    // Up before the lease wait, so that /livez answers and /readyz says what is missing.
    // An address in use may be a second process with this very configuration: the lease
    // then says so better, so the bind is tried again once the lease is held.
    let mut http = match config.http.listen {
        Some(addr) => match start_http(addr, &config, &store) {
            Ok(listener) => Some(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                log::warn!(
                    "cannot listen on {addr} yet ({error}); trying again once the lease is held"
                );
                None
            }
            Err(source) => return Err(AppError::Http { addr, source }),
        },
        None => {
            log::info!("HTTP listener disabled (http.enabled = false)");
            None
        }
    };

    // One process per bot JID: take the lease before logging in (a second login with the
    // same full JID would kick the running bot's session) and before any room work. This
    // waits up to one ttl when the JID's previous holder was killed.
    let bot_jid = config.xmpp.jid.to_string();
    let lease = tokio::select! {
        () = &mut shutdown => {
            log::info!("shutdown requested while acquiring the lease on {bot_jid}");
            crate::notify::stopping();
            return Ok(());
        }
        acquired = lease::acquire(&store, &bot_jid, config.timeouts.lease) => acquired?,
    };
    metrics.set_lease_held(true);
    if let (None, Some(addr)) = (&http, config.http.listen) {
        match start_http(addr, &config, &store) {
            Ok(listener) => http = Some(listener),
            Err(source) => {
                metrics.set_lease_held(false);
                release(lease).await;
                return Err(AppError::Http { addr, source });
            }
        }
    }
    let _http = http;
    crate::notify::status(&format!(
        "lease on {bot_jid} held; connecting to the XMPP server"
    ));
    // Renewed from now on, during the connection wait too; when it can no longer be, the
    // bot stops at once without touching any room (they may be another process's now).
    let mut lease_lost = Box::pin(async {
        let lost = hold_lease(&lease).await;
        crate::metrics::metrics().set_lease_held(false);
        lost
    });

    let (xmpp, mut events) = connection::spawn(ConnectSettings {
        jid: config.xmpp_full_jid(),
        password: config.xmpp.password.clone(),
        host: config.xmpp.host.clone(),
        port: config.xmpp.port,
        tls: config.xmpp.tls,
        iq_timeout: config.timeouts.iq,
    });

    let server = format!("{}:{}", config.xmpp.server_host(), config.xmpp.port);
    let deadline = tokio::time::sleep(config.timeouts.connect);
    tokio::pin!(deadline);
    let mut last_error = None;
    // Ok(None): shutdown requested before the session was up.
    let connected = loop {
        tokio::select! {
            () = &mut shutdown => {
                log::info!("shutdown requested before the XMPP session was up");
                crate::notify::stopping();
                break Ok(None);
            }
            lost = &mut lease_lost => return Err(lost.into()),
            () = &mut deadline => {
                break Err(AppError::Unreachable { server, deadline: config.timeouts.connect, last_error });
            }
            event = events.next() => match event {
                Some(XmppEvent::Online { bound_jid, .. }) => break Ok(Some(bound_jid)),
                Some(XmppEvent::LoginFailed { error, fatal: true }) => {
                    break Err(AppError::LoginRefused { jid: config.xmpp.jid.to_string(), error });
                }
                Some(XmppEvent::LoginFailed { error, .. }) => {
                    log::warn!("cannot connect to {server} yet: {error}");
                    last_error = Some(error);
                }
                Some(_) => {}
                None => break Err(Fatal::StreamEnded.into()),
            },
        }
    };
    let bound = match connected {
        Ok(Some(bound)) => bound,
        // No room was touched yet: let the next start take the JID at once.
        other => {
            drop(lease_lost);
            release(lease).await;
            return other.map(drop);
        }
    };
    log::info!("XMPP session up as {bound}");
    metrics.set_session_up(true);

    let (fatal_tx, fatal_rx) = oneshot::channel();
    let supervisor = SupervisorActor::new(
        xmpp.clone(),
        events,
        store,
        config.xmpp.jid.clone(),
        PoolSettings {
            available: config.pool.available,
            max_rooms: config.pool.max_rooms,
            service: config.muc.service.clone(),
            room_prefix: config.muc.room_prefix.clone(),
            retry_max: config.timeouts.retry_max,
            check: config.pool.check,
            staff_claim: config.timeouts.staff_claim,
            client_claim: config.timeouts.client_claim,
        },
        RoomContextBase {
            xmpp,
            nick: config.xmpp.nick.clone(),
            max_chatters: config.muc.max_chatters,
            history_length: config.muc.history_length,
            join_timeout: config.timeouts.join,
            require_claims: config.muc.require_claims,
            rejoin_grace: config.timeouts.rejoin_grace,
            one_left: config.timeouts.one_left,
            room_ping: config.timeouts.room_ping,
        },
        fatal_tx,
    )
    .with_server_ping(config.timeouts.server_ping)
    .start();
    let notifier = actix_rt::spawn(crate::notify::supervise(
        supervisor.clone(),
        bot_jid.clone(),
    ));

    let result = tokio::select! {
        () = &mut shutdown => {
            log::info!("shutting down: closing unused rooms, flushing the database");
            crate::metrics::metrics().set_stopping();
            notifier.abort();
            crate::notify::stopping();
            let deadline = config.timeouts.shutdown;
            let done = supervisor.send(Shutdown { deadline });
            // The lease stays renewed while the rooms are closed.
            tokio::select! {
                finished = tokio::time::timeout(deadline + Duration::from_secs(1), done) => {
                    if finished.is_err() {
                        log::warn!("shutdown did not finish within {deadline:?}; exiting anyway");
                    }
                }
                lost = &mut lease_lost => return Err(lost.into()),
            }
            log::info!("stopped");
            Ok(())
        }
        fatal = fatal_rx => match fatal {
            Ok(fatal) => Err(fatal.into()),
            Err(_) => Err(Fatal::StreamEnded.into()),
        },
        // Lost or expired: return at once, without Shutdown (it would destroy rooms that may
        // be another process's now); the process exits 1 and the actors die with it.
        lost = &mut lease_lost => return Err(lost.into()),
    };
    // Clean stop, or the session is lost for good: this process manages no room any more,
    // so the next one (a restart) may take the JID at once instead of waiting a ttl.
    drop(lease_lost);
    release(lease).await;
    result
}

/// Keeps the lease renewed. When it expires because the database is unreachable, the bot
/// stays in its rooms (their writes wait in order) and keeps trying; once a renewal works
/// again nothing was lost. Only a lease another process took over ends the bot. The cost: in
/// a network partition where only this process cannot reach the database, another instance
/// may take the JID over while this one still acts on XMPP, until it learns of the takeover.
async fn hold_lease(lease: &lease::Lease) -> LeaseError {
    loop {
        match lease.keep_alive().await {
            LeaseError::Expired { .. } => {
                crate::metrics::metrics().set_lease_held(false);
                log::warn!(
                    "the lease on {} could not be renewed in time (database unreachable?); \
                     staying in the rooms and retrying",
                    lease.bot_jid()
                );
                loop {
                    tokio::time::sleep(lease.renew_interval()).await;
                    match lease.renew().await {
                        Ok(()) => {
                            crate::metrics::metrics().set_lease_held(true);
                            log::info!("the lease on {} is renewed again", lease.bot_jid());
                            break;
                        }
                        Err(LeaseError::Store(_)) => continue,
                        Err(other) => return other,
                    }
                }
            }
            other => return other,
        }
    }
}

/// Gives the lease up on the way out; a failure only costs the next start a ttl of waiting.
async fn release(lease: lease::Lease) {
    crate::metrics::metrics().set_lease_held(false);
    if let Err(err) = lease.release().await {
        log::warn!("could not release the lease: {err}");
    }
}

/// Starts the HTTP listener on `addr`; warns when it listens beyond loopback (the status
/// page shows nicks).
fn start_http(
    addr: std::net::SocketAddr,
    config: &Config,
    store: &Store,
) -> std::io::Result<crate::http::HttpListener> {
    let state = crate::http::HttpState {
        store: store.clone(),
        bot_jid: config.xmpp.jid.to_string(),
        target: config.pool.available,
        max_rooms: config.pool.max_rooms,
        refresh_secs: 10,
        main: actix_rt::Arbiter::current(),
    };
    let listener = crate::http::start(addr, state)?;
    if addr.ip().is_loopback() {
        log::info!(
            "HTTP listener on http://{}/ (metrics, probes, status page)",
            listener.addr
        );
    } else {
        log::warn!(
            "HTTP listener on http://{}/, beyond loopback: the status page shows nicks, so \
             keep this port behind a firewall or an authenticating proxy",
            listener.addr
        );
    }
    Ok(listener)
}
