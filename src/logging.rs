//! Logging: one line per event on standard error, and optionally one file per room.
//!
//! Every log line about a room carries the key-value `room = <jid>` (the `log` crate's
//! structured fields) and is printed as `room=<jid>` so that support staff can grep for a
//! room. With `logging.room_dir` set, those lines are also appended to
//! `<room_dir>/<room jid>.log`, so a room's whole life can be followed in one file. Message
//! bodies are never logged: the bot does not read them.
//!
//! Room files are written by a thread of their own (`RoomAppender`): the actor that logs
//! only queues the line (never waiting on the disk, never opening a file), and the writer
//! keeps the files of the most recently active rooms open ([`OPEN_ROOM_FILES`], least
//! recently used closed first). A room that finishes closes its file: the room actor calls
//! [`close_room`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hashlink::LruCache;
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

/// Room files kept open at once: enough for every room active in the same minute at
/// helpline scale, far below the process's file limit.
pub const OPEN_ROOM_FILES: usize = 128;

/// Lines that may wait for the room-file writer; past it, room-file lines are dropped (and
/// counted on standard error) rather than make an actor wait for a stalled disk. Standard
/// error still gets every line.
const ROOM_QUEUE: usize = 8192;

/// The process's room-file writer, set by [`init`] when `logging.room_dir` is configured.
static ROOM_FILES: OnceLock<RoomAppender> = OnceLock::new();

/// Closes the log file of room `jid` (its bare JID, as in its `room` key-value): call it
/// when the room's life is over. Lines logged for the room later open the file again
/// (appending). Never blocks on the disk; does nothing without `logging.room_dir`.
pub fn close_room(jid: &str) {
    if let Some(files) = ROOM_FILES.get() {
        files.close(jid);
    }
}

/// The file name of a room's log: room JIDs are lowercase base32 names plus the service
/// domain, so the JID itself is a safe name once a resource separator is replaced.
fn file_name(room: &str) -> String {
    format!("{}.log", room.replace('/', "_"))
}

/// The open room files, most recently used last; owned by the writer thread.
struct RoomFiles {
    dir: PathBuf,
    open: LruCache<String, BufWriter<File>>,
}

impl RoomFiles {
    /// No file open yet; at most `capacity` open at once.
    fn new(dir: PathBuf, capacity: usize) -> RoomFiles {
        RoomFiles {
            dir,
            open: LruCache::new(capacity.max(1)),
        }
    }

    /// Appends `line` to `room`'s file, opening it (and closing the least recently used
    /// one) if it is not open.
    fn write(&mut self, room: &str, line: &str) -> io::Result<()> {
        let name = file_name(room);
        if let Some(file) = self.open.get_mut(&name) {
            return writeln!(file, "{line}");
        }
        let mut file = BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(&name))?,
        );
        writeln!(file, "{line}")?;
        if self.open.len() >= self.open.capacity()
            && let Some((_, mut evicted)) = self.open.remove_lru()
        {
            evicted.flush()?;
        }
        self.open.insert(name, file);
        Ok(())
    }

    /// Writes out and closes `room`'s file, if open.
    fn close(&mut self, room: &str) -> io::Result<()> {
        match self.open.remove(&file_name(room)) {
            Some(mut file) => file.flush(),
            None => Ok(()),
        }
    }

    /// Writes out every open file's buffer (the files stay open).
    fn flush_all(&mut self) -> io::Result<()> {
        for (_, file) in self.open.iter_mut() {
            file.flush()?;
        }
        Ok(())
    }

    /// How many files are open.
    fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Where `room`'s file is.
    #[cfg(test)]
    fn path(&self, room: &str) -> PathBuf {
        self.dir.join(file_name(room))
    }
}

/// Work for the room-file writer thread.
enum Job {
    /// Append a formatted line to a room's file.
    Line { room: String, line: String },
    /// The room is over: close its file.
    Close(String),
    /// Write everything queued so far out, then answer how many files are open.
    Sync(mpsc::Sender<usize>),
}

/// A non-blocking appender for room files: a bounded queue and one writer thread.
struct RoomAppender {
    jobs: SyncSender<Job>,
    dropped: Arc<AtomicU64>,
}

impl RoomAppender {
    /// Starts the writer thread for files in `dir`, at most `open_files` open at once.
    fn start(dir: PathBuf, open_files: usize) -> io::Result<RoomAppender> {
        let (jobs, queue) = mpsc::sync_channel(ROOM_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let files = RoomFiles::new(dir, open_files);
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("helpim-room-logs".into())
            .spawn(move || write_room_files(files, queue, counter))?;
        Ok(RoomAppender { jobs, dropped })
    }

    /// Queues a line for `room`'s file; drops it (counted) when the queue is full.
    fn append(&self, room: String, line: String) {
        if let Err(TrySendError::Full(_)) = self.jobs.try_send(Job::Line { room, line }) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues the closing of `room`'s file, behind the lines already queued for it. A
    /// close is never dropped: with the queue full (a stalled disk) it waits for room.
    fn close(&self, room: &str) {
        if let Err(TrySendError::Full(job)) = self.jobs.try_send(Job::Close(room.to_owned())) {
            let _ = self.jobs.send(job);
        }
    }

    /// Waits (at most `timeout`) until everything queued is written; returns how many
    /// room files are open then, or None on timeout.
    fn sync(&self, timeout: Duration) -> Option<usize> {
        let (done, answer) = mpsc::channel();
        self.jobs.send(Job::Sync(done)).ok()?;
        answer.recv_timeout(timeout).ok()
    }
}

/// The writer thread: takes every queued job, then writes the buffers out, so a line is on
/// disk as soon as the queue is empty; ends when the appender is dropped.
fn write_room_files(mut files: RoomFiles, queue: Receiver<Job>, dropped: Arc<AtomicU64>) {
    let report = |what: &str, room: &str, error: io::Error| {
        eprintln!("cannot {what} room log {}: {error}", file_name(room));
    };
    while let Ok(first) = queue.recv() {
        let mut syncs = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Line { room, line } => {
                    if let Err(error) = files.write(&room, &line) {
                        report("write", &room, error);
                    }
                }
                Job::Close(room) => {
                    if let Err(error) = files.close(&room) {
                        report("close", &room, error);
                    }
                }
                Job::Sync(done) => syncs.push(done),
            }
            next = queue.try_recv().ok();
        }
        if let Err(error) = files.flush_all() {
            eprintln!("cannot write room logs: {error}");
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            eprintln!("{lost} room log line(s) dropped: the room log directory is too slow");
        }
        for done in syncs {
            let _ = done.send(files.open_count());
        }
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
    /// How lines on standard error look; room files are always text, for people.
    format: LogFormat,
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
        match self.format {
            LogFormat::Text => eprintln!("{line}"),
            LogFormat::Json => eprintln!("{}", format_json(record)),
        }
        if let (Some(files), Some(room)) = (ROOM_FILES.get(), room_of(record)) {
            files.append(room, line);
        }
    }

    /// Waits (briefly) until the room files hold every line logged so far.
    fn flush(&self) {
        if let Some(files) = ROOM_FILES.get() {
            files.sync(Duration::from_secs(2));
        }
    }
}

/// Installs the logger. `RUST_LOG`, when set, overrides `level` (e.g.
/// `RUST_LOG=helpim_bot=debug`); SQL statement logging is kept at `warn`, and the XMPP
/// crates' `debug` and `trace` records are never printed (they may hold passwords and
/// message bodies).
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
    if let Some(dir) = room_dir {
        match RoomAppender::start(dir, OPEN_ROOM_FILES) {
            Ok(files) => {
                let _ = ROOM_FILES.set(files);
            }
            Err(error) => eprintln!("cannot start the room log writer: {error}"),
        }
    }
    let logger = HelpimLogger { filter, format };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// An error and its causes on one line, for log lines: "what: because: because".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    use std::path::Path;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn at_most_the_capacity_is_open_and_no_line_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RoomFiles::new(dir.path().to_owned(), 2);
        for room in ["a@muc", "b@muc", "c@muc"] {
            files.write(room, &format!("first of {room}")).unwrap();
        }
        assert_eq!(
            files.open_count(),
            2,
            "the least recently used file was closed"
        );
        // The evicted file was written out when it was closed.
        assert_eq!(read(&files.path("a@muc")), "first of a@muc\n");
        files.write("a@muc", "second of a@muc").unwrap();
        assert_eq!(files.open_count(), 2);
        files.flush_all().unwrap();
        assert_eq!(
            read(&files.path("a@muc")),
            "first of a@muc\nsecond of a@muc\n",
            "reopened for appending"
        );
        assert_eq!(read(&files.path("b@muc")), "first of b@muc\n");
        assert_eq!(read(&files.path("c@muc")), "first of c@muc\n");
    }

    #[test]
    fn a_closed_room_s_file_is_written_out_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RoomFiles::new(dir.path().to_owned(), 8);
        files.write("a@muc", "one").unwrap();
        files.write("b@muc", "two").unwrap();
        files.close("a@muc").unwrap();
        assert_eq!(files.open_count(), 1);
        assert_eq!(read(&files.path("a@muc")), "one\n");
        files.close("a@muc").unwrap(); // closing twice is harmless
        assert_eq!(files.open_count(), 1);
    }

    #[test]
    fn the_appender_writes_in_order_off_the_caller_s_thread_and_closes_finished_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let appender = RoomAppender::start(dir.path().to_owned(), 4).unwrap();
        for n in 0..100 {
            appender.append(format!("r{}@muc", n % 10), format!("line {n}"));
        }
        appender.close("r3@muc");
        let open = appender
            .sync(Duration::from_secs(5))
            .expect("the writer answers");
        assert!(open <= 4, "{open} files open");
        let r3 = read(&dir.path().join("r3@muc.log"));
        let expected: String = (0..100)
            .filter(|n| n % 10 == 3)
            .map(|n| format!("line {n}\n"))
            .collect();
        assert_eq!(r3, expected);

        // Only the finished room's file is closed; the others stay cached.
        for n in 0..3 {
            appender.append(format!("r{n}@muc"), "more".into());
        }
        assert_eq!(appender.sync(Duration::from_secs(5)), Some(4));
        appender.close("r0@muc");
        assert_eq!(appender.sync(Duration::from_secs(5)), Some(3));
    }

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
