//! The configuration file as written: every key optional, unknown keys refused
//! (`deny_unknown_fields`), so that a typo is reported instead of silently ignored.

use super::*;

/// The file as written; sections other than `[xmpp]` and `[muc]` may be left out, and a
/// missing `[xmpp]` or `[muc]` is reported as its first missing required key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) xmpp: Option<RawXmpp>,
    pub(super) muc: Option<RawMuc>,
    pub(super) pool: Option<RawPool>,
    pub(super) database: Option<RawDatabase>,
    pub(super) logging: Option<RawLogging>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) retention: Option<RawRetention>,
    pub(super) http: Option<RawHttp>,
    pub(super) texts: Option<RawTexts>,
}

/// `[texts]` as written: the language and any text's own words, by key. Keys are checked
/// against the catalogue in validation (not by serde), so that an unknown one is named with
/// the keys there are.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTexts {
    pub(super) language: Option<String>,
    #[serde(flatten)]
    pub(super) words: std::collections::BTreeMap<String, String>,
}

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<String>,
}

/// `[xmpp]` as written; `tls` is a string so a bad value gets our message listing choices.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXmpp {
    pub(super) jid: Option<String>,
    pub(super) password: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) nick: Option<String>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) servers: Option<Vec<String>>,
    pub(super) tls: Option<String>,
}

/// `[muc]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMuc {
    pub(super) service: Option<String>,
    pub(super) room_prefix: Option<String>,
    pub(super) max_chatters: Option<u32>,
    pub(super) history_length: Option<u32>,
    pub(super) require_claims: Option<bool>,
}

/// `[pool]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) available: Option<u32>,
    pub(super) max_rooms: Option<u32>,
    pub(super) check_secs: Option<u64>,
    pub(super) creation_window: Option<u32>,
}

/// `[database]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<String>,
}

/// `[logging]` as written; `level` is a string so a bad value gets our message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Option<String>,
    pub(super) room_dir: Option<PathBuf>,
    pub(super) format: Option<String>,
}

/// `[retention]` as written, in days.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) personal_data_days: Option<u32>,
    pub(super) delete_days: Option<u32>,
}

/// `[timeouts]` as written, in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect_secs: Option<u64>,
    pub(super) iq_secs: Option<u64>,
    pub(super) join_secs: Option<u64>,
    pub(super) shutdown_secs: Option<u64>,
    pub(super) retry_max_secs: Option<u64>,
    pub(super) staff_claim_secs: Option<u64>,
    pub(super) client_claim_secs: Option<u64>,
    pub(super) rejoin_grace_secs: Option<u64>,
    pub(super) one_left_secs: Option<u64>,
    pub(super) server_ping_secs: Option<u64>,
    pub(super) room_ping_secs: Option<u64>,
    pub(super) lease_secs: Option<u64>,
}
