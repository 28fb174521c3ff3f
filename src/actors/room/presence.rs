//! What a room presence means for the machine: the bot's own presences, the room's, and
//! occupants entering, leaving, changing nick and being removed, turned into lifecycle
//! events.

use super::*;

impl RoomActor {
    /// Handles a presence while the room is being created or rejoined.
    pub(super) fn presence_while_creating(&mut self, p: RoomPresence) {
        let own = p.is_self() || p.nick.as_deref() == Some(self.nick.as_str());
        if own && p.kind == PresenceKind::Unavailable {
            return; // the bot's own leave before a rejoin: not the answer to the join
        }
        if own || matches!(p.kind, PresenceKind::Error { .. }) {
            if let Some(waiter) = self.join_waiter.take() {
                let _ = waiter.send(p);
            }
            return;
        }
        let jid = p.real_jid();
        if let Some(nick) = p.nick {
            match p.kind {
                PresenceKind::Available => self.early.insert(nick, jid),
                _ => self.early.remove(&nick),
            };
        }
    }

    /// Turns a presence of an active room into lifecycle events and runs them.
    pub(super) fn presence_while_active(&mut self, p: RoomPresence, ctx: &mut Context<Self>) {
        let own = p.is_self() || p.nick.as_deref() == Some(self.nick.as_str());
        // ejabberd sends the destroy to the bot from its own nick WITHOUT status 110.
        if p.destroyed.is_some() && (p.is_from_room() || own) {
            log::warn!(room = self.room(); "room destroyed by somebody else");
            self.run(Event::Vanished, ctx);
            return;
        }
        if own {
            if p.kind == PresenceKind::Unavailable && p.has(MucStatus::NickChanged) {
                // The bot took its own nick back (or the server renamed it).
                if let Some(new) = p.item.as_ref().and_then(|i| i.nick.clone()) {
                    log::info!(room = self.room(); "the bot is {new} in the room again");
                    self.nick = new;
                }
                return;
            }
            if p.kind == PresenceKind::Unavailable {
                log::warn!(room = self.room(); "the bot was removed from the room");
                self.run(Event::Unusable(Unusable::BotRemoved), ctx);
            }
            return;
        }
        let Some(nick) = p.nick.clone() else {
            log::debug!(room = self.room(); "presence from the room itself ignored");
            return;
        };
        let event = match &p.kind {
            PresenceKind::Available => {
                let person = Person::new(nick, p.real_jid());
                return self.entered(person, ctx);
            }
            PresenceKind::Unavailable if p.has(MucStatus::NickChanged) => {
                match p.item.as_ref().and_then(|i| i.nick.clone()) {
                    Some(new) => {
                        if let Some(kick) = self.kicks.remove(&nick) {
                            self.kicks.insert(new.clone(), kick);
                        }
                        Event::NickChanged { old: nick, new }
                    }
                    None => Event::Left {
                        nick,
                        how: Departure::Left,
                    },
                }
            }
            PresenceKind::Unavailable => {
                if self.kicks.remove(&nick).is_some() {
                    log::info!(room = self.room(); "{nick} is out");
                }
                if nick == self.ctx.policy.bot_nick && self.nick != self.ctx.policy.bot_nick {
                    // Whoever held the bot's nick is gone: the bot takes it back.
                    self.ctx
                        .xmpp
                        .send(muc::change_nick(&self.jid, &self.ctx.policy.bot_nick));
                }
                Event::Left {
                    nick,
                    how: departure(&p),
                }
            }
            PresenceKind::Error { condition } => {
                log::warn!(room = self.room(); "error presence from the room: {condition}");
                return;
            }
        };
        self.run(event, ctx);
    }
}

/// How an occupant left, from the status codes of their unavailable presence.
fn departure(p: &RoomPresence) -> Departure {
    if p.has(MucStatus::Kicked) {
        Departure::Kicked
    } else if p.has(MucStatus::Banned) {
        Departure::Banned
    } else if p.has(MucStatus::ServiceShutdown) {
        Departure::ServiceShutdown
    } else if p.has(MucStatus::ConnectionLost) {
        Departure::ConnectionLost
    } else if p.has(MucStatus::AffiliationChanged) || p.has(MucStatus::MembersOnly) {
        Departure::Removed
    } else {
        Departure::Left
    }
}
