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
        let (key, problem) = invalid(&text(&format!("servers = [\"b:5222\"]\n{other}"), "", ""));
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
    let example = include_str!("../../config/helpim-bot.example.toml");
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

// --- [texts] -------------------------------------------------------------------------------

#[test]
fn texts_default_to_english_and_take_a_language_and_overrides() {
    use crate::texts::{Language, Text};
    let config = load(&text("", "", "")).unwrap();
    assert_eq!(config.texts.language(), Language::En);
    assert_eq!(config.texts.get(Text::KickFull), "This chat is full.");

    let config = load(&text(
        "",
        "",
        "[texts]\nlanguage = \"nl\"\nkick_full = \"Het is hier even vol.\"",
    ))
    .unwrap();
    assert_eq!(config.texts.language(), Language::Nl);
    assert_eq!(config.texts.get(Text::KickFull), "Het is hier even vol.");
    assert_eq!(
        config.texts.get(Text::KickChatEnded),
        "Dit gesprek is afgelopen."
    );
}

#[test]
fn an_unknown_text_key_or_language_is_named() {
    let (key, problem) = invalid(&text("", "", "[texts]\nlanguage = \"fr\""));
    assert_eq!(key, "texts.language");
    assert_mentions(&problem, &["\"fr\"", "en, nl, de"]);

    let (key, problem) = invalid(&text("", "", "[texts]\nchat_over = \"Bye.\""));
    assert_eq!(key, "texts.chat_over");
    assert_mentions(
        &problem,
        &["not a text", "chat_ended_other_left", "kick_full"],
    );

    let (key, problem) = invalid(&text("", "", "[texts]\nkick_full = \" \""));
    assert_eq!(key, "texts.kick_full");
    assert_mentions(&problem, &["empty"]);

    let err = load(&text("", "", "[texts]\nkick_full = 3")).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn the_example_file_lists_every_text_with_its_english_words() {
    use crate::texts::Text;
    let example = include_str!("../../config/helpim-bot.example.toml");
    assert!(example.contains("# language = \"en\"\n"));
    for &text in Text::ALL {
        let line = format!("# {} = {:?}\n", text.key(), text.english());
        assert!(example.contains(&line), "the example lacks {line}");
    }
}
