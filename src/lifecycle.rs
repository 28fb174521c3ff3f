//! The room lifecycle: one pure state machine, `(state, event) → (state, actions)`.
//!
//! This module knows nothing of actix, XMPP or SQL, so that a room's whole life can be
//! checked against the protocol text (`shared/seed`) and unit-tested without a server or a
//! database. The actors feed it [`Event`]s built from presences and carry out the
//! [`Action`]s it returns, in order.
//!
//! ```text
//! state          event                               → state          actions
//! ─────────────  ──────────────────────────────────  ─────────────  ───────────────────────────
//! available      claimed person enters               staff_waiting  record (staff = nick)
//! staff_waiting  another claimed person enters       chatting       record (client = nick)
//! staff_waiting  staff leaves                        closed         record no_client, destroy
//! chatting       one leaves, one stays               one_left       record, start rejoin grace
//!                                                                   and one_left timer
//! one_left       the one who left, within grace      chatting       record rejoined
//! one_left       the last person leaves              closed         record completed, destroy
//!                (removed by a server shutdown: 332)                record lost, destroy
//! one_left       one_left timer runs out             closed         notice, record timeout,
//!                                                                   destroy
//! available,     somebody enters without a claim     (same)         kick, record kicked
//!  staff_waiting
//! open           somebody enters over max_chatters   (same)         kick, record kicked
//! one_left       a stranger (or grace is over)       (same)         kick, record kicked
//! open           a present person changes nick       (same)         record nick_changed
//! available      bot shuts down                      closed         record shutdown, destroy
//! open           room vanished from the server       closed         record lost
//! closed         anything                            closed         nothing
//! ```
//! "open" means any status but `closed`. Presence updates of people already inside and
//! departures of people who were never counted (the kicked, the bot) change nothing.
//! "Claimed" means the web application claimed the room for that role (or claims are not
//! required by the configuration): the actor looks it up before feeding the event.

use std::collections::BTreeSet;

use crate::model::{CloseReason, EventKind, Role, RoomStatus};

/// How a person left a room, read from the MUC status codes of their unavailable presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// A normal leave (the person closed the chat or went offline cleanly).
    Left,
    /// Kicked by a moderator (status 307).
    Kicked,
    /// Banned (status 301).
    Banned,
    /// Removed because the MUC service shut down (status 332).
    ServiceShutdown,
    /// Removed because their connection failed (status 333).
    ConnectionLost,
    /// Removed for another reason (affiliation change, members-only: 321, 322).
    Removed,
    /// Not in the room when the bot came back (after a restart or a lost connection).
    GoneWhileAway,
}

impl Departure {
    /// A short human text for the event's `detail`.
    pub fn describe(self) -> &'static str {
        match self {
            Departure::Left => "left",
            Departure::Kicked => "kicked (307)",
            Departure::Banned => "banned (301)",
            Departure::ServiceShutdown => "removed by server shutdown (332)",
            Departure::ConnectionLost => "connection lost (333)",
            Departure::Removed => "removed by the server",
            Departure::GoneWhileAway => "gone when the bot came back",
        }
    }
}

/// Something that happened to a room, as the lifecycle sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A person other than the bot is present in the room with this nick (a join or a
    /// presence update; the machine tells them apart).
    Entered {
        /// The person's room nick.
        nick: String,
        /// Whether the role this person would take (staff in an `available` room, client
        /// in a `staff_waiting` room) has an open claim, or claims are not required.
        claimed: bool,
    },
    /// A person other than the bot left the room.
    Left {
        /// The nick they had.
        nick: String,
        /// How they left.
        how: Departure,
    },
    /// A present person changed nick (status 303): the same person, a new name.
    NickChanged {
        /// The nick before.
        old: String,
        /// The nick after.
        new: String,
    },
    /// The bot is shutting down: unused rooms are closed, rooms with people stay.
    Shutdown,
    /// The room no longer exists on the server (lost on a server restart, destroyed by
    /// somebody else).
    Vanished,
    /// The rejoin grace of a person who left ran out: they may no longer come back.
    GraceExpired {
        /// Who left.
        nick: String,
    },
    /// The `one_left` timer started on the room's `epoch`-th entry into `one_left` ran out.
    OneLeftTimeout {
        /// Which entry into `one_left` the timer belongs to (stale timers are ignored).
        epoch: u32,
    },
}

/// A timer the actor must start; when it runs out the actor feeds the matching event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// `timeouts.rejoin_grace_secs`, then [`Event::GraceExpired`].
    RejoinGrace {
        /// Who left.
        nick: String,
    },
    /// `timeouts.one_left_secs` (unless 0), then [`Event::OneLeftTimeout`].
    OneLeft {
        /// The entry into `one_left` this timer belongs to.
        epoch: u32,
    },
}

/// A row for `room_event` (and the matching update of the `room` row) that the actor
/// persists in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: EventKind,
    /// Status before.
    pub from: RoomStatus,
    /// Status after (equal to `from` for events that change no status).
    pub to: RoomStatus,
    /// The person involved, if any.
    pub nick: Option<String>,
    /// The part that person plays, if known.
    pub role: Option<Role>,
    /// Why, for people reading the history.
    pub detail: String,
    /// A new `staff_nick` for the row.
    pub set_staff_nick: Option<String>,
    /// A new `client_nick` for the row.
    pub set_client_nick: Option<String>,
    /// Set when `to` is `closed`.
    pub close_reason: Option<CloseReason>,
}

/// What the actor must do after a step, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Persist a transition or an event.
    Record(Record),
    /// Remove a person from the room (MUC role `none`) with this reason.
    Kick {
        /// Who.
        nick: String,
        /// The reason the person is shown.
        reason: String,
    },
    /// Start a timer.
    Schedule(Timer),
    /// Tell everybody in the room something (a message from the bot, not stored).
    Notify {
        /// The text.
        text: String,
    },
    /// Destroy the room on the server; the room is closed.
    Destroy {
        /// Why (also given to anybody still inside).
        reason: CloseReason,
    },
}

/// The state of one room: its status and who is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The status, as stored in the database.
    pub status: RoomStatus,
    /// The staff member's nick, once somebody entered.
    pub staff: Option<String>,
    /// The client's nick, once a second person entered.
    pub client: Option<String>,
    /// Nicks of the people inside now (never the bot, never somebody being kicked).
    pub present: BTreeSet<String>,
    /// The most people allowed inside at once (the bot not counted).
    pub max_chatters: usize,
    /// Participants who left and may still come back (their rejoin grace runs).
    pub departed: BTreeSet<String>,
    /// How many times the room entered `one_left` (tells stale timers apart).
    pub one_left_epoch: u32,
}

impl Room {
    /// A freshly configured, empty room.
    pub fn new(max_chatters: usize) -> Room {
        Room {
            status: RoomStatus::Available,
            staff: None,
            client: None,
            present: BTreeSet::new(),
            max_chatters,
            departed: BTreeSet::new(),
            one_left_epoch: 0,
        }
    }

    /// A room as its database row describes it, for a bot that restarted: the people the
    /// status implies are taken as present until [`Room::reconcile`] says who really is.
    pub fn restore(
        status: RoomStatus,
        staff: Option<String>,
        client: Option<String>,
        max_chatters: usize,
    ) -> Room {
        let mut room = Room::new(max_chatters);
        room.status = status;
        if status != RoomStatus::Available && status != RoomStatus::Closed {
            room.present.extend(staff.clone());
        }
        if matches!(status, RoomStatus::Chatting | RoomStatus::OneLeft) {
            room.present.extend(client.clone());
        }
        room.staff = staff;
        room.client = client;
        room
    }

    /// Brings the machine in line with the people actually in the room (seen when the bot
    /// rejoined it): those it believed present but who are gone leave, newcomers enter (they
    /// had the password, so they count as claimed). A `one_left` room gets fresh timers.
    pub fn reconcile(&mut self, actual: &BTreeSet<String>) -> Vec<Action> {
        let gone: Vec<String> = self.present.difference(actual).cloned().collect();
        let new: Vec<String> = actual.difference(&self.present).cloned().collect();
        let mut actions = Vec::new();
        for nick in gone {
            actions.extend(self.step(Event::Left {
                nick,
                how: Departure::GoneWhileAway,
            }));
        }
        for nick in new {
            actions.extend(self.step(Event::Entered {
                nick,
                claimed: true,
            }));
        }
        if self.status == RoomStatus::OneLeft
            && !actions
                .iter()
                .any(|a| matches!(a, Action::Schedule(Timer::OneLeft { .. })))
        {
            for nick in [self.staff.clone(), self.client.clone()]
                .into_iter()
                .flatten()
            {
                if !self.present.contains(&nick) && self.departed.insert(nick.clone()) {
                    actions.push(Action::Schedule(Timer::RejoinGrace { nick }));
                }
            }
            self.one_left_epoch += 1;
            actions.push(Action::Schedule(Timer::OneLeft {
                epoch: self.one_left_epoch,
            }));
        }
        actions
    }

    /// The role a nick plays in this room, if it is the staff's or the client's.
    pub fn role_of(&self, nick: &str) -> Option<Role> {
        if self.staff.as_deref() == Some(nick) {
            Some(Role::Staff)
        } else if self.client.as_deref() == Some(nick) {
            Some(Role::Client)
        } else {
            None
        }
    }

    /// Feeds one event to the machine; returns the actions to carry out, in order.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        use RoomStatus::*;
        if self.status == Closed {
            return Vec::new();
        }
        match event {
            Event::Entered { nick, claimed } => {
                if self.present.contains(&nick) {
                    return Vec::new(); // a presence update of somebody already inside
                }
                match self.status {
                    Available | StaffWaiting if !claimed => {
                        self.kick(nick, "This room has not been assigned to you.")
                    }
                    Available => {
                        self.present.insert(nick.clone());
                        self.staff = Some(nick.clone());
                        vec![self.record(EventKind::Entered, StaffWaiting, &nick, "staff entered")]
                    }
                    StaffWaiting => {
                        self.present.insert(nick.clone());
                        self.client = Some(nick.clone());
                        vec![self.record(EventKind::Entered, Chatting, &nick, "client entered")]
                    }
                    OneLeft if self.departed.contains(&nick) => {
                        self.departed.remove(&nick);
                        self.present.insert(nick.clone());
                        let to = self.status_for_count();
                        vec![self.record(EventKind::Rejoined, to, &nick, "came back")]
                    }
                    OneLeft => self.kick(nick, "This chat has ended."),
                    Chatting if self.present.len() < self.max_chatters => {
                        self.present.insert(nick.clone());
                        vec![self.record(EventKind::Entered, Chatting, &nick, "entered")]
                    }
                    Chatting => self.kick(nick, "This chat is full."),
                    Closed => unreachable!("closed rooms return early"),
                }
            }
            Event::Left { nick, how } => {
                if !self.present.remove(&nick) {
                    return Vec::new(); // never counted: a kicked intruder, an unknown nick
                }
                let detail = how.describe();
                match self.status {
                    // The server shutting down emptied the room: the chat was cut off.
                    _ if self.present.is_empty() && how == Departure::ServiceShutdown => {
                        self.close(EventKind::Closed, &nick, detail, CloseReason::Lost)
                    }
                    StaffWaiting if self.present.is_empty() => {
                        self.close(EventKind::Closed, &nick, detail, CloseReason::NoClient)
                    }
                    _ if self.present.is_empty() => {
                        self.close(EventKind::Closed, &nick, detail, CloseReason::Completed)
                    }
                    Chatting => {
                        let to = self.status_for_count();
                        self.departed.insert(nick.clone());
                        let mut actions = vec![
                            self.record(EventKind::Left, to, &nick, detail),
                            Action::Schedule(Timer::RejoinGrace { nick: nick.clone() }),
                        ];
                        if to == OneLeft {
                            self.one_left_epoch += 1;
                            let epoch = self.one_left_epoch;
                            actions.push(Action::Schedule(Timer::OneLeft { epoch }));
                        }
                        actions
                    }
                    _ => vec![self.record(EventKind::Left, self.status, &nick, detail)],
                }
            }
            Event::GraceExpired { nick } => {
                self.departed.remove(&nick);
                Vec::new()
            }
            Event::OneLeftTimeout { epoch }
                if self.status == OneLeft && epoch == self.one_left_epoch =>
            {
                let mut actions = vec![Action::Notify {
                    text: "This chat has ended: the other person left.".to_owned(),
                }];
                actions.extend(
                    self.close_without_person(
                        "alone in the room for too long",
                        CloseReason::Timeout,
                    ),
                );
                actions
            }
            Event::OneLeftTimeout { .. } => Vec::new(),
            Event::NickChanged { old, new } => {
                if !self.present.remove(&old) {
                    return Vec::new();
                }
                self.present.insert(new.clone());
                let detail = format!("changed nick from {old}");
                let Action::Record(mut record) =
                    self.record(EventKind::NickChanged, self.status, &new, &detail)
                else {
                    unreachable!("record() builds a Record")
                };
                if self.staff.as_deref() == Some(old.as_str()) {
                    self.staff = Some(new.clone());
                    record.set_staff_nick = Some(new);
                    record.role = Some(Role::Staff);
                } else if self.client.as_deref() == Some(old.as_str()) {
                    self.client = Some(new.clone());
                    record.set_client_nick = Some(new);
                    record.role = Some(Role::Client);
                }
                vec![Action::Record(record)]
            }
            Event::Shutdown if self.status == Available => {
                self.close_without_person("bot shut down", CloseReason::Shutdown)
            }
            Event::Shutdown => Vec::new(),
            Event::Vanished => {
                let mut actions =
                    self.close_without_person("room vanished from the server", CloseReason::Lost);
                actions.retain(|a| !matches!(a, Action::Destroy { .. })); // nothing to destroy
                actions
            }
        }
    }

    /// `chatting` while two or more people are inside after a client came, else `one_left`.
    fn status_for_count(&self) -> RoomStatus {
        if self.present.len() >= 2 {
            RoomStatus::Chatting
        } else {
            RoomStatus::OneLeft
        }
    }

    /// Moves to `to` and builds the record naming `nick`, with the row's nick columns set
    /// when this is the staff's or client's first entry.
    fn record(&mut self, kind: EventKind, to: RoomStatus, nick: &str, detail: &str) -> Action {
        let from = self.status;
        self.status = to;
        let first_entry = kind == EventKind::Entered;
        let role = self.role_of(nick);
        Action::Record(Record {
            kind,
            from,
            to,
            nick: Some(nick.to_owned()),
            role,
            detail: detail.to_owned(),
            set_staff_nick: (first_entry && role == Some(Role::Staff)).then(|| nick.to_owned()),
            set_client_nick: (first_entry && role == Some(Role::Client)).then(|| nick.to_owned()),
            close_reason: None,
        })
    }

    /// Kicks a newcomer without counting them; the status stays.
    fn kick(&self, nick: String, reason: &str) -> Vec<Action> {
        vec![
            Action::Kick {
                nick: nick.clone(),
                reason: reason.to_owned(),
            },
            Action::Record(Record {
                kind: EventKind::Kicked,
                from: self.status,
                to: self.status,
                nick: Some(nick),
                role: Some(Role::Intruder),
                detail: reason.to_owned(),
                set_staff_nick: None,
                set_client_nick: None,
                close_reason: None,
            }),
        ]
    }

    /// Closes the room because `nick` was the last to leave.
    fn close(
        &mut self,
        kind: EventKind,
        nick: &str,
        detail: &str,
        reason: CloseReason,
    ) -> Vec<Action> {
        let Action::Record(mut record) = self.record(kind, RoomStatus::Closed, nick, detail) else {
            unreachable!("record() builds a Record")
        };
        record.close_reason = Some(reason);
        vec![Action::Record(record), Action::Destroy { reason }]
    }

    /// Closes the room with nobody involved (shutdown, vanished).
    fn close_without_person(&mut self, detail: &str, reason: CloseReason) -> Vec<Action> {
        let from = self.status;
        self.status = RoomStatus::Closed;
        self.present.clear();
        self.departed.clear();
        vec![
            Action::Record(Record {
                kind: EventKind::Closed,
                from,
                to: RoomStatus::Closed,
                nick: None,
                role: None,
                detail: detail.to_owned(),
                set_staff_nick: None,
                set_client_nick: None,
                close_reason: Some(reason),
            }),
            Action::Destroy { reason },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RoomStatus::*;

    fn enter(nick: &str) -> Event {
        Event::Entered {
            nick: nick.into(),
            claimed: true,
        }
    }

    fn timers(actions: &[Action]) -> Vec<&Timer> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Schedule(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn leave(nick: &str) -> Event {
        Event::Left {
            nick: nick.into(),
            how: Departure::Left,
        }
    }

    /// The (from, to, kind) of every record in `actions`.
    fn records(actions: &[Action]) -> Vec<(RoomStatus, RoomStatus, EventKind)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(r) => Some((r.from, r.to, r.kind)),
                _ => None,
            })
            .collect()
    }

    fn record(actions: &[Action]) -> &Record {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Record(r) => Some(r),
                _ => None,
            })
            .expect("a record")
    }

    fn destroys(actions: &[Action]) -> Option<CloseReason> {
        actions.iter().find_map(|a| match a {
            Action::Destroy { reason } => Some(*reason),
            _ => None,
        })
    }

    fn kicks(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Kick { nick, .. } => Some(nick.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_person_in_is_staff() {
        let mut room = Room::new(2);
        let actions = room.step(enter("alice"));
        assert_eq!(
            records(&actions),
            [(Available, StaffWaiting, EventKind::Entered)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Staff));
        assert_eq!(r.set_staff_nick.as_deref(), Some("alice"));
        assert_eq!(r.set_client_nick, None);
        assert_eq!(room.status, StaffWaiting);
    }

    #[test]
    fn second_person_in_is_the_client() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        let actions = room.step(enter("bob"));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Chatting, EventKind::Entered)]
        );
        let r = record(&actions);
        assert_eq!(r.role, Some(Role::Client));
        assert_eq!(r.set_client_nick.as_deref(), Some("bob"));
        assert_eq!(room.client.as_deref(), Some("bob"));
    }

    #[test]
    fn a_full_chat_walks_every_status_and_ends_destroyed() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(leave("bob"));
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert_eq!(record(&actions).role, Some(Role::Client));
        assert_eq!(destroys(&actions), None);
        let actions = room.step(leave("alice"));
        assert_eq!(records(&actions), [(OneLeft, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Completed));
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn a_room_emptied_by_a_server_shutdown_is_lost_not_completed() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let shutdown = |nick: &str| Event::Left {
            nick: nick.into(),
            how: Departure::ServiceShutdown,
        };
        room.step(shutdown("bob"));
        let actions = room.step(shutdown("alice"));
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
    }

    #[test]
    fn staff_leaving_before_any_client_closes_with_no_client() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        let actions = room.step(leave("alice"));
        assert_eq!(
            records(&actions),
            [(StaffWaiting, Closed, EventKind::Closed)]
        );
        assert_eq!(destroys(&actions), Some(CloseReason::NoClient));
    }

    #[test]
    fn a_third_person_is_kicked_and_the_status_holds() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(enter("mallory"));
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(records(&actions), [(Chatting, Chatting, EventKind::Kicked)]);
        assert_eq!(record(&actions).role, Some(Role::Intruder));
        // The kick comes back as mallory's unavailable presence: not counted.
        assert!(room.step(leave("mallory")).is_empty());
        assert_eq!(room.status, Chatting);
        assert_eq!(room.present.len(), 2);
    }

    #[test]
    fn a_larger_limit_admits_more_people_without_changing_status() {
        let mut room = Room::new(3);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(enter("carol"));
        assert_eq!(
            records(&actions),
            [(Chatting, Chatting, EventKind::Entered)]
        );
        assert!(kicks(&room.step(enter("dave"))).contains(&"dave"));
        // One of three leaves: still two inside, still chatting.
        let actions = room.step(leave("carol"));
        assert_eq!(records(&actions), [(Chatting, Chatting, EventKind::Left)]);
    }

    #[test]
    fn the_one_who_left_may_come_back_but_a_stranger_may_not() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        room.step(Event::Left {
            nick: "bob".into(),
            how: Departure::ConnectionLost,
        });
        let actions = room.step(enter("eve"));
        assert_eq!(kicks(&actions), ["eve"]);
        assert_eq!(room.status, OneLeft);
        let actions = room.step(enter("bob"));
        assert_eq!(
            records(&actions),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
        assert_eq!(record(&actions).role, Some(Role::Client));
        // A rejoin does not overwrite who the client is.
        assert_eq!(record(&actions).set_client_nick, None);
    }

    #[test]
    fn nobody_enters_without_a_claim_for_their_role() {
        let mut room = Room::new(2);
        let unclaimed = |nick: &str| Event::Entered {
            nick: nick.into(),
            claimed: false,
        };
        let actions = room.step(unclaimed("mallory"));
        assert_eq!(kicks(&actions), ["mallory"]);
        assert_eq!(
            records(&actions),
            [(Available, Available, EventKind::Kicked)]
        );
        room.step(enter("alice"));
        let actions = room.step(unclaimed("eve"));
        assert_eq!(kicks(&actions), ["eve"]);
        assert_eq!(room.status, StaffWaiting);
        assert_eq!(
            room.client, None,
            "an intruder is never taken for the client"
        );
    }

    #[test]
    fn leaving_a_chat_starts_the_rejoin_grace_and_the_one_left_timer() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(leave("bob"));
        assert_eq!(
            timers(&actions),
            [
                &Timer::RejoinGrace { nick: "bob".into() },
                &Timer::OneLeft { epoch: 1 }
            ]
        );
        // Grace over: bob can no longer come back; the room stays one_left.
        assert!(
            room.step(Event::GraceExpired { nick: "bob".into() })
                .is_empty()
        );
        let actions = room.step(enter("bob"));
        assert_eq!(kicks(&actions), ["bob"]);
        assert_eq!(room.status, OneLeft);
    }

    #[test]
    fn the_one_left_timer_closes_the_room_with_a_notice() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        room.step(leave("bob"));
        let actions = room.step(Event::OneLeftTimeout { epoch: 1 });
        assert!(matches!(actions[0], Action::Notify { .. }), "{actions:?}");
        assert_eq!(records(&actions), [(OneLeft, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Timeout));
        assert_eq!(destroys(&actions), Some(CloseReason::Timeout));
    }

    #[test]
    fn a_stale_one_left_timer_is_ignored() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        room.step(leave("bob"));
        room.step(enter("bob")); // back within grace: chatting again
        room.step(leave("bob")); // one_left again: epoch 2
        assert!(room.step(Event::OneLeftTimeout { epoch: 1 }).is_empty());
        assert_eq!(room.status, OneLeft);
        assert!(!room.step(Event::OneLeftTimeout { epoch: 2 }).is_empty());
        assert_eq!(room.status, Closed);
    }

    fn restored(status: RoomStatus) -> Room {
        Room::restore(status, Some("alice".into()), Some("bob".into()), 2)
    }

    fn people(nicks: &[&str]) -> BTreeSet<String> {
        nicks.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn after_a_restart_an_empty_chat_is_closed_as_completed() {
        let mut room = restored(Chatting);
        let actions = room.reconcile(&people(&[]));
        assert_eq!(
            records(&actions),
            [
                (Chatting, OneLeft, EventKind::Left),
                (OneLeft, Closed, EventKind::Closed)
            ]
        );
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn after_a_restart_a_chat_with_one_person_is_one_left() {
        let mut room = restored(Chatting);
        let actions = room.reconcile(&people(&["alice"]));
        assert_eq!(records(&actions), [(Chatting, OneLeft, EventKind::Left)]);
        assert_eq!(record(&actions).detail, "gone when the bot came back");
        assert_eq!(room.status, OneLeft);
        // bob may still come back within the grace.
        assert_eq!(
            records(&room.step(enter("bob"))),
            [(OneLeft, Chatting, EventKind::Rejoined)]
        );
    }

    #[test]
    fn after_a_restart_people_who_came_meanwhile_are_counted() {
        let mut room = Room::restore(Available, None, None, 2);
        let actions = room.reconcile(&people(&["alice", "bob"]));
        assert_eq!(
            records(&actions),
            [
                (Available, StaffWaiting, EventKind::Entered),
                (StaffWaiting, Chatting, EventKind::Entered)
            ]
        );
        let mut waiting = Room::restore(StaffWaiting, Some("alice".into()), None, 2);
        assert!(
            waiting.reconcile(&people(&["alice"])).is_empty(),
            "nothing changed"
        );
    }

    #[test]
    fn after_a_restart_a_one_left_room_gets_fresh_timers() {
        let mut room = restored(OneLeft);
        let actions = room.reconcile(&people(&["alice"]));
        assert_eq!(records(&actions), [(OneLeft, OneLeft, EventKind::Left)]);
        assert!(
            timers(&actions).contains(&&Timer::OneLeft { epoch: 1 }),
            "{actions:?}"
        );
        assert!(room.departed.contains("bob"));
        let mut empty = restored(OneLeft);
        let actions = empty.reconcile(&people(&[]));
        assert_eq!(destroys(&actions), Some(CloseReason::Completed));
    }

    #[test]
    fn presence_updates_and_unknown_departures_change_nothing() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        assert!(room.step(enter("alice")).is_empty());
        assert!(room.step(leave("nobody")).is_empty());
        assert_eq!(room.status, StaffWaiting);
    }

    #[test]
    fn a_nick_change_is_the_same_person() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        let actions = room.step(Event::NickChanged {
            old: "alice".into(),
            new: "alice2".into(),
        });
        assert_eq!(
            records(&actions),
            [(StaffWaiting, StaffWaiting, EventKind::NickChanged)]
        );
        assert_eq!(record(&actions).set_staff_nick.as_deref(), Some("alice2"));
        assert!(
            room.step(enter("alice2")).is_empty(),
            "the follow-up presence"
        );
        room.step(enter("bob"));
        assert_eq!(room.status, Chatting);
        assert_eq!(room.staff.as_deref(), Some("alice2"));
    }

    #[test]
    fn departures_are_described_by_how() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(Event::Left {
            nick: "bob".into(),
            how: Departure::Banned,
        });
        assert_eq!(record(&actions).detail, "banned (301)");
    }

    #[test]
    fn shutdown_closes_only_unused_rooms() {
        let mut unused = Room::new(2);
        let actions = unused.step(Event::Shutdown);
        assert_eq!(records(&actions), [(Available, Closed, EventKind::Closed)]);
        assert_eq!(destroys(&actions), Some(CloseReason::Shutdown));

        let mut busy = Room::new(2);
        busy.step(enter("alice"));
        assert!(busy.step(Event::Shutdown).is_empty());
        assert_eq!(busy.status, StaffWaiting);
    }

    #[test]
    fn a_vanished_room_is_closed_as_lost_without_destroying() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(enter("bob"));
        let actions = room.step(Event::Vanished);
        assert_eq!(records(&actions), [(Chatting, Closed, EventKind::Closed)]);
        assert_eq!(record(&actions).close_reason, Some(CloseReason::Lost));
        assert_eq!(destroys(&actions), None);
    }

    #[test]
    fn a_closed_room_ignores_everything() {
        let mut room = Room::new(2);
        room.step(enter("alice"));
        room.step(leave("alice"));
        for event in [
            enter("bob"),
            leave("alice"),
            Event::Shutdown,
            Event::Vanished,
        ] {
            assert!(room.step(event).is_empty());
        }
        assert_eq!(room.status, Closed);
    }
}
