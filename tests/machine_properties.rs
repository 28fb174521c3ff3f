//! Property tests of the room machine (`helpim_bot::lifecycle`), through its public events,
//! actions and read-only accessors only: random sequences of people entering, leaving,
//! renaming and coming back, claims of every kind, kicks refused and failing, floods, the
//! session ending and timers (live and stale) keep the machine's invariants:
//!
//! - never more people counted than seats;
//! - with `require_claims`, nobody is counted without an open claim for their seat (or as
//!   the holder of a seat coming back), and every newcomer is decided at once (admitted,
//!   kicked or held);
//! - every status path is legal, and every record starts where the last one ended;
//! - a stale timer has no effect;
//! - a coalescing window writes at most `COALESCE_BURST` nick changes and kicks on their
//!   own (the rest are recorded together when it ends, or when the room closes).

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use helpim_bot::lifecycle::{
    Action, COALESCE_BURST, Claims, Departure, Event, Person, Policy, RoomMachine, SeatClaim, Timer,
};
use helpim_bot::model::{EventKind, Role, RoomChange, RoomStatus};

/// The people of the sequences: a few JIDs and nicks, so that nicks collide and people come
/// back.
const JIDS: usize = 5;
const NICKS: usize = 6;

fn jid(i: usize) -> String {
    format!("p{i}@example.org")
}

/// The nicks; the last is the bot's own, which people may take while the bot is away.
fn nick(i: usize) -> String {
    if i == NICKS - 1 {
        "HelpIM".to_owned()
    } else {
        format!("n{i}")
    }
}

/// One generated step.
#[derive(Debug, Clone)]
enum Step {
    Enter {
        nick: usize,
        jid: Option<usize>,
        claims: [u8; 3],
    },
    /// The same stranger, many times (a flood of joins).
    Flood {
        count: usize,
        claims: [u8; 3],
    },
    Leave {
        nick: usize,
        how: u8,
    },
    Rename {
        from: usize,
        to: usize,
    },
    KickFailed {
        nick: usize,
    },
    KickRefused {
        nick: usize,
    },
    /// Fire the `i`-th timer ever scheduled (live or long stale).
    Fire {
        i: usize,
    },
    ClaimExpired {
        role: u8,
    },
    /// The claims the room looked up for its bans.
    BansChecked {
        claims: [u8; 3],
    },
    PasswordNotChanged {
        role: u8,
    },
    Shutdown,
    SessionEnded,
    Advance {
        secs: u64,
    },
}

fn claim(code: u8) -> SeatClaim {
    match code % 4 {
        0 => SeatClaim::Open { bound: None },
        1 => SeatClaim::Open {
            bound: Some(jid(usize::from(code / 4) % JIDS)),
        },
        2 => SeatClaim::Missing,
        _ => SeatClaim::Unknown,
    }
}

fn claims(codes: [u8; 3]) -> Claims {
    Claims {
        staff: claim(codes[0]),
        client: claim(codes[1]),
        extra: claim(codes[2]),
    }
}

fn role(code: u8) -> Role {
    match code % 3 {
        0 => Role::Staff,
        1 => Role::Client,
        _ => Role::Extra,
    }
}

fn departure(code: u8) -> Departure {
    match code % 5 {
        0 => Departure::Left,
        1 => Departure::Kicked,
        2 => Departure::ServiceShutdown,
        3 => Departure::ConnectionLost,
        _ => Departure::Removed,
    }
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let codes = any::<[u8; 3]>();
    prop_oneof![
        6 => (0..NICKS, prop::option::weighted(0.9, 0..JIDS), codes)
            .prop_map(|(nick, jid, claims)| Step::Enter { nick, jid, claims }),
        1 => (1usize..40, codes).prop_map(|(count, claims)| Step::Flood { count, claims }),
        3 => (0..NICKS, any::<u8>()).prop_map(|(nick, how)| Step::Leave { nick, how }),
        2 => (0..NICKS, 0..NICKS).prop_map(|(from, to)| Step::Rename { from, to }),
        1 => (0..NICKS).prop_map(|nick| Step::KickFailed { nick }),
        1 => (0..NICKS).prop_map(|nick| Step::KickRefused { nick }),
        4 => (0usize..64).prop_map(|i| Step::Fire { i }),
        1 => any::<u8>().prop_map(|role| Step::ClaimExpired { role }),
        1 => any::<[u8; 3]>().prop_map(|claims| Step::BansChecked { claims }),
        1 => any::<u8>().prop_map(|role| Step::PasswordNotChanged { role }),
        1 => Just(Step::Shutdown),
        1 => Just(Step::SessionEnded),
        2 => (0u64..400).prop_map(|secs| Step::Advance { secs }),
    ]
}

/// The statuses a record may go between.
fn legal(from: RoomStatus, to: RoomStatus) -> bool {
    use RoomStatus::*;
    from == to && from != Closed
        || matches!(
            (from, to),
            (Available, StaffWaiting)
                | (StaffWaiting, Chatting)
                | (Chatting, OneLeft)
                | (OneLeft, Chatting)
                | (Available | StaffWaiting | Chatting | OneLeft, Closed)
        )
}

/// Whether `claim` lets `person` take a seat.
fn admits(claim: &SeatClaim, person: &Person) -> bool {
    match claim {
        SeatClaim::Open { bound: None } => true,
        SeatClaim::Open { bound: Some(b) } => person.jid.as_deref() == Some(b.as_str()),
        _ => false,
    }
}

/// What the harness knows from the actions alone.
struct Observer {
    status: RoomStatus,
    max: usize,
    /// `muc.require_claims`.
    require_claims: bool,
    /// Every timer scheduled, in order.
    timers: Vec<Timer>,
    /// The latest `one_left` and window epochs scheduled.
    one_left: Option<u32>,
    window: Option<u32>,
    /// A coalescing window is open (its timer scheduled and not yet ended quietly).
    window_open: bool,
    /// Nick changes and kicks written on their own since the window opened.
    own_rows: u32,
    /// The holders' JIDs, from the records that seated them.
    holders: [Option<Option<String>>; 2],
}

impl Observer {
    fn new(max: usize, require_claims: bool) -> Observer {
        Observer {
            status: RoomStatus::Available,
            max,
            require_claims,
            timers: Vec::new(),
            one_left: None,
            window: None,
            window_open: false,
            own_rows: 0,
            holders: [None, None],
        }
    }

    /// Checks one step's actions against the invariants and learns from them.
    fn check(
        &mut self,
        machine: &RoomMachine,
        event: &Event,
        newcomer: bool,
        actions: &[Action],
    ) -> Result<(), TestCaseError> {
        if !self.window_open {
            self.own_rows = 0;
        }
        let records: Vec<&RoomChange> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(r) => Some(r),
                _ => None,
            })
            .collect();
        let closes = records.iter().any(|r| r.to == RoomStatus::Closed);
        for r in &records {
            prop_assert_eq!(r.from, self.status, "a record starts where the last ended");
            prop_assert!(legal(r.from, r.to), "illegal {:?} → {:?}", r.from, r.to);
            self.status = r.to;
            if let Event::Entered { person, claims } = event {
                if r.kind == EventKind::Entered && self.require_claims {
                    let seat = match r.role {
                        Some(Role::Staff) => &claims.staff,
                        Some(Role::Client) => &claims.client,
                        _ => &claims.extra,
                    };
                    prop_assert!(admits(seat, person), "{person:?} counted on {seat:?}");
                }
                if r.kind == EventKind::Rejoined {
                    // Only the holder comes back: by JID where the holder's was shown (a
                    // holder whose JID the server hid is known by nick alone).
                    let i = usize::from(r.role == Some(Role::Client));
                    prop_assert!(self.holders[i].is_some(), "a seat nobody held");
                    if let Some(Some(holder)) = &self.holders[i] {
                        prop_assert_eq!(person.jid.as_deref(), Some(holder.as_str()));
                    }
                }
            }
            if r.kind == EventKind::Entered {
                match r.role {
                    Some(Role::Staff) => self.holders[0] = Some(r.set_staff_jid.clone()),
                    Some(Role::Client) => self.holders[1] = Some(r.set_client_jid.clone()),
                    _ => {}
                }
            }
            let coalescable = matches!(r.kind, EventKind::NickChanged | EventKind::Kicked);
            let flushing = matches!(event, Event::WindowEnded { .. }) || closes;
            if coalescable && !flushing {
                self.own_rows += 1;
                prop_assert!(
                    self.own_rows <= COALESCE_BURST,
                    "{} nick changes and kicks on their own in one window",
                    self.own_rows
                );
            }
        }
        prop_assert_eq!(machine.status(), self.status);
        prop_assert!(
            machine.counted() <= self.max,
            "{} counted",
            machine.counted()
        );
        if newcomer {
            let decided = actions.iter().any(|a| {
                matches!(a, Action::Kick { .. } | Action::Hold { .. })
                    || matches!(a, Action::Record(r) if r.kind == EventKind::Entered)
            });
            prop_assert!(decided, "a newcomer left undecided: {actions:?}");
        }
        let mut window_scheduled = false;
        for action in actions {
            if let Action::Schedule { timer, .. } = action {
                match timer {
                    Timer::OneLeft { epoch } => self.one_left = Some(*epoch),
                    Timer::Window { epoch } => {
                        self.window = Some(*epoch);
                        window_scheduled = true;
                    }
                    _ => {}
                }
                self.timers.push(timer.clone());
            }
        }
        if window_scheduled {
            self.window_open = true;
            if matches!(event, Event::WindowEnded { .. }) {
                self.own_rows = 0; // the next window, after the flush
            }
        } else if matches!(event, Event::WindowEnded { epoch } if Some(*epoch) == self.window) {
            self.window_open = false;
        }
        if closes || self.status == RoomStatus::Closed {
            self.window_open = false;
        }
        Ok(())
    }

    /// Whether firing `timer` now would be stale: a `one_left` or window timer that a later
    /// one replaced.
    fn stale(&self, timer: &Timer) -> bool {
        match timer {
            Timer::OneLeft { epoch } => Some(*epoch) != self.one_left,
            Timer::Window { epoch } => Some(*epoch) != self.window,
            _ => false,
        }
    }
}

fn run(steps: Vec<Step>, require_claims: bool, max: usize) -> Result<(), TestCaseError> {
    let policy = Policy {
        max_chatters: max,
        require_claims,
        rejoin_grace: Duration::from_secs(60),
        one_left: Some(Duration::from_secs(600)),
        bot_nick: "HelpIM".to_owned(),
    };
    let mut machine = RoomMachine::new(1, policy);
    let mut seen = Observer::new(max, require_claims);
    let mut now: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    for step in steps {
        let events: Vec<Event> = match step {
            Step::Enter {
                nick: n,
                jid: j,
                claims: c,
            } => vec![Event::Entered {
                person: Person::new(nick(n), j.map(jid)),
                claims: claims(c),
            }],
            Step::Flood { count, claims: c } => (0..count)
                .map(|i| Event::Entered {
                    person: Person::new(format!("flood{i}"), Some(format!("anon{i}@example.org"))),
                    claims: claims(c),
                })
                .collect(),
            Step::Leave { nick: n, how } => vec![Event::Left {
                nick: nick(n),
                how: departure(how),
            }],
            Step::Rename { from, to } => vec![Event::NickChanged {
                old: nick(from),
                new: nick(to),
            }],
            Step::KickFailed { nick: n } => vec![Event::KickFailed { nick: nick(n) }],
            Step::KickRefused { nick: n } => vec![Event::KickRefused { nick: nick(n) }],
            Step::Fire { i } => match seen.timers.get(i).cloned() {
                Some(timer) => {
                    let stale = seen.stale(&timer);
                    let event = timer.event();
                    let actions = machine.step(now, event.clone());
                    if stale {
                        prop_assert!(actions.is_empty(), "a stale timer acted: {actions:?}");
                    }
                    seen.check(&machine, &event, false, &actions)?;
                    continue;
                }
                None => continue,
            },
            Step::ClaimExpired { role: r } => vec![Event::ClaimExpired { role: role(r) }],
            Step::BansChecked { claims: c } => vec![Event::BansChecked { claims: claims(c) }],
            Step::PasswordNotChanged { role: r } => {
                vec![Event::PasswordNotChanged { role: role(r) }]
            }
            Step::Shutdown => vec![Event::Shutdown],
            Step::SessionEnded => vec![Event::SessionEnded],
            Step::Advance { secs } => {
                now += chrono::Duration::seconds(secs as i64);
                continue;
            }
        };
        for event in events {
            let newcomer = match &event {
                Event::Entered { person, .. } => {
                    require_claims
                        && machine.status() != RoomStatus::Closed
                        && machine.needs_claims(person)
                }
                _ => false,
            };
            let actions = machine.step(now, event.clone());
            for a in &actions {
                if let Action::Record(r) = a {
                    prop_assert_eq!(r.at, now, "records carry their event's time");
                }
            }
            seen.check(&machine, &event, newcomer, &actions)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_room_machine_keeps_its_invariants(
        steps in prop::collection::vec(step_strategy(), 1..80),
        max in 2usize..4,
    ) {
        run(steps, true, max)?;
    }

    #[test]
    fn without_required_claims_the_seats_still_bound_the_room(
        steps in prop::collection::vec(step_strategy(), 1..80),
    ) {
        run(steps, false, 2)?;
    }
}
