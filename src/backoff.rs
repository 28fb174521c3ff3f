//! One capped exponential backoff for every retry loop of the bot: a room's database
//! writes, its kicks and destroys, the pool's creations, the XMPP login.
//!
//! Written here rather than taken from `backon`: each loop's attempt is an actor callback
//! or a loop body that also decides *whether* to retry (a refusal is final, a conflict
//! restarts the room), which `backon`'s `Retryable` wrapping a future does not model, and
//! what is shared is only the arithmetic below. No jitter: the waits of the bot's retries
//! are seconds apart and its loops are per room, and the tests time the waits.

use std::time::Duration;

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, twice that, four times, ... never above `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before retry number `n` (1 is the first retry): `first × 2^(n−1)`, at most
    /// `max`. Retry 0 waits nothing.
    pub fn nth(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The waits of retries 1, 2, 3, ..., for a loop that keeps its own count.
    pub fn waits(self) -> impl Iterator<Item = Duration> {
        (1..).map(move |n| self.nth(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<u64> = b.waits().take(7).map(|d| d.as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.nth(0), Duration::ZERO);
        assert_eq!(b.nth(40), Duration::from_secs(30), "no overflow far out");
        assert_eq!(b.nth(u32::MAX), Duration::from_secs(30));
    }
}
