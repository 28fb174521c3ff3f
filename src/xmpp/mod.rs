//! XMPP: the connection task, and builders and parsers for the stanzas the bot exchanges.
//!
//! Nothing here knows about actors or the database: the actors turn what this module reads
//! into lifecycle events, and lifecycle actions into what this module builds.

pub mod condition;
pub mod connection;
pub mod form;
pub mod muc;

pub use condition::Condition;
pub use connection::{ConnectSettings, IqError, XmppEvent, XmppHandle};
