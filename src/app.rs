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
use xmpp_parsers::stanza_error::DefinedCondition;

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

/// How this process runs, beside the configuration file (command-line flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Wait as a hot standby while another process of the same JID is active, and take over
    /// when it stops, instead of exiting with "already managed".
    pub standby: bool,
}

/// Runs the bot until `shutdown` resolves or it cannot go on.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    run_with(config, RunOptions::default(), shutdown).await
}

/// [`run`] with options.
pub async fn run_with(
    config: Config,
    run: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
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

    // Each process binds a resource of its own: two processes of one JID (a standby, a
    // restart overlapping a dying process) never kick each other's session off, and a
    // process that finds the lease held can ask the server whether the holder's session
    // still exists. Logging in is harmless before the lease is held: no room is touched.
    let bot_jid = config.xmpp.jid.to_string();
    let resource = format!(
        "{}.{}",
        config.xmpp.resource,
        &crate::actors::room::random_token()[..8]
    );
    let full_jid = config
        .xmpp
        .jid
        .with_resource_str(&resource)
        .expect("a validated resource with base32 letters appended is a resource");
    let (xmpp, mut events) = connection::spawn(ConnectSettings {
        jid: full_jid,
        password: config.xmpp.password.clone(),
        servers: config.xmpp.servers.clone(),
        tls: config.xmpp.tls,
        iq_timeout: config.timeouts.iq,
    });

    let server = config.xmpp.servers_text();
    let deadline = tokio::time::sleep(config.timeouts.connect);
    tokio::pin!(deadline);
    let mut last_error = None;
    let bound = loop {
        tokio::select! {
            () = &mut shutdown => {
                log::info!("shutdown requested before the XMPP session was up");
                crate::systemd::stopping();
                xmpp.close(Duration::from_secs(3)).await;
                return Ok(());
            }
            () = &mut deadline => {
                return Err(AppError::Unreachable { server, deadline: config.timeouts.connect, last_error });
            }
            event = events.next() => match event {
                Some(XmppEvent::Online { bound_jid, .. }) => break bound_jid,
                Some(XmppEvent::LoginFailed { error, fatal: true }) => {
                    return Err(AppError::LoginRefused { jid: config.xmpp.jid.to_string(), error });
                }
                Some(XmppEvent::LoginFailed { error, .. }) => {
                    log::warn!("cannot connect to {server} yet: {error}");
                    last_error = Some(error);
                }
                Some(_) => {}
                None => return Err(Fatal::StreamEnded.into()),
            },
        }
    };
    log::info!("XMPP session up as {bound}");
    crate::readiness::readiness().set_session_up(true);

    // One process per bot JID, before any room work. A holder proved dead (its pid on this
    // host, or its XMPP session gone) is taken over at once; otherwise this waits up to one
    // ttl, or as long as the holder lives when this process is a standby.
    let probe_xmpp = xmpp.clone();
    let options = lease::AcquireOptions {
        standby: run.standby,
        probe: Some(Box::new(move |full: String| {
            let xmpp = probe_xmpp.clone();
            Box::pin(async move { probe_session(&xmpp, &full).await })
        })),
        xmpp_resource: Some(bound.resource().to_string()),
    };
    if run.standby {
        log::info!("standby: waiting for the lease on {bot_jid}");
    }
    let lease = {
        let acquire = lease::acquire_with(&store, &bot_jid, config.timeouts.lease, &options);
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    log::info!("shutdown requested while acquiring the lease on {bot_jid}");
                    crate::systemd::stopping();
                    xmpp.close(Duration::from_secs(3)).await;
                    return Ok(());
                }
                acquired = &mut acquire => break acquired?,
                // The session is kept while waiting; nothing else is done with it yet.
                event = events.next() => match event {
                    Some(XmppEvent::LoginFailed { error, fatal: true }) => {
                        return Err(AppError::LoginRefused { jid: config.xmpp.jid.to_string(), error });
                    }
                    None | Some(XmppEvent::Closed) => return Err(Fatal::StreamEnded.into()),
                    Some(_) => {}
                },
            }
        }
    };
    crate::readiness::readiness().set_lease_held(true);
    let lease = std::sync::Arc::new(lease);
    if let (None, Some(addr)) = (&http, config.http.listen) {
        match start_http(addr, &config, &store) {
            Ok(listener) => http = Some(listener),
            Err(source) => {
                release(&lease).await;
                xmpp.close(Duration::from_secs(3)).await;
                return Err(AppError::Http { addr, source });
            }
        }
    }
    let _http = http;
    crate::systemd::status(&format!("lease on {bot_jid} held; recovering the rooms"));
    // Renewed from now on; when it can no longer be, the bot stops at once without touching
    // any room (they may be another process's now).
    let held_xmpp = xmpp.clone();
    let mut lease_lost = Box::pin(async {
        let lost = hold_lease(&lease, &held_xmpp).await;
        crate::readiness::readiness().set_lease_held(false);
        lost
    });
    // The lease holder purges old personal data once a day; dropped (stopped) on every way
    // out of this function.
    let _daily_purge = crate::retention::spawn_daily(
        store.clone(),
        crate::retention::Purge::new(&config.retention, &config.logging),
    );

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
            creation_window: config.pool.creation_window,
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
            texts: config.texts.clone(),
            room_ping: config.timeouts.room_ping,
            owner_form: Default::default(),
        },
        fatal_tx,
    )
    .with_server_ping(config.timeouts.server_ping)
    .with_lease(lease.clone())
    .start();
    let notifier = actix_rt::spawn(crate::systemd::supervise(
        supervisor.clone(),
        bot_jid.clone(),
    ));

    let result = tokio::select! {
        () = &mut shutdown => {
            log::info!("shutting down: closing unused rooms, flushing the database");
            crate::readiness::readiness().set_stopping();
            notifier.abort();
            crate::systemd::stopping();
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
    release(&lease).await;
    result
}

/// Keeps the lease renewed. When it expires (the database unreachable for three quarters
/// of a ttl), another process may take the JID over at any moment, so the bot stops acting
/// on XMPP: every room action is held back in the connection task ([`XmppHandle::hold`];
/// the session itself stays up) while the rooms' writes wait in order and renewals go on.
/// Once a renewal works again, nobody took over: the held actions go out and nothing was
/// lost. A lease another process took over ends the bot without sending them.
///
/// [`XmppHandle::hold`]: crate::xmpp::XmppHandle::hold
async fn hold_lease(lease: &lease::Lease, xmpp: &crate::xmpp::XmppHandle) -> LeaseError {
    loop {
        match lease.keep_alive().await {
            LeaseError::Expired { .. } => {
                crate::readiness::readiness().set_lease_held(false);
                xmpp.hold(true);
                log::warn!(
                    "the lease on {} could not be renewed in time (database unreachable?); \
                     holding every room action back and retrying",
                    lease.bot_jid()
                );
                loop {
                    tokio::time::sleep(lease.renew_interval()).await;
                    match lease.renew().await {
                        Ok(()) => {
                            crate::readiness::readiness().set_lease_held(true);
                            xmpp.hold(false);
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

/// Asks the server whether the full JID `full` (a lease holder's session) exists: an XMPP
/// ping to it. An error saying there is no such session proves the holder gone; any answer
/// from the session (even "not implemented") shows it alive; silence proves nothing (a
/// session in stream-management hibernation queues the ping).
async fn probe_session(xmpp: &crate::xmpp::XmppHandle, full: &str) -> lease::SessionProbe {
    use crate::xmpp::IqError;
    let Ok(to) = jid::Jid::new(full) else {
        return lease::SessionProbe::Unknown;
    };
    let ping = minidom::Element::builder("ping", xmpp_parsers::ns::PING).build();
    match xmpp.get(to, ping).await {
        Ok(_) => lease::SessionProbe::Alive,
        Err(IqError::Refused { condition, .. })
            if matches!(
                condition.0,
                DefinedCondition::ServiceUnavailable
                    | DefinedCondition::ItemNotFound
                    | DefinedCondition::RecipientUnavailable
            ) =>
        {
            lease::SessionProbe::Gone
        }
        Err(IqError::Refused { .. }) => lease::SessionProbe::Alive,
        Err(_) => lease::SessionProbe::Unknown,
    }
}

/// Gives the lease up on the way out; a failure only costs the next start a ttl of waiting.
async fn release(lease: &lease::Lease) {
    crate::readiness::readiness().set_lease_held(false);
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
