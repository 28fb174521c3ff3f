//! Stanzas on their way into the stream, which is never awaited, and the hold that keeps
//! back what acts on rooms while the lease cannot be renewed.

use super::*;

/// How many stanzas the stream's own queues hold (each direction). The [`Outbox`] hands a
/// stanza over as soon as the oldest one has left, so a modest depth does not slow a burst.
pub(super) const STREAM_QUEUE_DEPTH: usize = 64;

/// Stanzas on their way into the [`StanzaStream`], which is never awaited.
///
/// The stream's transmit queue is bounded ([`STREAM_QUEUE_DEPTH`]) and its worker stops
/// draining it while disconnected; awaiting `send` there would stop the task from reading,
/// and with the event queue full as well the reconnect could stall. So a stanza is handed
/// over only when the queue surely has room: every accepted stanza's [`StanzaToken`] is
/// kept until it has left the queue (sent, failed or dropped), and the number of tokens
/// still queued bounds how full the queue can be. The rest waits here, in order; the task
/// waits on the oldest token, not on the stream.
pub(super) struct Outbox {
    pub(super) waiting: VecDeque<Box<Stanza>>,
    pub(super) queued: VecDeque<StanzaToken>,
    pub(super) depth: usize,
}

impl Outbox {
    /// An empty outbox for a stream whose transmit queue holds `depth` stanzas.
    pub(super) fn new(depth: usize) -> Outbox {
        Outbox {
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            depth,
        }
    }

    /// Queues `stanza` behind the ones already waiting and hands over what fits.
    pub(super) fn push(&mut self, stream: &StanzaStream, stanza: Box<Stanza>) {
        self.waiting.push_back(stanza);
        self.flush(stream);
    }

    /// Forgets the tokens of stanzas that have left the stream's queue.
    pub(super) fn reap(&mut self) {
        while self
            .queued
            .front()
            .is_some_and(|token| token.state() != StanzaStage::Queued)
        {
            self.queued.pop_front();
        }
    }

    /// Hands waiting stanzas to the stream while its queue surely has room; never waits.
    pub(super) fn flush(&mut self, stream: &StanzaStream) {
        self.reap();
        while self.queued.len() < self.depth {
            let Some(stanza) = self.waiting.pop_front() else {
                break;
            };
            // The queue has room (fewer tokens queued than its depth), so the send completes
            // on its first poll; `unconstrained` keeps tokio's cooperative budget from
            // deferring it.
            match tokio::task::unconstrained(stream.send(stanza)).now_or_never() {
                Some(token) => self.queued.push_back(token),
                None => log::error!("the XMPP stream refused a stanza despite room; dropped"),
            }
        }
    }

    /// Whether stanzas wait for room in the stream's queue.
    pub(super) fn is_blocked(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Resolves once the oldest stanza in the stream's queue has left it (or never, when
    /// none is queued).
    pub(super) async fn room_freed(&mut self) {
        match self.queued.front_mut() {
            Some(token) => {
                let _ = token.wait_for(StanzaStage::Sent).await;
                self.queued.pop_front();
            }
            None => std::future::pending().await,
        }
    }

    /// Drops the IQ requests not handed over yet: their requesters were already told
    /// [`IqError::Disconnected`], and a fresh session must not answer them.
    pub(super) fn drop_iqs(&mut self) {
        self.waiting
            .retain(|stanza| !matches!(**stanza, Stanza::Iq(_)));
    }
}

/// Whether `stanza` goes out while the bot is held ([`XmppHandle::hold`]): answers (IQ
/// results and errors), and pings to a JID of the bot's own `domain` (the server, a session
/// probe). Anything addressed to a room waits.
pub(super) fn may_pass_a_hold(stanza: &Stanza, domain: &str) -> bool {
    match stanza {
        Stanza::Iq(Iq::Result { .. } | Iq::Error { .. }) => true,
        Stanza::Iq(Iq::Get { to, payload, .. }) => {
            payload.is("ping", xmpp_parsers::ns::PING)
                && to.as_ref().is_none_or(|to| to.domain().as_str() == domain)
        }
        _ => false,
    }
}

/// Hands `stanza` to the outbox, or to the `held` queue while a hold is on and the stanza
/// may not pass it.
pub(super) fn send_or_hold(
    outbox: &mut Outbox,
    stream: &StanzaStream,
    held: &mut Option<VecDeque<Box<Stanza>>>,
    stanza: Box<Stanza>,
    domain: &str,
) {
    match held {
        Some(queue) if !may_pass_a_hold(&stanza, domain) => queue.push_back(stanza),
        _ => outbox.push(stream, stanza),
    }
}
