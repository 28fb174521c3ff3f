mod common;

// `helpim-bot stats` on a real database: a history written through the store, with fixed
// timestamps, gives exactly the expected figures on every supported backend.

use chrono::{DateTime, Utc};
use common::db::{Backend, TestDb};
use helpim_bot::model::{CloseReason, EventKind, Role};
use helpim_bot::stats::{self, ClaimCounts, Stats, StatsQuery, Summary};
use helpim_bot::store::{NewRoom, RoomChange, Store};

use EventKind as K;

/// An RFC 3339 timestamp, for a history that reads like a log.
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text}: {err}"))
        .with_timezone(&Utc)
}

/// Writes a room's history through the store, as the bot would.
struct Room<'a> {
    store: &'a Store,
    id: i64,
    /// The day of the room's creation, `YYYY-MM-DD`, for short step times.
    day: &'static str,
}

impl<'a> Room<'a> {
    /// Records room `name` as created at `created` (RFC 3339).
    async fn create(store: &'a Store, name: &str, created: &'static str) -> Room<'a> {
        let room = store
            .create_room(&NewRoom {
                jid: format!("helpim-{name}@conference.localhost"),
                password: format!("pw-{name}"),
                bot_jid: "bot@localhost".to_owned(),
                at: at(created),
            })
            .await
            .unwrap_or_else(|err| panic!("create room {name}: {err}"));
        Room {
            store,
            id: room.id,
            day: &created[..10],
        }
    }

    /// Applies `steps` in order. Each reads like a log line, in the contract's words:
    /// `when kind from to [role]`, or `when closed from closed reason`; `when` is a UTC time
    /// on the room's creation day, or a full RFC 3339 timestamp.
    async fn steps(&self, steps: &[&str]) {
        for step in steps {
            let words: Vec<&str> = step.split_whitespace().collect();
            let [when, kind, from, to, rest @ ..] = words.as_slice() else {
                panic!("bad step {step:?}");
            };
            let kind: EventKind = kind.parse().unwrap();
            let last = rest.first().copied();
            let (role, close_reason) = if kind == K::Closed {
                (None, last.map(|r| r.parse::<CloseReason>().unwrap()))
            } else {
                (last.map(|r| r.parse::<Role>().unwrap()), None)
            };
            let change = RoomChange {
                nick: role.map(|r| format!("{r}-nick")),
                role,
                detail: format!("{kind} at {when}"),
                close_reason,
                ..RoomChange::new(
                    self.id,
                    kind,
                    from.parse().unwrap(),
                    to.parse().unwrap(),
                    if when.contains('T') {
                        at(when)
                    } else {
                        at(&format!("{}T{when}Z", self.day))
                    },
                )
            };
            self.store
                .apply(&change)
                .await
                .unwrap_or_else(|err| panic!("apply {change:?}: {err}"));
        }
    }
}

/// The prepared history. Rooms are created in this order (so ids are not in `created` time
/// order: room `o2` is recorded late with an early timestamp, as a second bot could).
///
/// | room | created (UTC)              | staff wait | chat   | closed    | other                |
/// |------|----------------------------|------------|--------|-----------|----------------------|
/// | o1   | 2026-10-30 12:00           | 5 s        | 100 s  | error     | 1 kick               |
/// | a    | 2026-11-02 09:00:00        | 30.25 s    | 10 min | completed | claims used          |
/// | b    | 2026-11-02 09:00:01        | 60 s       | 20 min | completed | 1 kick, a rejoin     |
/// | c    | 2026-11-02 09:00:02        | 300 s      | 40 min | completed | an extra person      |
/// | d    | 2026-11-02 09:00:03        | -          | -      | no_client | client claim expired |
/// | e    | 2026-11-02 09:00:04        | -          | -      | shutdown  | staff claim expired  |
/// | f    | 2026-11-02 09:00:05        | -          | -      | (open)    |                      |
/// | o2   | 2026-10-31 23:59:59.999999 | -          | -      | shutdown  | closed on 1 November |
/// | p    | 2026-11-01 00:00:00        | -          | -      | lost      |                      |
async fn prepare(store: &Store) {
    let o1 = Room::create(store, "o1", "2026-10-30T12:00:00Z").await;
    o1.steps(&[
        "12:00:10 entered      available     staff_waiting staff",
        "12:00:15 entered      staff_waiting chatting      client",
        "12:00:20 kicked       chatting      chatting      intruder",
        "12:01:30 left         chatting      one_left      client",
        "12:01:55 closed       one_left      closed        error",
    ])
    .await;

    let a = Room::create(store, "a", "2026-11-02T09:00:00Z").await;
    let b = Room::create(store, "b", "2026-11-02T09:00:01Z").await;
    let c = Room::create(store, "c", "2026-11-02T09:00:02Z").await;
    let d = Room::create(store, "d", "2026-11-02T09:00:03Z").await;
    let e = Room::create(store, "e", "2026-11-02T09:00:04Z").await;
    Room::create(store, "f", "2026-11-02T09:00:05Z").await;

    a.steps(&[
        "09:00:05    staff_claimed  available     available     staff",
        "09:01:00    entered        available     staff_waiting staff",
        "09:01:10    client_claimed staff_waiting staff_waiting client",
        "09:01:30.25 entered        staff_waiting chatting      client",
        "09:02:00    nick_changed   chatting      chatting      client",
        "09:11:00    left           chatting      one_left      client",
        "09:11:30.25 closed         one_left      closed        completed",
    ])
    .await;

    b.steps(&[
        "09:02:00 entered       available     staff_waiting staff",
        "09:03:00 entered       staff_waiting chatting      client",
        "09:05:00 kicked        chatting      chatting      intruder",
        "09:10:00 left          chatting      one_left      client",
        "09:10:30 rejoined      one_left      chatting      client",
        "09:22:00 left          chatting      one_left      staff",
        "09:23:00 closed        one_left      closed        completed",
    ])
    .await;

    c.steps(&[
        "09:10:00 entered       available     staff_waiting staff",
        "09:15:00 entered       staff_waiting chatting      client",
        "09:20:00 entered       chatting      chatting",
        "09:54:00 left          chatting      one_left      client",
        "09:55:00 closed        one_left      closed        completed",
    ])
    .await;

    d.steps(&[
        "10:00:00 entered        available     staff_waiting staff",
        "10:05:00 client_claimed staff_waiting staff_waiting client",
        "10:10:00 claim_expired  staff_waiting staff_waiting client",
        "10:30:00 closed         staff_waiting closed        no_client",
    ])
    .await;

    e.steps(&[
        "09:00:10 staff_claimed available     available     staff",
        "09:05:00 claim_expired available     available     staff",
        "12:00:00 closed        available     closed        shutdown",
    ])
    .await;

    let o2 = Room::create(store, "o2", "2026-10-31T23:59:59.999999Z").await;
    o2.steps(&["2026-11-01T00:00:30Z closed available closed shutdown"])
        .await;

    let p = Room::create(store, "p", "2026-11-01T00:00:00Z").await;
    p.steps(&["00:30:00 closed available closed lost"]).await;
}

fn summary(count: u64, p50: f64, p90: f64, max: f64) -> Summary {
    Summary {
        count,
        p50_secs: Some(p50),
        p90_secs: Some(p90),
        max_secs: Some(max),
    }
}

fn reasons(
    completed: u64,
    no_client: u64,
    timeout: u64,
    lost: u64,
    shutdown: u64,
    error: u64,
) -> Vec<(CloseReason, u64)> {
    vec![
        (CloseReason::Completed, completed),
        (CloseReason::NoClient, no_client),
        (CloseReason::Timeout, timeout),
        (CloseReason::Lost, lost),
        (CloseReason::Shutdown, shutdown),
        (CloseReason::Error, error),
    ]
}

async fn exercise(backend: Backend) {
    let db = TestDb::new(backend);
    let store = db.store().await;

    // An empty database: zero counts, no percentiles.
    let empty = stats::load(&store, &StatsQuery::default()).await.unwrap();
    assert_eq!(empty.rooms_created, 0);
    assert_eq!(empty.staff_wait.p50_secs, None);
    assert_eq!(empty.rooms_closed_by_reason, reasons(0, 0, 0, 0, 0, 0));

    prepare(&store).await;

    // The period the helpline asked about: from 1 November (midnight UTC).
    let since = stats::parse_since("2026-11-01").unwrap();
    let november = stats::load(&store, &StatsQuery { since: Some(since) })
        .await
        .unwrap();
    assert_eq!(
        november,
        Stats {
            since: Some(at("2026-11-01T00:00:00Z")),
            rooms_created: 7,
            rooms_with_client: 3,
            rooms_closed: 6,
            rooms_closed_by_reason: reasons(3, 1, 0, 1, 1, 0),
            rooms_closed_without_reason: 0,
            staff_wait: summary(3, 60.0, 300.0, 300.0),
            chat_duration: summary(3, 1200.0, 2400.0, 2400.0),
            claims_expired: ClaimCounts {
                staff: 1,
                client: 1,
                total: 2,
            },
            kicks: 1,
        },
        "{backend:?}"
    );

    let text = stats::render_text(&november);
    for line in [
        "helpim-bot statistics: rooms created since 2026-11-01T00:00:00Z\n",
        "\nRooms created                 7\n",
        "\nRooms with a client           3\n",
        "\nRooms closed                  6\n",
        "\n  completed                   3\n",
        "\n  no_client                   1\n",
        "\n  timeout                     0\n",
        "\n  lost                        1\n",
        "\n  shutdown                    1\n",
        "\n  error                       0\n",
        "\nClaims expired                2  (staff 1, client 1)\n",
        "\nKicks                         1\n",
        "\nStaff wait for a client       3      1m 00s      5m 00s      5m 00s\n",
        "\nChat duration                 3     20m 00s     40m 00s     40m 00s\n",
    ] {
        assert!(text.contains(line), "{backend:?}: {line:?} not in\n{text}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&november).unwrap()).unwrap();
    assert_eq!(json["since"], "2026-11-01T00:00:00Z");
    assert_eq!(json["rooms_closed_by_reason"]["lost"], 1);
    assert_eq!(json["chat_duration"]["p50_secs"], 1200.0);

    // The whole history: the October rooms count too, and the 30.25 s wait is the median.
    let everything = stats::load(&store, &StatsQuery::default()).await.unwrap();
    assert_eq!(
        everything,
        Stats {
            since: None,
            rooms_created: 9,
            rooms_with_client: 4,
            rooms_closed: 8,
            rooms_closed_by_reason: reasons(3, 1, 0, 1, 2, 1),
            rooms_closed_without_reason: 0,
            staff_wait: summary(4, 30.25, 300.0, 300.0),
            chat_duration: summary(4, 600.0, 2400.0, 2400.0),
            claims_expired: ClaimCounts {
                staff: 1,
                client: 1,
                total: 2,
            },
            kicks: 2,
        },
        "{backend:?}"
    );
    let text = stats::render_text(&everything);
    assert!(
        text.starts_with("helpim-bot statistics: all rooms\n"),
        "{text}"
    );
    assert!(
        text.contains("\nStaff wait for a client       4         30s      5m 00s      5m 00s\n"),
        "{text}"
    );

    // A timestamp exactly on room b's creation: b counts, a (one second earlier) does not.
    let since = stats::parse_since("2026-11-02T10:00:01+01:00").unwrap();
    let from_b = stats::load(&store, &StatsQuery { since: Some(since) })
        .await
        .unwrap();
    assert_eq!(
        from_b,
        Stats {
            since: Some(at("2026-11-02T09:00:01Z")),
            rooms_created: 5,
            rooms_with_client: 2,
            rooms_closed: 4,
            rooms_closed_by_reason: reasons(2, 1, 0, 0, 1, 0),
            rooms_closed_without_reason: 0,
            staff_wait: summary(2, 60.0, 300.0, 300.0),
            chat_duration: summary(2, 1200.0, 2400.0, 2400.0),
            claims_expired: ClaimCounts {
                staff: 1,
                client: 1,
                total: 2,
            },
            kicks: 1,
        },
        "{backend:?}"
    );

    // A period in which no room was created: nothing, although events happened in it.
    let since = stats::parse_since("2026-11-02T09:00:05.000001Z").unwrap();
    let none = stats::load(&store, &StatsQuery { since: Some(since) })
        .await
        .unwrap();
    assert_eq!(none.rooms_created, 0, "{backend:?}");
    assert_eq!(none.rooms_closed, 0, "{backend:?}");
    assert_eq!(none.staff_wait.count, 0, "{backend:?}");
    assert_eq!(none.chat_duration.max_secs, None, "{backend:?}");
    assert_eq!(none.kicks, 0, "{backend:?}");
}

#[tokio::test]
async fn sqlite_file() {
    exercise(Backend::SqliteFile).await;
}

#[tokio::test]
async fn postgres() {
    exercise(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb() {
    exercise(Backend::MariaDb).await;
}

/// `parse_since` works as clap's value parser for `--since` (how `main.rs` uses it): a bad
/// value is a usage error (exit code 2) that names the value and both accepted forms.
#[test]
fn parse_since_is_a_clap_value_parser() {
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long, value_parser = stats::parse_since)]
        since: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    }

    let args = Args::try_parse_from(["stats", "--since", "2026-11-01", "--json"]).unwrap();
    assert_eq!(args.since, Some(at("2026-11-01T00:00:00Z")));
    assert!(args.json);
    assert_eq!(Args::try_parse_from(["stats"]).unwrap().since, None);

    let err = Args::try_parse_from(["stats", "--since", "1 Nov"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(text.contains("\"1 Nov\""), "{text}");
    assert!(
        text.contains("RFC 3339") && text.contains("YYYY-MM-DD"),
        "{text}"
    );
}
