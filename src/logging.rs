//! Logging: one line per event on standard error, and optionally one file per room.
//!
//! Every log line about a room carries the key-value `room = <jid>` (the `log` crate's
//! structured fields) and is printed as `room=<jid>` so that support staff can grep for a
//! room. With `logging.room_dir` set, those lines are also appended to
//! `<room_dir>/<room jid>.log`, so a room's whole life can be followed in one file. Message
//! bodies are never logged: the bot does not read them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use log::kv::Key;
use log::{LevelFilter, Log, Metadata, Record};

/// Crates that handle raw stanzas, and log them (or parts of them) below `info`: a join
/// carries a room password, a message its body, the login the bot's password.
const STANZA_CRATES: [&str; 6] = [
    "tokio_xmpp",
    "xso",
    "minidom",
    "rxml",
    "xmpp_parsers",
    "sasl",
];

/// Whether a record may carry stanza contents: `debug` or `trace` from a [`STANZA_CRATES`]
/// crate. Such records are never printed, whatever the level or `RUST_LOG` asks for.
fn may_carry_secrets(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    metadata.level() > log::Level::Info
        && STANZA_CRATES.iter().any(|krate| {
            target
                .strip_prefix(krate)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// The room a record is about, from its `room` key-value.
fn room_of(record: &Record<'_>) -> Option<String> {
    record
        .key_values()
        .get(Key::from("room"))
        .map(|v| v.to_string())
}

/// One line: `2026-11-25T15:00:00.123Z INFO  room=<jid> message`.
fn format_line(record: &Record<'_>) -> String {
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    match room_of(record) {
        Some(room) => format!("{ts} {:<5} room={room} {}", record.level(), record.args()),
        None => format!(
            "{ts} {:<5} {}: {}",
            record.level(),
            record.target(),
            record.args()
        ),
    }
}

/// The logger: standard error through `env_logger`'s filter, plus per-room files.
struct HelpimLogger {
    filter: env_logger::Logger,
    room_dir: Option<PathBuf>,
}

impl Log for HelpimLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata) && !may_carry_secrets(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) || may_carry_secrets(record.metadata()) {
            return;
        }
        let line = format_line(record);
        eprintln!("{line}");
        if let (Some(dir), Some(room)) = (&self.room_dir, room_of(record)) {
            // Room JIDs are lowercase base32 names plus the service domain: safe file names.
            let path = dir.join(format!("{}.log", room.replace('/', "_")));
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(error) = written {
                eprintln!("cannot write room log {}: {error}", path.display());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `RUST_LOG`, when set, overrides `level` (e.g.
/// `RUST_LOG=helpim_bot=debug`); SQL statement logging is kept at `warn`, and the XMPP
/// crates' `debug` and `trace` records are never printed (they may hold passwords and
/// message bodies).
pub fn init(level: LevelFilter, room_dir: Option<PathBuf>) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .filter_module("sqlx", LevelFilter::Warn);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    let filter = builder.build();
    let max = filter.filter();
    let logger = HelpimLogger { filter, room_dir };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(target: &str, level: log::Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn stanza_crates_are_heard_only_at_info_and_above() {
        use log::Level::*;
        for target in [
            "tokio_xmpp",
            "tokio_xmpp::stanzastream::worker",
            "xso",
            "sasl::client",
        ] {
            assert!(may_carry_secrets(&metadata(target, Trace)), "{target}");
            assert!(may_carry_secrets(&metadata(target, Debug)), "{target}");
            assert!(!may_carry_secrets(&metadata(target, Info)), "{target}");
            assert!(!may_carry_secrets(&metadata(target, Warn)), "{target}");
        }
        for target in ["helpim_bot::actors::room", "tokio_xmppish", "sea_orm"] {
            assert!(!may_carry_secrets(&metadata(target, Trace)), "{target}");
        }
    }
}
