use super::iq::*;
use super::outbox::*;
use super::*;
use xmpp_parsers::stanza_error::DefinedCondition;

fn stanza(xml: &str) -> Stanza {
    let element: Element = xml.parse().expect("XML");
    Stanza::try_from(element).expect("a stanza")
}

#[test]
fn a_hold_lets_answers_and_pings_of_the_own_domain_through_and_nothing_for_rooms() {
    let passes = |xml: &str| may_pass_a_hold(&stanza(xml), "localhost");
    // The keepalive to the server, and a probe of a session of the bot's own JID.
    assert!(passes(
        "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    assert!(passes(
        "<iq xmlns='jabber:client' type='get' id='p2' to='bot@localhost/r.abc'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    // Answers to the server's own requests.
    assert!(passes(
        "<iq xmlns='jabber:client' type='result' id='s1' to='localhost'/>"
    ));
    // A self-ping in a room, a kick, a destroy, a message, a join: held.
    assert!(!passes(
        "<iq xmlns='jabber:client' type='get' id='p3' to='room@conference.localhost/HelpIM'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    assert!(!passes(
        "<iq xmlns='jabber:client' type='set' id='k1' to='room@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='x' role='none'/></query></iq>"
    ));
    assert!(!passes(
        "<message xmlns='jabber:client' type='groupchat' to='room@conference.localhost'><body>bye</body></message>"
    ));
    assert!(!passes(
        "<presence xmlns='jabber:client' to='room@conference.localhost/HelpIM'/>"
    ));
}

fn pending() -> (Pending, oneshot::Receiver<Result<Option<Element>, IqError>>) {
    let (reply, answer) = oneshot::channel();
    (Pending { to: None, reply }, answer)
}

fn result(id: &str) -> Iq {
    Iq::Result {
        from: None,
        to: None,
        id: id.to_owned(),
        payload: None,
    }
}

#[test]
fn an_answer_xmpp_parsers_refuses_still_answers_its_request() {
    let raw = |xml: &str| -> Element { xml.parse().expect("XML") };
    let room: Jid = "room@conf.example".parse().unwrap();
    let mut iqs = PendingIqs::new(Duration::from_secs(5));
    let mut asked = |id: &str| {
        let (reply, answer) = oneshot::channel();
        let to = Some(room.clone());
        iqs.insert(id.into(), Pending { to, reply }, Instant::now());
        answer
    };
    let (mut refused, mut listed, mut forged) = (asked("k1"), asked("q1"), asked("f1"));
    // An error without the `type` RFC 6120 requires: xmpp-parsers refuses the stanza.
    let error = raw(
        "<iq xmlns='jabber:client' type='error' id='k1' from='room@conf.example'>
               <error><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error>
             </iq>",
    );
    assert!(
        Iq::try_from(error.clone()).is_err(),
        "xmpp-parsers refuses it"
    );
    answer_pending_raw(&mut iqs.by_id, &error);
    assert_eq!(
        refused.try_recv().unwrap(),
        Some(Err(IqError::Refused {
            condition: DefinedCondition::NotAllowed.into(),
            text: Some("no".into())
        }))
    );
    let result = raw(
        "<iq xmlns='jabber:client' type='result' id='q1' from='room@conf.example'>
               <query xmlns='http://jabber.org/protocol/muc#admin'/></iq>",
    );
    answer_pending_raw(&mut iqs.by_id, &result);
    let payload = listed.try_recv().unwrap().unwrap().unwrap().unwrap();
    assert!(payload.is("query", "http://jabber.org/protocol/muc#admin"));
    // From somebody else than the room asked: no answer, the request waits on.
    let wrong = raw("<iq xmlns='jabber:client' type='result' id='f1' from='x@example/y'/>");
    answer_pending_raw(&mut iqs.by_id, &wrong);
    assert_eq!(forged.try_recv().unwrap(), None);
    assert!(iqs.contains("f1"));
}

#[test]
fn an_unreadable_request_is_answered_bad_request() {
    let request: Element =
            "<iq xmlns='jabber:client' type='get' id='r1' from='x@example/y'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>"
                .parse()
                .unwrap();
    let Some(Iq::Error { to, id, error, .. }) = bad_request(&request) else {
        panic!("no bad-request answer");
    };
    assert_eq!(to.map(|j| j.to_string()).as_deref(), Some("x@example/y"));
    assert_eq!(id, "r1");
    assert_eq!(
        error.defined_condition,
        xmpp_parsers::stanza_error::DefinedCondition::BadRequest
    );
    let anonymous: Element = "<iq xmlns='jabber:client' type='get' id='r2'/>"
        .parse()
        .unwrap();
    assert!(bad_request(&anonymous).is_none(), "nobody to answer");
}

#[test]
fn answers_are_matched_by_id_and_expiry_skips_answered_requests() {
    let timeout = Duration::from_secs(5);
    let mut iqs = PendingIqs::new(timeout);
    let t0 = Instant::now();
    let (a, mut answer_a) = pending();
    let (b, mut answer_b) = pending();
    let (c, mut answer_c) = pending();
    iqs.insert("a".into(), a, t0);
    iqs.insert("b".into(), b, t0 + Duration::from_secs(1));
    iqs.insert("c".into(), c, t0 + Duration::from_secs(2));
    assert_eq!(iqs.next_deadline(), Some(t0 + timeout));

    assert!(answer_pending(&mut iqs.by_id, result("b")).is_none());
    assert_eq!(answer_b.try_recv().unwrap(), Some(Ok(None)));
    assert!(
        answer_pending(&mut iqs.by_id, result("zz")).is_some(),
        "an answer to no request of ours is passed on"
    );

    assert_eq!(iqs.expire(t0 + Duration::from_millis(4_999)), 0);
    assert_eq!(
        iqs.expire(t0 + Duration::from_secs(6)),
        1,
        "a expires, b was answered"
    );
    assert_eq!(
        answer_a.try_recv().unwrap(),
        Some(Err(IqError::Timeout(timeout)))
    );
    assert_eq!(iqs.next_deadline(), Some(t0 + Duration::from_secs(7)));
    assert_eq!(iqs.len(), 1);

    iqs.fail_all();
    assert_eq!(
        answer_c.try_recv().unwrap(),
        Some(Err(IqError::Disconnected))
    );
    assert_eq!(iqs.next_deadline(), None);
}

#[test]
fn many_requests_expire_in_order_without_rescanning() {
    let timeout = Duration::from_secs(1);
    let mut iqs = PendingIqs::new(timeout);
    let t0 = Instant::now();
    let mut answers = Vec::new();
    for n in 0..10_000u64 {
        let (p, answer) = pending();
        iqs.insert(format!("id{n}"), p, t0 + Duration::from_micros(n));
        answers.push(answer);
    }
    assert_eq!(
        iqs.expire(t0 + timeout + Duration::from_micros(4_999)),
        5_000
    );
    assert_eq!(iqs.len(), 5_000);
    assert!(matches!(
        answers[4_999].try_recv(),
        Ok(Some(Err(IqError::Timeout(_))))
    ));
    assert!(matches!(answers[5_000].try_recv(), Ok(None)), "not yet due");
}

/// A stream that never connects: its worker never drains the transmit queue, as during
/// a disconnect.
fn disconnected_stream() -> StanzaStream {
    let mut held = Vec::new();
    StanzaStream::new(Box::new(move |_, slot| held.push(slot)), STREAM_QUEUE_DEPTH)
}

#[tokio::test]
async fn a_full_transmit_queue_never_blocks_the_task() {
    let (command_tx, command_rx) = mpsc::unbounded();
    let (event_tx, _event_rx) = mpsc::unbounded();
    let timeout = Duration::from_millis(200);
    let task = tokio::spawn(run(
        disconnected_stream(),
        command_rx,
        event_tx,
        timeout,
        "localhost".into(),
    ));

    // Four times what the stream's queue takes, while it cannot send anything.
    for n in 0..4 * STREAM_QUEUE_DEPTH {
        let presence = xmpp_parsers::presence::Presence::available()
            .with_to(Jid::new(&format!("room{n}@conference.localhost/bot")).unwrap());
        command_tx
            .unbounded_send(CommandBox(Command::Send(Box::new(presence.into()))))
            .unwrap();
    }
    // The task still takes commands and expires IQs itself (no timeout on this side).
    let (reply, answer) = oneshot::channel();
    let iq = Iq::Get {
        from: None,
        to: Some(Jid::new("conference.localhost").unwrap()),
        id: new_id(),
        payload: Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
    };
    command_tx
        .unbounded_send(CommandBox(Command::Iq {
            iq: Box::new(iq),
            reply,
        }))
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("the task answered the IQ: it is not stuck in a send");
    assert_eq!(answered.unwrap(), Err(IqError::Timeout(timeout)));
    assert!(!task.is_finished());
    task.abort();
}
