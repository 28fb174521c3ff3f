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

use crate::config::LogFormat;

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

/// One JSON object for log shippers: `ts`, `level`, `target`, `room` (when the record is
/// about a room), every other key-value of the record as a field, and `msg`.
fn format_json(record: &Record<'_>) -> String {
    /// Copies a record's key-values into the object as strings.
    struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            self.0
                .insert(key.as_str().to_owned(), value.to_string().into());
            Ok(())
        }
    }
    let mut object = serde_json::Map::new();
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    object.insert("ts".into(), ts.to_string().into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    let _ = record.key_values().visit(&mut Fields(&mut object));
    object.insert("msg".into(), record.args().to_string().into());
    serde_json::Value::Object(object).to_string()
}

/// The logger: standard error through `env_logger`'s filter, plus per-room files.
struct HelpimLogger {
    filter: env_logger::Logger,
    room_dir: Option<PathBuf>,
    /// How lines on standard error look; room files are always text, for people.
    format: LogFormat,
}

impl Log for HelpimLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let line = format_line(record);
        match self.format {
            LogFormat::Text => eprintln!("{line}"),
            LogFormat::Json => eprintln!("{}", format_json(record)),
        }
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
/// `RUST_LOG=helpim_bot=debug`); SQL statement logging is kept at `warn`.
pub fn init(level: LevelFilter, room_dir: Option<PathBuf>) {
    init_with_format(level, room_dir, LogFormat::Text);
}

/// [`init`], with standard error written in `format` (`logging.format`).
pub fn init_with_format(level: LevelFilter, room_dir: Option<PathBuf>, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .filter_module("sqlx", LevelFilter::Warn);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    let filter = builder.build();
    let max = filter.filter();
    let logger = HelpimLogger {
        filter,
        room_dir,
        format,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_room_as_a_field() {
        let room = "helpim-abc@conference.localhost";
        let line = format_json(
            &Record::builder()
                .args(format_args!("entered \"quoted\"\nnext"))
                .level(log::Level::Info)
                .target("helpim_bot::actors::room")
                .key_values(&[("room", room)])
                .build(),
        );
        assert!(!line.contains('\n'), "one object per line: {line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["room"], room);
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "helpim_bot::actors::room");
        assert_eq!(value["msg"], "entered \"quoted\"\nnext");
        assert!(value["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn json_lines_without_room_have_no_room_field() {
        let line = format_json(
            &Record::builder()
                .args(format_args!("starting"))
                .level(log::Level::Warn)
                .target("helpim_bot::app")
                .build(),
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(value.get("room").is_none());
        assert_eq!(value["msg"], "starting");
    }
}
