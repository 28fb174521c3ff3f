//! The status page for the helpline's support staff: `/` (the bot's rooms now) and
//! `/rooms/<id>` (one room's timeline).
//!
//! Server-rendered HTML that reloads itself (`<meta http-equiv="refresh">`), with a
//! viewport and a narrow layout so that it reads on a phone, and no JavaScript at all. It
//! only reads: through the store's typed queries, and through read queries of its own (like
//! [`crate::stats`]) on the store's connection, which decode rows through the store so that
//! a bad row is listed, not fatal. Nicks are shown (support staff need them), passwords and
//! real JIDs never.

use std::collections::HashMap;
use std::fmt::Write as _;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::{room, room_event};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::HttpState;
use crate::model::{EventKind, Role, RoomStatus};
use crate::quarantine::BadRow;
use crate::store::{Room, RoomEvent, Store, StoreError};

/// How many of the latest transitions the overview lists.
const RECENT: u64 = 20;

/// A staff member waiting for a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// The room's id.
    pub room_id: i64,
    /// The staff member's nick.
    pub nick: String,
    /// Since when (the room became `staff_waiting` when they entered).
    pub since: DateTime<Utc>,
}

/// A chat in progress (`chatting` or `one_left`).
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    /// The room's id.
    pub room_id: i64,
    /// `chatting` or `one_left`.
    pub status: RoomStatus,
    /// The staff member's nick.
    pub staff: Option<String>,
    /// The client's nick.
    pub client: Option<String>,
    /// When the client entered (the chat's start); the status change when unknown.
    pub started: DateTime<Utc>,
}

/// A room ready to be handed out, or claimed and not yet entered.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// The room's id.
    pub room_id: i64,
    /// Its name (the JID's local part).
    pub name: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Claimed for staff, not entered yet.
    pub claimed: bool,
}

/// One of the latest transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    /// The room's name (the JID's local part).
    pub name: String,
    /// The event.
    pub event: RoomEvent,
}

/// Everything the overview shows, read in a few queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Open rooms by status, every status but `closed` (zeros included).
    pub counts: Vec<(RoomStatus, usize)>,
    /// Available rooms without a staff claim.
    pub ready_unclaimed: usize,
    /// Waiting staff, longest first.
    pub waiting: Vec<Waiting>,
    /// Chats in progress, oldest first.
    pub chats: Vec<Chat>,
    /// Available rooms, oldest first.
    pub ready: Vec<Ready>,
    /// The latest transitions, newest first.
    pub recent: Vec<Recent>,
    /// Rows the bot cannot decode and skips until they are corrected
    /// ([`crate::quarantine`]).
    pub bad_rows: Vec<BadRow>,
}

/// The local part of a room JID: short enough for a phone, unique within the service.
fn room_name(jid: &str) -> String {
    jid.split('@').next().unwrap_or(jid).to_owned()
}

/// Reads the overview of `bot_jid`'s rooms.
pub async fn load_overview(store: &Store, bot_jid: &str) -> Result<Overview, StoreError> {
    let at = crate::store::now();
    let open = store.open_rooms(bot_jid).await?;
    let counts = RoomStatus::ALL
        .iter()
        .filter(|s| **s != RoomStatus::Closed)
        .map(|s| (*s, open.iter().filter(|r| r.status == *s).count()))
        .collect();
    let by_status = |status: RoomStatus| open.iter().filter(move |r| r.status == status);

    let mut waiting: Vec<Waiting> = by_status(RoomStatus::StaffWaiting)
        .map(|r| Waiting {
            room_id: r.id,
            nick: r.staff_nick.clone().unwrap_or_else(|| "?".to_owned()),
            since: r.status_changed_at,
        })
        .collect();
    waiting.sort_by_key(|w| w.since);

    let chat_rooms: Vec<&Room> = open
        .iter()
        .filter(|r| matches!(r.status, RoomStatus::Chatting | RoomStatus::OneLeft))
        .collect();
    let started = client_entries(store, chat_rooms.iter().map(|r| r.id).collect()).await?;
    let mut chats: Vec<Chat> = chat_rooms
        .iter()
        .map(|r| Chat {
            room_id: r.id,
            status: r.status,
            staff: r.staff_nick.clone(),
            client: r.client_nick.clone(),
            started: started.get(&r.id).copied().unwrap_or(r.status_changed_at),
        })
        .collect();
    chats.sort_by_key(|c| c.started);

    let ready: Vec<Ready> = by_status(RoomStatus::Available)
        .map(|r| Ready {
            room_id: r.id,
            name: room_name(&r.jid),
            created_at: r.created_at,
            claimed: r.staff_claimed_at.is_some(),
        })
        .collect();
    let ready_unclaimed = ready.iter().filter(|r| !r.claimed).count();

    let recent = recent_transitions(store, bot_jid).await?;
    Ok(Overview {
        at,
        counts,
        ready_unclaimed,
        waiting,
        chats,
        ready,
        recent,
        bad_rows: store.bad_rows(),
    })
}

/// When the client first entered each of `rooms`, in one query.
async fn client_entries(
    store: &Store,
    rooms: Vec<i64>,
) -> Result<HashMap<i64, DateTime<Utc>>, StoreError> {
    let mut first = HashMap::new();
    if rooms.is_empty() {
        return Ok(first);
    }
    let query = room_event::Entity::find()
        .filter(room_event::Column::RoomId.is_in(rooms))
        .filter(room_event::Column::Kind.eq(EventKind::Entered.as_str()))
        .filter(room_event::Column::Role.eq(Role::Client.as_str()))
        .order_by_asc(room_event::Column::Id);
    for event in store.decode_events(query).await?.rows {
        first.entry(event.room_id).or_insert(event.at);
    }
    Ok(first)
}

/// The latest status changes (and creations) of `bot_jid`'s rooms, newest first.
async fn recent_transitions(store: &Store, bot_jid: &str) -> Result<Vec<Recent>, StoreError> {
    let db = store.connection();
    let mine = Query::select()
        .column(room::Column::Id)
        .from(room::Entity)
        .and_where(Expr::col(room::Column::BotJid).eq(bot_jid))
        .to_owned();
    let query = room_event::Entity::find()
        .filter(room_event::Column::RoomId.in_subquery(mine))
        .filter(
            Condition::any()
                .add(room_event::Column::FromStatus.is_null())
                .add(
                    Expr::col(room_event::Column::FromStatus)
                        .ne(Expr::col(room_event::Column::ToStatus)),
                ),
        )
        .order_by_desc(room_event::Column::Id)
        .limit(RECENT);
    // One by one: a bad event is listed under the rows that need attention, not a failure.
    let events = store.decode_events(query).await?.rows;
    let ids: Vec<i64> = events.iter().map(|e| e.room_id).collect();
    let names: HashMap<i64, String> = room::Entity::find()
        .select_only()
        .column(room::Column::Id)
        .column(room::Column::Jid)
        .filter(room::Column::Id.is_in(ids))
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(id, jid)| (id, room_name(&jid)))
        .collect();
    Ok(events
        .into_iter()
        .map(|event| Recent {
            name: names.get(&event.room_id).cloned().unwrap_or_default(),
            event,
        })
        .collect())
}

/// `text` with the five HTML special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How long ago `from` was at `now`, for people ([`crate::report::duration`]); a time in
/// the future (clocks apart) reads `0s`.
pub fn age(from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = std::cmp::max((now - from).num_seconds(), 0);
    crate::report::duration(secs as f64)
}

/// A timestamp as a `<time>` element: the clock time, UTC, with the full value attached.
fn time(at: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339_opts(SecondsFormat::Millis, true),
        at.format("%H:%M:%S")
    )
}

/// The page around `body`.
fn page(title: &str, refresh_secs: u32, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{refresh_secs}">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 0.75rem; color: #1a1a1a; background: #fafafa; }}
h1 {{ font-size: 1.3rem; margin: 0.2rem 0; }}
h2 {{ font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }}
p.meta {{ color: #555; font-size: 0.85rem; margin: 0.2rem 0 0.8rem; }}
.counts {{ display: flex; flex-wrap: wrap; gap: 0.5rem; }}
.count {{ background: #fff; border: 1px solid #ddd; border-radius: 0.4rem; padding: 0.4rem 0.7rem; min-width: 6.5rem; }}
.count strong {{ display: block; font-size: 1.5rem; }}
.count .label {{ display: block; font-size: 0.8rem; color: #555; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; font-size: 0.9rem; }}
th, td {{ text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid #eee; white-space: nowrap; }}
th {{ background: #f0f0f0; font-weight: 600; }}
td.detail {{ white-space: normal; }}
td.name {{ white-space: normal; word-break: break-all; }}
.empty {{ color: #777; font-style: italic; }}
.warn {{ color: #a40000; font-weight: 600; }}
a {{ color: #0645ad; }}
</style>
</head>
<body>
{body}
</body>
</html>
"#,
        title = escape(title),
    )
}

/// A table with `head` cells, or a line saying there is nothing, when `rows` is empty.
fn table(id: &str, head: &[&str], rows: &[String], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}\">{}</p>\n", escape(empty));
    }
    let mut out = format!("<div class=\"scroll\"><table id=\"{id}\"><thead><tr>");
    for cell in head {
        let _ = write!(out, "<th>{}</th>", escape(cell));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str(row);
        out.push('\n');
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// A link to a room's timeline.
fn room_link(room_id: i64, label: &str) -> String {
    format!("<a href=\"/rooms/{room_id}\">{}</a>", escape(label))
}

/// An optional nick, `-` when none.
fn nick(nick: Option<&str>) -> String {
    escape(nick.unwrap_or("-"))
}

/// The overview page.
pub fn render_overview(
    o: &Overview,
    bot_jid: &str,
    target: u32,
    max_rooms: u32,
    refresh: u32,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>helpim-bot: {}</h1>\n<p class=\"meta\">As of {} UTC; this page reloads every {refresh} s.</p>\n",
        escape(bot_jid),
        time(o.at)
    );
    body.push_str("<div class=\"counts\">\n");
    for (status, n) in &o.counts {
        let _ = writeln!(
            body,
            "<div class=\"count\"><strong id=\"count-{s}\">{n}</strong><span class=\"label\">{s}</span></div>",
            s = status.as_str()
        );
    }
    let short = if (o.ready_unclaimed as u64) < u64::from(target) {
        " class=\"warn\""
    } else {
        ""
    };
    let _ = writeln!(
        body,
        "<div class=\"count\"><strong{short}><span id=\"ready\">{}</span> / <span id=\"target\">{target}</span></strong><span class=\"label\">ready / target (max {max_rooms} open)</span></div>",
        o.ready_unclaimed
    );
    body.push_str("</div>\n");

    body.push_str("<h2>Staff waiting for a client</h2>\n");
    let rows: Vec<String> = o
        .waiting
        .iter()
        .map(|w| {
            format!(
                "<tr data-room=\"{id}\"><td>{nick}</td><td class=\"waited\">{waited}</td><td>{since}</td><td>{link}</td></tr>",
                id = w.room_id,
                nick = escape(&w.nick),
                waited = age(w.since, o.at),
                since = time(w.since),
                link = room_link(w.room_id, &format!("#{}", w.room_id)),
            )
        })
        .collect();
    body.push_str(&table(
        "waiting",
        &["Staff", "Waiting", "Since", "Room"],
        &rows,
        "Nobody is waiting.",
    ));

    body.push_str("<h2>Open chats</h2>\n");
    let rows: Vec<String> = o
        .chats
        .iter()
        .map(|c| {
            format!(
                "<tr data-room=\"{id}\"><td>{staff}</td><td>{client}</td><td>{status}</td><td class=\"age\">{age}</td><td>{link}</td></tr>",
                id = c.room_id,
                staff = nick(c.staff.as_deref()),
                client = nick(c.client.as_deref()),
                status = c.status,
                age = age(c.started, o.at),
                link = room_link(c.room_id, &format!("#{}", c.room_id)),
            )
        })
        .collect();
    body.push_str(&table(
        "chats",
        &["Staff", "Client", "Status", "Age", "Room"],
        &rows,
        "No chat in progress.",
    ));

    body.push_str("<h2>Ready rooms</h2>\n");
    let rows: Vec<String> = o
        .ready
        .iter()
        .map(|r| {
            format!(
                "<tr data-room=\"{id}\"><td class=\"name\">{link}</td><td>{claimed}</td><td>{age}</td></tr>",
                id = r.room_id,
                link = room_link(r.room_id, &r.name),
                claimed = if r.claimed {
                    "claimed for staff"
                } else {
                    "ready"
                },
                age = age(r.created_at, o.at),
            )
        })
        .collect();
    body.push_str(&table(
        "ready-rooms",
        &["Room", "State", "Age"],
        &rows,
        "No room is ready.",
    ));

    body.push_str("<h2>Latest transitions</h2>\n");
    let rows: Vec<String> = o
        .recent
        .iter()
        .map(|r| {
            let e = &r.event;
            format!(
                "<tr><td>{at}</td><td title=\"{name}\">{link}</td><td>{from} → {to}</td><td>{nick}</td><td class=\"detail\">{detail}</td></tr>",
                name = escape(&r.name),
                at = time(e.at),
                link = room_link(e.room_id, &format!("#{}", e.room_id)),
                from = e.from_status.map_or("-", RoomStatus::as_str),
                to = e.to_status,
                nick = nick(e.nick.as_deref()),
                detail = escape(&e.detail),
            )
        })
        .collect();
    body.push_str(&table(
        "recent",
        &["Time", "Room", "Change", "Nick", "Why"],
        &rows,
        "Nothing happened yet.",
    ));
    if !o.bad_rows.is_empty() {
        body.push_str("<h2 class=\"warn\">Rows that need attention</h2>\n<p>The bot cannot read these rows and skips them; every other room is managed as usual. Correct or delete them (see docs/webapp-contract.md), and the bot takes them up again.</p>\n");
        let rows: Vec<String> = o
            .bad_rows
            .iter()
            .map(|b| {
                format!(
                    "<tr><td>{table}</td><td>{id}</td><td>{column}</td><td class=\"detail\">{value}</td></tr>",
                    table = b.table,
                    id = b.id,
                    column = escape(&b.column),
                    value = escape(&b.value),
                )
            })
            .collect();
        body.push_str(&table(
            "bad-rows",
            &["Table", "Row", "Column", "Value"],
            &rows,
            "",
        ));
    }
    page(&format!("helpim-bot: {bot_jid}"), refresh, &body)
}

/// One room's page: what is recorded about it (no password, no real JID) and its timeline.
pub fn render_room(room: &Room, events: &[RoomEvent], now: DateTime<Utc>, refresh: u32) -> String {
    let mut body = String::new();
    let name = room_name(&room.jid);
    let _ = write!(
        body,
        "<p class=\"meta\"><a href=\"/\">← all rooms</a></p>\n<h1>Room #{id} {name}</h1>\n\
         <p class=\"meta\">As of {now} UTC.</p>\n<div class=\"scroll\"><table id=\"room\"><tbody>\n\
         <tr><th>Status</th><td id=\"status\">{status}</td></tr>\n\
         <tr><th>JID</th><td>{jid}</td></tr>\n\
         <tr><th>Staff</th><td>{staff}</td></tr>\n\
         <tr><th>Client</th><td>{client}</td></tr>\n\
         <tr><th>Created</th><td>{created} ({age} ago)</td></tr>\n\
         <tr><th>In this status for</th><td>{in_status}</td></tr>\n",
        id = room.id,
        name = escape(&name),
        now = time(now),
        status = room.status,
        jid = escape(&room.jid),
        staff = nick(room.staff_nick.as_deref()),
        client = nick(room.client_nick.as_deref()),
        created = time(room.created_at),
        age = age(room.created_at, now),
        in_status = age(room.status_changed_at, now),
    );
    if let Some(closed) = room.closed_at {
        let _ = writeln!(
            body,
            "<tr><th>Closed</th><td>{} ({})</td></tr>",
            time(closed),
            room.close_reason
                .map_or("no reason recorded", |r| r.as_str())
        );
    }
    body.push_str("</tbody></table></div>\n<h2>Timeline</h2>\n");
    let rows: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{at}</td><td>{kind}</td><td>{from} → {to}</td><td>{nick}</td><td>{role}</td><td class=\"detail\">{detail}</td></tr>",
                at = time(e.at),
                kind = e.kind,
                from = e.from_status.map_or("-", RoomStatus::as_str),
                to = e.to_status,
                nick = nick(e.nick.as_deref()),
                role = e.role.map_or("-", Role::as_str),
                detail = escape(&e.detail),
            )
        })
        .collect();
    body.push_str(&table(
        "timeline",
        &["Time", "Event", "Change", "Nick", "Role", "Why"],
        &rows,
        "No event recorded.",
    ));
    page(&format!("helpim-bot: room #{}", room.id), refresh, &body)
}

/// An HTML answer that caches nowhere.
fn html(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A short error page (it reloads too, so it recovers by itself once the database is back).
fn error_page(status: actix_web::http::StatusCode, message: &str, refresh: u32) -> HttpResponse {
    let body = format!(
        "<h1>helpim-bot</h1>\n<p class=\"warn\">{}</p>\n<p><a href=\"/\">all rooms</a></p>",
        escape(message)
    );
    html(status, page("helpim-bot", refresh, &body))
}

/// `GET /`.
pub async fn overview(state: web::Data<HttpState>) -> HttpResponse {
    let (store, bot) = (state.store.clone(), state.bot_jid.clone());
    let loaded = super::on_main(&state, async move { load_overview(&store, &bot).await }).await;
    match loaded.unwrap_or(Err(StoreError::Db(sea_orm::DbErr::Custom(
        "the bot is stopping".to_owned(),
    )))) {
        Ok(o) => html(
            actix_web::http::StatusCode::OK,
            render_overview(
                &o,
                &state.bot_jid,
                state.target,
                state.max_rooms,
                state.refresh_secs,
            ),
        ),
        Err(error) => {
            log::warn!("status page: cannot read the rooms: {error}");
            error_page(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "The database does not answer; the rooms cannot be shown right now.",
                state.refresh_secs,
            )
        }
    }
}

/// `GET /rooms/<id>`.
pub async fn room(state: web::Data<HttpState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            actix_web::http::StatusCode::NOT_FOUND,
            "A room is named by its number, e.g. /rooms/12.",
            state.refresh_secs,
        );
    };
    let store = state.store.clone();
    let loaded = super::on_main(&state, async move {
        let Some(room) = store.room(id).await? else {
            return Ok(None);
        };
        let events = store.events(id).await?;
        Ok::<_, StoreError>(Some((room, events)))
    })
    .await
    .unwrap_or(Err(StoreError::Db(sea_orm::DbErr::Custom(
        "the bot is stopping".to_owned(),
    ))));
    match loaded {
        Ok(Some((room, events))) if room.bot_jid == state.bot_jid => html(
            actix_web::http::StatusCode::OK,
            render_room(&room, &events, crate::store::now(), state.refresh_secs),
        ),
        Ok(_) => error_page(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("This bot has no room #{id}."),
            state.refresh_secs,
        ),
        Err(error) if error.is_bad_row() => error_page(
            actix_web::http::StatusCode::OK,
            &format!(
                "Room #{id} needs attention: {error}. The bot skips the row until it is \
                 corrected or deleted; see docs/webapp-contract.md."
            ),
            state.refresh_secs,
        ),
        Err(error) => {
            log::warn!("status page: cannot read room {id}: {error}");
            error_page(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "The database does not answer; the room cannot be shown right now.",
                state.refresh_secs,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_read_well() {
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let s = |secs| age(t, t + chrono::Duration::seconds(secs));
        assert_eq!(s(0), "0s");
        assert_eq!(s(59), "59s");
        assert_eq!(s(185), "3m 05s");
        assert_eq!(s(7620), "2h 07m 00s");
        assert_eq!(age(t + chrono::Duration::seconds(5), t), "0s");
    }

    #[test]
    fn nicks_are_escaped_and_passwords_never_shown() {
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let room = Room {
            id: 4,
            jid: "helpim-x@conference.localhost".into(),
            password: "s3cret-pw".into(),
            status: RoomStatus::Chatting,
            bot_jid: "bot@localhost".into(),
            staff_nick: Some("<b>staff</b>".into()),
            client_nick: Some("client & co".into()),
            staff_claimed_at: None,
            staff_claimed_by: None,
            client_claimed_at: None,
            client_claimed_by: None,
            staff_jid: Some("alice@localhost".into()),
            client_jid: Some("bob@localhost".into()),
            staff_claimed_jid: None,
            client_claimed_jid: None,
            extra_claimed_at: None,
            extra_claimed_by: None,
            extra_claimed_jid: None,
            destroyed_at: None,
            personal_data_removed_at: None,
            created_at: t,
            status_changed_at: t,
            closed_at: None,
            close_reason: None,
        };
        let html = render_room(&room, &[], t, 10);
        assert!(html.contains("&lt;b&gt;staff&lt;/b&gt;"));
        assert!(html.contains("client &amp; co"));
        assert!(!html.contains("s3cret-pw"));
        assert!(!html.contains("alice@localhost"), "real JIDs are not shown");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!html.contains("<script"));
    }
}
