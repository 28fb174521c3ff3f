//! Raw TOML configuration → validated settings.
//!
//! The bot reads one TOML file at start-up. Reading happens in two steps, so that the rest
//! of the program never sees a half-checked value:
//!
//! 1. the file is deserialized into private *raw* structs that mirror the file exactly:
//!    every key is optional and unknown keys are refused (`deny_unknown_fields`), so a typo
//!    is reported instead of being silently ignored;
//! 2. the raw values, plus the environment overrides, are validated and turned into the
//!    public, typed [`Config`]: JIDs are parsed, defaults are filled in, durations are
//!    [`Duration`]s, the database URL is normalised.
//!
//! Every failure is one [`ConfigError`] whose `Display` is a single line naming the file, the
//! key and the problem, e.g. `config/bot.toml: pool.max_rooms: must be at least
//! pool.available (5), got 3`, because an operator reads it in a service log.
//!
//! Two environment variables override the file, so that secrets need not be written in it:
//! [`PASSWORD_ENV`] (`xmpp.password`) and [`DATABASE_URL_ENV`] (`database.url`). An empty
//! variable counts as unset.

//!
//! Layout: this file holds the settings ([`Config`] and its sections), their defaults and
//! the one error type; `raw.rs` the file as written (serde); `locate.rs` turns a TOML error
//! into one line with its position and section; `validate.rs` checks the raw values and
//! builds the settings.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jid::{BareJid, FullJid, Jid};
use log::LevelFilter;
use serde::Deserialize;

/// Environment variable that provides (or overrides) `xmpp.password`, so the password can
/// stay out of the configuration file.
pub const PASSWORD_ENV: &str = "HELPIM_XMPP_PASSWORD";

/// Environment variable that overrides `database.url`, so a URL with credentials can stay
/// out of the configuration file.
pub const DATABASE_URL_ENV: &str = "HELPIM_DATABASE_URL";

const DEFAULT_RESOURCE: &str = "helpim-bot";
const DEFAULT_NICK: &str = "HelpIM";
const DEFAULT_PORT: u16 = 5222;
const DEFAULT_ROOM_PREFIX: &str = "helpim-";
const DEFAULT_MAX_CHATTERS: u32 = 2;
const DEFAULT_HISTORY_LENGTH: u32 = 0;
const DEFAULT_POOL_AVAILABLE: u32 = 3;
const DEFAULT_POOL_MAX_ROOMS: u32 = 20;
const DEFAULT_DATABASE_URL: &str = "sqlite://helpim-bot.sqlite?mode=rwc";
const DEFAULT_CONNECT_SECS: u64 = 30;
const DEFAULT_IQ_SECS: u64 = 15;
const DEFAULT_JOIN_SECS: u64 = 15;
const DEFAULT_SHUTDOWN_SECS: u64 = 15;
const DEFAULT_RETRY_MAX_SECS: u64 = 60;
const DEFAULT_POOL_CHECK_SECS: u64 = 2;
/// Rooms entered at once: enough to keep a server's pipeline busy, few enough that a stock
/// Prosody (`muc_room_cache_size` 100) never evicts a room that is being set up.
const DEFAULT_POOL_CREATION_WINDOW: u32 = 16;
const DEFAULT_STAFF_CLAIM_SECS: u64 = 120;
const DEFAULT_CLIENT_CLAIM_SECS: u64 = 60;
const DEFAULT_REJOIN_GRACE_SECS: u64 = 60;
const DEFAULT_ONE_LEFT_SECS: u64 = 300;
const DEFAULT_SERVER_PING_SECS: u64 = 60;
const DEFAULT_ROOM_PING_SECS: u64 = 300;
const DEFAULT_LEASE_SECS: u64 = 30;
/// Default of `retention.personal_data_days`: a month, long enough for a helpline to follow
/// up on a chat, short enough that nicks and JIDs do not pile up.
const DEFAULT_PERSONAL_DATA_DAYS: u32 = 30;
/// The longest retention period accepted (100 years): beyond it, "never" is meant, and a
/// bound keeps the cut-off date computable.
const MAX_RETENTION_DAYS: u32 = 36_500;
/// Where the HTTP listener (metrics, probes, status page) listens unless told otherwise:
/// loopback only, because the status page shows nicks.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";

/// Longest accepted `muc.room_prefix`: room names are the prefix plus a random suffix and
/// must stay short, valid JID localparts.
const MAX_ROOM_PREFIX_LEN: usize = 32;
/// Most people a room may hold: the helpline is one-to-one; more than this is a typo.
const MAX_MAX_CHATTERS: u32 = 50;
/// Most history messages the server may replay to newcomers.
const MAX_HISTORY_LENGTH: u32 = 1000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the configuration could not be loaded; `Display` is one line naming the file, and for
/// a bad value the key, so an operator can fix it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not valid TOML, or has an unknown key, or a value of the wrong type.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file that was being parsed.
        path: PathBuf,
        /// toml's description with line and column (and, for an unknown key, the key and
        /// its section), on one line.
        message: String,
    },
    /// A value parsed but is not acceptable (or a required value is missing).
    #[error("{}: {key}: {problem}", path.display())]
    Invalid {
        /// The file the value came from (also for values taken from the environment, which
        /// the problem then mentions).
        path: PathBuf,
        /// The dotted key, `section.key`, e.g. `pool.max_rooms`.
        key: String,
        /// What is wrong and, where useful, what is expected.
        problem: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// The validated configuration: every value has been checked and defaulted, so the rest of
/// the bot uses it without further checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How the bot logs in to the XMPP server.
    pub xmpp: XmppConfig,
    /// Where and how the chat rooms are created.
    pub muc: MucConfig,
    /// How many rooms are kept ready.
    pub pool: PoolConfig,
    /// Where rooms are recorded for the web application.
    pub database: DatabaseConfig,
    /// What is logged, and where room transcripts go.
    pub logging: LoggingConfig,
    /// Deadlines, so that nothing waits forever on the server.
    pub timeouts: TimeoutConfig,
    /// How long personal data and closed rooms are kept (`[retention]`).
    pub retention: RetentionConfig,
    /// The HTTP listener for metrics, probes and the status page.
    pub http: HttpConfig,
    /// The words people in rooms read (`[texts]`).
    pub texts: crate::texts::Texts,
    /// The file this configuration was read from, for messages.
    pub source: PathBuf,
}

/// The bot's XMPP account and how to reach its server (`[xmpp]`).
///
/// `Debug` hides the password, so the struct can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct XmppConfig {
    /// The bot's account, `user@domain` (never a bare domain, never with a resource).
    pub jid: BareJid,
    /// The account's password (from the file or from [`PASSWORD_ENV`]); never empty.
    pub password: String,
    /// The resource the bot binds; checked to be a valid JID resourcepart.
    pub resource: String,
    /// The nickname the bot uses inside rooms; a valid resourcepart without `/`.
    pub nick: String,
    /// The servers to connect to, in order (never empty): `xmpp.servers`, or the one of
    /// `xmpp.host` and `xmpp.port`. The bot stays with the one that worked last and moves to
    /// the next when it cannot connect (the nodes of one cluster).
    pub servers: Vec<ServerAddress>,
    /// Whether the connection must be encrypted.
    pub tls: TlsMode,
}

/// One XMPP server the bot may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// The host name or IP address (IPv6 without brackets); `None`: the JID's domain, with
    /// an SRV lookup under TLS (`xmpp.host` absent).
    pub host: Option<String>,
    /// The server's client port (never 0).
    pub port: u16,
}

impl ServerAddress {
    /// The server as the logs name it: `host:port` (`[v6]:port`), with the JID's `domain`
    /// when it has no host.
    pub fn name(&self, domain: &str) -> String {
        let host = self.host.as_deref().unwrap_or(domain);
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Parses one `xmpp.servers` entry, `"host:port"` (IPv6 in brackets, `"[::1]:5222"`);
    /// the error is the problem, without the key.
    fn parse(text: &str) -> Result<ServerAddress, String> {
        let bad = || {
            format!(
                "each entry must be \"host:port\" (an IPv6 address in brackets, \"[::1]:5222\"), \
                 got {text:?}"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains(['[', ']']) {
            return Err(bad());
        }
        match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(port) => Ok(ServerAddress {
                host: Some(host.to_owned()),
                port,
            }),
        }
    }
}

/// Whether the client connection is encrypted (`xmpp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// STARTTLS is required; the only choice for a real server (`"required"`).
    #[default]
    Required,
    /// Plain TCP (`"none"`); accepted only for a loopback server, for local testing.
    None,
}

/// Where the rooms live and how they are configured (`[muc]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MucConfig {
    /// The MUC service, a domain only, e.g. `conference.example.org`.
    pub service: BareJid,
    /// The start of every room name: 1–32 characters from `[a-z0-9._-]`.
    pub room_prefix: String,
    /// Most occupants a room admits, the bot excluded (2..=50).
    pub max_chatters: u32,
    /// How many past messages the server replays to someone entering (0..=1000).
    pub history_length: u32,
    /// Whether a person may enter only with an open claim for their role (staff into an
    /// `available` room, client into a `staff_waiting` room); others are kicked. Default
    /// true; false for web applications that do not claim.
    pub require_claims: bool,
}

/// The size of the room pool (`[pool]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// How many unused rooms are kept ready for staff (at least 1).
    pub available: u32,
    /// Most open rooms at any time, all states together (at least `available`).
    pub max_rooms: u32,
    /// `check_secs`: how often the pool recounts (claims are made by the web application
    /// directly in the database) and releases expired claims.
    pub check: Duration,
    /// Most rooms being entered at once, creations and rejoins together (at least 1): a
    /// large pool becomes a queue the server works through instead of a flood.
    pub creation_window: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            available: DEFAULT_POOL_AVAILABLE,
            max_rooms: DEFAULT_POOL_MAX_ROOMS,
            check: Duration::from_secs(DEFAULT_POOL_CHECK_SECS),
            creation_window: DEFAULT_POOL_CREATION_WINDOW,
        }
    }
}

/// The database shared with the web application (`[database]`).
///
/// `Debug` redacts the URL's password, so the struct can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The normalised connection URL: `mariadb://` became `mysql://`, and a SQLite file URL
    /// has a `mode=` (`mode=rwc` added when absent). May contain a password: log it only
    /// through [`redact_url`].
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.to_owned(),
        }
    }
}

/// What the bot logs (`[logging]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// The most detailed log level written.
    pub level: LevelFilter,
    /// Where room logs are written; the directory exists (it is created at load time).
    pub room_dir: Option<PathBuf>,
    /// How lines on standard error are written.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: LevelFilter::Info,
            room_dir: None,
            format: LogFormat::Text,
        }
    }
}

/// How log lines on standard error are written (`logging.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-25T15:00:00.123Z INFO  room=<jid> message`: for people.
    #[default]
    Text,
    /// One JSON object per line, with `room` a field of its own: for log shippers.
    Json,
}

/// The HTTP listener (`[http]`): `/metrics`, `/livez`, `/readyz` and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen; `None` when `http.enabled = false`.
    pub listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(DEFAULT_HTTP_LISTEN.parse().expect("a valid address")),
        }
    }
}

/// How long the history keeps what identifies people (`[retention]`), for the purge
/// ([`crate::retention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `personal_data_days`: rooms closed longer ago than this lose their nicks, JIDs,
    /// claimants and event details, and room log files untouched for this long are deleted.
    pub personal_data_days: u32,
    /// `delete_days`: rooms closed longer ago than this are deleted with their events;
    /// `None` (the key left out) never deletes. At least `personal_data_days`.
    pub delete_days: Option<u32>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            personal_data_days: DEFAULT_PERSONAL_DATA_DAYS,
            delete_days: None,
        }
    }
}

/// Deadlines (`[timeouts]`, in whole seconds in the file; each at least one second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// `connect_secs`: deadline to be online (connected, authenticated, bound).
    pub connect: Duration,
    /// `iq_secs`: deadline for any answer from the server.
    pub iq: Duration,
    /// `join_secs`: deadline for entering a room.
    pub join: Duration,
    /// `shutdown_secs`: bound on a clean exit (destroying unused rooms, closing the stream).
    pub shutdown: Duration,
    /// `retry_max_secs`: cap of the exponential backoff between retries.
    pub retry_max: Duration,
    /// `staff_claim_secs`: a staff claim nobody used within this is released.
    pub staff_claim: Duration,
    /// `client_claim_secs`: a client claim nobody used within this is released.
    pub client_claim: Duration,
    /// `rejoin_grace_secs`: how long a person who left a chat may come back with the same
    /// nick and be the same person (0: never).
    pub rejoin_grace: Duration,
    /// `one_left_secs`: how long one person may stay alone after the other left before the
    /// bot ends the chat; `None` (0 in the file) never ends it.
    pub one_left: Option<Duration>,
    /// `server_ping_secs`: interval of XEP-0199 pings to the server; `None` (0): none.
    pub server_ping: Option<Duration>,
    /// `room_ping_secs`: interval of XEP-0410 self-pings in every room, to notice a room the
    /// bot silently dropped out of; `None` (0): none.
    pub room_ping: Option<Duration>,
    /// `lease_secs`: the time-to-live of this process's lease on its bot JID (renewed every
    /// third of it); a killed process's successor waits this long before taking over.
    pub lease: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect: Duration::from_secs(DEFAULT_CONNECT_SECS),
            iq: Duration::from_secs(DEFAULT_IQ_SECS),
            join: Duration::from_secs(DEFAULT_JOIN_SECS),
            shutdown: Duration::from_secs(DEFAULT_SHUTDOWN_SECS),
            retry_max: Duration::from_secs(DEFAULT_RETRY_MAX_SECS),
            staff_claim: Duration::from_secs(DEFAULT_STAFF_CLAIM_SECS),
            client_claim: Duration::from_secs(DEFAULT_CLIENT_CLAIM_SECS),
            rejoin_grace: Duration::from_secs(DEFAULT_REJOIN_GRACE_SECS),
            one_left: Some(Duration::from_secs(DEFAULT_ONE_LEFT_SECS)),
            server_ping: Some(Duration::from_secs(DEFAULT_SERVER_PING_SECS)),
            room_ping: Some(Duration::from_secs(DEFAULT_ROOM_PING_SECS)),
            lease: Duration::from_secs(DEFAULT_LEASE_SECS),
        }
    }
}

impl TlsMode {
    /// The spelling used in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsMode::Required => "required",
            TlsMode::None => "none",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl XmppConfig {
    /// The servers as people read them: `host:port`, comma-separated.
    pub fn servers_text(&self) -> String {
        let domain = self.jid.domain().as_str();
        self.servers
            .iter()
            .map(|server| server.name(domain))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Debug for XmppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppConfig")
            .field("jid", &self.jid)
            .field("password", &"***")
            .field("resource", &self.resource)
            .field("nick", &self.nick)
            .field("servers", &self.servers)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl Config {
    /// Reads `path`, applies the environment overrides ([`PASSWORD_ENV`],
    /// [`DATABASE_URL_ENV`]) and validates; the one entry point of the binary.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, path, &|name| std::env::var(name).ok())
    }

    /// The pure core of [`Config::load`]: parses `text` (read from `source`, used in
    /// messages), takes overrides from `env` instead of the process environment, validates.
    ///
    /// Not entirely pure: a SQLite file URL's directory is checked for existence and
    /// `logging.room_dir` is created when missing, so that such problems surface at start-up.
    pub fn from_toml_str(
        text: &str,
        source: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: source.to_owned(),
            message: describe_toml_error(text, &err),
        })?;
        // An empty variable is treated as unset, as is usual for service managers.
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        Validator { path: source }.validate(raw, &env)
    }

    /// The full JID the bot binds: `xmpp.jid` with `xmpp.resource`.
    ///
    /// # Panics
    ///
    /// Only if `xmpp.resource` was changed after validation to an invalid resourcepart.
    pub fn xmpp_full_jid(&self) -> FullJid {
        self.xmpp
            .jid
            .with_resource_str(&self.xmpp.resource)
            .expect("xmpp.resource was validated as a resourcepart")
    }

    /// One line for the start-up log, with no secrets: the account, the server, the MUC
    /// service, the pool sizes and the database URL with its password redacted.
    pub fn summary(&self) -> String {
        format!(
            "xmpp {jid}/{resource} (nick {nick}) via {servers} tls {tls}; muc {service} \
             (prefix {prefix:?}, max {max} chatters, history {history}); pool {available} \
             available, {max_rooms} max; database {db}; config {source}",
            jid = self.xmpp.jid,
            resource = self.xmpp.resource,
            nick = self.xmpp.nick,
            servers = self.xmpp.servers_text(),
            tls = self.xmpp.tls,
            service = self.muc.service,
            prefix = self.muc.room_prefix,
            max = self.muc.max_chatters,
            history = self.muc.history_length,
            available = self.pool.available,
            max_rooms = self.pool.max_rooms,
            db = redact_url(&self.database.url),
            source = self.source.display(),
        )
    }
}

/// `url` with any password replaced by `***`, for logs and messages: the password of the
/// authority (`scheme://user:password@host`) and the value of a `password`, `pass` or `pwd`
/// query parameter. Anything else is returned unchanged.
pub fn redact_url(url: &str) -> String {
    // `sqlite::memory:` and the like parse too (a path, no authority), and come back as they
    // were. What does not parse at all has no authority to hide; it is returned as it is.
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret = |key: &str| matches!(key, "password" | "pass" | "pwd");
    if parsed.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) { "***".into() } else { value };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

mod locate;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use locate::describe_toml_error;
use raw::RawConfig;
use validate::Validator;
