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

    let (xmpp, mut events) = connection::spawn(ConnectSettings {
        jid: config.xmpp_full_jid(),
        password: config.xmpp.password.clone(),
        host: config.xmpp.host.clone(),
        port: config.xmpp.port,
        tls: config.xmpp.tls,
        iq_timeout: config.timeouts.iq,
    });

    let mut shutdown = std::pin::pin!(shutdown);
    let server = format!("{}:{}", config.xmpp.server_host(), config.xmpp.port);
    let deadline = tokio::time::sleep(config.timeouts.connect);
    tokio::pin!(deadline);
    let mut last_error = None;
    let bound = loop {
        tokio::select! {
            () = &mut shutdown => {
                log::info!("shutdown requested before the XMPP session was up");
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
        },
        fatal_tx,
    )
    .start();

    tokio::select! {
        () = &mut shutdown => {
            log::info!("shutting down: closing unused rooms, flushing the database");
            let deadline = config.timeouts.shutdown;
            let done = supervisor.send(Shutdown { deadline });
            if tokio::time::timeout(deadline + Duration::from_secs(1), done).await.is_err() {
                log::warn!("shutdown did not finish within {deadline:?}; exiting anyway");
            }
            log::info!("stopped");
            Ok(())
        }
        fatal = fatal_rx => match fatal {
            Ok(fatal) => Err(fatal.into()),
            Err(_) => Err(Fatal::StreamEnded.into()),
        },
    }
}
