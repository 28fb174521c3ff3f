//! Validation: the raw values, plus the environment overrides, checked and turned into the
//! typed settings.

use std::collections::BTreeMap;

use super::raw::*;
use super::*;
use crate::texts::{Language, Text, Texts};

/// Carries the file name so every check can build its [`ConfigError::Invalid`].
pub(super) struct Validator<'a> {
    /// The file, named in every error.
    pub(super) path: &'a Path,
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
    pub(super) fn validate(
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
        let texts = self.texts(raw.texts.unwrap_or_default())?;
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
            texts,
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

    fn texts(&self, raw: RawTexts) -> Result<Texts, ConfigError> {
        let language = match raw.language.as_deref() {
            None => Language::default(),
            Some(tag) => Language::from_tag(tag).ok_or_else(|| {
                let shipped: Vec<&str> = Language::ALL.iter().map(|l| l.tag()).collect();
                self.invalid(
                    "texts.language",
                    format!(
                        "{tag:?} is not a shipped language; choose one of {} and override \
                         any text by its key",
                        shipped.join(", ")
                    ),
                )
            })?,
        };
        let mut overrides = BTreeMap::new();
        for (key, words) in raw.words {
            let name = format!("texts.{key}");
            let Some(text) = crate::texts::key(&key) else {
                let keys: Vec<&str> = Text::ALL.iter().map(|t| t.key()).collect();
                return Err(self.invalid(
                    &name,
                    format!(
                        "is not a text the bot shows; the keys are: language, {}",
                        keys.join(", ")
                    ),
                ));
            };
            if words.trim().is_empty() {
                return Err(self.invalid(&name, "must not be empty: people read it"));
            }
            overrides.insert(text, words);
        }
        Ok(Texts::new(language, overrides))
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
