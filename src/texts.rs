//! The words people in a room read: one catalogue, keyed by [`Text`], shipped in English,
//! Dutch and German, and overridable key by key in `[texts]`.
//!
//! The room machine and the actors name a text by its key, never by its words: a kick's
//! reason is one [`KickReason`] from the decision to the words the person is shown and the
//! label the metrics count, and a room's history and its log keep the stable English words
//! ([`Text::english`]) whatever the room's language, for the operators who read them.
//!
//! A shipped catalogue is a `match` over every key, so a catalogue without a text for some
//! key does not compile; the unit tests check that no text is empty or left in English by
//! mistake.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{CloseReason, KickReason};

/// Declares [`Text`] with its keys (the names in `[texts]`), in one list.
macro_rules! texts {
    ($( $(#[$doc:meta])* $variant:ident => $key:literal ),+ $(,)?) => {
        /// A text people in a room may read, by its key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Text {
            $( $(#[$doc])* $variant ),+
        }

        impl Text {
            /// Every key, in catalogue order.
            pub const ALL: &'static [Text] = &[$(Text::$variant),+];

            /// The key, as written in `[texts]`.
            pub const fn key(self) -> &'static str {
                match self {
                    $(Text::$variant => $key),+
                }
            }
        }
    };
}

texts! {
    /// The kick reason of somebody without a claim for the seat they would take.
    KickNotAssigned => "kick_not_assigned",
    /// The kick reason of somebody whose seat was claimed for another person.
    KickAssignedToAnother => "kick_assigned_to_another",
    /// The kick reason of somebody entering a chat that has its people.
    KickFull => "kick_full",
    /// The kick reason of somebody entering a chat that has ended.
    KickChatEnded => "kick_chat_ended",
    /// The kick reason of somebody being removed who changed nick.
    KickStillRemoved => "kick_still_removed",
    /// The kick reason of a person in the chat who holds the bot's nick.
    KickBotNick => "kick_bot_nick",
    /// To the person left alone, when the `one_left` timer closes the chat.
    ChatEndedOtherLeft => "chat_ended_other_left",
    /// To the room, when somebody who does not belong in it cannot be removed yet.
    IntruderNotRemoved => "intruder_not_removed",
    /// Why the room is destroyed: both people chatted and left.
    ClosedCompleted => "closed_completed",
    /// Why the room is destroyed: the staff member left before a client came.
    ClosedNoClient => "closed_no_client",
    /// Why the room is destroyed: one person stayed alone too long.
    ClosedTimeout => "closed_timeout",
    /// Why the room is destroyed: it cannot be followed any more.
    ClosedLost => "closed_lost",
    /// Why the room is destroyed: an error on the helpline's side.
    ClosedError => "closed_error",
    /// Why the room is destroyed: the bot shuts down (an unused room).
    ClosedShutdown => "closed_shutdown",
    /// Why the room is destroyed, when nothing more is known (a room closed earlier, or
    /// one that could not be set up).
    Closed => "closed",
}

impl Text {
    /// The text that gives a kick's reason.
    pub const fn kick(reason: KickReason) -> Text {
        match reason {
            KickReason::NotAssigned => Text::KickNotAssigned,
            KickReason::AssignedToAnother => Text::KickAssignedToAnother,
            KickReason::Full => Text::KickFull,
            KickReason::ChatEnded => Text::KickChatEnded,
            KickReason::StillRemoved => Text::KickStillRemoved,
            KickReason::BotNick => Text::KickBotNick,
        }
    }

    /// The text that gives the reason of a room's destroy.
    pub const fn closed(reason: CloseReason) -> Text {
        match reason {
            CloseReason::Completed => Text::ClosedCompleted,
            CloseReason::NoClient => Text::ClosedNoClient,
            CloseReason::Timeout => Text::ClosedTimeout,
            CloseReason::Lost => Text::ClosedLost,
            CloseReason::Error => Text::ClosedError,
            CloseReason::Shutdown => Text::ClosedShutdown,
        }
    }

    /// The key's English words: the shipped default, and what the room's history and log
    /// keep whatever the room's language.
    pub const fn english(self) -> &'static str {
        match self {
            Text::KickNotAssigned => "This room has not been assigned to you.",
            Text::KickAssignedToAnother => "This room was assigned to somebody else.",
            Text::KickFull => "This chat is full.",
            Text::KickChatEnded => "This chat has ended.",
            Text::KickStillRemoved => "You may not stay in this room.",
            Text::KickBotNick => {
                "This name belongs to the helpline's assistant. Please come back to the chat \
                 under another name."
            }
            Text::ChatEndedOtherLeft => "This chat has ended: the other person left.",
            Text::IntruderNotRemoved => {
                "Somebody who does not belong in this chat could not be removed yet. Please \
                 do not share anything personal until they are gone."
            }
            Text::ClosedCompleted => "This chat has ended. Thank you for talking with us.",
            Text::ClosedNoClient => "This chat was closed before anybody else joined.",
            Text::ClosedTimeout => "This chat has ended: the other person left.",
            Text::ClosedLost => "This chat was interrupted. You are welcome to start a new chat.",
            Text::ClosedError => {
                "Something went wrong on our side and this chat had to end. You are welcome \
                 to start a new chat."
            }
            Text::ClosedShutdown => "This chat is closed for now. Please try again soon.",
            Text::Closed => "This chat has ended.",
        }
    }

    /// The key's Dutch words.
    const fn dutch(self) -> &'static str {
        match self {
            Text::KickNotAssigned => "Dit gesprek is niet voor jou bedoeld.",
            Text::KickAssignedToAnother => "Dit gesprek is voor iemand anders bedoeld.",
            Text::KickFull => "Dit gesprek is vol.",
            Text::KickChatEnded => "Dit gesprek is afgelopen.",
            Text::KickStillRemoved => "Je kunt niet in dit gesprek blijven.",
            Text::KickBotNick => {
                "Deze naam is van de assistent van de hulplijn. Kom terug in het gesprek met \
                 een andere naam."
            }
            Text::ChatEndedOtherLeft => "Dit gesprek is afgelopen: de ander is weggegaan.",
            Text::IntruderNotRemoved => {
                "Er is iemand in dit gesprek die hier niet hoort. We proberen diegene te \
                 verwijderen. Deel zolang niets persoonlijks."
            }
            Text::ClosedCompleted => "Dit gesprek is afgelopen. Bedankt voor je gesprek.",
            Text::ClosedNoClient => "Dit gesprek is gesloten voordat iemand anders kwam.",
            Text::ClosedTimeout => "Dit gesprek is afgelopen: de ander is weggegaan.",
            Text::ClosedLost => {
                "Dit gesprek is onderbroken. Je bent welkom om een nieuw gesprek te beginnen."
            }
            Text::ClosedError => {
                "Er ging bij ons iets mis en dit gesprek moest stoppen. Je bent welkom om een \
                 nieuw gesprek te beginnen."
            }
            Text::ClosedShutdown => "Dit gesprek is nu gesloten. Probeer het straks opnieuw.",
            Text::Closed => "Dit gesprek is afgelopen.",
        }
    }

    /// The key's German words.
    const fn german(self) -> &'static str {
        match self {
            Text::KickNotAssigned => "Dieser Chat ist nicht für dich vorgesehen.",
            Text::KickAssignedToAnother => "Dieser Chat ist für jemand anderen vorgesehen.",
            Text::KickFull => "Dieser Chat ist voll.",
            Text::KickChatEnded => "Dieser Chat ist beendet.",
            Text::KickStillRemoved => "Du kannst nicht in diesem Chat bleiben.",
            Text::KickBotNick => {
                "Dieser Name gehört dem Assistenten der Hilfe-Hotline. Komm bitte mit einem \
                 anderen Namen zurück in den Chat."
            }
            Text::ChatEndedOtherLeft => {
                "Dieser Chat ist beendet: Die andere Person hat ihn verlassen."
            }
            Text::IntruderNotRemoved => {
                "In diesem Chat ist jemand, der nicht hierher gehört. Wir versuchen, die \
                 Person zu entfernen. Teile bis dahin bitte nichts Persönliches."
            }
            Text::ClosedCompleted => "Dieser Chat ist beendet. Danke für das Gespräch.",
            Text::ClosedNoClient => "Dieser Chat wurde geschlossen, bevor jemand dazukam.",
            Text::ClosedTimeout => "Dieser Chat ist beendet: Die andere Person hat ihn verlassen.",
            Text::ClosedLost => {
                "Dieser Chat wurde unterbrochen. Du kannst gern einen neuen Chat beginnen."
            }
            Text::ClosedError => {
                "Bei uns ist etwas schiefgegangen, deshalb musste dieser Chat enden. Du \
                 kannst gern einen neuen Chat beginnen."
            }
            Text::ClosedShutdown => {
                "Dieser Chat ist gerade geschlossen. Bitte versuche es bald noch einmal."
            }
            Text::Closed => "Dieser Chat ist beendet.",
        }
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A shipped catalogue (`texts.language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    /// English (the default).
    #[default]
    En,
    /// Dutch.
    Nl,
    /// German.
    De,
}

impl Language {
    /// Every shipped language.
    pub const ALL: &'static [Language] = &[Language::En, Language::Nl, Language::De];

    /// The language tag (`xml:lang`, `muc#roomconfig_lang`, `texts.language`).
    pub const fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Nl => "nl",
            Language::De => "de",
        }
    }

    /// The language with this tag, if it is shipped.
    pub fn from_tag(tag: &str) -> Option<Language> {
        Language::ALL.iter().copied().find(|l| l.tag() == tag)
    }

    /// The shipped words of `text` in this language.
    pub const fn words(self, text: Text) -> &'static str {
        match self {
            Language::En => text.english(),
            Language::Nl => text.dutch(),
            Language::De => text.german(),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// The texts of this bot: one language's catalogue with the helpline's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Texts {
    /// The catalogue.
    language: Language,
    /// The helpline's own words, by key.
    overrides: BTreeMap<Text, String>,
}

impl Texts {
    /// `language`'s catalogue with `overrides` in place of its words.
    pub fn new(language: Language, overrides: BTreeMap<Text, String>) -> Texts {
        Texts {
            language,
            overrides,
        }
    }

    /// The language every text is in (`xml:lang`).
    pub fn language(&self) -> Language {
        self.language
    }

    /// The words people read for `text`.
    pub fn get(&self, text: Text) -> &str {
        self.overrides
            .get(&text)
            .map_or_else(|| self.language.words(text), String::as_str)
    }
}

/// The key called `key`, if there is one.
pub fn key(key: &str) -> Option<Text> {
    Text::ALL.iter().copied().find(|t| t.key() == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_catalogue_has_words_for_every_key() {
        for &language in Language::ALL {
            for &text in Text::ALL {
                let words = language.words(text);
                assert!(!words.trim().is_empty(), "{language} {text}");
                assert!(words.len() <= 200, "{language} {text}: keep it short");
                if language != Language::En && text != Text::KickFull {
                    assert_ne!(words, text.english(), "{language} {text} is still English");
                }
            }
        }
    }

    #[test]
    fn every_kick_reason_and_close_reason_has_a_text() {
        for reason in [
            KickReason::NotAssigned,
            KickReason::AssignedToAnother,
            KickReason::Full,
            KickReason::ChatEnded,
            KickReason::StillRemoved,
            KickReason::BotNick,
        ] {
            assert!(Text::kick(reason).key().starts_with("kick_"));
        }
        for &reason in CloseReason::ALL {
            assert!(Text::closed(reason).key().starts_with("closed_"));
        }
    }

    #[test]
    fn keys_are_unique_and_found_by_name() {
        let mut keys: Vec<&str> = Text::ALL.iter().map(|t| t.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Text::ALL.len());
        assert_eq!(key("chat_ended_other_left"), Some(Text::ChatEndedOtherLeft));
        assert_eq!(key("chat_ended"), None);
    }

    #[test]
    fn an_override_replaces_only_its_key() {
        let texts = Texts::new(
            Language::Nl,
            BTreeMap::from([(Text::KickFull, "Het is hier even vol.".to_owned())]),
        );
        assert_eq!(texts.get(Text::KickFull), "Het is hier even vol.");
        assert_eq!(texts.get(Text::KickChatEnded), "Dit gesprek is afgelopen.");
        assert_eq!(texts.language().tag(), "nl");
        assert_eq!(Language::from_tag("de"), Some(Language::De));
        assert_eq!(Language::from_tag("fr"), None);
    }
}
