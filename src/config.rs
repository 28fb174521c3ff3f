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

// ---------------------------------------------------------------------------------------------
// Raw configuration: the file as written
// ---------------------------------------------------------------------------------------------

/// The file as written; sections other than `[xmpp]` and `[muc]` may be left out, and a
/// missing `[xmpp]` or `[muc]` is reported as its first missing required key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    xmpp: Option<RawXmpp>,
    muc: Option<RawMuc>,
    pool: Option<RawPool>,
    database: Option<RawDatabase>,
    logging: Option<RawLogging>,
    timeouts: Option<RawTimeouts>,
    retention: Option<RawRetention>,
    http: Option<RawHttp>,
}

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
    listen: Option<String>,
}

/// `[xmpp]` as written; `tls` is a string so a bad value gets our message listing choices.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXmpp {
    jid: Option<String>,
    password: Option<String>,
    resource: Option<String>,
    nick: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    servers: Option<Vec<String>>,
    tls: Option<String>,
}

/// `[muc]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMuc {
    service: Option<String>,
    room_prefix: Option<String>,
    max_chatters: Option<u32>,
    history_length: Option<u32>,
    require_claims: Option<bool>,
}

/// `[pool]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    available: Option<u32>,
    max_rooms: Option<u32>,
    check_secs: Option<u64>,
    creation_window: Option<u32>,
}

/// `[database]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
}

/// `[logging]` as written; `level` is a string so a bad value gets our message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
    room_dir: Option<PathBuf>,
    format: Option<String>,
}

/// `[retention]` as written, in days.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    personal_data_days: Option<u32>,
    delete_days: Option<u32>,
}

/// `[timeouts]` as written, in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_secs: Option<u64>,
    iq_secs: Option<u64>,
    join_secs: Option<u64>,
    shutdown_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    staff_claim_secs: Option<u64>,
    client_claim_secs: Option<u64>,
    rejoin_grace_secs: Option<u64>,
    one_left_secs: Option<u64>,
    server_ping_secs: Option<u64>,
    room_ping_secs: Option<u64>,
    lease_secs: Option<u64>,
}

/// Turns toml's multi-line error into one line: position, message, and for an unknown key
/// the section it was found in (toml itself shows the section only in its source snippet).
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else {
        return message;
    };
    let (line, column) = line_column(text, span.start);
    let message = match message.strip_prefix("unknown field ") {
        Some(rest) => {
            // rest: "`name`, expected one of `a`, `b`" (or "..., there are no fields").
            let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
            let place = match section_at(text, span.start) {
                Some(section) => format!("in [{section}]"),
                None => "at the top level (not a known section)".to_owned(),
            };
            if expected.is_empty() {
                format!("unknown key {name} {place}")
            } else {
                format!("unknown key {name} {place}; {expected}")
            }
        }
        None => match key_at(text, span.start) {
            Some(key) => format!("{key}: {message}"),
            None => message,
        },
    };
    format!("line {line}, column {column}: {message}")
}

/// What the line holding byte `offset` defines, for messages about a bad value: the dotted
/// key (`pool.available`) of a `key = value` line, or `[table]` for a header line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some(header) = header_name(line) {
        return Some(format!("[{header}]"));
    }
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(match section_at(text, offset) {
        Some(section) => format!("{section}.{key}"),
        None => key.to_owned(),
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The table (`xmpp`, `timeouts`, ...) whose key is at byte `offset`, found from the last
/// `[header]` line before it; `None` at the top level. When `offset` is on a header line the
/// offending key is the header's last part, so the table is the header without it.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let mut section: Option<String> = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let header = header_name(line);
        if offset < line_end || line_end == text.len() {
            if let Some(header) = header {
                // The header line itself holds the unknown key: its parent is the table.
                return header.rsplit_once('.').map(|(parent, _)| parent.to_owned());
            }
            return section;
        }
        if let Some(header) = header {
            section = Some(header);
        }
        line_start = line_end;
    }
    section
}

/// The name in a `[table]` or `[[array]]` header line, without spaces; `None` otherwise.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(
        inner[..end]
            .split('.')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("."),
    )
}

// ---------------------------------------------------------------------------------------------
// Validation: raw → typed
// ---------------------------------------------------------------------------------------------

/// Carries the file name so every check can build its [`ConfigError::Invalid`].
struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    /// The error for `key`.
    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    /// Checks everything and reports the first problem; the checks that look at the disk
    /// (the SQLite directory) come late and the one that changes it (creating the room log
    /// directory) last, so that a file with any other mistake changes nothing on disk.
    fn validate(
        &self,
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let xmpp = self.xmpp(raw.xmpp.unwrap_or_default(), env)?;
        let muc = self.muc(raw.muc.unwrap_or_default())?;
        let pool = self.pool(raw.pool.unwrap_or_default())?;
        let timeouts = self.timeouts(raw.timeouts.unwrap_or_default())?;
        let retention = self.retention(raw.retention.unwrap_or_default())?;
        let http = self.http(raw.http.unwrap_or_default())?;
        let database = self.database(raw.database.unwrap_or_default(), env)?;
        let logging = self.logging(raw.logging.unwrap_or_default())?;
        Ok(Config {
            xmpp,
            muc,
            pool,
            database,
            logging,
            timeouts,
            retention,
            http,
            source: self.path.to_owned(),
        })
    }

    fn xmpp(
        &self,
        raw: RawXmpp,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<XmppConfig, ConfigError> {
        let jid = self.account_jid(raw.jid.as_deref())?;

        let password = env(PASSWORD_ENV)
            .or(raw.password.filter(|p| !p.is_empty()))
            .ok_or_else(|| {
                self.invalid(
                    "xmpp.password",
                    format!(
                        "missing: set xmpp.password in the file or the environment \
                         variable {PASSWORD_ENV} (an empty value counts as missing)"
                    ),
                )
            })?;

        let resource = raw.resource.unwrap_or_else(|| DEFAULT_RESOURCE.to_owned());
        self.name_part("xmpp.resource", &resource)?;

        let nick = raw.nick.unwrap_or_else(|| DEFAULT_NICK.to_owned());
        self.name_part("xmpp.nick", &nick)?;
        if nick.contains('/') {
            return Err(self.invalid("xmpp.nick", format!("must not contain '/', got {nick:?}")));
        }

        // `servers` replaces these two: both at once is a mistake.
        let host_or_port = raw.host.is_some() || raw.port.is_some();
        let host = match raw.host {
            Some(host) if host.trim().is_empty() => {
                return Err(self.invalid(
                    "xmpp.host",
                    "must not be empty: remove the key to connect to the JID's domain",
                ));
            }
            Some(host) if host.trim() != host || host.contains(char::is_whitespace) => {
                return Err(self.invalid(
                    "xmpp.host",
                    format!("must be a host name or IP address without spaces, got {host:?}"),
                ));
            }
            other => other,
        };

        let port = raw.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(self.invalid("xmpp.port", "must be between 1 and 65535, got 0"));
        }

        let tls = match raw.tls.as_deref() {
            None | Some("required") => TlsMode::Required,
            Some("none") => TlsMode::None,
            Some(other) => {
                return Err(self.invalid(
                    "xmpp.tls",
                    format!("must be \"required\" or \"none\", got {other:?}"),
                ));
            }
        };
        let servers = match raw.servers {
            None => vec![ServerAddress { host, port }],
            Some(_) if host_or_port => {
                return Err(self.invalid(
                    "xmpp.servers",
                    "give either servers or host and port, not both: servers = \
                     [\"host:port\", ...] lists every server the bot may connect to",
                ));
            }
            Some(list) if list.is_empty() => {
                return Err(self.invalid(
                    "xmpp.servers",
                    "must list at least one \"host:port\"; remove the key to use xmpp.host \
                     and xmpp.port",
                ));
            }
            Some(list) => {
                let mut servers: Vec<ServerAddress> = Vec::with_capacity(list.len());
                for entry in &list {
                    let server = ServerAddress::parse(entry)
                        .map_err(|problem| self.invalid("xmpp.servers", problem))?;
                    if servers.contains(&server) {
                        return Err(self.invalid("xmpp.servers", format!("lists {entry:?} twice")));
                    }
                    servers.push(server);
                }
                servers
            }
        };
        if tls == TlsMode::None {
            for server in &servers {
                let effective = server
                    .host
                    .as_deref()
                    .unwrap_or_else(|| jid.domain().as_str());
                if !is_loopback(effective) {
                    return Err(self.invalid(
                        "xmpp.tls",
                        format!(
                            "\"none\" (plaintext) is only for testing against a server on \
                             loopback (localhost, 127.x.x.x, ::1), but the server is \
                             {effective:?}; use \"required\""
                        ),
                    ));
                }
            }
        }

        Ok(XmppConfig {
            jid,
            password,
            resource,
            nick,
            servers,
            tls,
        })
    }

    /// `xmpp.jid`: required, `user@domain`, no resource.
    fn account_jid(&self, text: Option<&str>) -> Result<BareJid, ConfigError> {
        const KEY: &str = "xmpp.jid";
        let text = text.ok_or_else(|| {
            self.invalid(
                KEY,
                "missing: the bot's account, e.g. \"helpim-bot@example.org\"",
            )
        })?;
        let jid = Jid::new(text)
            .map_err(|err| self.invalid(KEY, format!("{text:?} is not a valid JID: {err}")))?;
        if jid.resource().is_some() {
            return Err(self.invalid(
                KEY,
                format!(
                    "must be user@domain without a resource, got {text:?}; \
                     set the resource with xmpp.resource"
                ),
            ));
        }
        if jid.node().is_none() {
            return Err(self.invalid(
                KEY,
                format!("must be an account, user@domain, got the bare domain {text:?}"),
            ));
        }
        Ok(jid.into_bare())
    }

    /// `xmpp.resource` / `xmpp.nick`: non-empty, no surrounding whitespace, a valid JID
    /// resourcepart (both end up as one: the bot's full JID and its occupant JID).
    fn name_part(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        if value.is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        if value.trim() != value {
            return Err(self.invalid(
                key,
                format!("must not start or end with whitespace, got {value:?}"),
            ));
        }
        if let Err(err) = jid::ResourcePart::new(value) {
            return Err(self.invalid(key, format!("{value:?} is not usable in a JID: {err}")));
        }
        Ok(())
    }

    fn muc(&self, raw: RawMuc) -> Result<MucConfig, ConfigError> {
        let service = self.service_jid(raw.service.as_deref())?;

        let room_prefix = raw
            .room_prefix
            .unwrap_or_else(|| DEFAULT_ROOM_PREFIX.to_owned());
        let prefix_ok = (1..=MAX_ROOM_PREFIX_LEN).contains(&room_prefix.len())
            && room_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !prefix_ok {
            return Err(self.invalid(
                "muc.room_prefix",
                format!(
                    "must be 1 to {MAX_ROOM_PREFIX_LEN} characters from a-z, 0-9, '.', '_' \
                     and '-' (room names are the prefix plus a random suffix and must be \
                     valid JID localparts), got {room_prefix:?}"
                ),
            ));
        }

        let max_chatters = raw.max_chatters.unwrap_or(DEFAULT_MAX_CHATTERS);
        if max_chatters < 2 {
            return Err(self.invalid(
                "muc.max_chatters",
                format!("must be at least 2 (a chat needs staff and a client), got {max_chatters}"),
            ));
        }
        if max_chatters > MAX_MAX_CHATTERS {
            return Err(self.invalid(
                "muc.max_chatters",
                format!("must be at most {MAX_MAX_CHATTERS}, got {max_chatters}"),
            ));
        }

        let history_length = raw.history_length.unwrap_or(DEFAULT_HISTORY_LENGTH);
        if history_length > MAX_HISTORY_LENGTH {
            return Err(self.invalid(
                "muc.history_length",
                format!(
                    "must be at most {MAX_HISTORY_LENGTH} (0 means no history), \
                     got {history_length}"
                ),
            ));
        }

        Ok(MucConfig {
            service,
            room_prefix,
            max_chatters,
            history_length,
            require_claims: raw.require_claims.unwrap_or(true),
        })
    }

    /// `muc.service`: required, a domain only.
    fn service_jid(&self, text: Option<&str>) -> Result<BareJid, ConfigError> {
        const KEY: &str = "muc.service";
        let text = text.ok_or_else(|| {
            self.invalid(
                KEY,
                "missing: the MUC service's domain, e.g. \"conference.example.org\"",
            )
        })?;
        if text.contains('@') || text.contains('/') {
            return Err(self.invalid(
                KEY,
                format!(
                    "must be a domain only, e.g. \"conference.example.org\" \
                     (no '@', no '/'), got {text:?}"
                ),
            ));
        }
        let jid = BareJid::new(text)
            .map_err(|err| self.invalid(KEY, format!("{text:?} is not a valid domain: {err}")))?;
        Ok(jid)
    }

    fn pool(&self, raw: RawPool) -> Result<PoolConfig, ConfigError> {
        let available = raw.available.unwrap_or(DEFAULT_POOL_AVAILABLE);
        if available < 1 {
            return Err(self.invalid(
                "pool.available",
                "must be at least 1 (otherwise no room is ever offered), got 0",
            ));
        }
        let max_rooms = raw.max_rooms.unwrap_or(DEFAULT_POOL_MAX_ROOMS);
        if max_rooms < available {
            return Err(self.invalid(
                "pool.max_rooms",
                format!("must be at least pool.available ({available}), got {max_rooms}"),
            ));
        }
        let check_secs = raw.check_secs.unwrap_or(DEFAULT_POOL_CHECK_SECS);
        if check_secs < 1 {
            return Err(self.invalid("pool.check_secs", "must be at least 1 second, got 0"));
        }
        let creation_window = raw.creation_window.unwrap_or(DEFAULT_POOL_CREATION_WINDOW);
        if creation_window < 1 {
            return Err(self.invalid(
                "pool.creation_window",
                "must be at least 1 (otherwise no room is ever created), got 0",
            ));
        }
        Ok(PoolConfig {
            available,
            max_rooms,
            check: Duration::from_secs(check_secs),
            creation_window,
        })
    }

    fn database(
        &self,
        raw: RawDatabase,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DatabaseConfig, ConfigError> {
        const KEY: &str = "database.url";
        let (url, origin) = match env(DATABASE_URL_ENV) {
            Some(url) => (url, format!(" (from {DATABASE_URL_ENV})")),
            None => (
                raw.url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
                String::new(),
            ),
        };
        let url = normalise_database_url(&url).map_err(|problem| {
            self.invalid(
                KEY,
                format!("{problem}{origin}, got {:?}", redact_url(&url)),
            )
        })?;
        Ok(DatabaseConfig { url })
    }

    fn http(&self, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
        let text = raw.listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN);
        let listen: SocketAddr = text.parse().map_err(|_| {
            self.invalid(
                "http.listen",
                format!(
                    "must be an IP address and port such as \"{DEFAULT_HTTP_LISTEN}\" or \
                     \"[::1]:9187\", got {text:?}"
                ),
            )
        })?;
        if listen.port() == 0 {
            return Err(self.invalid(
                "http.listen",
                "needs a port other than 0, so that Prometheus and probes can find it",
            ));
        }
        Ok(HttpConfig {
            listen: raw.enabled.unwrap_or(true).then_some(listen),
        })
    }

    fn logging(&self, raw: RawLogging) -> Result<LoggingConfig, ConfigError> {
        let format = match raw.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.invalid(
                    "logging.format",
                    format!("must be \"text\" or \"json\", got {other:?}"),
                ));
            }
        };
        let level = match raw.level.as_deref() {
            None => LevelFilter::Info,
            Some(text) => text.parse::<LevelFilter>().map_err(|_| {
                self.invalid(
                    "logging.level",
                    format!(
                        "must be one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \
                         \"trace\", got {text:?}"
                    ),
                )
            })?,
        };

        let room_dir = match raw.room_dir {
            None => None,
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(self.invalid(
                    "logging.room_dir",
                    "must not be empty: remove the key to keep no room logs",
                ));
            }
            Some(dir) => {
                if let Err(err) = std::fs::create_dir_all(&dir) {
                    return Err(self.invalid(
                        "logging.room_dir",
                        format!("cannot create directory {}: {err}", dir.display()),
                    ));
                }
                if !dir.is_dir() {
                    return Err(self.invalid(
                        "logging.room_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                Some(dir)
            }
        };

        Ok(LoggingConfig {
            level,
            room_dir,
            format,
        })
    }

    fn retention(&self, raw: RawRetention) -> Result<RetentionConfig, ConfigError> {
        let personal_data_days = raw.personal_data_days.unwrap_or(DEFAULT_PERSONAL_DATA_DAYS);
        if !(1..=MAX_RETENTION_DAYS).contains(&personal_data_days) {
            return Err(self.invalid(
                "retention.personal_data_days",
                format!(
                    "must be between 1 and {MAX_RETENTION_DAYS} days, got {personal_data_days}"
                ),
            ));
        }
        if let Some(delete_days) = raw.delete_days
            && !(personal_data_days..=MAX_RETENTION_DAYS).contains(&delete_days)
        {
            return Err(self.invalid(
                "retention.delete_days",
                format!(
                    "must be between retention.personal_data_days ({personal_data_days}) and \
                     {MAX_RETENTION_DAYS} days, got {delete_days}; remove the key to never \
                     delete rooms"
                ),
            ));
        }
        Ok(RetentionConfig {
            personal_data_days,
            delete_days: raw.delete_days,
        })
    }

    fn timeouts(&self, raw: RawTimeouts) -> Result<TimeoutConfig, ConfigError> {
        let secs = |key: &str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if value < 1 {
                return Err(self.invalid(
                    &format!("timeouts.{key}"),
                    format!("must be at least 1 second, got {value}"),
                ));
            }
            Ok(Duration::from_secs(value))
        };
        Ok(TimeoutConfig {
            connect: secs("connect_secs", raw.connect_secs, DEFAULT_CONNECT_SECS)?,
            iq: secs("iq_secs", raw.iq_secs, DEFAULT_IQ_SECS)?,
            join: secs("join_secs", raw.join_secs, DEFAULT_JOIN_SECS)?,
            shutdown: secs("shutdown_secs", raw.shutdown_secs, DEFAULT_SHUTDOWN_SECS)?,
            retry_max: secs("retry_max_secs", raw.retry_max_secs, DEFAULT_RETRY_MAX_SECS)?,
            staff_claim: secs(
                "staff_claim_secs",
                raw.staff_claim_secs,
                DEFAULT_STAFF_CLAIM_SECS,
            )?,
            client_claim: secs(
                "client_claim_secs",
                raw.client_claim_secs,
                DEFAULT_CLIENT_CLAIM_SECS,
            )?,
            // 0 is meaningful for these two: no grace, never time out.
            rejoin_grace: Duration::from_secs(
                raw.rejoin_grace_secs.unwrap_or(DEFAULT_REJOIN_GRACE_SECS),
            ),
            one_left: optional_secs(raw.one_left_secs, DEFAULT_ONE_LEFT_SECS),
            server_ping: optional_secs(raw.server_ping_secs, DEFAULT_SERVER_PING_SECS),
            room_ping: optional_secs(raw.room_ping_secs, DEFAULT_ROOM_PING_SECS),
            lease: secs("lease_secs", raw.lease_secs, DEFAULT_LEASE_SECS)?,
        })
    }
}

/// A duration where 0 means "never".
fn optional_secs(value: Option<u64>, default: u64) -> Option<Duration> {
    match value.unwrap_or(default) {
        0 => None,
        secs => Some(Duration::from_secs(secs)),
    }
}

/// Whether `host` is the loopback interface: `localhost`, `127.x.x.x` or `::1`.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks the scheme and normalises: `mariadb://` → `mysql://` (sqlx speaks the MySQL
/// protocol to MariaDB); a SQLite file URL gets `mode=rwc` when it has no `mode=` (so the
/// file is created) and its directory must exist. The error is the problem, without the key.
fn normalise_database_url(url: &str) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("mariadb://") {
        return Ok(format!("mysql://{rest}"));
    }
    if ["postgres://", "postgresql://", "mysql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Ok(url.to_owned());
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        return normalise_sqlite_url(url, rest);
    }
    Err(
        "must start with one of sqlite:, postgres://, postgresql://, mysql://, mariadb://"
            .to_owned(),
    )
}

/// The SQLite part of [`normalise_database_url`]; `rest` is `url` after `sqlite:`. Follows
/// sqlx's reading: an optional `//`, then the file name up to `?`, then parameters.
fn normalise_sqlite_url(url: &str, rest: &str) -> Result<String, String> {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    };
    let mode = query.and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "mode")
            .map(|(_, value)| value)
    });
    if file == ":memory:" || mode == Some("memory") {
        return Ok(url.to_owned());
    }
    if file.is_empty() {
        return Err(
            "names no SQLite database file (use sqlite::memory: for a database \
                    that lives only in memory)"
                .to_owned(),
        );
    }
    // `%XX` escapes decoded as sqlx does for SQLite file names; malformed ones are kept.
    let decoded = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    let parent = match Path::new(decoded.as_ref()).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "unreachable path: the SQLite file's directory {} does not exist",
            parent.display()
        ));
    }
    Ok(match (mode, query) {
        (Some(_), _) => url.to_owned(),
        (None, Some("")) => format!("{url}mode=rwc"),
        (None, Some(_)) => format!("{url}&mode=rwc"),
        (None, None) => format!("{url}?mode=rwc"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "config/bot.toml";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A valid file with the two required sections; `xmpp`, `muc` and `rest` add lines.
    fn text(xmpp: &str, muc: &str, rest: &str) -> String {
        format!(
            "[xmpp]\njid = \"bot@example.org\"\npassword = \"secret\"\n{xmpp}\n\
             [muc]\nservice = \"conference.example.org\"\n{muc}\n{rest}\n"
        )
    }

    fn load_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new(FILE), env)
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_env(text, &no_env)
    }

    /// The key and problem of an expected `Invalid`; also checks the one-line display.
    fn invalid_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, String) {
        match load_env(text, env) {
            Err(err @ ConfigError::Invalid { .. }) => {
                let shown = err.to_string();
                assert!(!shown.contains('\n'), "not one line: {shown}");
                let ConfigError::Invalid { path, key, problem } = err else {
                    unreachable!()
                };
                assert_eq!(path, Path::new(FILE));
                assert_eq!(shown, format!("{FILE}: {key}: {problem}"));
                (key, problem)
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn invalid(text: &str) -> (String, String) {
        invalid_env(text, &no_env)
    }

    /// The message of an expected `Parse`; also checks the one-line display.
    fn parse_error(text: &str) -> String {
        match load(text) {
            Err(err @ ConfigError::Parse { .. }) => {
                let shown = err.to_string();
                assert!(!shown.contains('\n'), "not one line: {shown}");
                assert!(shown.starts_with(&format!("{FILE}: ")), "{shown}");
                shown
            }
            other => panic!("expected a Parse error, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_mentions(haystack: &str, needles: &[&str]) {
        for needle in needles {
            assert!(
                haystack.contains(needle),
                "{haystack:?} does not mention {needle:?}"
            );
        }
    }

    // --- defaults and accessors -------------------------------------------------------------

    #[test]
    fn minimal_file_gets_every_default() {
        let config = load(&text("", "", "")).unwrap();
        assert_eq!(config.xmpp.jid, BareJid::new("bot@example.org").unwrap());
        assert_eq!(config.xmpp.password, "secret");
        assert_eq!(config.xmpp.resource, "helpim-bot");
        assert_eq!(config.xmpp.nick, "HelpIM");
        assert_eq!(config.xmpp.servers[0].host, None);
        assert_eq!(config.xmpp.servers[0].port, 5222);
        assert_eq!(config.xmpp.tls, TlsMode::Required);
        assert_eq!(
            config.muc.service,
            BareJid::new("conference.example.org").unwrap()
        );
        assert_eq!(config.muc.room_prefix, "helpim-");
        assert_eq!(config.muc.max_chatters, 2);
        assert_eq!(config.muc.history_length, 0);
        assert_eq!(
            config.pool,
            PoolConfig {
                available: 3,
                max_rooms: 20,
                check: Duration::from_secs(2),
                creation_window: 16,
            }
        );
        assert!(config.muc.require_claims);
        assert_eq!(config.timeouts.staff_claim, Duration::from_secs(120));
        assert_eq!(config.timeouts.client_claim, Duration::from_secs(60));
        assert_eq!(config.timeouts.rejoin_grace, Duration::from_secs(60));
        assert_eq!(config.timeouts.one_left, Some(Duration::from_secs(300)));
        assert_eq!(config.timeouts.server_ping, Some(Duration::from_secs(60)));
        assert_eq!(config.timeouts.room_ping, Some(Duration::from_secs(300)));
        assert_eq!(config.timeouts.lease, Duration::from_secs(30));
        assert_eq!(config.database.url, "sqlite://helpim-bot.sqlite?mode=rwc");
        assert_eq!(config.logging.level, LevelFilter::Info);
        assert_eq!(config.logging.room_dir, None);
        assert_eq!(config.timeouts.connect, Duration::from_secs(30));
        assert_eq!(config.timeouts.iq, Duration::from_secs(15));
        assert_eq!(config.timeouts.join, Duration::from_secs(15));
        assert_eq!(config.timeouts.shutdown, Duration::from_secs(15));
        assert_eq!(config.timeouts.retry_max, Duration::from_secs(60));
        assert_eq!(config.timeouts, TimeoutConfig::default());
        assert_eq!(
            config.retention,
            RetentionConfig {
                personal_data_days: 30,
                delete_days: None,
            }
        );
        assert_eq!(config.source, Path::new(FILE));
    }

    #[test]
    fn every_key_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let rooms = dir.path().join("rooms");
        let config = load(&format!(
            "[xmpp]\njid = \"b@localhost\"\npassword = \"p\"\nresource = \"r\"\nnick = \"N\"\n\
             host = \"127.0.0.1\"\nport = 5280\ntls = \"none\"\n\
             [muc]\nservice = \"muc.localhost\"\nroom_prefix = \"x.\"\nmax_chatters = 3\n\
             history_length = 10\nrequire_claims = false\n\
             [pool]\navailable = 1\nmax_rooms = 1\ncheck_secs = 7\n\
             [database]\nurl = \"postgres://u@db/helpim\"\n\
             [logging]\nlevel = \"debug\"\nroom_dir = {rooms:?}\n\
             [timeouts]\nconnect_secs = 1\niq_secs = 2\njoin_secs = 3\nshutdown_secs = 4\n\
             retry_max_secs = 5\nstaff_claim_secs = 6\nclient_claim_secs = 8\n\
             rejoin_grace_secs = 0\none_left_secs = 0\nserver_ping_secs = 9\n\
             room_ping_secs = 0\nlease_secs = 11\n\
             [retention]\npersonal_data_days = 7\ndelete_days = 365\n"
        ))
        .unwrap();
        assert_eq!(config.xmpp.resource, "r");
        assert_eq!(config.xmpp.nick, "N");
        assert_eq!(config.xmpp.servers[0].host.as_deref(), Some("127.0.0.1"));
        assert_eq!(config.xmpp.servers[0].port, 5280);
        assert_eq!(config.xmpp.tls, TlsMode::None);
        assert_eq!(config.muc.room_prefix, "x.");
        assert_eq!(config.muc.max_chatters, 3);
        assert_eq!(config.muc.history_length, 10);
        assert_eq!(
            config.pool,
            PoolConfig {
                available: 1,
                max_rooms: 1,
                check: Duration::from_secs(7),
                creation_window: 16,
            }
        );
        assert!(!config.muc.require_claims);
        assert_eq!(config.timeouts.staff_claim, Duration::from_secs(6));
        assert_eq!(config.timeouts.client_claim, Duration::from_secs(8));
        assert_eq!(config.timeouts.rejoin_grace, Duration::ZERO, "0: no grace");
        assert_eq!(config.timeouts.one_left, None, "0: never time out");
        assert_eq!(config.timeouts.server_ping, Some(Duration::from_secs(9)));
        assert_eq!(config.timeouts.room_ping, None, "0: no self-pings");
        assert_eq!(config.timeouts.lease, Duration::from_secs(11));
        assert_eq!(config.database.url, "postgres://u@db/helpim");
        assert_eq!(config.logging.level, LevelFilter::Debug);
        assert_eq!(config.logging.room_dir.as_deref(), Some(rooms.as_path()));
        assert_eq!(config.timeouts.connect, Duration::from_secs(1));
        assert_eq!(config.timeouts.iq, Duration::from_secs(2));
        assert_eq!(config.timeouts.join, Duration::from_secs(3));
        assert_eq!(config.timeouts.shutdown, Duration::from_secs(4));
        assert_eq!(config.timeouts.retry_max, Duration::from_secs(5));
        assert_eq!(
            config.retention,
            RetentionConfig {
                personal_data_days: 7,
                delete_days: Some(365),
            }
        );
    }

    // --- [retention] --------------------------------------------------------------------------

    #[test]
    fn personal_data_days_between_1_and_36500() {
        for bad in [0, 36_501] {
            let (key, problem) = invalid(&text(
                "",
                "",
                &format!("[retention]\npersonal_data_days = {bad}"),
            ));
            assert_eq!(key, "retention.personal_data_days");
            assert_mentions(
                &problem,
                &["between 1 and 36500 days", &format!("got {bad}")],
            );
        }
        for good in [1, 36_500] {
            let config = load(&text(
                "",
                "",
                &format!("[retention]\npersonal_data_days = {good}"),
            ))
            .unwrap();
            assert_eq!(config.retention.personal_data_days, good);
            assert_eq!(config.retention.delete_days, None, "never, by default");
        }
    }

    #[test]
    fn delete_days_not_before_personal_data_days() {
        let (key, problem) = invalid(&text("", "", "[retention]\ndelete_days = 29"));
        assert_eq!(key, "retention.delete_days");
        assert_mentions(
            &problem,
            &[
                "retention.personal_data_days (30)",
                "got 29",
                "remove the key",
            ],
        );
        let (key, problem) = invalid(&text(
            "",
            "",
            "[retention]\npersonal_data_days = 10\ndelete_days = 0",
        ));
        assert_eq!(key, "retention.delete_days");
        assert_mentions(&problem, &["(10)", "got 0"]);
        let (key, _) = invalid(&text("", "", "[retention]\ndelete_days = 40000"));
        assert_eq!(key, "retention.delete_days");
        let config = load(&text("", "", "[retention]\ndelete_days = 30")).unwrap();
        assert_eq!(
            config.retention,
            RetentionConfig {
                personal_data_days: 30,
                delete_days: Some(30),
            }
        );
    }

    #[test]
    fn retention_days_must_be_whole_non_negative_numbers() {
        for value in ["-1", "\"never\"", "1.5"] {
            let shown = parse_error(&text(
                "",
                "",
                &format!("[retention]\ndelete_days = {value}"),
            ));
            assert_mentions(&shown, &["delete_days"]);
        }
        let shown = parse_error(&text("", "", "[retention]\nkeep_days = 3"));
        assert_mentions(&shown, &["keep_days", "retention"]);
    }

    #[test]
    fn full_jid_is_jid_plus_resource() {
        let config = load(&text("resource = \"desk\"", "", "")).unwrap();
        assert_eq!(config.xmpp_full_jid().to_string(), "bot@example.org/desk");
    }

    #[test]
    fn summary_is_one_line_without_secrets() {
        let config = load(&text(
            "host = \"xmpp.example.org\"\nport = 5223",
            "",
            "[database]\nurl = \"postgres://helpim:hunter2@db.example.org/helpim\"",
        ))
        .unwrap();
        let summary = config.summary();
        assert!(!summary.contains('\n'));
        assert!(!summary.contains("secret"), "{summary}");
        assert!(!summary.contains("hunter2"), "{summary}");
        assert_mentions(
            &summary,
            &[
                "bot@example.org/helpim-bot",
                "xmpp.example.org:5223",
                "tls required",
                "conference.example.org",
                "3 available",
                "20 max",
                "postgres://helpim:***@db.example.org/helpim",
            ],
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let config = load(&text(
            "",
            "",
            "[database]\nurl = \"mysql://u:hunter2@db/helpim\"",
        ))
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://user:pw@host:5432/db?sslmode=require"),
            "postgres://user:***@host:5432/db?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://user@host/db?password=pw&x=1"),
            "mysql://user@host/db?password=***&x=1"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
        assert_eq!(
            redact_url("sqlite://helpim-bot.sqlite?mode=rwc"),
            "sqlite://helpim-bot.sqlite?mode=rwc"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
        // A password containing '@' is still hidden entirely.
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
    }

    // --- parse errors -------------------------------------------------------------------------

    #[test]
    fn read_error_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/helpim-bot.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert_mentions(
            &err.to_string(),
            &["/nonexistent/helpim-bot.toml", "cannot read"],
        );
    }

    #[test]
    fn invalid_toml_gives_position() {
        let shown = parse_error("[xmpp]\njid = \"bot@example.org\"\npassword = \n");
        assert_mentions(&shown, &["line 3"]);
    }

    #[test]
    fn unknown_key_names_key_and_section() {
        let shown = parse_error(&text("pasword = \"x\"", "", ""));
        assert_mentions(
            &shown,
            &["line 4, column 1", "`pasword`", "[xmpp]", "unknown key"],
        );
        let shown = parse_error(&text("", "", "[timeouts]\nconnect = 3"));
        assert_mentions(&shown, &["`connect`", "[timeouts]", "connect_secs"]);
    }

    #[test]
    fn unknown_section_is_named() {
        let shown = parse_error(&text("", "", "[databse]\nurl = \"sqlite::memory:\""));
        assert_mentions(&shown, &["`databse`", "top level", "database"]);
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        let shown = parse_error(&text("port = \"5222\"", "", ""));
        assert_mentions(&shown, &["line 4, column 8", "xmpp.port", "invalid type"]);
        let shown = parse_error(&text("", "", "[pool]\navailable = -1"));
        assert_mentions(&shown, &["line 9", "pool.available", "-1"]);
        let shown = parse_error(&text("port = 70000", "", ""));
        assert_mentions(&shown, &["line 4", "xmpp.port", "70000"]);
    }

    // --- [xmpp] -------------------------------------------------------------------------------

    #[test]
    fn jid_is_required() {
        let (key, problem) = invalid("[muc]\nservice = \"conference.example.org\"\n");
        assert_eq!(key, "xmpp.jid");
        assert_mentions(&problem, &["missing"]);
    }

    #[test]
    fn jid_must_parse() {
        let (key, problem) = invalid(&text("", "", "").replace("bot@example.org", "a@b@c"));
        assert_eq!(key, "xmpp.jid");
        assert_mentions(&problem, &["not a valid JID"]);
    }

    #[test]
    fn jid_must_have_a_node() {
        let (key, problem) = invalid(&text("", "", "").replace("bot@example.org", "example.org"));
        assert_eq!(key, "xmpp.jid");
        assert_mentions(&problem, &["user@domain", "bare domain"]);
    }

    #[test]
    fn jid_must_not_have_a_resource() {
        let (key, problem) =
            invalid(&text("", "", "").replace("bot@example.org", "bot@example.org/res"));
        assert_eq!(key, "xmpp.jid");
        assert_mentions(&problem, &["without a resource", "xmpp.resource"]);
    }

    #[test]
    fn password_missing_names_key_and_variable() {
        let (key, problem) = invalid(&text("", "", "").replace("password = \"secret\"\n", ""));
        assert_eq!(key, "xmpp.password");
        assert_mentions(&problem, &["xmpp.password", "HELPIM_XMPP_PASSWORD"]);
    }

    #[test]
    fn empty_password_is_missing() {
        let file = text("", "", "").replace("\"secret\"", "\"\"");
        let (key, problem) = invalid(&file);
        assert_eq!(key, "xmpp.password");
        assert_mentions(&problem, &["xmpp.password", "HELPIM_XMPP_PASSWORD"]);
        // An empty variable does not count either.
        let empty = |name: &str| (name == PASSWORD_ENV).then(String::new);
        let (key, _) = invalid_env(&file, &empty);
        assert_eq!(key, "xmpp.password");
    }

    #[test]
    fn password_env_provides_and_overrides() {
        let env = |name: &str| (name == PASSWORD_ENV).then(|| "from-env".to_owned());
        let without = text("", "", "").replace("password = \"secret\"\n", "");
        assert_eq!(load_env(&without, &env).unwrap().xmpp.password, "from-env");
        assert_eq!(
            load_env(&text("", "", ""), &env).unwrap().xmpp.password,
            "from-env"
        );
    }

    #[test]
    fn resource_must_be_non_empty_and_trimmed() {
        let (key, problem) = invalid(&text("resource = \"\"", "", ""));
        assert_eq!(key, "xmpp.resource");
        assert_mentions(&problem, &["empty"]);
        let (key, problem) = invalid(&text("resource = \" bot\"", "", ""));
        assert_eq!(key, "xmpp.resource");
        assert_mentions(&problem, &["whitespace"]);
    }

    #[test]
    fn nick_must_be_non_empty_trimmed_and_without_slash() {
        let (key, problem) = invalid(&text("nick = \"\"", "", ""));
        assert_eq!(key, "xmpp.nick");
        assert_mentions(&problem, &["empty"]);
        let (key, problem) = invalid(&text("nick = \"HelpIM \"", "", ""));
        assert_eq!(key, "xmpp.nick");
        assert_mentions(&problem, &["whitespace"]);
        let (key, problem) = invalid(&text("nick = \"Help/IM\"", "", ""));
        assert_eq!(key, "xmpp.nick");
        assert_mentions(&problem, &["'/'"]);
    }

    #[test]
    fn empty_host_is_rejected() {
        let (key, problem) = invalid(&text("host = \"\"", "", ""));
        assert_eq!(key, "xmpp.host");
        assert_mentions(&problem, &["empty"]);
    }

    #[test]
    fn port_zero_is_rejected() {
        let (key, problem) = invalid(&text("port = 0", "", ""));
        assert_eq!(key, "xmpp.port");
        assert_mentions(&problem, &["got 0"]);
    }

    #[test]
    fn servers_list_every_node_in_order() {
        let config = load(&text(
            "servers = [\"xmpp-a.example.org:5222\", \"10.0.0.2:5223\", \"[2001:db8::1]:5222\"]",
            "",
            "",
        ))
        .unwrap();
        let server = |host: &str, port| ServerAddress {
            host: Some(host.to_owned()),
            port,
        };
        assert_eq!(
            config.xmpp.servers,
            [
                server("xmpp-a.example.org", 5222),
                server("10.0.0.2", 5223),
                server("2001:db8::1", 5222),
            ]
        );
        assert_eq!(
            config.xmpp.servers_text(),
            "xmpp-a.example.org:5222, 10.0.0.2:5223, [2001:db8::1]:5222"
        );
        assert!(
            config
                .summary()
                .contains("via xmpp-a.example.org:5222, 10.0.0.2:5223")
        );
    }

    #[test]
    fn servers_entries_must_be_host_and_port() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            ":5222",
            "a b:5222",
            "::1:5222",
            "[::1:5222",
            "h:x",
        ] {
            let (key, problem) = invalid(&text(&format!("servers = [{bad:?}]"), "", ""));
            assert_eq!(key, "xmpp.servers", "{bad}");
            assert_mentions(&problem, &["host:port", &format!("{bad:?}")]);
            assert!(!problem.contains("  "), "{problem}");
        }
        let (key, problem) = invalid(&text("servers = []", "", ""));
        assert_eq!(key, "xmpp.servers");
        assert_mentions(&problem, &["at least one"]);
        let (key, problem) = invalid(&text("servers = [\"a:1\", \"a:1\"]", "", ""));
        assert_eq!(key, "xmpp.servers");
        assert_mentions(&problem, &["twice"]);
    }

    #[test]
    fn servers_exclude_host_and_port() {
        for other in ["host = \"a\"", "port = 5222"] {
            let (key, problem) =
                invalid(&text(&format!("servers = [\"b:5222\"]\n{other}"), "", ""));
            assert_eq!(key, "xmpp.servers");
            assert_mentions(&problem, &["not both"]);
        }
    }

    #[test]
    fn plaintext_needs_every_server_on_loopback() {
        let config = load(&text(
            "tls = \"none\"\nservers = [\"127.0.0.1:5222\", \"127.0.0.2:5222\", \"[::1]:5222\"]",
            "",
            "",
        ))
        .unwrap();
        assert_eq!(config.xmpp.servers.len(), 3);
        let (key, problem) = invalid(&text(
            "tls = \"none\"\nservers = [\"127.0.0.1:5222\", \"10.0.0.2:5222\"]",
            "",
            "",
        ));
        assert_eq!(key, "xmpp.tls");
        assert_mentions(&problem, &["loopback", "10.0.0.2"]);
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let (key, problem) = invalid(&text("tls = \"none\"", "", ""));
        assert_eq!(key, "xmpp.tls");
        assert_mentions(&problem, &["loopback", "example.org", "required"]);
        let (key, _) = invalid(&text("tls = \"none\"\nhost = \"10.0.0.1\"", "", ""));
        assert_eq!(key, "xmpp.tls");
        for host in ["localhost", "127.0.0.1", "127.1.2.3", "::1"] {
            let config = load(&text(&format!("tls = \"none\"\nhost = \"{host}\""), "", ""))
                .unwrap_or_else(|err| panic!("{host}: {err}"));
            assert_eq!(config.xmpp.tls, TlsMode::None);
        }
        // Without a host, the JID's domain is the server.
        let local = text("tls = \"none\"", "", "").replace("bot@example.org", "bot@localhost");
        assert_eq!(load(&local).unwrap().xmpp.tls, TlsMode::None);
    }

    #[test]
    fn unknown_tls_value_lists_choices() {
        let (key, problem) = invalid(&text("tls = \"starttls\"", "", ""));
        assert_eq!(key, "xmpp.tls");
        assert_mentions(&problem, &["\"required\"", "\"none\"", "starttls"]);
    }

    // --- [muc] --------------------------------------------------------------------------------

    #[test]
    fn service_is_required() {
        let (key, problem) = invalid("[xmpp]\njid = \"bot@example.org\"\npassword = \"p\"\n");
        assert_eq!(key, "muc.service");
        assert_mentions(&problem, &["missing"]);
    }

    #[test]
    fn service_must_be_a_bare_domain() {
        for bad in ["rooms@conference.example.org", "conference.example.org/x"] {
            let file = text("", "", "").replace("\"conference.example.org\"", &format!("{bad:?}"));
            let (key, problem) = invalid(&file);
            assert_eq!(key, "muc.service");
            assert_mentions(&problem, &["domain only", bad]);
        }
        let file = text("", "", "").replace("conference.example.org", "bad domain");
        let (key, problem) = invalid(&file);
        assert_eq!(key, "muc.service");
        assert_mentions(&problem, &["not a valid domain"]);
    }

    #[test]
    fn room_prefix_is_short_and_lowercase() {
        for bad in ["", "Helpim-", "help im", "help@", &"a".repeat(33)] {
            let (key, problem) = invalid(&text("", &format!("room_prefix = {bad:?}"), ""));
            assert_eq!(key, "muc.room_prefix", "{bad:?}");
            assert_mentions(&problem, &["1 to 32", "a-z"]);
        }
        let ok = load(&text("", "room_prefix = \"a.b_c-9\"", "")).unwrap();
        assert_eq!(ok.muc.room_prefix, "a.b_c-9");
        load(&text(
            "",
            &format!("room_prefix = {:?}", "a".repeat(32)),
            "",
        ))
        .unwrap();
    }

    #[test]
    fn max_chatters_between_2_and_50() {
        let (key, problem) = invalid(&text("", "max_chatters = 1", ""));
        assert_eq!(key, "muc.max_chatters");
        assert_mentions(&problem, &["at least 2", "got 1"]);
        let (key, problem) = invalid(&text("", "max_chatters = 51", ""));
        assert_eq!(key, "muc.max_chatters");
        assert_mentions(&problem, &["at most 50", "got 51"]);
        load(&text("", "max_chatters = 50", "")).unwrap();
    }

    #[test]
    fn history_length_at_most_1000() {
        let (key, problem) = invalid(&text("", "history_length = 1001", ""));
        assert_eq!(key, "muc.history_length");
        assert_mentions(&problem, &["at most 1000", "got 1001"]);
        load(&text("", "history_length = 1000", "")).unwrap();
    }

    // --- [pool] -------------------------------------------------------------------------------

    #[test]
    fn pool_available_at_least_one() {
        let (key, problem) = invalid(&text("", "", "[pool]\navailable = 0"));
        assert_eq!(key, "pool.available");
        assert_mentions(&problem, &["at least 1", "got 0"]);
    }

    #[test]
    fn pool_creation_window_at_least_one_default_16() {
        let (key, problem) = invalid(&text("", "", "[pool]\ncreation_window = 0"));
        assert_eq!(key, "pool.creation_window");
        assert_mentions(&problem, &["at least 1", "got 0"]);
        let config = load(&text("", "", "[pool]\ncreation_window = 32")).unwrap();
        assert_eq!(config.pool.creation_window, 32);
        let config = load(&text("", "", "")).unwrap();
        assert_eq!(config.pool.creation_window, 16);
    }

    #[test]
    fn pool_max_rooms_at_least_available() {
        let file = text("", "", "[pool]\navailable = 5\nmax_rooms = 3");
        let err = load(&file).unwrap_err().to_string();
        assert_eq!(
            err,
            "config/bot.toml: pool.max_rooms: must be at least pool.available (5), got 3"
        );
        let (key, _) = invalid(&text("", "", "[pool]\navailable = 21"));
        assert_eq!(key, "pool.max_rooms");
    }

    // --- [database] ---------------------------------------------------------------------------

    fn database_url(url: &str) -> Result<String, (String, String)> {
        let file = text("", "", &format!("[database]\nurl = {url:?}"));
        match load(&file) {
            Ok(config) => Ok(config.database.url),
            Err(_) => Err(invalid(&file)),
        }
    }

    #[test]
    fn database_scheme_must_be_known() {
        for bad in ["sqlserver://h/db", "postgres:/h/db", "helpim.sqlite", ""] {
            let (key, problem) = database_url(bad).unwrap_err();
            assert_eq!(key, "database.url");
            assert_mentions(&problem, &["sqlite:", "postgres://", "mariadb://"]);
        }
        for good in ["postgres://h/db", "postgresql://h/db", "mysql://h/db"] {
            assert_eq!(database_url(good).unwrap(), good);
        }
    }

    #[test]
    fn database_scheme_error_hides_password() {
        let (_, problem) = database_url("oracle://u:hunter2@h/db").unwrap_err();
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn mariadb_becomes_mysql() {
        assert_eq!(
            database_url("mariadb://u:p@h/db").unwrap(),
            "mysql://u:p@h/db"
        );
    }

    #[test]
    fn sqlite_file_gets_mode_rwc() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bot.sqlite");
        let file = file.display();
        assert_eq!(
            database_url(&format!("sqlite://{file}")).unwrap(),
            format!("sqlite://{file}?mode=rwc")
        );
        assert_eq!(
            database_url(&format!("sqlite:{file}?cache=shared")).unwrap(),
            format!("sqlite:{file}?cache=shared&mode=rwc")
        );
        assert_eq!(
            database_url(&format!("sqlite://{file}?mode=ro")).unwrap(),
            format!("sqlite://{file}?mode=ro")
        );
        assert_eq!(
            database_url("sqlite://bot.sqlite").unwrap(),
            "sqlite://bot.sqlite?mode=rwc"
        );
    }

    #[test]
    fn sqlite_memory_is_accepted_as_is() {
        assert_eq!(database_url("sqlite::memory:").unwrap(), "sqlite::memory:");
        assert_eq!(
            database_url("sqlite://?mode=memory").unwrap(),
            "sqlite://?mode=memory"
        );
    }

    #[test]
    fn sqlite_directory_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let url = format!("sqlite://{}/bot.sqlite", missing.display());
        let (key, problem) = database_url(&url).unwrap_err();
        assert_eq!(key, "database.url");
        assert_mentions(
            &problem,
            &["unreachable path", &missing.display().to_string()],
        );
    }

    #[test]
    fn database_url_env_overrides() {
        let env = |name: &str| (name == DATABASE_URL_ENV).then(|| "mariadb://h/db".to_owned());
        let file = text("", "", "[database]\nurl = \"postgres://h/db\"");
        assert_eq!(load_env(&file, &env).unwrap().database.url, "mysql://h/db");
        let bad = |name: &str| (name == DATABASE_URL_ENV).then(|| "nope://h".to_owned());
        let (key, problem) = invalid_env(&file, &bad);
        assert_eq!(key, "database.url");
        assert_mentions(&problem, &["HELPIM_DATABASE_URL"]);
    }

    // --- [logging] ----------------------------------------------------------------------------

    #[test]
    fn log_level_must_be_known() {
        let (key, problem) = invalid(&text("", "", "[logging]\nlevel = \"verbose\""));
        assert_eq!(key, "logging.level");
        assert_mentions(&problem, &["\"off\"", "\"trace\"", "verbose"]);
        for (text_level, level) in [("off", LevelFilter::Off), ("warn", LevelFilter::Warn)] {
            let config = load(&text("", "", &format!("[logging]\nlevel = {text_level:?}")));
            assert_eq!(config.unwrap().logging.level, level);
        }
    }

    #[test]
    fn room_dir_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let rooms = dir.path().join("logs").join("rooms");
        let config = load(&text("", "", &format!("[logging]\nroom_dir = {rooms:?}"))).unwrap();
        assert!(rooms.is_dir());
        assert_eq!(config.logging.room_dir, Some(rooms));
    }

    #[test]
    fn room_dir_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let (key, problem) = invalid(&text("", "", &format!("[logging]\nroom_dir = {file:?}")));
        assert_eq!(key, "logging.room_dir");
        assert_mentions(&problem, &[&file.display().to_string()]);
        let below = file.join("rooms");
        let (key, problem) = invalid(&text("", "", &format!("[logging]\nroom_dir = {below:?}")));
        assert_eq!(key, "logging.room_dir");
        assert_mentions(&problem, &["cannot create", &below.display().to_string()]);
    }

    // --- [timeouts] ---------------------------------------------------------------------------

    #[test]
    fn every_timeout_at_least_one_second() {
        for key in [
            "connect_secs",
            "iq_secs",
            "join_secs",
            "shutdown_secs",
            "retry_max_secs",
        ] {
            let (got, problem) = invalid(&text("", "", &format!("[timeouts]\n{key} = 0")));
            assert_eq!(got, format!("timeouts.{key}"));
            assert_mentions(&problem, &["at least 1 second", "got 0"]);
        }
    }

    // --- the example file ---------------------------------------------------------------------

    #[test]
    fn example_file_is_valid_and_documents_the_defaults() {
        let example = include_str!("../config/helpim-bot.example.toml");
        let env = |name: &str| (name == PASSWORD_ENV).then(|| "from-env".to_owned());
        let config = Config::from_toml_str(example, Path::new("helpim-bot.example.toml"), &env)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            config.xmpp.jid,
            BareJid::new("helpim-bot@example.org").unwrap()
        );
        assert_eq!(config.xmpp.password, "from-env");
        assert_eq!(config.xmpp.resource, DEFAULT_RESOURCE);
        assert_eq!(config.xmpp.nick, DEFAULT_NICK);
        assert_eq!(
            config.xmpp.servers,
            [ServerAddress {
                host: None,
                port: DEFAULT_PORT
            }]
        );
        assert_eq!(config.xmpp.tls, TlsMode::Required);
        assert_eq!(
            config.muc.service,
            BareJid::new("conference.example.org").unwrap()
        );
        assert_eq!(config.muc.room_prefix, DEFAULT_ROOM_PREFIX);
        assert_eq!(config.muc.max_chatters, DEFAULT_MAX_CHATTERS);
        assert_eq!(config.muc.history_length, DEFAULT_HISTORY_LENGTH);
        assert_eq!(config.pool, PoolConfig::default());
        assert_eq!(config.database, DatabaseConfig::default());
        assert_eq!(config.logging, LoggingConfig::default());
        assert_eq!(config.timeouts, TimeoutConfig::default());
        assert_eq!(config.retention, RetentionConfig::default());
        assert_eq!(config.http, HttpConfig::default());
        // Without the variable, the missing password is the only problem.
        let err = Config::from_toml_str(example, Path::new("x.toml"), &no_env).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "xmpp.password"),
            "{err}"
        );
    }

    #[test]
    fn http_listens_on_loopback_by_default() {
        let config = load(&text("", "", "")).unwrap();
        assert_eq!(
            config.http.listen,
            Some("127.0.0.1:9187".parse().unwrap()),
            "loopback only unless configured"
        );
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.logging.format, LogFormat::Text);
    }

    #[test]
    fn http_listen_and_enabled_are_read() {
        let config = load(&text("", "", "[http]\nlisten = \"[::1]:9000\"")).unwrap();
        assert_eq!(config.http.listen, Some("[::1]:9000".parse().unwrap()));
        let config = load(&text("", "", "[http]\nlisten = \"0.0.0.0:9187\"")).unwrap();
        assert_eq!(config.http.listen, Some("0.0.0.0:9187".parse().unwrap()));
        let off = load(&text("", "", "[http]\nenabled = false")).unwrap();
        assert_eq!(off.http.listen, None);
    }

    #[test]
    fn http_listen_must_be_an_address_with_a_port() {
        for bad in ["localhost:9187", "127.0.0.1", "9187", ""] {
            let (key, problem) = invalid(&text("", "", &format!("[http]\nlisten = {bad:?}")));
            assert_eq!(key, "http.listen");
            assert_mentions(&problem, &["127.0.0.1:9187", &format!("{bad:?}")]);
            assert!(
                !problem.contains("  "),
                "one line, no run of spaces: {problem}"
            );
        }
        let (key, problem) = invalid(&text("", "", "[http]\nlisten = \"127.0.0.1:0\""));
        assert_eq!(key, "http.listen");
        assert_mentions(&problem, &["port other than 0"]);
    }

    #[test]
    fn http_unknown_key_is_refused() {
        let err = load(&text("", "", "[http]\nport = 9187")).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn logging_format_is_text_or_json() {
        let config = load(&text("", "", "[logging]\nformat = \"json\"")).unwrap();
        assert_eq!(config.logging.format, LogFormat::Json);
        let (key, problem) = invalid(&text("", "", "[logging]\nformat = \"yaml\""));
        assert_eq!(key, "logging.format");
        assert_mentions(&problem, &["\"text\"", "\"json\"", "\"yaml\""]);
    }
}
