//! Room configuration (XEP-0045 §10.2, XEP-0004 data forms) for Prosody and ejabberd alike.
//!
//! Servers offer different fields: Prosody 0.12 has no `maxusers` and no
//! `passwordprotectedroom` but protects a room by a non-empty `roomsecret`; ejabberd needs
//! both and rejects a whole submit that names a field it did not offer. So the bot reads the
//! form the room offers, submits only offered fields, and then checks the result through
//! disco#info features rather than trusting the answer.

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

/// What the bot wants of a room; turned into a submit of the offered fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    /// The room password (`roomsecret`).
    pub password: String,
    /// Messages of history the room replays to a newcomer (0: none).
    pub history_length: u32,
    /// The occupant limit including the bot, where the server offers `maxusers`.
    pub max_users: u32,
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
        ("muc#roomconfig_enablearchiving", "0".into()),
        ("mam", "0".into()),
        ("muc#roomconfig_enablelogging", "0".into()),
        ("muc#roomconfig_allowpm", "none".into()),
        ("allow_private_messages", "0".into()),
        ("allow_private_messages_from_visitors", "nobody".into()),
        ("allow_query_users", "0".into()),
        ("allow_visitor_nickchange", "0".into()),
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

/// Checks from a room's disco#info answer that it is password-protected, hidden and
/// temporary (XEP-0045 §15.4 features), naming every property that is wrong.
pub fn verify_features(info: &Element) -> Result<(), FormError> {
    let features = features(info);
    let has = |f: &str| features.iter().any(|x| x == f);
    let mut wrong = Vec::new();
    for (needed, absent) in [
        ("muc_passwordprotected", "muc_unsecured"),
        ("muc_hidden", "muc_public"),
        ("muc_temporary", "muc_persistent"),
    ] {
        if !has(needed) || has(absent) {
            wrong.push(format!("{needed} missing"));
        }
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
    fn disco_features_prove_the_room_is_protected_hidden_and_temporary() {
        let good: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>
            <feature var='http://jabber.org/protocol/muc'/>
            <feature var='muc_passwordprotected'/><feature var='muc_hidden'/>
            <feature var='muc_temporary'/></query>"
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
