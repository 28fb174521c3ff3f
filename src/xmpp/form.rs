//! Room configuration (XEP-0045 §10.2, XEP-0004 data forms) for Prosody and ejabberd alike.
//!
//! Servers offer different fields: Prosody 0.12 has no `maxusers` and no
//! `passwordprotectedroom` but protects a room by a non-empty `roomsecret`; ejabberd 23.01
//! needs both, has no `historylength`, calls archiving `mam` (only when mod_mam is loaded)
//! and rejects a whole submit that names a field it did not offer (`bad-request: Unknown
//! field`). So the bot reads the form the room offers, submits only offered fields, and then
//! checks the result through disco#info features rather than trusting the answer: protected,
//! hidden, temporary, and not archived. The form is read once per session
//! ([`OwnerFormCache`]); the check is made for every room.

use minidom::Element;
use minidom::rxml::xml_ncname;

use super::muc::NS_MUC_OWNER;

/// `jabber:x:data`.
pub const NS_DATA: &str = "jabber:x:data";
/// `http://jabber.org/protocol/disco#info`.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// The FORM_TYPE of room configuration forms.
const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

/// One field the server offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedField {
    /// The field's `var`.
    pub var: String,
    /// The field's type (`boolean`, `text-single`, `list-single`, ...).
    pub kind: String,
    /// The allowed values of a list field.
    pub options: Vec<String>,
}

/// The configuration form a room offered its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferedForm {
    /// Every field with a `var`, in the server's order.
    pub fields: Vec<OfferedField>,
}

impl OfferedForm {
    /// The offered field called exactly `var`.
    pub fn field(&self, var: &str) -> Option<&OfferedField> {
        self.fields.iter().find(|f| f.var == var)
    }
}

/// The owner form of the MUC service, fetched for the first room of an XMPP session and
/// reused for every later one: all rooms of one service offer the same fields, so each
/// further room is configured with one submit instead of a fetch and a submit (XEP-0045
/// lets an owner submit without fetching first). Rooms created at the same time wait for
/// the one fetch rather than each making their own. [`OwnerFormCache::forget`] (every new
/// session, and a kept form a room refused) makes the next room fetch again. Clones share
/// one form.
#[derive(Debug, Clone, Default)]
pub struct OwnerFormCache(std::sync::Arc<OwnerFormInner>);

/// The shared part of [`OwnerFormCache`].
#[derive(Debug, Default)]
struct OwnerFormInner {
    /// Counts [`OwnerFormCache::forget`]s: a form kept under an older count is stale.
    generation: std::sync::atomic::AtomicU64,
    /// The form and the generation it was fetched in; locked across a fetch.
    form: tokio::sync::Mutex<Option<(u64, OfferedForm)>>,
}

impl OwnerFormCache {
    /// The kept form, or the one `fetch` gets (then kept); true when it was fetched now.
    pub async fn get_or_fetch<E>(
        &self,
        fetch: impl AsyncFnOnce() -> Result<OfferedForm, E>,
    ) -> Result<(OfferedForm, bool), E> {
        let mut kept = self.0.form.lock().await;
        let generation = self.0.generation.load(std::sync::atomic::Ordering::SeqCst);
        if let Some((at, form)) = kept.as_ref()
            && *at == generation
        {
            return Ok((form.clone(), false));
        }
        let form = fetch().await?;
        *kept = Some((generation, form.clone()));
        Ok((form, true))
    }

    /// Makes the next room fetch the form again.
    pub fn forget(&self) {
        self.0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the bot wants of a room; turned into a submit of the offered fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    /// The room password (`roomsecret`).
    pub password: String,
    /// Messages of history the room replays to a newcomer (0: none).
    pub history_length: u32,
    /// The occupant limit including the bot and each person's further sessions, where the
    /// server offers `maxusers`.
    pub max_users: u32,
    /// The language people speak in the room (`muc#roomconfig_lang`, where offered): the
    /// bot's texts' language.
    pub lang: &'static str,
}

/// A form that cannot serve, or a configuration the server did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The owner query answer held no data form.
    #[error("the room sent no configuration form")]
    NoForm,
    /// The form lacks a field the bot cannot do without.
    #[error("the room's configuration form has no {0} field: the room cannot be protected")]
    MissingField(&'static str),
    /// After configuration, disco#info shows the room is not what was asked for.
    #[error("the server did not apply the room configuration: {0}")]
    NotApplied(String),
}

/// Reads the `<x xmlns='jabber:x:data' type='form'/>` inside a muc#owner `<query/>`.
pub fn parse_offered(query: &Element) -> Result<OfferedForm, FormError> {
    let x = query
        .children()
        .find(|c| c.is("x", NS_DATA))
        .ok_or(FormError::NoForm)?;
    let fields = x
        .children()
        .filter(|c| c.is("field", NS_DATA))
        .filter_map(|field| {
            Some(OfferedField {
                var: field.attr("var")?.to_owned(),
                kind: field.attr("type").unwrap_or("text-single").to_owned(),
                options: field
                    .children()
                    .filter(|c| c.is("option", NS_DATA))
                    .filter_map(|o| o.get_child("value", NS_DATA).map(Element::text))
                    .collect(),
            })
        })
        .collect();
    Ok(OfferedForm { fields })
}

/// The values the bot sets, by field: `var` and the value; a field is submitted only when
/// the server offered it. Booleans are `1`/`0` (XEP-0004 allows both spellings).
fn wanted_values(settings: &RoomSettings) -> Vec<(&'static str, String)> {
    let history = settings.history_length.to_string();
    vec![
        ("muc#roomconfig_roomsecret", settings.password.clone()),
        ("muc#roomconfig_passwordprotectedroom", "1".into()),
        ("muc#roomconfig_persistentroom", "0".into()),
        ("muc#roomconfig_publicroom", "0".into()),
        ("public_list", "0".into()),
        ("muc#roomconfig_membersonly", "0".into()),
        ("muc#roomconfig_moderatedroom", "0".into()),
        ("muc#roomconfig_whois", "moderators".into()),
        ("muc#roomconfig_allowinvites", "0".into()),
        (
            "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites",
            "0".into(),
        ),
        ("muc#roomconfig_changesubject", "0".into()),
        ("muc#roomconfig_historylength", history.clone()),
        ("muc#roomconfig_defaulthistorymessages", history),
        ("muc#roomconfig_maxusers", settings.max_users.to_string()),
        ("muc#roomconfig_lang", settings.lang.to_owned()),
        ("muc#roomconfig_enablearchiving", "0".into()),
        ("mam", "0".into()),
        ("muc#roomconfig_enablelogging", "0".into()),
        ("muc#roomconfig_allowpm", "none".into()),
        ("allow_private_messages", "0".into()),
        ("allow_private_messages_from_visitors", "nobody".into()),
        ("allow_query_users", "0".into()),
        ("allow_visitor_nickchange", "0".into()),
        // ejabberd's MucSub: subscribers receive a room's messages without being in it.
        ("allow_subscription", "0".into()),
    ]
}

/// Builds the muc#owner submit for `offered`: only fields the server offered, list values
/// only when they are among the options (except `maxusers`, where servers accept others).
pub fn submit(offered: &OfferedForm, settings: &RoomSettings) -> Result<Element, FormError> {
    if offered.field("muc#roomconfig_roomsecret").is_none() {
        return Err(FormError::MissingField("muc#roomconfig_roomsecret"));
    }
    let mut x = Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").to_owned(), "submit")
        .append(field("FORM_TYPE", Some("hidden"), ROOMCONFIG))
        .build();
    for (var, value) in wanted_values(settings) {
        let Some(offer) = offered.field(var) else {
            continue;
        };
        let is_list = offer.kind.starts_with("list");
        let accepted = !is_list
            || offer.options.is_empty()
            || offer.options.contains(&value)
            || var == "muc#roomconfig_maxusers";
        if accepted {
            x.append_child(field(var, None, &value));
        }
    }
    Ok(Element::builder("query", NS_MUC_OWNER).append(x).build())
}

/// One `<field var='…'><value>…</value></field>`.
fn field(var: &str, kind: Option<&str>, value: &str) -> Element {
    let mut builder = Element::builder("field", NS_DATA).attr(xml_ncname!("var").to_owned(), var);
    if let Some(kind) = kind {
        builder = builder.attr(xml_ncname!("type").to_owned(), kind);
    }
    builder
        .append(Element::builder("value", NS_DATA).append(value))
        .build()
}

/// The disco#info features of a room.
pub fn features(info: &Element) -> Vec<String> {
    info.children()
        .filter(|c| c.is("feature", NS_DISCO_INFO))
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect()
}

/// The disco#info feature prefix of message archive management (XEP-0313): a room shows
/// `urn:xmpp:mam:2` (and older versions) while it is archived, on Prosody (mod_muc_mam) and
/// ejabberd (mod_mam) alike.
const MAM_FEATURE_PREFIX: &str = "urn:xmpp:mam:";

/// Checks from a room's disco#info answer that it is password-protected, hidden, temporary
/// and semi-anonymous (XEP-0045 §15.4 features) and not archived (no `urn:xmpp:mam:*` feature),
/// naming every property that is wrong.
pub fn verify_features(info: &Element) -> Result<(), FormError> {
    let features = features(info);
    let has = |f: &str| features.iter().any(|x| x == f);
    let mut wrong = Vec::new();
    for (needed, absent) in [
        ("muc_passwordprotected", "muc_unsecured"),
        ("muc_hidden", "muc_public"),
        ("muc_temporary", "muc_persistent"),
        // Participants must not see each other's real JIDs (a help seeker's identity); the
        // bot, owner and moderator, still does.
        ("muc_semianonymous", "muc_nonanonymous"),
    ] {
        if !has(needed) || has(absent) {
            wrong.push(format!("{needed} missing"));
        }
    }
    if let Some(mam) = features.iter().find(|f| f.starts_with(MAM_FEATURE_PREFIX)) {
        wrong.push(format!("archived ({mam})"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(FormError::NotApplied(wrong.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSODY_FORM: &str = "<query xmlns='http://jabber.org/protocol/muc#owner'>
      <x xmlns='jabber:x:data' type='form'>
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
        <field var='muc#roomconfig_roomname' type='text-single'/>
        <field var='muc#roomconfig_persistentroom' type='boolean'/>
        <field var='muc#roomconfig_publicroom' type='boolean'><value>1</value></field>
        <field var='muc#roomconfig_roomsecret' type='text-private'/>
        <field var='muc#roomconfig_membersonly' type='boolean'/>
        <field var='{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites' type='boolean'/>
        <field var='muc#roomconfig_whois' type='list-single'>
          <option label='Moderators only'><value>moderators</value></option>
          <option label='Anyone'><value>anyone</value></option>
        </field>
        <field var='muc#roomconfig_historylength' type='text-single'/>
      </x></query>";

    fn settings() -> RoomSettings {
        RoomSettings {
            password: "pw".into(),
            history_length: 5,
            max_users: 3,
            lang: "nl",
        }
    }

    fn submitted(query: &Element) -> Vec<(String, String)> {
        let x = query.get_child("x", NS_DATA).unwrap();
        assert_eq!(x.attr("type"), Some("submit"));
        x.children()
            .map(|f| {
                (
                    f.attr("var").unwrap().to_owned(),
                    f.get_child("value", NS_DATA).unwrap().text(),
                )
            })
            .collect()
    }

    #[test]
    fn only_offered_fields_are_submitted() {
        let form = parse_offered(&PROSODY_FORM.parse().unwrap()).unwrap();
        let fields = submitted(&submit(&form, &settings()).unwrap());
        let vars: Vec<&str> = fields.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "muc#roomconfig_roomsecret",
                "muc#roomconfig_persistentroom",
                "muc#roomconfig_publicroom",
                "muc#roomconfig_membersonly",
                "muc#roomconfig_whois",
                "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites",
                "muc#roomconfig_historylength",
            ]
        );
        assert!(fields.contains(&("muc#roomconfig_roomsecret".into(), "pw".into())));
        assert!(fields.contains(&("muc#roomconfig_publicroom".into(), "0".into())));
        assert!(fields.contains(&("muc#roomconfig_historylength".into(), "5".into())));
    }

    #[test]
    fn ejabberd_fields_are_set_when_offered() {
        let form = parse_offered(
            &"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='form'>
                <field var='muc#roomconfig_roomsecret' type='text-private'/>
                <field var='muc#roomconfig_passwordprotectedroom' type='boolean'/>
                <field var='public_list' type='boolean'/>
                <field var='mam' type='boolean'/>
                <field var='muc#roomconfig_maxusers' type='list-single'>
                  <option><value>5</value></option><option><value>10</value></option>
                </field>
                <field var='muc#roomconfig_allowpm' type='list-single'>
                  <option><value>anyone</value></option><option><value>none</value></option>
                </field>
              </x></query>"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let fields = submitted(&submit(&form, &settings()).unwrap());
        for expected in [
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("public_list", "0"),
            ("mam", "0"),
            ("muc#roomconfig_maxusers", "3"),
            ("muc#roomconfig_allowpm", "none"),
        ] {
            assert!(
                fields.contains(&(expected.0.into(), expected.1.into())),
                "{expected:?} in {fields:?}"
            );
        }
    }

    /// The form ejabberd 23.01 (Debian 12) offers the creator of a new room, verbatim, with
    /// Debian's stock mod_muc settings (mod_mam loaded, `default_room_options: mam: true`):
    /// the room is already password-protected by the password in the creator's join
    /// presence, public, moderated, archived.
    const EJABBERD_FORM: &str = "<query xmlns='http://jabber.org/protocol/muc#owner'><x type='form' xmlns='jabber:x:data'><title>Configuration of room helpim-abc@conference.localhost</title>
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
        <field var='muc#roomconfig_roomname' type='text-single' label='Room title'/>
        <field var='muc#roomconfig_roomdesc' type='text-single' label='Room description'/>
        <field var='muc#roomconfig_lang' type='text-single' label='Natural Language for Room Discussions'><value>en</value></field>
        <field var='muc#roomconfig_persistentroom' type='boolean' label='Make room persistent'><value>0</value></field>
        <field var='muc#roomconfig_publicroom' type='boolean' label='Make room public searchable'><value>1</value></field>
        <field var='public_list' type='boolean' label='Make participants list public'><value>1</value></field>
        <field var='muc#roomconfig_passwordprotectedroom' type='boolean' label='Make room password protected'><value>1</value></field>
        <field var='muc#roomconfig_roomsecret' type='text-private' label='Password'><value>s3cret</value></field>
        <field var='muc#roomconfig_maxusers' type='list-single' label='Maximum Number of Occupants'><value>200</value><option label='5'><value>5</value></option><option label='10'><value>10</value></option><option label='20'><value>20</value></option><option label='30'><value>30</value></option><option label='50'><value>50</value></option><option label='100'><value>100</value></option><option label='200'><value>200</value></option></field>
        <field var='muc#roomconfig_whois' type='list-single' label='Present real Jabber IDs to'><value>moderators</value><option label='Moderators Only'><value>moderators</value></option><option label='Anyone'><value>anyone</value></option></field>
        <field var='muc#roomconfig_presencebroadcast' type='list-multi' label='Roles for which Presence is Broadcasted'><value>moderator</value><value>participant</value><value>visitor</value><option label='Moderator'><value>moderator</value></option><option label='Participant'><value>participant</value></option><option label='Visitor'><value>visitor</value></option></field>
        <field var='muc#roomconfig_membersonly' type='boolean' label='Make room members-only'><value>0</value></field>
        <field var='muc#roomconfig_moderatedroom' type='boolean' label='Make room moderated'><value>1</value></field>
        <field var='members_by_default' type='boolean' label='Default users as participants'><value>1</value></field>
        <field var='muc#roomconfig_changesubject' type='boolean' label='Allow users to change the subject'><value>1</value></field>
        <field var='allow_private_messages' type='boolean' label='Allow users to send private messages'><value>1</value></field>
        <field var='allow_private_messages_from_visitors' type='list-single' label='Allow visitors to send private messages to'><value>anyone</value><option label='Nobody'><value>nobody</value></option><option label='Moderators Only'><value>moderators</value></option><option label='Anyone'><value>anyone</value></option></field>
        <field var='allow_query_users' type='boolean' label='Allow users to query other users'><value>1</value></field>
        <field var='muc#roomconfig_allowinvites' type='boolean' label='Allow users to send invites'><value>0</value></field>
        <field var='allow_visitor_status' type='boolean' label='Allow visitors to send status text in presence updates'><value>1</value></field>
        <field var='allow_visitor_nickchange' type='boolean' label='Allow visitors to change nickname'><value>1</value></field>
        <field var='allow_voice_requests' type='boolean' label='Allow visitors to send voice requests'><value>1</value></field>
        <field var='allow_subscription' type='boolean' label='Allow subscription'><value>0</value></field>
        <field var='voice_request_min_interval' type='text-single' label='Minimum interval between voice requests (in seconds)'><value>1800</value></field>
        <field var='muc#roomconfig_pubsub' type='text-single' label='XMPP URI of Associated Publish-Subscribe Node'><value/></field>
        <field var='enable_hats' type='boolean' label='Enable hats'><value>0</value></field>
        <field var='mam' type='boolean' label='Enable message archiving'><value>1</value></field>
      </x></query>";

    #[test]
    fn the_real_ejabberd_form_gets_exactly_the_offered_fields_the_bot_sets() {
        let form = parse_offered(&EJABBERD_FORM.parse().unwrap()).unwrap();
        assert_eq!(
            form.field("muc#roomconfig_maxusers").unwrap().options,
            ["5", "10", "20", "30", "50", "100", "200"]
        );
        let fields = submitted(&submit(&form, &settings()).unwrap());
        assert_eq!(
            fields,
            [
                ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
                ("muc#roomconfig_roomsecret", "pw"),
                ("muc#roomconfig_passwordprotectedroom", "1"),
                ("muc#roomconfig_persistentroom", "0"),
                ("muc#roomconfig_publicroom", "0"),
                ("public_list", "0"),
                ("muc#roomconfig_membersonly", "0"),
                ("muc#roomconfig_moderatedroom", "0"),
                ("muc#roomconfig_whois", "moderators"),
                ("muc#roomconfig_allowinvites", "0"),
                ("muc#roomconfig_changesubject", "0"),
                // Not among the options, and accepted by ejabberd all the same (it then
                // lists 3 among the options).
                ("muc#roomconfig_maxusers", "3"),
                // The bot's language, so that clients know what the room speaks.
                ("muc#roomconfig_lang", "nl"),
                ("mam", "0"),
                ("allow_private_messages", "0"),
                ("allow_private_messages_from_visitors", "nobody"),
                ("allow_query_users", "0"),
                ("allow_visitor_nickchange", "0"),
                ("allow_subscription", "0"),
            ]
            .map(|(var, value)| (var.to_owned(), value.to_owned()))
        );
        // Every submitted field was offered: ejabberd refuses the whole submit otherwise.
        for (var, _) in &fields {
            assert!(form.field(var).is_some(), "{var} was not offered");
        }
    }

    #[test]
    fn ejabberd_disco_info_before_and_after_configuration() {
        // Verbatim from ejabberd 23.01 with Debian's stock mod_muc settings, right after
        // creation: public, moderated and archived.
        let before: Element = "<query xmlns='http://jabber.org/protocol/disco#info'><identity type='text' category='conference'/><feature var='vcard-temp'/><feature var='http://jabber.org/protocol/muc'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/commands'/><feature var='muc_public'/><feature var='muc_temporary'/><feature var='muc_open'/><feature var='muc_semianonymous'/><feature var='muc_moderated'/><feature var='muc_passwordprotected'/><feature var='urn:xmpp:mam:tmp'/><feature var='urn:xmpp:mam:0'/><feature var='urn:xmpp:mam:1'/><feature var='urn:xmpp:mam:2'/><feature var='urn:xmpp:sid:0'/></query>"
            .parse()
            .unwrap();
        let err = verify_features(&before).unwrap_err().to_string();
        assert!(err.contains("muc_hidden missing"), "{err}");
        assert!(err.contains("archived (urn:xmpp:mam:"), "{err}");
        assert!(!err.contains("muc_passwordprotected"), "{err}");
        // After the bot's submit (room info form left out).
        let after: Element = "<query xmlns='http://jabber.org/protocol/disco#info'><identity type='text' category='conference'/><feature var='vcard-temp'/><feature var='http://jabber.org/protocol/muc'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/commands'/><feature var='muc_hidden'/><feature var='muc_temporary'/><feature var='muc_open'/><feature var='muc_semianonymous'/><feature var='muc_unmoderated'/><feature var='muc_passwordprotected'/></query>"
            .parse()
            .unwrap();
        assert_eq!(verify_features(&after), Ok(()));
    }

    #[test]
    fn a_list_value_outside_the_options_is_not_sent() {
        let form = parse_offered(
            &"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='form'>
                <field var='muc#roomconfig_roomsecret' type='text-private'/>
                <field var='muc#roomconfig_whois' type='list-single'>
                  <option><value>anyone</value></option>
                </field></x></query>"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let fields = submitted(&submit(&form, &settings()).unwrap());
        assert!(!fields.iter().any(|(v, _)| v == "muc#roomconfig_whois"));
    }

    #[test]
    fn a_form_without_roomsecret_is_refused() {
        let form = OfferedForm::default();
        assert_eq!(
            submit(&form, &settings()),
            Err(FormError::MissingField("muc#roomconfig_roomsecret"))
        );
        let no_form: Element = "<query xmlns='http://jabber.org/protocol/muc#owner'/>"
            .parse()
            .unwrap();
        assert_eq!(parse_offered(&no_form), Err(FormError::NoForm));
    }

    #[test]
    fn a_room_that_shows_real_jids_to_participants_is_refused() {
        for anonymity in ["<feature var='muc_nonanonymous'/>", ""] {
            let info: Element = format!(
                "<query xmlns='http://jabber.org/protocol/disco#info'>
                <feature var='muc_passwordprotected'/><feature var='muc_hidden'/>
                <feature var='muc_temporary'/>{anonymity}</query>"
            )
            .parse()
            .unwrap();
            let err = verify_features(&info).unwrap_err().to_string();
            assert!(
                err.contains("muc_semianonymous missing"),
                "{anonymity}: {err}"
            );
        }
    }

    #[test]
    fn disco_features_prove_the_room_is_protected_hidden_and_temporary() {
        let good: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>
            <feature var='http://jabber.org/protocol/muc'/>
            <feature var='muc_passwordprotected'/><feature var='muc_hidden'/>
            <feature var='muc_temporary'/><feature var='muc_semianonymous'/></query>"
            .parse()
            .unwrap();
        assert_eq!(verify_features(&good), Ok(()));
        let bad: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>
            <feature var='muc_unsecured'/><feature var='muc_public'/>
            <feature var='muc_temporary'/></query>"
            .parse()
            .unwrap();
        let err = verify_features(&bad).unwrap_err().to_string();
        assert!(err.contains("muc_passwordprotected missing"), "{err}");
        assert!(err.contains("muc_hidden missing"), "{err}");
        assert!(!err.contains("muc_temporary"), "{err}");
    }
}
