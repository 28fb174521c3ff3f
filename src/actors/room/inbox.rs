//! A room's presences not yet handled, between the supervisor (which routes them here) and
//! the room actor (which takes them one by one, in order).
//!
//! What one occupant can fill is bounded by coalescing: the latest presence update of an
//! occupant replaces an older one of theirs not yet handled, so somebody who sends a
//! thousand status changes while the room waits for the database costs one entry. An
//! entrance or a departure (and a nick change, which is a departure under the old nick) is
//! never dropped. The actor's mailbox holds at most one wake-up per room
//! ([`Inbox::put`] says when one is needed).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::xmpp::muc::{PresenceKind, RoomPresence};

/// The room's presences not yet handled; cloned by the supervisor and the room actor.
#[derive(Debug, Clone, Default)]
pub struct Inbox(Arc<Mutex<VecDeque<RoomPresence>>>);

impl Inbox {
    /// Queues `presence`, replacing the occupant's latest queued presence when both are
    /// available ones (an update); returns whether the inbox was empty, so that the actor
    /// must be woken.
    pub fn put(&self, presence: RoomPresence) -> bool {
        let mut queue = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let was_empty = queue.is_empty();
        if presence.kind == PresenceKind::Available && presence.nick.is_some() {
            let latest = queue.iter_mut().rev().find(|p| p.nick == presence.nick);
            if let Some(latest) = latest.filter(|p| p.kind == PresenceKind::Available) {
                *latest = presence;
                return was_empty;
            }
        }
        queue.push_back(presence);
        was_empty
    }

    /// The oldest presence not yet handled.
    pub fn take(&self) -> Option<RoomPresence> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }

    /// How many presences wait.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether no presence waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::muc::parse_room_presence;

    fn presence(xml: &str) -> RoomPresence {
        parse_room_presence(&xml.parse().expect("valid XML")).expect("a room presence")
    }

    fn available(nick: &str, show: &str) -> RoomPresence {
        presence(&format!(
            "<presence xmlns='jabber:client' from='room@conference.localhost/{nick}'><show>{show}</show><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant' jid='{nick}@localhost/r'/></x></presence>"
        ))
    }

    fn unavailable(nick: &str) -> RoomPresence {
        presence(&format!(
            "<presence xmlns='jabber:client' type='unavailable' from='room@conference.localhost/{nick}'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='none'/></x></presence>"
        ))
    }

    #[test]
    fn an_occupants_updates_collapse_to_the_latest_and_departures_stay() {
        let inbox = Inbox::default();
        assert!(
            inbox.put(available("eve", "chat")),
            "the first wakes the actor"
        );
        for _ in 0..1000 {
            assert!(!inbox.put(available("eve", "away")));
        }
        assert!(!inbox.put(available("bob", "chat")));
        assert_eq!(inbox.len(), 2, "one entry per occupant");
        inbox.put(unavailable("eve"));
        inbox.put(available("eve", "dnd"));
        inbox.put(available("eve", "xa"));
        let order: Vec<(Option<String>, PresenceKind)> = std::iter::from_fn(|| inbox.take())
            .map(|p| (p.nick, p.kind))
            .collect();
        let eve = || Some("eve".to_owned());
        assert_eq!(
            order,
            [
                (eve(), PresenceKind::Available),
                (Some("bob".to_owned()), PresenceKind::Available),
                (eve(), PresenceKind::Unavailable),
                (eve(), PresenceKind::Available),
            ],
            "the entrance after a departure is kept, in order"
        );
        assert!(inbox.is_empty());
        assert!(inbox.put(available("eve", "chat")), "empty again: wake");
    }
}
