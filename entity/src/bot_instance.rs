//! The `bot_instance` table: the lease that makes one process, and only one, manage the
//! rooms of a bot JID. Several bot instances with different JIDs share one database, one
//! row each; a process deletes its row when it stops cleanly.

use sea_orm::entity::prelude::*;

/// A lease row as stored; `helpim_bot::lease` acquires, renews and releases it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bot_instance")]
pub struct Model {
    /// The bare JID of the bot instance (`room.bot_jid` of the rooms it manages): one
    /// holder per JID, enforced by the primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bot_jid: String,
    /// A random token chosen by the holding process at start; every renewal checks it, so
    /// a process whose lease was taken over finds out.
    pub holder: String,
    /// The holder's process id, for the operator's messages (`pid 123 on host x`).
    pub pid: i64,
    /// The holder's host name, for the operator's messages.
    pub host: String,
    /// When the holder acquired the lease (the holder's clock, UTC).
    pub acquired_at: DateTimeUtc,
    /// When the holder last renewed the lease (the holder's clock, UTC): what the health
    /// check reports.
    pub heartbeat_at: DateTimeUtc,
    /// How many times the holder renewed: a would-be taker watches it stay unchanged,
    /// which does not depend on the machines' clocks agreeing.
    pub renewals: i64,
    /// The holder's boot id and pid namespace: a process with the same scope can look the
    /// holder's pid up in `/proc`.
    pub process_scope: Option<String>,
    /// The holder's start time in clock ticks after boot: a running pid with another start
    /// time is another process.
    pub process_start: Option<i64>,
    /// The resource of the holder's XMPP session (each process binds its own).
    #[sea_orm(column_type = "Text", nullable)]
    pub xmpp_resource: Option<String>,
    /// Whether the holder's XMPP session is up now.
    pub xmpp_up: bool,
}

/// The lease stands alone: rooms name their bot by JID, not by a foreign key, so that a
/// released lease leaves the rooms' history untouched.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    /// Operators and the health check read these exact names.
    #[test]
    fn columns_are_the_contract() {
        assert_eq!(Entity.table_name(), "bot_instance");
        let columns: Vec<String> = Column::iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(
            columns,
            [
                "bot_jid",
                "holder",
                "pid",
                "host",
                "acquired_at",
                "heartbeat_at",
                "renewals",
                "process_scope",
                "process_start",
                "xmpp_resource",
                "xmpp_up"
            ]
        );
    }
}
