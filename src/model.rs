//! The vocabulary shared by the lifecycle, the store, the CLI and the web-app contract.
//!
//! Every enum here has a string form that is stored in the database and read by the web
//! application, so the strings are part of the contract: they never change meaning.
//! Parsing a string that is not one of them is an error that names the bad value, so a
//! damaged database row is reported, never guessed at.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A string from the database (or the command line) that is not one of the contract's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what} (expected one of: {expected})")]
pub struct UnknownValue {
    /// Which kind of value was being parsed (`room status`, `close reason`, ...).
    pub what: &'static str,
    /// The offending text, as found.
    pub value: String,
    /// The accepted spellings, comma separated.
    pub expected: &'static str,
}

/// Declares a string-backed enum with `as_str`, `Display`, `FromStr` and `ALL`, so that the
/// contract strings are written exactly once.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract string of this value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum! {
    /// Where a room is in its life; stored in `room.status`.
    ///
    /// The web application reads this column: `available` rooms may be claimed for staff,
    /// `staff_waiting` rooms may be claimed for a client.
    RoomStatus, "room status" {
        /// Configured on the server, password set, nobody inside yet.
        Available => "available",
        /// The first person (staff) is inside and waiting for a client.
        StaffWaiting => "staff_waiting",
        /// Two people are inside.
        Chatting => "chatting",
        /// The chat had two people and one has left.
        OneLeft => "one_left",
        /// Everybody left (or the room was lost); the room is destroyed on the server.
        Closed => "closed",
    }
}

string_enum! {
    /// Why a room was closed; stored in `room.close_reason` and used for statistics.
    CloseReason, "close reason" {
        /// Staff and client chatted and both left.
        Completed => "completed",
        /// Staff left before any client came.
        NoClient => "no_client",
        /// The last person stayed alone longer than `timeouts.one_left_secs`.
        Timeout => "timeout",
        /// The room disappeared from the server (server restart, crash) or could not be
        /// recovered.
        Lost => "lost",
        /// The bot shut down and destroyed the room while it was still unused.
        Shutdown => "shutdown",
        /// The server or the bot hit an error that made the room unusable.
        Error => "error",
    }
}

string_enum! {
    /// What happened in a `room_event` row; statistics are computed from these.
    EventKind, "event kind" {
        /// The room was configured on the server and recorded as `available`.
        Created => "created",
        /// A person entered the room.
        Entered => "entered",
        /// A person left the room (the detail says how: left, kicked, banned, ...).
        Left => "left",
        /// A person came back with the same nick after losing the connection.
        Rejoined => "rejoined",
        /// A person changed nick; the same person, no status change.
        NickChanged => "nick_changed",
        /// The bot kicked somebody (over the occupant limit, or without a claim).
        Kicked => "kicked",
        /// The web application claimed the room for staff.
        StaffClaimed => "staff_claimed",
        /// The web application claimed the room for a client.
        ClientClaimed => "client_claimed",
        /// The web application claimed one extra seat of a chat in progress.
        ExtraClaimed => "extra_claimed",
        /// A claim nobody used in time was released (and the room's password changed, so
        /// that nobody holding the old one can walk in).
        ClaimExpired => "claim_expired",
        /// The room was closed (the row's `close_reason` says why).
        Closed => "closed",
        /// The bot found the room in a different state on the server and corrected the row.
        Reconciled => "reconciled",
        /// Somebody the bot kicked could not be removed (the server refused or ignored the
        /// kick); the people in the chat were told, and the bot keeps trying.
        KickFailed => "kick_failed",
    }
}

string_enum! {
    /// The part a person plays in a room.
    Role, "role" {
        /// The helpline's staff member: the first person in the room.
        Staff => "staff",
        /// The help seeker: the second person in the room.
        Client => "client",
        /// Somebody who had no business in the room (over the limit, or without a claim).
        Intruder => "intruder",
        /// A further participant of a chat in progress (`muc.max_chatters` above 2), admitted
        /// on an extra-seat claim.
        Extra => "extra",
    }
}

/// Why the bot removes a person from a room: one value from the machine's decision to the
/// words the person is shown ([`crate::texts::Text::kick`]) and the label the metrics
/// count, so that no count depends on a text (which a helpline words its own way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KickReason {
    /// No claim for the seat they would take (`muc.require_claims`).
    NotAssigned,
    /// The claim for the seat is bound to another JID.
    AssignedToAnother,
    /// The chat already has its people (`muc.max_chatters`).
    Full,
    /// The chat has ended: nobody new may enter.
    ChatEnded,
    /// Somebody being removed changed nick: removed under the new one.
    StillRemoved,
    /// A person in the chat holds the bot's nick (taken while the bot was away): they are
    /// asked to come back under another, and keep their seat meanwhile.
    BotNick,
}

impl KickReason {
    /// Every metric label, for initialising the counters.
    pub const LABELS: [&'static str; 4] = ["not_assigned", "chat_ended", "full", "other"];

    /// The metric label (`helpim_kicks_total{reason}`): a bounded set, where a claim bound
    /// to another JID counts as no claim for this person.
    pub const fn label(self) -> &'static str {
        match self {
            KickReason::NotAssigned | KickReason::AssignedToAnother => "not_assigned",
            KickReason::ChatEnded => "chat_ended",
            KickReason::Full => "full",
            KickReason::StillRemoved | KickReason::BotNick => "other",
        }
    }
}

/// One step of a room's life: a status transition (possibly to the same status) and the
/// event that explains it, written together by the store
/// (`Store::apply`). The lifecycle machine builds it ([`RoomChange::new`] and struct update
/// syntax), the room's writer hands it to the store: one shape from decision to row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChange {
    /// The room to change.
    pub room_id: i64,
    /// What happened.
    pub kind: EventKind,
    /// The status the caller believes the room has; the change is refused otherwise.
    pub from: RoomStatus,
    /// The status after the change.
    pub to: RoomStatus,
    /// When it happened (truncated to microseconds when stored).
    pub at: DateTime<Utc>,
    /// The nick of the person concerned, for the event.
    pub nick: Option<String>,
    /// The part that person plays, for the event.
    pub role: Option<Role>,
    /// Why, in words, for the event.
    pub detail: String,
    /// Record this as the room's staff nick.
    pub set_staff_nick: Option<String>,
    /// Record this as the room's client nick.
    pub set_client_nick: Option<String>,
    /// Record this as the real bare JID of the room's staff member.
    pub set_staff_jid: Option<String>,
    /// Record this as the real bare JID of the room's client.
    pub set_client_jid: Option<String>,
    /// The extra-seat claim was used up by this change's person: clear it.
    pub use_extra_claim: bool,
    /// Why the room closed; stored only when the change closes the room.
    pub close_reason: Option<CloseReason>,
}

impl RoomChange {
    /// A change of room `room_id` from `from` to `to` because of `kind`, at `at`, naming
    /// nobody and setting nothing else; the other fields are filled in with struct update
    /// syntax (`RoomChange { nick, ..RoomChange::new(..) }`).
    pub fn new(
        room_id: i64,
        kind: EventKind,
        from: RoomStatus,
        to: RoomStatus,
        at: DateTime<Utc>,
    ) -> RoomChange {
        RoomChange {
            room_id,
            kind,
            from,
            to,
            at,
            nick: None,
            role: None,
            detail: String::new(),
            set_staff_nick: None,
            set_client_nick: None,
            set_staff_jid: None,
            set_client_jid: None,
            use_extra_claim: false,
            close_reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_string() {
        for status in RoomStatus::ALL {
            assert_eq!(status.as_str().parse::<RoomStatus>(), Ok(*status));
        }
        for reason in CloseReason::ALL {
            assert_eq!(reason.as_str().parse::<CloseReason>(), Ok(*reason));
        }
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
        }
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
    }

    #[test]
    fn contract_strings_are_exactly_the_documented_ones() {
        let strings: Vec<_> = RoomStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            strings,
            [
                "available",
                "staff_waiting",
                "chatting",
                "one_left",
                "closed"
            ]
        );
    }

    #[test]
    fn an_unknown_string_names_the_value_and_the_choices() {
        let err = "Chatting".parse::<RoomStatus>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"Chatting\""), "{text}");
        assert!(text.contains("room status"), "{text}");
        assert!(text.contains("staff_waiting"), "{text}");
    }
}
