//! Multi-user chat (XEP-0045): reading room presences and building the bot's requests.
//!
//! Presences are read from the raw `<x xmlns='http://jabber.org/protocol/muc#user'/>`
//! element rather than through `xmpp_parsers::muc::MucUser`, because that parser rejects a
//! whole presence for one status code it does not know and drops `<destroy/>`: a room's
//! state must never hinge on a code a server added later.

use jid::{BareJid, Jid};
use minidom::Element;
use minidom::rxml::xml_ncname;
use xmpp_parsers::muc::Muc;
use xmpp_parsers::muc::muc::History;
use xmpp_parsers::presence::Presence;

use super::condition::Condition;

/// `http://jabber.org/protocol/muc#user`: occupant information in room presences.
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// `http://jabber.org/protocol/muc#owner`: room configuration and destruction.
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// `http://jabber.org/protocol/muc#admin`: kicks (role changes).
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

/// A MUC status code (XEP-0045 §15.6) as an enum, so that the code that acts on one is
/// checked by the compiler; codes the bot does not act on are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MucStatus {
    /// 100: the room is not anonymous (everybody sees real JIDs).
    NonAnonymous,
    /// 110: this presence is about the receiver itself.
    SelfPresence,
    /// 170: the room is being logged.
    Logged,
    /// 201: the room was just created by this join.
    RoomCreated,
    /// 210: the service changed the nick the receiver asked for.
    NickAssigned,
    /// 301: the occupant was banned.
    Banned,
    /// 303: the occupant changed nick (the item carries the new one).
    NickChanged,
    /// 307: the occupant was kicked.
    Kicked,
    /// 321: removed because of an affiliation change.
    AffiliationChanged,
    /// 322: removed because the room became members-only.
    MembersOnly,
    /// 332: removed because the MUC service is shutting down.
    ServiceShutdown,
    /// 333: removed because of a technical problem with the occupant's connection.
    ConnectionLost,
    /// Any other code.
    Other(u16),
}

impl MucStatus {
    /// Maps a numeric code to its meaning.
    pub fn from_code(code: u16) -> MucStatus {
        match code {
            100 => MucStatus::NonAnonymous,
            110 => MucStatus::SelfPresence,
            170 => MucStatus::Logged,
            201 => MucStatus::RoomCreated,
            210 => MucStatus::NickAssigned,
            301 => MucStatus::Banned,
            303 => MucStatus::NickChanged,
            307 => MucStatus::Kicked,
            321 => MucStatus::AffiliationChanged,
            322 => MucStatus::MembersOnly,
            332 => MucStatus::ServiceShutdown,
            333 => MucStatus::ConnectionLost,
            other => MucStatus::Other(other),
        }
    }
}

/// The `<item/>` of a muc#user presence: who the occupant is in the room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucItem {
    /// `owner`, `admin`, `member`, `outcast` or `none`.
    pub affiliation: Option<String>,
    /// `moderator`, `participant`, `visitor` or `none`.
    pub role: Option<String>,
    /// The occupant's real JID, when the room shows it to the receiver.
    pub jid: Option<String>,
    /// Its bare JID, parsed once when the presence is read (the person the bot judges).
    pub bare_jid: Option<BareJid>,
    /// The new nick in a nick change (303).
    pub nick: Option<String>,
    /// The reason given for a kick or ban.
    pub reason: Option<String>,
}

/// What a room presence says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceKind {
    /// The occupant is in the room.
    Available,
    /// The occupant left (or the room was destroyed, see [`RoomPresence::destroyed`]).
    Unavailable,
    /// The room refused something (a join, a nick): the error condition, e.g.
    /// `not-authorized`, `conflict`, `item-not-found`, `resource-constraint`.
    Error {
        /// The defined condition.
        condition: Condition,
    },
}

/// A presence from a room, read into what the bot needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPresence {
    /// The room's bare JID.
    pub room: BareJid,
    /// The occupant's nick; `None` when the room itself sent the presence (ejabberd does so
    /// after configuration changes and on destroy): never an occupant.
    pub nick: Option<String>,
    /// Available, unavailable or error.
    pub kind: PresenceKind,
    /// Every status code, in order.
    pub codes: Vec<MucStatus>,
    /// The muc#user item, if any.
    pub item: Option<MucItem>,
    /// `Some(reason)` when the presence says the room was destroyed.
    pub destroyed: Option<Option<String>>,
}

impl RoomPresence {
    /// Whether the presence carries this status code.
    pub fn has(&self, status: MucStatus) -> bool {
        self.codes.contains(&status)
    }

    /// The real bare JID of the occupant this presence is about, as the room shows it to
    /// the bot (owner of a semi-anonymous room).
    pub fn real_jid(&self) -> Option<String> {
        self.item
            .as_ref()?
            .bare_jid
            .as_ref()
            .map(BareJid::to_string)
    }

    /// Whether this presence is about the receiver itself (status 110).
    pub fn is_self(&self) -> bool {
        self.has(MucStatus::SelfPresence)
    }

    /// Whether the room itself sent this presence (from its bare JID): never an occupant.
    /// ejabberd sends an available one (entity capabilities only) before the self-presence
    /// of every join and after every configuration change, and an unavailable one (no
    /// payload) to whoever leaves and to every occupant of a destroyed room.
    pub fn is_from_room(&self) -> bool {
        self.nick.is_none()
    }
}

/// A presence that cannot be read as a room presence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The element is not a `<presence/>` of the client namespace.
    #[error("not a presence")]
    NotPresence,
    /// The presence had no `from`.
    #[error("presence without a sender")]
    NoSender,
    /// The `from` is not a JID (the bare part may still name a room: see [`presence_room`]).
    #[error("sender {0:?} is not a JID")]
    BadSender(String),
    /// A `type` that RFC 6121 does not define.
    #[error("presence type {0:?} is not defined")]
    BadType(String),
    /// A status code that is not a number.
    #[error("status code {0:?} is not a number")]
    BadStatusCode(String),
    /// The muc#user item's real JID is not a JID: the bot cannot tell who this is.
    #[error("occupant JID {0:?} is not a JID")]
    BadItemJid(String),
    /// A presence of a type rooms do not send (subscribe, probe, ...).
    #[error("presence of type {0:?} is not a room presence")]
    NotRoomPresence(String),
}

impl PresenceError {
    /// Whether the presence may be about an occupant whom the bot could not read: its
    /// important parts (sender, type, muc#user) are broken, so the room must be asked who
    /// is inside. False for presences that are well-formed but no room presence
    /// (subscriptions, probes), which say nothing about occupants.
    pub fn hides_an_occupant(&self) -> bool {
        !matches!(
            self,
            PresenceError::NotPresence | PresenceError::NotRoomPresence(_)
        )
    }
}

/// The room a presence comes from, read as leniently as possible: the bare part of its
/// `from` (everything before the first `/`), even when the nick after it is not a valid
/// resource. `None` when there is no sender or its bare part is no JID. The caller checks
/// that the room is one of the bot's before anything else is done with the presence.
pub fn presence_room(presence: &Element) -> Option<BareJid> {
    let from = presence.attr("from")?;
    let bare = from.split_once('/').map_or(from, |(bare, _)| bare);
    BareJid::new(bare).ok()
}

/// Reads a presence whose sender is a room or an occupant of a room.
///
/// It reads the raw element, and only the parts the bot acts on: the sender (room and
/// nick), the type, the error condition, and the muc#user element (status codes, item,
/// destroy). Everything else a client may put in a presence (`<show/>`, `<status/>`,
/// `<priority/>`, other payloads) is ignored, so that a value outside what a strict parser
/// accepts never hides a person. A broken important part is an error: the caller then asks
/// the room who is inside instead of guessing ([`PresenceError::hides_an_occupant`]).
pub fn parse_room_presence(presence: &Element) -> Result<RoomPresence, PresenceError> {
    if !presence.is("presence", xmpp_parsers::ns::DEFAULT_NS) {
        return Err(PresenceError::NotPresence);
    }
    let from = presence.attr("from").ok_or(PresenceError::NoSender)?;
    let from = Jid::new(from).map_err(|_| PresenceError::BadSender(from.to_owned()))?;
    let room = from.to_bare();
    let nick = from.resource().map(|r| r.as_str().to_owned());
    let kind = match presence.attr("type") {
        None => PresenceKind::Available,
        Some("unavailable") => PresenceKind::Unavailable,
        Some("error") => PresenceKind::Error {
            condition: Condition::of_stanza(presence),
        },
        Some(other @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")) => {
            return Err(PresenceError::NotRoomPresence(other.to_owned()));
        }
        Some(other) => return Err(PresenceError::BadType(other.to_owned())),
    };
    let mut codes = Vec::new();
    let mut item = None;
    let mut destroyed = None;
    for x in presence.children().filter(|e| e.is("x", NS_MUC_USER)) {
        for child in x.children() {
            match child.name() {
                "status" => {
                    let code = child.attr("code").unwrap_or_default();
                    let code: u16 = code
                        .parse()
                        .map_err(|_| PresenceError::BadStatusCode(code.to_owned()))?;
                    codes.push(MucStatus::from_code(code));
                }
                "item" => {
                    let jid = child.attr("jid");
                    let bare_jid = jid
                        .map(|jid| {
                            Jid::new(jid)
                                .map(|jid| jid.to_bare())
                                .map_err(|_| PresenceError::BadItemJid(jid.to_owned()))
                        })
                        .transpose()?;
                    item = Some(MucItem {
                        affiliation: child.attr("affiliation").map(str::to_owned),
                        role: child.attr("role").map(str::to_owned),
                        jid: jid.map(str::to_owned),
                        bare_jid,
                        nick: child.attr("nick").map(str::to_owned),
                        reason: child_text(child, "reason"),
                    })
                }
                "destroy" => destroyed = Some(child_text(child, "reason")),
                _ => {}
            }
        }
    }
    Ok(RoomPresence {
        room,
        nick,
        kind,
        codes,
        item,
        destroyed,
    })
}

/// The text of the first child called `name`, in any namespace.
fn child_text(element: &Element, name: &str) -> Option<String> {
    element
        .children()
        .find(|c| c.name() == name)
        .map(|c| c.text())
        .filter(|t| !t.is_empty())
}

/// The presence that joins (or creates) `room` as `nick`: with the room password when the
/// room has one, and asking for no history (the bot never reads messages).
pub fn join(room: &BareJid, nick: &str, password: Option<&str>) -> Presence {
    let mut muc = Muc::new().with_history(History::new().with_maxstanzas(0));
    if let Some(password) = password {
        muc = muc.with_password(password.to_owned());
    }
    Presence::available()
        .with_to(room_nick(room, nick))
        .with_payload(muc)
}

/// The presence that changes the bot's nick in `room` to `nick` (XEP-0045 §7.6): an
/// available presence to the new occupant JID, without the join's `<x/>`.
pub fn change_nick(room: &BareJid, nick: &str) -> Presence {
    Presence::available().with_to(room_nick(room, nick))
}

/// The presence that leaves `room`.
pub fn leave(room: &BareJid, nick: &str) -> Presence {
    Presence::unavailable().with_to(room_nick(room, nick))
}

/// `room/nick` as a full JID; a nick that is not a valid resource falls back to the bare
/// room (the server then answers with an error presence).
fn room_nick(room: &BareJid, nick: &str) -> Jid {
    match jid::ResourcePart::new(nick) {
        Ok(resource) => Jid::from(room.with_resource(&resource)),
        Err(_) => Jid::from(room.clone()),
    }
}

/// `<query xmlns='muc#owner'/>`: asks the room for its configuration form.
pub fn owner_query() -> Element {
    Element::builder("query", NS_MUC_OWNER).build()
}

/// `<query xmlns='muc#owner'><destroy><reason/></destroy></query>`: destroys the room,
/// telling anybody inside why.
pub fn destroy(reason: &str, lang: &str) -> Element {
    Element::builder("query", NS_MUC_OWNER)
        .append(Element::builder("destroy", NS_MUC_OWNER).append(words(
            "reason",
            NS_MUC_OWNER,
            reason,
            lang,
        )))
        .build()
}

/// `<name xml:lang='lang'>text</name>`: words for people, in the bot's language.
fn words(name: &str, ns: &str, text: &str, lang: &str) -> Element {
    Element::builder(name, ns)
        .attr_ns(
            minidom::rxml::Namespace::XML,
            xml_ncname!("lang").to_owned(),
            lang,
        )
        .append(text)
        .build()
}

/// `<query xmlns='muc#admin'><item nick='…' role='none'><reason/></item></query>`: kicks an
/// occupant (XEP-0045 §8.2).
pub fn kick(nick: &str, reason: &str, lang: &str) -> Element {
    Element::builder("query", NS_MUC_ADMIN)
        .append(
            Element::builder("item", NS_MUC_ADMIN)
                .attr(xml_ncname!("nick").to_owned(), nick)
                .attr(xml_ncname!("role").to_owned(), "none")
                .append(words("reason", NS_MUC_ADMIN, reason, lang)),
        )
        .build()
}

/// The roles an occupant can have (XEP-0045 §5.1): asking the room for each lists everybody
/// inside.
pub const OCCUPANT_ROLES: [&str; 3] = ["moderator", "participant", "visitor"];

/// `<query xmlns='muc#admin'><item role='…'/></query>`: asks the room for its occupants with
/// this role (XEP-0045 §8.5, §9.8; a moderator's request, which the bot as owner may make).
pub fn role_query(role: &str) -> Element {
    Element::builder("query", NS_MUC_ADMIN)
        .append(Element::builder("item", NS_MUC_ADMIN).attr(xml_ncname!("role").to_owned(), role))
        .build()
}

/// `<query xmlns='muc#admin'><item affiliation='…' jid='…'/></query>`: gives `jid` this
/// affiliation in the room (XEP-0045 §9.1, §9.2): `outcast` keeps it out, `none` lets it in
/// again.
pub fn set_affiliation(jid: &str, affiliation: &str) -> Element {
    Element::builder("query", NS_MUC_ADMIN)
        .append(
            Element::builder("item", NS_MUC_ADMIN)
                .attr(xml_ncname!("affiliation").to_owned(), affiliation)
                .attr(xml_ncname!("jid").to_owned(), jid),
        )
        .build()
}

/// `<query xmlns='muc#admin'><item affiliation='outcast'/></query>`: asks the room for its
/// banned JIDs (XEP-0045 §9.1.1).
pub fn outcast_query() -> Element {
    Element::builder("query", NS_MUC_ADMIN)
        .append(
            Element::builder("item", NS_MUC_ADMIN)
                .attr(xml_ncname!("affiliation").to_owned(), "outcast"),
        )
        .build()
}

/// The JIDs in the answer to an [`outcast_query`].
pub fn jid_list(answer: &Element) -> Vec<String> {
    answer
        .children()
        .filter(|item| item.name() == "item")
        .filter_map(|item| item.attr("jid").map(str::to_owned))
        .collect()
}

/// The occupants in the answer to a [`role_query`]: each item's nick and real JID (as the
/// room shows them to its owner). Items without a nick are skipped: they are no occupant.
pub fn occupant_list(answer: &Element) -> Vec<(String, Option<String>)> {
    answer
        .children()
        .filter(|item| item.name() == "item")
        .filter_map(|item| {
            let nick = item.attr("nick")?.to_owned();
            Some((nick, item.attr("jid").map(str::to_owned)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::stanza_error::DefinedCondition;

    fn presence(xml: &str) -> Element {
        let element: Element = xml.parse().expect("valid XML");
        assert!(
            Presence::try_from(element.clone()).is_ok(),
            "xmpp-parsers reads this one"
        );
        element
    }

    #[test]
    fn an_occupant_joining_is_available_with_its_item() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/alice' to='bot@example/r'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='participant' jid='alice@example/web'/>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(r.room.as_str(), "room@conf.example");
        assert_eq!(r.nick.as_deref(), Some("alice"));
        assert_eq!(r.kind, PresenceKind::Available);
        assert!(!r.is_self());
        let item = r.item.unwrap();
        assert_eq!(item.role.as_deref(), Some("participant"));
        assert_eq!(item.jid.as_deref(), Some("alice@example/web"));
    }

    #[test]
    fn the_creators_self_presence_carries_110_and_201() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/HelpIM'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='owner' role='moderator'/>
                 <status code='110'/><status code='201'/>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.is_self());
        assert!(r.has(MucStatus::RoomCreated));
    }

    #[test]
    fn unknown_status_codes_are_kept_not_fatal() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/alice' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='none'/>
                 <status code='174'/><status code='333'/>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(r.kind, PresenceKind::Unavailable);
        assert_eq!(r.codes, [MucStatus::Other(174), MucStatus::ConnectionLost]);
    }

    #[test]
    fn a_kick_carries_307_and_the_reason() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/mallory' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='none'><reason>This chat is full.</reason></item>
                 <status code='307'/>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.has(MucStatus::Kicked));
        assert_eq!(
            r.item.unwrap().reason.as_deref(),
            Some("This chat is full.")
        );
    }

    #[test]
    fn a_nick_change_names_the_new_nick() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/alice' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='participant' nick='alice2'/>
                 <status code='303'/>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.has(MucStatus::NickChanged));
        assert_eq!(r.item.unwrap().nick.as_deref(), Some("alice2"));
    }

    #[test]
    fn a_destroy_presence_from_the_bare_room_is_no_occupant() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='none'/>
                 <destroy><reason>chat over</reason></destroy>
               </x>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(r.nick, None);
        assert_eq!(r.destroyed, Some(Some("chat over".to_owned())));
    }

    #[test]
    fn an_error_presence_names_its_condition() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/HelpIM' type='error'>
               <error type='auth'>
                 <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
               </error>
             </presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(
            r.kind,
            PresenceKind::Error {
                condition: DefinedCondition::NotAuthorized.into()
            }
        );
    }

    // Stanzas received by the bot (and by people) from ejabberd 23.01 (Debian 12),
    // verbatim but for the room name and passwords.

    #[test]
    fn ejabberd_caps_presence_from_the_bare_room_is_no_occupant() {
        // Before the self-presence of every join, and after every configuration change.
        let p = presence(
            "<presence xmlns='jabber:client' to='bot@localhost/r' from='helpim-abc@conference.localhost' id='9526684525546114059'><c ver='q3DNGyY+efyAk19LXx9L93m+uYU=' node='http://www.process-one.net/en/ejabberd/' hash='sha-1' xmlns='http://jabber.org/protocol/caps'/></presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.is_from_room());
        assert_eq!(r.nick, None);
        assert_eq!(r.kind, PresenceKind::Available);
        assert!(r.codes.is_empty());
        assert_eq!(r.item, None);
        assert_eq!(r.destroyed, None);
    }

    #[test]
    fn ejabberd_unavailable_presence_from_the_bare_room_is_no_occupant() {
        // To whoever leaves, and to every occupant just before a destroy presence.
        let p = presence(
            "<presence xmlns='jabber:client' to='bot@localhost/r' from='helpim-abc@conference.localhost' type='unavailable' id='13202377222064323155'/>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.is_from_room());
        assert_eq!(r.kind, PresenceKind::Unavailable);
        assert_eq!(r.destroyed, None);
        assert!(!r.is_self());
    }

    #[test]
    fn ejabberd_creation_self_presence_lists_201_before_110() {
        let p = presence(
            "<presence xmlns='jabber:client' xml:lang='en' to='bot@localhost/r' from='helpim-abc@conference.localhost/HelpIM'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='bot@localhost/r' role='moderator' affiliation='owner'/><status code='201'/><status code='110'/></x></presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert!(r.is_self());
        assert!(r.has(MucStatus::RoomCreated));
        assert!(!r.is_from_room());
        assert_eq!(r.item.unwrap().affiliation.as_deref(), Some("owner"));
    }

    #[test]
    fn ejabberd_destroy_presence_to_the_bot_has_no_110() {
        // What the bot receives when its room is destroyed (by itself or anybody else):
        // from its own nick, with <destroy/>, WITHOUT status 110 (Prosody sends 110).
        let p = presence(
            "<presence xmlns='jabber:client' to='bot@localhost/r' from='helpim-abc@conference.localhost/HelpIM' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><destroy><reason>This chat is closed (completed).</reason></destroy><item role='none' affiliation='none'/></x></presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(r.nick.as_deref(), Some("HelpIM"));
        assert!(!r.is_self());
        assert_eq!(r.kind, PresenceKind::Unavailable);
        assert_eq!(
            r.destroyed,
            Some(Some("This chat is closed (completed).".to_owned()))
        );
        assert!(r.codes.is_empty());
    }

    #[test]
    fn ejabberd_full_room_refuses_with_resource_constraint() {
        // To the person refused (the bot sees nothing): the room's maxusers is reached.
        let p = presence(
            "<presence xmlns='jabber:client' xml:lang='en' to='third@localhost/r' from='helpim-abc@conference.localhost/Extra' type='error'><x xmlns='http://jabber.org/protocol/muc'><password>s3cret</password></x><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xml:lang='en' xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Too many users in this conference</text></error></presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(
            r.kind,
            PresenceKind::Error {
                condition: DefinedCondition::ResourceConstraint.into()
            }
        );
        assert!(r.codes.is_empty());
        assert_eq!(r.item, None);
    }

    #[test]
    fn ejabberd_wrong_password_is_not_authorized() {
        let p = presence(
            "<presence xmlns='jabber:client' xml:lang='en' to='staff@localhost/r' from='helpim-abc@conference.localhost/Counsellor' type='error'><x xmlns='http://jabber.org/protocol/muc'><password>wrong</password></x><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xml:lang='en' xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Incorrect password</text></error></presence>",
        );
        let r = parse_room_presence(&p).unwrap();
        assert_eq!(
            r.kind,
            PresenceKind::Error {
                condition: DefinedCondition::NotAuthorized.into()
            }
        );
    }

    #[test]
    fn ejabberd_occupant_join_nick_change_and_kick_as_the_bot_sees_them() {
        let joined = parse_room_presence(&presence(
            "<presence xmlns='jabber:client' xml:lang='en' to='bot@localhost/r' from='helpim-abc@conference.localhost/Counsellor'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='staff@localhost/r' role='participant' affiliation='none'/></x></presence>",
        ))
        .unwrap();
        assert_eq!(joined.nick.as_deref(), Some("Counsellor"));
        assert_eq!(joined.kind, PresenceKind::Available);
        assert_eq!(
            joined.item.unwrap().jid.as_deref(),
            Some("staff@localhost/r")
        );

        let renamed = parse_room_presence(&presence(
            "<presence xmlns='jabber:client' to='bot@localhost/r' from='helpim-abc@conference.localhost/Counsellor' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item nick='Counsellor2' jid='staff@localhost/r' role='participant' affiliation='none'/><status code='303'/></x></presence>",
        ))
        .unwrap();
        assert!(renamed.has(MucStatus::NickChanged));
        assert_eq!(renamed.item.unwrap().nick.as_deref(), Some("Counsellor2"));

        let kicked = parse_room_presence(&presence(
            "<presence xmlns='jabber:client' to='bot@localhost/r' from='helpim-abc@conference.localhost/Counsellor2' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='staff@localhost/r' role='none' affiliation='none'><reason>This chat is full.</reason><actor nick='HelpIM'/></item><status code='307'/></x></presence>",
        ))
        .unwrap();
        assert!(kicked.has(MucStatus::Kicked));
        assert_eq!(
            kicked.item.unwrap().reason.as_deref(),
            Some("This chat is full.")
        );
    }

    /// Payloads that a client can put in a presence, that Prosody relays to the room as
    /// they are, and that xmpp-parsers refuses (so that tokio-xmpp alone would drop the
    /// whole presence). Each is read for what the bot needs. `tests/hostile.rs` sends the
    /// same payloads through a real server.
    const REFUSED_PAYLOADS: &[(&str, &str)] = &[
        ("show value outside RFC 6121", "<show>online</show>"),
        ("empty show", "<show/>"),
        ("two shows", "<show>away</show><show>dnd</show>"),
        ("priority out of range", "<priority>200</priority>"),
        ("priority not a number", "<priority>high</priority>"),
        (
            "two priorities",
            "<priority>1</priority><priority>2</priority>",
        ),
    ];

    fn hostile(type_: Option<&str>, payload: &str, codes: &str) -> Element {
        let type_ = type_.map(|t| format!(" type='{t}'")).unwrap_or_default();
        let xml = format!(
            "<presence xmlns='jabber:client' from='room@conf.example/mallory' to='bot@example/r'{type_}>
               {payload}
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='participant' jid='mallory@example/x'/>
                 {codes}
               </x>
             </presence>"
        );
        xml.parse().expect("valid XML")
    }

    #[test]
    fn payloads_a_strict_parser_refuses_do_not_hide_an_entrance() {
        for (class, payload) in REFUSED_PAYLOADS {
            let element = hostile(None, payload, "");
            assert!(
                Presence::try_from(element.clone()).is_err(),
                "{class}: xmpp-parsers now accepts it; the test no longer shows anything"
            );
            let r = parse_room_presence(&element).unwrap_or_else(|e| panic!("{class}: {e}"));
            assert_eq!(r.nick.as_deref(), Some("mallory"), "{class}");
            assert_eq!(r.kind, PresenceKind::Available, "{class}");
            let item = r.item.expect(class);
            assert_eq!(item.jid.as_deref(), Some("mallory@example/x"), "{class}");
        }
    }

    #[test]
    fn payloads_a_strict_parser_refuses_do_not_hide_a_departure_a_nick_change_or_a_kick() {
        for (class, payload) in REFUSED_PAYLOADS {
            let left = hostile(Some("unavailable"), payload, "");
            let r = parse_room_presence(&left).unwrap_or_else(|e| panic!("{class}: {e}"));
            assert_eq!(r.kind, PresenceKind::Unavailable, "{class}");
            assert!(r.codes.is_empty(), "{class}");
            let kicked = hostile(Some("unavailable"), payload, "<status code='307'/>");
            assert!(parse_room_presence(&kicked).unwrap().has(MucStatus::Kicked));
            let renamed = hostile(Some("unavailable"), payload, "<status code='303'/>");
            assert!(
                parse_room_presence(&renamed)
                    .unwrap()
                    .has(MucStatus::NickChanged)
            );
            let lost = hostile(Some("unavailable"), payload, "<status code='333'/>");
            assert!(
                parse_room_presence(&lost)
                    .unwrap()
                    .has(MucStatus::ConnectionLost)
            );
        }
    }

    #[test]
    fn a_presence_type_outside_rfc_6121_asks_the_room() {
        let error = parse_room_presence(&hostile(Some("online"), "", "")).unwrap_err();
        assert_eq!(error, PresenceError::BadType("online".into()));
        assert!(error.hides_an_occupant());
    }

    #[test]
    fn an_unreadable_real_jid_asks_the_room() {
        let bad_item: Element = "<presence xmlns='jabber:client' from='room@conf.example/m'>
               <x xmlns='http://jabber.org/protocol/muc#user'><item jid='@@'/></x>
             </presence>"
            .parse()
            .unwrap();
        let error = parse_room_presence(&bad_item).unwrap_err();
        assert_eq!(error, PresenceError::BadItemJid("@@".into()));
        assert!(error.hides_an_occupant());
    }

    #[test]
    fn a_nick_that_is_no_resource_still_names_the_room() {
        let bad_from: Element = "<presence xmlns='jabber:client' from='room@conf.example/'/>"
            .parse()
            .unwrap();
        let error = parse_room_presence(&bad_from).unwrap_err();
        assert_eq!(error, PresenceError::BadSender("room@conf.example/".into()));
        assert!(error.hides_an_occupant());
        assert_eq!(
            presence_room(&bad_from).map(|r| r.to_string()).as_deref(),
            Some("room@conf.example")
        );
    }

    #[test]
    fn subscriptions_say_nothing_about_occupants() {
        let subscribe: Element =
            "<presence xmlns='jabber:client' from='room@conf.example/m' type='subscribe'/>"
                .parse()
                .unwrap();
        let error = parse_room_presence(&subscribe).unwrap_err();
        assert!(!error.hides_an_occupant());
    }

    #[test]
    fn no_room_without_a_usable_sender() {
        let none: Element = "<presence xmlns='jabber:client'/>".parse().unwrap();
        assert_eq!(presence_room(&none), None);
        assert_eq!(parse_room_presence(&none), Err(PresenceError::NoSender));
        let garbage: Element = "<presence xmlns='jabber:client' from='@/x'/>"
            .parse()
            .unwrap();
        assert_eq!(presence_room(&garbage), None);
    }

    #[test]
    fn an_occupant_list_gives_nick_and_real_jid() {
        let answer: Element = "<query xmlns='http://jabber.org/protocol/muc#admin'>
               <item affiliation='none' role='participant' nick='alice' jid='alice@example/web'/>
               <item affiliation='owner' role='participant' nick='bob'/>
               <item affiliation='none' role='participant' jid='nobody@example'/>
             </query>"
            .parse()
            .unwrap();
        assert_eq!(
            occupant_list(&answer),
            vec![
                ("alice".to_owned(), Some("alice@example/web".to_owned())),
                ("bob".to_owned(), None),
            ]
        );
        let query = role_query("visitor");
        assert!(query.is("query", NS_MUC_ADMIN));
        assert_eq!(
            query.get_child("item", NS_MUC_ADMIN).unwrap().attr("role"),
            Some("visitor")
        );
    }

    #[test]
    fn a_garbled_status_code_is_an_error_not_a_panic() {
        let p = presence(
            "<presence xmlns='jabber:client' from='room@conf.example/x'>
               <x xmlns='http://jabber.org/protocol/muc#user'><status code='abc'/></x>
             </presence>",
        );
        assert_eq!(
            parse_room_presence(&p),
            Err(PresenceError::BadStatusCode("abc".into()))
        );
    }

    #[test]
    fn the_join_asks_for_no_history_and_carries_the_password() {
        let room: BareJid = "room@conf.example".parse().unwrap();
        let element = Element::from(join(&room, "HelpIM", Some("s3cret")));
        assert_eq!(element.attr("to"), Some("room@conf.example/HelpIM"));
        let x = element
            .get_child("x", "http://jabber.org/protocol/muc")
            .unwrap();
        assert_eq!(
            x.get_child("password", "http://jabber.org/protocol/muc")
                .unwrap()
                .text(),
            "s3cret"
        );
        let history = x
            .get_child("history", "http://jabber.org/protocol/muc")
            .unwrap();
        assert_eq!(history.attr("maxstanzas"), Some("0"));
    }

    #[test]
    fn a_kick_request_sets_role_none() {
        let element = kick("mallory", "no claim", "en");
        let item = element.get_child("item", NS_MUC_ADMIN).unwrap();
        assert_eq!(item.attr("nick"), Some("mallory"));
        assert_eq!(item.attr("role"), Some("none"));
        assert_eq!(
            item.get_child("reason", NS_MUC_ADMIN).unwrap().text(),
            "no claim"
        );
    }

    #[test]
    fn reasons_for_people_say_their_language() {
        let text = String::from(&kick("mallory", "Dit gesprek is vol.", "nl"));
        assert!(
            text.contains("<reason xml:lang='nl'>Dit gesprek is vol.</reason>")
                || text.contains("<reason xml:lang=\"nl\">Dit gesprek is vol.</reason>"),
            "{text}"
        );
        let destroy = destroy("Dieser Chat ist beendet.", "de");
        let reason = destroy
            .get_child("destroy", NS_MUC_OWNER)
            .and_then(|d| d.get_child("reason", NS_MUC_OWNER))
            .unwrap();
        assert_eq!(
            reason.attr_ns(minidom::rxml::Namespace::XML.as_str(), "lang"),
            Some("de")
        );
        assert_eq!(reason.text(), "Dieser Chat ist beendet.");
    }
}
