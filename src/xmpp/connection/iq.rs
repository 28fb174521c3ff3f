//! The bot's IQ requests in flight: answers matched by id, each with a deadline, and the
//! answers read from stanzas xmpp-parsers refused.

use xmpp_parsers::stanza_error::DefinedCondition;

use super::*;

/// An IQ in flight: who it went to and where the answer goes.
pub(super) struct Pending {
    pub(super) to: Option<Jid>,
    pub(super) reply: oneshot::Sender<Result<Option<Element>, IqError>>,
}

/// The IQs in flight: answers are matched by id in O(1), and expiry walks a deadline queue
/// from its oldest end, so neither a new IQ nor an answer scans the others.
///
/// Every IQ gets the same timeout, so deadlines are pushed in increasing order and the
/// queue is sorted by construction. An answered IQ leaves its deadline entry behind; it is
/// skipped (and dropped) when its time comes, which keeps every operation O(1) amortised.
pub(super) struct PendingIqs {
    pub(super) by_id: HashMap<String, Pending>,
    pub(super) deadlines: VecDeque<(Instant, String)>,
    pub(super) timeout: Duration,
}

impl PendingIqs {
    /// No IQ in flight; each will expire `timeout` after it was registered.
    pub(super) fn new(timeout: Duration) -> PendingIqs {
        PendingIqs {
            by_id: HashMap::new(),
            deadlines: VecDeque::new(),
            timeout,
        }
    }

    /// Registers a request sent at `now`.
    pub(super) fn insert(&mut self, id: String, pending: Pending, now: Instant) {
        self.deadlines.push_back((now + self.timeout, id.clone()));
        self.by_id.insert(id, pending);
    }

    /// Whether request `id` is still waited for.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// When the oldest entry of the deadline queue falls due (None: nothing to expire).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    /// Answers [`IqError::Timeout`] to every request whose deadline is `now` or earlier, and
    /// forgets it; returns how many expired.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some((at, _)) = self.deadlines.front() {
            if *at > now {
                break;
            }
            let (_, id) = self.deadlines.pop_front().expect("front exists");
            if let Some(waiting) = self.by_id.remove(&id) {
                let _ = waiting.reply.send(Err(IqError::Timeout(self.timeout)));
                expired += 1;
            }
        }
        expired
    }

    /// Answers [`IqError::Disconnected`] to every request (the session that would answer
    /// them is gone).
    pub(super) fn fail_all(&mut self) {
        self.deadlines.clear();
        for (_, waiting) in self.by_id.drain() {
            let _ = waiting.reply.send(Err(IqError::Disconnected));
        }
    }

    /// How many requests wait for an answer.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Which of the bot's requests an IQ result or error answers.
enum Answering {
    /// This one, now removed from the IQs in flight.
    Request(Pending),
    /// None: a late answer, or a request to the bot.
    Nothing,
    /// One of ours by its id, but from another sender than the entity asked: ignored.
    Forged,
}

/// The request an answer with `id` from `from` answers. An answer must come from the entity
/// asked (or our own server, for requests without `to`), and from a readable sender.
fn answering(
    pending: &mut HashMap<String, Pending>,
    id: &str,
    from: Option<Result<Jid, jid::Error>>,
) -> Answering {
    let Some(waiting) = pending.get(id) else {
        return Answering::Nothing;
    };
    match (from, &waiting.to) {
        (Some(Err(_)), _) => {
            log::warn!("IQ answer {id} from an unreadable sender ignored");
            Answering::Forged
        }
        (Some(Ok(from)), Some(to)) if &from != to => {
            log::warn!(
                "IQ answer {id} from {from} does not match the request's recipient; ignored"
            );
            Answering::Forged
        }
        _ => Answering::Request(pending.remove(id).expect("checked above")),
    }
}

/// The refusal an `<error/>` element (or its absence) stands for.
fn refused(error: Option<&Element>) -> IqError {
    IqError::Refused {
        condition: error.map_or(DefinedCondition::UndefinedCondition.into(), Condition::of),
        text: error
            .and_then(|e| e.children().find(|c| c.name() == "text"))
            .map(Element::text),
    }
}

/// Hands a raw IQ answer (one that xmpp-parsers refused) to the request waiting for it,
/// under the same rules as [`answer_pending`]: matched by id, and only from the entity
/// asked.
pub(super) fn answer_pending_raw(pending: &mut HashMap<String, Pending>, iq: &Element) {
    let Some(id) = iq.attr("id") else { return };
    let from = iq.attr("from").map(Jid::new);
    let Answering::Request(waiting) = answering(pending, id, from) else {
        return;
    };
    let result = if iq.attr("type") == Some("error") {
        Err(refused(iq.children().find(|c| c.name() == "error")))
    } else {
        Ok(iq.children().next().cloned())
    };
    let _ = waiting.reply.send(result);
}

/// The `bad-request` answer to a raw IQ request, if it has a readable sender and an id.
pub(super) fn bad_request(request: &Element) -> Option<Iq> {
    use xmpp_parsers::stanza_error::{ErrorType, StanzaError};
    let to = Jid::new(request.attr("from")?).ok()?;
    let id = request.attr("id")?.to_owned();
    Some(Iq::Error {
        from: None,
        to: Some(to),
        id,
        error: StanzaError::new(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "en",
            "helpim-bot cannot read this request",
        ),
        payload: None,
    })
}

/// Hands an IQ result or error to the request waiting for it; returns IQs that answer no
/// request of ours (requests to the bot, or late answers). Forged answers from the wrong
/// sender are dropped.
pub(super) fn answer_pending(pending: &mut HashMap<String, Pending>, iq: Iq) -> Option<Iq> {
    let (id, from) = match &iq {
        Iq::Result { id, from, .. } | Iq::Error { id, from, .. } => (id, from),
        _ => return Some(iq),
    };
    let waiting = match answering(pending, id, from.clone().map(Ok)) {
        Answering::Request(waiting) => waiting,
        Answering::Nothing => return Some(iq),
        Answering::Forged => return None,
    };
    let result = match iq {
        Iq::Result { payload, .. } => Ok(payload),
        Iq::Error { error, .. } => Err(refused(Some(&Element::from(error)))),
        _ => unreachable!("only answers reach here"),
    };
    let _ = waiting.reply.send(result);
    None
}
