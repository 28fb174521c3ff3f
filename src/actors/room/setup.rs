//! Setting a room up on the server: creating and configuring it, joining it again after a
//! restart or a reconnect and checking what is there, and destroying it until the server
//! confirms.

use super::*;
use crate::lifecycle::CreationFailure;

/// Why creating a room failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum CreateError {
    #[error("join refused: {0}")]
    JoinRefused(String),
    #[error("no answer to the join within {0:?}")]
    JoinTimeout(Duration),
    #[error("the room already existed (no status 201): left it, a new name will be used")]
    NameTaken,
    #[error("configuration: {0}")]
    Iq(#[from] IqError),
    #[error("configuration: {0}")]
    Form(#[from] form::FormError),
    #[error("configuration: the owner query returned no form")]
    NoForm,
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
}

impl CreateError {
    /// The kind of failure, for the machine's decision
    /// ([`lifecycle::destroy_after_failed_creation`]).
    pub(super) fn failure(&self) -> CreationFailure {
        match self {
            CreateError::JoinRefused(_) => CreationFailure::JoinRefused,
            CreateError::JoinTimeout(_) => CreationFailure::JoinUnanswered,
            CreateError::NameTaken => CreationFailure::NameTaken,
            CreateError::Iq(_) | CreateError::Form(_) | CreateError::NoForm => {
                CreationFailure::NotConfigured
            }
            CreateError::Store(_) => CreationFailure::NotRecorded,
        }
    }
}

/// Sends the destroy request until the server confirms that the room is gone: a result, or
/// `item-not-found` (nothing left to destroy). Waits with doubling backoff in between.
/// Returns false, without retrying, when the server refuses the bot the right to destroy
/// the room (it is no longer the room's owner): asking again cannot help, and an actor
/// must not retry forever (a shutdown waits for it). The row then stays undestroyed, for
/// the next session's sweep and for operators.
pub async fn destroy_until_confirmed(
    xmpp: &XmppHandle,
    room: &BareJid,
    reason: &str,
    lang: &str,
) -> bool {
    let mut waits = Backoff::new(Duration::from_secs(1), RETRY_MAX).waits();
    loop {
        match xmpp
            .set(Jid::from(room.clone()), muc::destroy(reason, lang))
            .await
        {
            Ok(_) => {
                log::info!(room = room.as_str(); "room destroyed on the server");
                return true;
            }
            Err(IqError::Refused { condition, .. })
                if condition.0 == DefinedCondition::ItemNotFound =>
            {
                log::info!(room = room.as_str(); "room already gone from the server");
                return true;
            }
            Err(IqError::Refused { condition, .. })
                if matches!(
                    condition.0,
                    DefinedCondition::Forbidden
                        | DefinedCondition::NotAllowed
                        | DefinedCondition::NotAuthorized
                ) =>
            {
                log::error!(room = room.as_str();
                    "the server refuses to let the bot destroy the room ({condition}): the bot \
                     is no longer its owner; it stays on the server, unmanaged, until a server \
                     administrator destroys it");
                return false;
            }
            Err(error) => {
                let delay = waits.next().expect("backoff waits never end");
                log::warn!(room = room.as_str(); "destroying the room failed ({error}); trying again in {delay:?}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// 128 random bits from the OS-seeded CSPRNG, as 26 lowercase base32 characters: valid in
/// a JID localpart and easy to read aloud to support staff.
pub fn random_token() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits: u128 = rand::rng().random();
    (0..26)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

/// Joins, configures, verifies and records a new room; returns the row id.
pub(super) async fn create(
    ctx: Arc<RoomContext>,
    jid: BareJid,
    password: String,
    joined: oneshot::Receiver<RoomPresence>,
) -> Result<i64, CreateError> {
    ctx.xmpp
        .send(muc::join(&jid, &ctx.policy.bot_nick, Some(&password)));
    let presence = match tokio::time::timeout(ctx.join_timeout, joined).await {
        Ok(Ok(p)) => p,
        _ => return Err(CreateError::JoinTimeout(ctx.join_timeout)),
    };
    if let PresenceKind::Error { condition } = presence.kind {
        return Err(CreateError::JoinRefused(condition.to_string()));
    }
    if !presence.has(MucStatus::RoomCreated) {
        ctx.xmpp.send(muc::leave(&jid, &ctx.policy.bot_nick));
        return Err(CreateError::NameTaken);
    }
    configure(&ctx, &jid, &password).await?;
    let row = ctx
        .store
        .create_room(&NewRoom {
            jid: jid.to_string(),
            password,
            bot_jid: ctx.bot_jid.clone(),
            at: store::now(),
        })
        .await?;
    Ok(row.id)
}

/// What the bot found when it joined a recorded room again.
#[derive(Debug)]
pub(super) enum Rejoined {
    /// The room is there (reconfigured); `early` holds who is inside, and these are the
    /// row's claims.
    Present(Claims),
    /// The join created the room anew: the old one was lost.
    Recreated,
    /// The room refused the join (gone and not creatable, or the password changed).
    Gone(String),
    /// The room is there but could not be configured or verified again.
    Unconfigurable(String),
    /// No answer to the join in time.
    TimedOut,
    /// Somebody else holds the nick the bot joined with (`conflict`).
    NickTaken,
}

/// Joins a recorded room again (a room recorded `available` is first looked up, and given up
/// if the server no longer has it), checks its configuration and submits it again if it is
/// wrong; then reads the row's claims.
pub(super) async fn rejoin(
    ctx: Arc<RoomContext>,
    jid: BareJid,
    password: String,
    (room_id, recorded, nick): (i64, RoomStatus, String),
    joined: oneshot::Receiver<RoomPresence>,
) -> Rejoined {
    // A room recorded as unused died with the bot's session if nobody entered it: one
    // disco#info tells, where a join would re-create it, only to be destroyed again.
    // Its answer also serves the configuration check below.
    let mut info = None;
    if recorded == RoomStatus::Available {
        match ctx.xmpp.get(Jid::from(jid.clone()), disco_info()).await {
            Err(IqError::Refused { condition, .. })
                if condition.0 == DefinedCondition::ItemNotFound =>
            {
                return Rejoined::Gone("it is no longer on the server (item-not-found)".into());
            }
            Ok(answer) => info = answer,
            Err(_) => {}
        }
    }
    ctx.xmpp.send(muc::join(&jid, &nick, Some(&password)));
    let presence = match tokio::time::timeout(ctx.join_timeout, joined).await {
        Ok(Ok(p)) => p,
        _ => return Rejoined::TimedOut,
    };
    if let PresenceKind::Error { condition } = presence.kind {
        if condition.0 == DefinedCondition::Conflict {
            return Rejoined::NickTaken;
        }
        return Rejoined::Gone(condition.to_string());
    }
    if presence.has(MucStatus::RoomCreated) {
        return Rejoined::Recreated;
    }
    // A room the bot no longer owns cannot be managed: nobody could be kicked from it.
    let affiliation = presence
        .item
        .as_ref()
        .and_then(|i| i.affiliation.as_deref());
    if affiliation != Some("owner") {
        return Rejoined::Unconfigurable(format!(
            "the bot is no longer its owner (affiliation {})",
            affiliation.unwrap_or("unknown")
        ));
    }
    // The room kept the configuration the bot gave it (only its owner, the bot, or a
    // server administrator can change it): checked, and submitted again only if wrong.
    let info = match info {
        Some(info) => Some(info),
        None => ctx
            .xmpp
            .get(Jid::from(jid.clone()), disco_info())
            .await
            .ok()
            .flatten(),
    };
    let verified = info.is_some_and(|info| form::verify_features(&info).is_ok());
    if !verified && let Err(error) = configure(&ctx, &jid, &password).await {
        return Rejoined::Unconfigurable(error.to_string());
    }
    Rejoined::Present(lookup_claims(ctx.clone(), room_id, jid).await)
}

/// Submits the bot's settings for the fields the service's owner form offers (fetched for
/// the first room of the session, see [`form::OwnerFormCache`]), and checks with disco#info
/// that the room is protected, hidden, temporary, semi-anonymous and unarchived. A submit of
/// the kept form that the room refuses is tried once more with a freshly fetched form.
pub(super) async fn configure(
    ctx: &RoomContext,
    jid: &BareJid,
    password: &str,
) -> Result<(), CreateError> {
    let room = Jid::from(jid.clone());
    let settings = RoomSettings {
        password: password.to_owned(),
        history_length: ctx.history_length,
        // Room for each person's further sessions (another device or tab), and the bot.
        max_users: (ctx.policy.max_chatters * (1 + lifecycle::SESSIONS_MAX)) as u32 + 1,
        lang: ctx.texts.language().tag(),
    };
    let fetch = async || -> Result<form::OfferedForm, CreateError> {
        let offered = ctx.xmpp.get(room.clone(), muc::owner_query()).await?;
        let offered = form::parse_offered(&offered.ok_or(CreateError::NoForm)?)?;
        log::debug!(room = jid.as_str();
            "owner form fetched ({} fields); the session's later rooms submit it directly",
            offered.fields.len());
        Ok(offered)
    };
    let (offered, fetched) = ctx.owner_form.get_or_fetch(fetch).await?;
    match ctx
        .xmpp
        .set(room.clone(), form::submit(&offered, &settings)?)
        .await
    {
        Ok(_) => {}
        // The kept form may be out of date (the service was reconfigured): once more with
        // the room's own.
        Err(IqError::Refused { condition, .. }) if !fetched => {
            log::info!(room = jid.as_str(); "the room refused the kept owner form ({condition}); fetching it again");
            ctx.owner_form.forget();
            let (offered, _) = ctx.owner_form.get_or_fetch(fetch).await?;
            ctx.xmpp
                .set(room.clone(), form::submit(&offered, &settings)?)
                .await?;
        }
        Err(error) => return Err(error.into()),
    }
    let info = ctx.xmpp.get(room, disco_info()).await?;
    form::verify_features(&info.ok_or(CreateError::NoForm)?)?;
    Ok(())
}

/// An empty disco#info query.
fn disco_info() -> minidom::Element {
    minidom::Element::builder("query", form::NS_DISCO_INFO).build()
}
