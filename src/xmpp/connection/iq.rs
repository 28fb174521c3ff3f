//! The bot's IQ requests in flight: answers matched by id, each with a deadline, and the
//! answers read from stanzas xmpp-parsers refused.

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

/// Hands a raw IQ answer (one that xmpp-parsers refused) to the request waiting for it,
/// under the same rules as [`answer_pending`]: matched by id, and only from the entity
/// asked.
pub(super) fn answer_pending_raw(pending: &mut HashMap<String, Pending>, iq: &Element) {
    let Some(id) = iq.attr("id") else { return };
    let Some(waiting) = pending.get(id) else {
        return; // an answer to nothing of ours (late, or forged)
    };
    let from = iq.attr("from").map(Jid::new);
    match (&from, &waiting.to) {
        (Some(Ok(from)), Some(to)) if from != to => {
            log::warn!(
                "IQ answer {id} from {from} does not match the request's recipient; ignored"
            );
            return;
        }
        (Some(Err(_)), _) => {
            log::warn!("IQ answer {id} from an unreadable sender ignored");
            return;
        }
        _ => {}
    }
    let waiting = pending.remove(id).expect("checked above");
    let result = if iq.attr("type") == Some("error") {
        let error = iq.children().find(|c| c.name() == "error");
        Err(IqError::Refused {
            condition: Condition::of_stanza(iq),
            text: error
                .and_then(|e| e.children().find(|c| c.name() == "text"))
                .map(Element::text),
        })
    } else {
        Ok(iq.children().next().cloned())
    };
    let _ = waiting.reply.send(result);
}

/// The `bad-request` answer to a raw IQ request, if it has a readable sender and an id.
pub(super) fn bad_request(request: &Element) -> Option<Iq> {
    use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
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
/// request of ours (requests to the bot, or forged answers from the wrong sender).
pub(super) fn answer_pending(pending: &mut HashMap<String, Pending>, iq: Iq) -> Option<Iq> {
    let (id, from) = match &iq {
        Iq::Result { id, from, .. } | Iq::Error { id, from, .. } => (id, from),
        _ => return Some(iq),
    };
    let Some(waiting) = pending.get(id) else {
        return Some(iq);
    };
    // An answer must come from the entity asked (or our own server for requests without `to`).
    if from.is_some() && waiting.to.is_some() && from != &waiting.to {
        log::warn!("IQ answer {id} from {from:?} does not match the request's recipient; ignored");
        return None;
    }
    let waiting = pending.remove(id).expect("checked above");
    let result = match iq {
        Iq::Result { payload, .. } => Ok(payload),
        Iq::Error { error, .. } => {
            let element = Element::from(error);
            Err(IqError::Refused {
                condition: Condition::of(&element),
                text: element
                    .children()
                    .find(|c| c.name() == "text")
                    .map(Element::text),
            })
        }
        _ => unreachable!("only answers reach here"),
    };
    let _ = waiting.reply.send(result);
    None
}
