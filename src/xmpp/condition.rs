//! Stanza error conditions (RFC 6120 §8.3.3), typed: the bot acts on a condition, never on
//! its spelling.

use std::fmt;

use minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

/// `urn:ietf:params:xml:ns:xmpp-stanzas`: the namespace of stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The defined condition of an error a peer sent. It is `undefined-condition` when the error
/// names none, or names one that xmpp-parsers does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition(pub DefinedCondition);

// `DefinedCondition` holds no floats: its equality is an equivalence.
impl Eq for Condition {}

impl Condition {
    /// The condition of an `<error/>` element (its child in [`NS_STANZAS`] other than
    /// `<text/>`).
    pub fn of(error: &Element) -> Condition {
        let condition = error
            .children()
            .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
            .and_then(|c| DefinedCondition::try_from(c.clone()).ok())
            .unwrap_or(DefinedCondition::UndefinedCondition);
        Condition(condition)
    }

    /// The condition of a stanza of type `error` (its `<error/>` child), or
    /// `undefined-condition` when it has none.
    pub fn of_stanza(stanza: &Element) -> Condition {
        stanza.children().find(|e| e.name() == "error").map_or(
            Condition(DefinedCondition::UndefinedCondition),
            Condition::of,
        )
    }
}

impl From<DefinedCondition> for Condition {
    fn from(condition: DefinedCondition) -> Condition {
        Condition(condition)
    }
}

/// The condition's element name (`item-not-found`), as logs and details show it.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Element::from(self.0.clone()).name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(xml: &str) -> Element {
        xml.parse().expect("XML")
    }

    #[test]
    fn a_condition_is_read_typed_and_shown_by_its_name() {
        let e = error(
            "<error xmlns='jabber:client' type='cancel'>
               <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
               <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text>
             </error>",
        );
        let condition = Condition::of(&e);
        assert_eq!(condition, DefinedCondition::ItemNotFound.into());
        assert_eq!(condition.to_string(), "item-not-found");
    }

    #[test]
    fn no_or_an_unknown_condition_is_undefined() {
        let none = error("<error xmlns='jabber:client' type='cancel'/>");
        assert_eq!(Condition::of(&none).0, DefinedCondition::UndefinedCondition);
        let unknown = error(
            "<error xmlns='jabber:client' type='cancel'>
               <too-many-cats xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        );
        assert_eq!(
            Condition::of(&unknown).0,
            DefinedCondition::UndefinedCondition
        );
        let stanza = error("<presence xmlns='jabber:client' type='error'/>");
        assert_eq!(
            Condition::of_stanza(&stanza).to_string(),
            "undefined-condition"
        );
    }
}
