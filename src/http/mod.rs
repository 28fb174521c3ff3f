//! The HTTP listener (`[http]`): Prometheus metrics, liveness and readiness probes, and a
//! status page for the helpline's support staff.
//!
//! - `/metrics`: the [`crate::metrics`] registry as OpenMetrics text, its database-derived
//!   gauges and claim counters refreshed first;
//! - `/livez`: 200 while the process can answer HTTP at all; it checks no dependency, so a
//!   database or XMPP outage never gets a healthy process killed;
//! - `/readyz`: 200 when the lease is held, the XMPP session is up, the database answers
//!   and recovery is done, 503 otherwise; the body is one line saying which;
//! - `/` and `/rooms/<id>`: the status page ([`status`]).
//!
//! Everything here reads: the store for the page, the metrics registry for the rest. The
//! listener never writes a room and never talks XMPP. It runs on actix-web because the bot
//! already runs on actix's runtime: one more system thread (one worker), no second runtime.

pub mod status;

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::metrics;
use crate::readiness::DATABASE_DEADLINE;
use crate::store::Store;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The database, for the status page and the database-derived metrics.
    pub store: Store,
    /// This bot's JID: the page and the gauges show its rooms only.
    pub bot_jid: String,
    /// `pool.available`, shown beside the ready rooms.
    pub target: u32,
    /// `pool.max_rooms`.
    pub max_rooms: u32,
    /// How often the page reloads itself.
    pub refresh_secs: u32,
    /// The bot's own runtime, where every database call of the handlers runs: the store's
    /// pooled connections then all belong to one runtime, the one that outlives the
    /// listener's worker (see [`on_main`]).
    pub main: actix_rt::ArbiterHandle,
}

/// Runs `work` on the bot's runtime ([`HttpState::main`]) and waits for its result;
/// `None` when that runtime is gone (the bot is stopping).
///
/// The listener's worker has a runtime of its own; a database connection opened there
/// would belong to it and break when it stops, under a write of the bot's.
pub async fn on_main<T, F>(state: &HttpState, work: F) -> Option<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (done, result) = futures::channel::oneshot::channel();
    let spawned = state.main.spawn(async move {
        let _ = done.send(work.await);
    });
    if !spawned {
        return None;
    }
    result.await.ok()
}

/// A running listener; stopped when dropped.
#[derive(Debug)]
pub struct HttpListener {
    handle: ServerHandle,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        // The stop command is sent at once; the returned future only waits for it.
        drop(self.handle.stop(false));
    }
}

/// Binds `listen` and starts serving on the current actix system.
///
/// # Errors
///
/// The address cannot be bound (in use, not an address of this host, no permission).
pub fn start(listen: SocketAddr, state: HttpState) -> std::io::Result<HttpListener> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics_text))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
            .route("/", web::get().to(status::overview))
            .route("/rooms/{id}", web::get().to(status::room))
            .default_service(web::to(not_found))
    })
    // Probes and a scrape now and then: one worker is plenty and keeps one thread.
    .workers(1)
    // The bot handles SIGTERM itself (closing rooms first).
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(HttpListener { handle, addr })
}

/// A plain-text answer that caches nowhere.
fn text(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

async fn not_found() -> HttpResponse {
    text(
        actix_web::http::StatusCode::NOT_FOUND,
        "not found: try /, /metrics, /livez or /readyz\n".to_owned(),
    )
}

async fn livez() -> HttpResponse {
    text(actix_web::http::StatusCode::OK, "alive\n".to_owned())
}

async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let store = state.store.clone();
    let checked = on_main(&state, async move {
        crate::readiness::not_ready(crate::readiness::readiness(), &store).await
    })
    .await
    .unwrap_or_else(|| Some("shutting down".to_owned()));
    match checked {
        None => text(
            actix_web::http::StatusCode::OK,
            "ready: lease held, XMPP session up, database answers, recovery done\n".to_owned(),
        ),
        Some(why) => text(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics_text(state: web::Data<HttpState>) -> HttpResponse {
    let metrics = metrics::metrics();
    let (store, bot) = (state.store.clone(), state.bot_jid.clone());
    let refreshed = on_main(&state, async move {
        tokio::time::timeout(DATABASE_DEADLINE, metrics.refresh(&store, &bot)).await
    })
    .await;
    match refreshed {
        None | Some(Ok(Ok(()))) => {}
        // The other metrics are still worth a scrape; the gauges keep their last values.
        Some(Ok(Err(error))) => log::warn!("metrics: cannot read the room counts: {error}"),
        Some(Err(_)) => {
            log::warn!("metrics: the database did not answer within {DATABASE_DEADLINE:?}")
        }
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, metrics::CONTENT_TYPE))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(metrics.encode())
}
