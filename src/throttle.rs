//! Noticing that the XMPP server slows the bot down, and saying so once.
//!
//! Stock server configurations throttle every account: Debian's Prosody loads `mod_limits`
//! with c2s at 10 kB/s, ejabberd applies its `normal` shaper (3000 B/s); a room cache
//! smaller than the pool (`muc_room_cache_size`) makes Prosody thaw rooms from disk. All of
//! it shows the same way: room creations take far longer than the server needs to answer a
//! ping when the connection is quiet. This detector compares the two and produces one
//! warning naming the settings; the pool reports creation times, the supervisor ping round
//! trips.

use std::collections::VecDeque;
use std::time::Duration;

/// Creations considered (the latest ones).
const WINDOW: usize = 20;
/// Creations needed before judging.
const MIN_SAMPLES: usize = 5;
/// A median creation time below this is never a problem worth a warning.
const SLOW_CREATION: Duration = Duration::from_secs(1);
/// How many times the quiet ping round trip a creation may take: a creation is four round
/// trips and a transaction, so anything beyond this is the server holding the bot back.
const RATIO: u32 = 20;

/// Watches creation times against ping round trips.
#[derive(Debug, Default)]
pub struct ThrottleDetector {
    creations: VecDeque<Duration>,
    fastest_ping: Option<Duration>,
    warned: bool,
}

impl ThrottleDetector {
    /// A room was created in `took` (from the pool's decision to the room being ready).
    pub fn creation(&mut self, took: Duration) -> Option<String> {
        if self.creations.len() == WINDOW {
            self.creations.pop_front();
        }
        self.creations.push_back(took);
        self.judge()
    }

    /// The server answered a ping in `rtt`.
    pub fn ping(&mut self, rtt: Duration) -> Option<String> {
        self.fastest_ping = Some(self.fastest_ping.map_or(rtt, |f| f.min(rtt)));
        self.judge()
    }

    /// The warning, the first time the evidence is there; `None` otherwise and afterwards.
    fn judge(&mut self) -> Option<String> {
        if self.warned || self.creations.len() < MIN_SAMPLES {
            return None;
        }
        let ping = self.fastest_ping?;
        let mut sorted: Vec<Duration> = self.creations.iter().copied().collect();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        if median < SLOW_CREATION || median < ping * RATIO {
            return None;
        }
        self.warned = true;
        Some(format!(
            "the XMPP server is slowing the bot down: creating a room takes {:.1} s (median of \
             the last {}) while the server answers a ping in {} ms. On Prosody, add the bot's \
             JID to unlimited_jids (mod_limits) and keep muc_room_cache_size above \
             pool.max_rooms; on ejabberd, give the bot's account a faster c2s_shaper than the \
             default 'normal' (3000 B/s)",
            median.as_secs_f64(),
            sorted.len(),
            ping.as_millis()
        ))
    }
}

/// The process-wide detector: the pool and the supervisor report to it.
pub fn detector() -> &'static std::sync::Mutex<ThrottleDetector> {
    static DETECTOR: std::sync::LazyLock<std::sync::Mutex<ThrottleDetector>> =
        std::sync::LazyLock::new(Default::default);
    &DETECTOR
}

/// When each creation in flight started, oldest first: creations finish roughly in the
/// order they start, which is precise enough for a median over many rooms.
fn started() -> &'static std::sync::Mutex<VecDeque<std::time::Instant>> {
    static STARTED: std::sync::LazyLock<std::sync::Mutex<VecDeque<std::time::Instant>>> =
        std::sync::LazyLock::new(Default::default);
    &STARTED
}

/// The pool decided to create a room.
pub fn creation_started() {
    if let Ok(mut started) = started().lock() {
        started.push_back(std::time::Instant::now());
    }
}

/// A creation failed: it is not timed.
pub fn creation_failed() {
    if let Ok(mut started) = started().lock() {
        started.pop_front();
    }
}

/// A room became ready: its creation time is recorded.
pub fn creation_finished() {
    let began = started().lock().ok().and_then(|mut s| s.pop_front());
    if let Some(began) = began {
        record_creation(began.elapsed());
    }
}

/// Reports a creation time; logs the warning when it is due.
pub fn record_creation(took: Duration) {
    let warning = detector()
        .lock()
        .map(|mut d| d.creation(took))
        .unwrap_or_default();
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
}

/// Reports a ping round trip; logs the warning when it is due.
pub fn record_ping(rtt: Duration) {
    let warning = detector()
        .lock()
        .map(|mut d| d.ping(rtt))
        .unwrap_or_default();
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slow_creations_beside_fast_pings_warn_once() {
        let mut d = ThrottleDetector::default();
        assert_eq!(d.ping(3 * MS), None);
        for _ in 0..4 {
            assert_eq!(d.creation(1500 * MS), None, "too few creations to judge");
        }
        let warning = d.creation(1500 * MS).expect("throttled");
        assert!(warning.contains("unlimited_jids") && warning.contains("c2s_shaper"));
        assert!(
            warning.contains("1.5 s") && warning.contains("3 ms"),
            "{warning}"
        );
        assert_eq!(d.creation(1500 * MS), None, "once");
        assert_eq!(d.ping(MS), None, "once");
    }

    #[test]
    fn fast_creations_or_slow_pings_do_not_warn() {
        let mut d = ThrottleDetector::default();
        d.ping(2 * MS);
        for _ in 0..WINDOW {
            assert_eq!(d.creation(30 * MS), None, "fast creations are fine");
        }
        let mut d = ThrottleDetector::default();
        // The whole connection is slow (a distant server): not throttling.
        d.ping(200 * MS);
        for _ in 0..WINDOW {
            assert_eq!(d.creation(1200 * MS), None);
        }
        // No ping yet: no judgement; the first ping decides.
        let mut d = ThrottleDetector::default();
        for _ in 0..WINDOW {
            assert_eq!(d.creation(5000 * MS), None);
        }
        assert!(d.ping(4 * MS).is_some());
    }
}
