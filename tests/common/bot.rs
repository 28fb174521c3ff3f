//! The real `helpim-bot` binary as a child process, against a test Prosody and database.
//!
//! Tests drive the bot exactly as an operator would: a config file, the binary, signals;
//! they observe it through the database (the web application's view) and real XMPP clients.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use helpim_bot::model::RoomStatus;
use helpim_bot::store::{Room, RoomFilter, Store};

use super::server::XmppServer;

/// Knobs of the generated config.
#[derive(Debug, Clone)]
pub struct BotOptions {
    /// The bot's account (registered on the server by `start`).
    pub user: String,
    /// `pool.available`.
    pub available: u32,
    /// `pool.max_rooms`.
    pub max_rooms: u32,
    /// `muc.max_chatters`.
    pub max_chatters: u32,
    /// `xmpp.tls = "required"` (STARTTLS) instead of `"none"`.
    pub tls_required: bool,
    /// `muc.require_claims`. On by default, as in production: scenarios send people to
    /// rooms through claims (`common::world`); a test turning it off says why.
    pub require_claims: bool,
    /// Extra TOML lines for the `[timeouts]` section (a leading `[timeouts]` line is
    /// dropped: the section is already open).
    pub extra: String,
    /// Extra environment variables for the bot process (e.g. fault injection).
    pub env: Vec<(String, String)>,
    /// `xmpp.port` when the bot must connect elsewhere than the server's port (a
    /// [`super::proxy::CuttableProxy`] in front of it).
    pub port: Option<u16>,
    /// `muc.service` instead of the server's MUC host (e.g. one that does not exist, so
    /// that every creation is refused).
    pub muc_service: Option<String>,
    /// `logging.format = "json"` instead of the default text lines.
    pub json_logs: bool,
    /// `pool.creation_window` instead of the default.
    pub creation_window: Option<u32>,
    /// `xmpp.servers` (each `"host:port"`) instead of `xmpp.host` and `xmpp.port` (then
    /// `port` above is not used).
    pub servers: Option<Vec<String>>,
    /// `logging.level` instead of the harness's `debug` (then `RUST_LOG` is not set, as in
    /// production): benchmarks measure the bot at the production default, `info`.
    pub log_level: Option<&'static str>,
    /// Whether `logging.room_dir` is set (per-room log files; tests read them). Off in
    /// production by default, and in the benchmarks.
    pub room_logs: bool,
    /// A command the binary is run under, e.g. `["faketime", "-f", "+120s"]` for a bot
    /// whose clock is two minutes ahead; empty: run directly.
    pub wrapper: Vec<String>,
}

impl Default for BotOptions {
    fn default() -> Self {
        BotOptions {
            user: "helpim-bot".into(),
            available: 3,
            max_rooms: 10,
            max_chatters: 2,
            tls_required: false,
            require_claims: true,
            extra: String::new(),
            env: Vec::new(),
            port: None,
            muc_service: None,
            json_logs: false,
            creation_window: None,
            servers: None,
            log_level: None,
            room_logs: true,
            wrapper: Vec::new(),
        }
    }
}

/// Runs the `helpim-bot` binary once with `args` (no secrets from the environment) and
/// returns its exit status and output.
pub fn helpim_bot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helpim-bot"))
        .args(args)
        .env_remove("HELPIM_XMPP_PASSWORD")
        .env_remove("HELPIM_DATABASE_URL")
        .output()
        .expect("run helpim-bot")
}

/// A command's standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running bot process; stopped (SIGKILL) on drop if still running.
pub struct TestBot {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The config file the bot was started with.
    pub config: PathBuf,
    /// Its standard error (the log).
    pub log: PathBuf,
    /// Directory of per-room log files.
    pub room_dir: PathBuf,
    /// The bot's bare JID.
    pub jid: String,
    /// Extra environment of the process.
    env: Vec<(String, String)>,
    /// Extra arguments of the process (`--standby`).
    args: Vec<String>,
    /// Whether `RUST_LOG` sets the harness's detailed filter (false: the config's level
    /// alone, as in production; see [`BotOptions::log_level`]).
    rust_log: bool,
    /// [`BotOptions::wrapper`].
    wrapper: Vec<String>,
}

impl TestBot {
    /// Registers the bot's account on `server`, writes a config and starts the binary.
    pub fn start(server: &dyn XmppServer, database_url: &str, options: BotOptions) -> TestBot {
        let password = format!("pw-{}", helpim_bot::actors::room::random_token());
        server.register(&options.user, &password);
        let dir = tempfile::Builder::new()
            .prefix("helpim-bot-")
            .tempdir()
            .expect("temp dir for the bot");
        let config = dir.path().join("helpim-bot.toml");
        let room_dir = dir.path().join("rooms");
        let jid = server.jid(&options.user);
        fs::write(
            &config,
            format!(
                r#"[xmpp]
jid = "{jid}"
password = "{password}"
{address}
tls = "{tls}"

[muc]
service = "{muc}"
max_chatters = {max_chatters}
require_claims = {require_claims}

[pool]
available = {available}
max_rooms = {max_rooms}
check_secs = 1
{creation_window}

[database]
url = "{database_url}"

[logging]
level = "{log_level}"
{room_dir}
format = "{log_format}"

[timeouts]
{lease}
{extra}
{http}
"#,
                address = match &options.servers {
                    Some(servers) => format!("servers = {servers:?}"),
                    None => format!(
                        "host = \"127.0.0.1\"\nport = {}",
                        options.port.unwrap_or_else(|| server.port())
                    ),
                },
                muc = options
                    .muc_service
                    .clone()
                    .unwrap_or_else(|| server.muc_domain().to_owned()),
                max_chatters = options.max_chatters,
                tls = if options.tls_required {
                    "required"
                } else {
                    "none"
                },
                require_claims = options.require_claims,
                available = options.available,
                max_rooms = options.max_rooms,
                room_dir = if options.room_logs {
                    format!("room_dir = \"{}\"", room_dir.display())
                } else {
                    String::new()
                },
                log_level = options.log_level.unwrap_or("debug"),
                log_format = if options.json_logs { "json" } else { "text" },
                creation_window = options
                    .creation_window
                    .map(|n| format!("creation_window = {n}"))
                    .unwrap_or_default(),
                // Short, so that a successor never waits long for an unproven holder; a
                // test of the production takeover sets `lease_secs` itself.
                lease = if options.extra.contains("lease_secs") {
                    ""
                } else {
                    "lease_secs = 3"
                },
                extra = options.extra.replace("[timeouts]\n", ""),
                // The HTTP listener is on (the production default), on a port of its own
                // since tests run in parallel; a test that configures [http] itself wins.
                http = if options.extra.contains("[http]") {
                    String::new()
                } else {
                    format!(
                        "[http]\nlisten = \"127.0.0.1:{}\"",
                        super::server::pick_port()
                    )
                },
            ),
        )
        .expect("write the bot config");
        let mut bot = TestBot {
            env: options.env.clone(),
            wrapper: options.wrapper.clone(),
            args: Vec::new(),
            rust_log: options.log_level.is_none(),
            child: None,
            config,
            log: dir.path().join("bot.log"),
            room_dir,
            dir,
            jid,
        };
        bot.spawn();
        bot
    }

    /// Starts the binary again with the same config (after `stop` or `kill`).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the bot is still running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the bot log");
        let binary = env!("CARGO_BIN_EXE_helpim-bot");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        if self.rust_log {
            command.env(
                "RUST_LOG",
                "debug,tokio_xmpp=info,xso=info,rustls=info,sqlx=warn,sea_orm=info",
            );
        } else {
            command.env_remove("RUST_LOG");
        }
        let child = command
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start the helpim-bot binary");
        self.child = Some(child);
    }

    /// A second process of this bot (same config, same JID) started with `--standby`; it
    /// has a log of its own.
    pub fn standby(&self) -> TestBot {
        let dir = tempfile::Builder::new()
            .prefix("helpim-bot-standby-")
            .tempdir()
            .expect("temp dir for the standby");
        let mut bot = TestBot {
            child: None,
            config: self.config.clone(),
            log: dir.path().join("bot.log"),
            room_dir: self.room_dir.clone(),
            jid: self.jid.clone(),
            env: self.env.clone(),
            args: vec!["--standby".into()],
            rust_log: self.rust_log,
            wrapper: self.wrapper.clone(),
            dir,
        };
        bot.spawn();
        bot
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the bot is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the bot") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the bot did not exit within 30 s of SIGTERM\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs another `helpim-bot` command (`health`, `rooms`, or the bot itself again) with
    /// this bot's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        let config = self.config.to_str().expect("UTF-8 path");
        helpim_bot(&[args, &["--config", config]].concat())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`"INT"`, `"TERM"`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the bot is running");
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status();
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited, with its status.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("wait for the bot")
    }

    /// The last `lines` lines of the bot's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestBot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming
/// `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Rooms of `bot` with `status`, ordered by id.
pub async fn rooms_with(store: &Store, bot: &str, status: RoomStatus) -> Vec<Room> {
    store
        .rooms(&RoomFilter {
            status: Some(status),
            bot_jid: Some(bot.to_owned()),
        })
        .await
        .expect("query rooms")
}

/// Waits until `bot` has exactly `n` available rooms and returns them.
pub async fn wait_available(store: &Store, bot: &str, n: usize) -> Vec<Room> {
    eventually(
        &format!("{n} available rooms"),
        Duration::from_secs(20),
        || async {
            let rooms = rooms_with(store, bot, RoomStatus::Available).await;
            if rooms.len() == n {
                Ok(rooms)
            } else {
                Err(format!("{} available", rooms.len()))
            }
        },
    )
    .await
}

/// Waits until the room with this id has `status`, and returns it.
pub async fn wait_status(store: &Store, id: i64, status: RoomStatus) -> Room {
    eventually(
        &format!("room {id} to be {status}"),
        Duration::from_secs(15),
        || async {
            let room = store.room(id).await.map_err(|e| e.to_string())?;
            match room {
                Some(room) if room.status == status => Ok(room),
                Some(room) => Err(format!("status {}", room.status)),
                None => Err("no such room".into()),
            }
        },
    )
    .await
}

/// Waits until `jid` no longer exists on the server (disco#info answers `item-not-found`).
pub async fn wait_gone_from_server(probe: &mut super::client::TestClient, jid: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match probe.disco_info(jid).await {
            Err(condition) if condition.contains("item-not-found") => return,
            other if Instant::now() > deadline => {
                panic!("room {jid} still on the server: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The timestamp of the first line of a bot log containing `needle` (benchmarks time
/// from "XMPP session up").
pub fn logged_at(log: &str, needle: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let ts = line.split(' ').next()?;
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
