//! The `helpim-bot` command: runs the bot, or helps an operator look at its rooms.
//!
//! Exit codes (for process supervisors, see `config/helpim-bot.service`):
//! - 0: stopped cleanly (SIGTERM/SIGINT), or the command succeeded;
//! - 1: a runtime failure (database, XMPP server unreachable or lost): restart me;
//! - 2: bad command line or configuration: restarting will not help;
//! - 3: `claim` found nothing to claim (a normal answer for scripts, not a failure).
//!
//! `purge` exits 0 when it finished (also when there was nothing to purge) and 1 when the
//! database or the room log directory failed it; whole batches done before stay done.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use helpim_bot::config::{Config, ConfigError};
use helpim_bot::model::RoomStatus;
use helpim_bot::report::{Align, Table};
use helpim_bot::store::RoomFilter;

/// The room-managing XMPP bot of an online helpline.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The configuration file (see config/helpim-bot.example.toml).
    #[arg(
        long,
        short,
        global = true,
        env = "HELPIM_CONFIG",
        default_value = "/etc/helpim-bot/helpim-bot.toml"
    )]
    config: PathBuf,
    /// Run as a hot standby: wait while another process of the same bot JID is active, and
    /// take over when it stops (instead of exiting with "already managed").
    #[arg(long, global = true, env = "HELPIM_STANDBY")]
    standby: bool,
    /// What to do; without a command the bot runs.
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the bot (the default).
    Run,
    /// Validate the configuration file and exit.
    CheckConfig,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// List rooms with their status.
    Rooms {
        /// Only rooms with this status (available, staff_waiting, chatting, one_left, closed).
        #[arg(long)]
        status: Option<RoomStatus>,
        /// Also print each room's password (to join it from an ordinary XMPP client).
        #[arg(long)]
        passwords: bool,
    },
    /// Print one room's transitions with timestamps and reasons.
    History {
        /// The room's JID or its numeric id.
        room: String,
    },
    /// Helpline statistics from the room history: closes by reason, staff waits, chat durations.
    Stats {
        /// Only rooms created at or after this: an RFC 3339 timestamp or YYYY-MM-DD (midnight UTC).
        #[arg(long, value_parser = helpim_bot::stats::parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Remove personal data of rooms closed longer ago than retention.personal_data_days,
    /// delete rooms older than retention.delete_days and old room logs; print the numbers.
    Purge {
        /// Only count what would be purged; change nothing (and do not migrate).
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 when this bot's lease is held and its heartbeat fresh, 1 otherwise (one line).
    Health,
    /// Claim a room as the web application does, and print it as JSON.
    Claim {
        /// `staff`: an available room; `client`: the room whose staff waited longest;
        /// `extra`: one more seat in the chat given by `--room` (`muc.max_chatters` above 2).
        #[arg(value_parser = ["staff", "client", "extra"])]
        role: String,
        /// Who claims (recorded in the room's `*_claimed_by` column).
        #[arg(long, default_value = "cli")]
        by: String,
        /// Only this real bare JID (user@domain) may enter on the claim; anybody else is kicked.
        #[arg(long)]
        jid: Option<String>,
        /// The chat an `extra` claim is for (its row id).
        #[arg(long, required_if_eq("role", "extra"))]
        room: Option<i64>,
    },
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
    /// Already logged (as JSON, `logging.format = "json"`): not printed again as text.
    logged: bool,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: 1,
            error: error.into(),
            logged: false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.logged => ExitCode::from(failure.code),
        Err(failure) => {
            eprintln!("helpim-bot: error: {}", failure.error);
            for cause in failure.error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e: ConfigError| Failure {
        code: 2,
        error: e.into(),
        logged: false,
    })
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config = load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("{}: valid", cli.config.display());
            println!("{}", config.summary());
            Ok(())
        }
        Command::Run => {
            helpim_bot::logging::init_with_format(
                config.logging.level,
                config.logging.room_dir.clone(),
                config.logging.format,
            );
            let json = config.logging.format == helpim_bot::config::LogFormat::Json;
            let ran = actix_rt::System::new().block_on(helpim_bot::app::run_with(
                config,
                helpim_bot::app::RunOptions {
                    standby: cli.standby,
                },
                shutdown_signal(),
            ));
            let result = match ran {
                Ok(()) => Ok(()),
                // A log shipper reads one JSON object per line: the last words too.
                Err(error) if json => {
                    let error = anyhow::Error::new(error);
                    log::error!("helpim-bot: error: {error:#}");
                    Err(Failure {
                        code: 1,
                        error,
                        logged: true,
                    })
                }
                Err(error) => Err(error.into()),
            };
            // Room log files are written by a thread of their own: let it finish.
            log::logger().flush();
            result
        }
        Command::Migrate => block_on(async {
            helpim_bot::app::open_store(&config).await?;
            println!("database schema is up to date");
            Ok(())
        }),
        Command::Rooms { status, passwords } => block_on(async {
            let store = helpim_bot::app::open_store(&config).await?;
            let filter = RoomFilter {
                status,
                bot_jid: None,
            };
            let rooms = store.rooms(&filter).await?;
            let mut table = Table::new(&[Align::Right, Align::Left]);
            for room in &rooms {
                // Who the room was claimed for, when the web application claimed it, and
                // (asked for) its password; a closed room's is cleared: shown as `-`.
                let mut extra: Vec<String> = [
                    ("staff", &room.staff_claimed_by),
                    ("client", &room.client_claimed_by),
                ]
                .iter()
                .filter_map(|(role, by)| by.as_deref().map(|by| format!("{role}_claim={by}")))
                .collect();
                if passwords {
                    extra.push(format!("password={}", room.password().unwrap_or("-")));
                }
                table.row([
                    room.id.to_string(),
                    room.status.to_string(),
                    room.jid.clone(),
                    format!("staff={}", room.staff_nick.as_deref().unwrap_or("-")),
                    format!("client={}", room.client_nick.as_deref().unwrap_or("-")),
                    format!("since={}", room.status_changed_at.to_rfc3339()),
                    extra.join(" "),
                ]);
            }
            print!("{}", table.render());
            eprintln!("{} room(s)", rooms.len());
            Ok(())
        }),
        Command::Stats { since, json } => block_on(async {
            use helpim_bot::stats::{self, StatsQuery};
            let store = helpim_bot::app::open_store(&config).await?;
            let stats = stats::load(&store, &StatsQuery { since }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats::render_text(&stats));
            }
            Ok(())
        }),
        Command::Purge { dry_run } => block_on(async {
            use helpim_bot::retention::Purge;
            let purge = Purge::new(&config.retention, &config.logging);
            let now = helpim_bot::store::now();
            let report = if dry_run {
                // Touches nothing, the schema included: no migration.
                let url = &config.database.url;
                let store = helpim_bot::store::Store::connect(url).await?;
                purge.plan(&store, now).await.map_err(|err| {
                    anyhow::Error::new(err).context(
                        "purge --dry-run failed (it does not migrate: for a database older \
                         than this version, run `helpim-bot migrate` first)",
                    )
                })?
            } else {
                let store = helpim_bot::app::open_store(&config).await?;
                purge.run(&store, now).await?
            };
            println!("{report}");
            Ok(())
        }),
        Command::Health => block_on(async {
            use helpim_bot::lease;
            // Reads only: no migration, no lease taken.
            let bot_jid = config.xmpp.jid.to_string();
            let checked = async {
                let store = helpim_bot::store::Store::connect(&config.database.url).await?;
                lease::health(&store, &bot_jid, config.timeouts.lease).await
            };
            let report = checked.await.map_err(|err| Failure {
                code: 1,
                error: anyhow::Error::new(err).context(format!(
                    "unhealthy: {bot_jid}: cannot read its lease from the database"
                )),
                logged: false,
            })?;
            if report.is_healthy() {
                println!("{report}");
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!("{report}"),
                    logged: false,
                })
            }
        }),
        Command::Claim {
            role,
            by,
            jid,
            room,
        } => block_on(async {
            use helpim_bot::claims::{self, ClaimError};
            use helpim_bot::model::Role;
            if let Some(jid) = &jid {
                // Refused before the database is opened: a bad JID changes nothing.
                claims::normalise_jid(jid)?;
            }
            let store = helpim_bot::app::open_store(&config).await?;
            let claimed = match (role.as_str(), &jid, room) {
                ("extra", _, Some(room)) => {
                    claims::claim_extra(&store, room, &by, jid.as_deref()).await
                }
                ("client", Some(jid), _) => {
                    claims::claim_bound(&store, Role::Client, &by, jid).await
                }
                ("client", None, _) => claims::claim_client(&store, &by).await,
                (_, Some(jid), _) => claims::claim_bound(&store, Role::Staff, &by, jid).await,
                _ => claims::claim_staff(&store, &by).await,
            };
            match claimed {
                Ok(claim) => {
                    println!("{}", serde_json::to_string(&claim)?);
                    Ok(())
                }
                Err(error @ ClaimError::NoneAvailable(_)) => Err(Failure {
                    code: 3,
                    error: error.into(),
                    logged: false,
                }),
                Err(error) => Err(error.into()),
            }
        }),
        Command::History { room } => block_on(async {
            let store = helpim_bot::app::open_store(&config).await?;
            let found = match room.parse::<i64>() {
                Ok(id) => store.room(id).await?,
                Err(_) => store.room_by_jid(&room).await?,
            };
            let Some(found) = found else {
                return Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!("no room {room:?} in the database"),
                    logged: false,
                });
            };
            println!("room {} ({}), now {}", found.jid, found.id, found.status);
            let mut table = Table::new(&[Align::Left, Align::Left, Align::Right]);
            for e in store.events(found.id).await? {
                let mut about = Vec::new();
                if let Some(nick) = &e.nick {
                    about.push(format!("nick={nick}"));
                }
                if let Some(role) = e.role {
                    about.push(format!("role={role}"));
                }
                about.push(e.detail.clone());
                table.row([
                    e.at.to_rfc3339(),
                    e.kind.to_string(),
                    e.from_status.map_or("-", |s| s.as_str()).to_owned(),
                    "→".to_owned(),
                    e.to_status.to_string(),
                    about.join(" "),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }),
    }
}

/// Runs a one-off command on a small runtime.
fn block_on(fut: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}
