//! Presence rules: who may set what, and who receives offers.

use crate::domain::types::{Presence, PresenceCause};

/// Why a presence change asked by a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// RONA is set by the system when an offer times out, never by a client.
    #[error("RONA is set by the system and cannot be set by a client")]
    RonaBySystemOnly,
}

/// Checks a presence a client asks for. Any presence set by hand, including the current
/// one, ends RONA: the agent has shown they are back at the desk.
pub fn check_manual(target: Presence) -> Result<Presence, PresenceError> {
    match target {
        Presence::Rona => Err(PresenceError::RonaBySystemOnly),
        other => Ok(other),
    }
}

/// Why a presence change is refused for the agent's current presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RonaError {
    /// Only the agent ends its RONA, and only as the RONA prompt offers.
    #[error(
        "the agent is in RONA: only the agent ends it, by setting Available or Away (or by logging out)"
    )]
    EndedByTheAgentOnly,
}

/// Checks a change from `current` to `target` asked by the agent itself (`by_agent`) or
/// by a supervisor. RONA ends only by the agent's own choice of Available or Away, the
/// two answers of the RONA prompt: it shows the agent is back, and a supervisor cannot
/// know that. Going Offline is always allowed, so a logout (the agent's, or a
/// supervisor's for an agent who left) is never blocked.
pub fn check_leaving(current: Presence, target: Presence, by_agent: bool) -> Result<(), RonaError> {
    let ends_rona = target == Presence::Offline
        || (by_agent && matches!(target, Presence::Available | Presence::Away));
    if current == Presence::Rona && !ends_rona {
        return Err(RonaError::EndedByTheAgentOnly);
    }
    Ok(())
}

impl Presence {
    /// Whether an agent in this presence may receive offers.
    pub fn receives_offers(self) -> bool {
        self == Presence::Available
    }

    /// Whether the agent is signed in (anything but Offline).
    pub fn is_signed_in(self) -> bool {
        self != Presence::Offline
    }

    /// Whether leaving this presence should withdraw the agent's pending offers: an agent
    /// who stops being Available must not keep offers that others could take.
    pub fn keeps_pending_offers(self) -> bool {
        self == Presence::Available
    }
}

/// The presence shown for an agent who chose `chosen` and holds `used` of `total` units:
/// Busy while an Available agent's units are all taken, so that a supervisor sees at once
/// who can take nothing more; the choice itself is kept and shows again as units free. No
/// other presence is ever overwritten.
pub fn shown(chosen: Presence, used: i32, total: i32) -> Presence {
    if chosen == Presence::Available && total > 0 && used >= total {
        Presence::Busy
    } else {
        chosen
    }
}

/// A change of the presence an agent shows, as its event records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceChange {
    /// Shown after the change.
    pub shown: Presence,
    /// Shown before it.
    pub previous: Presence,
    /// What changed it.
    pub cause: PresenceCause,
}

/// The change an agent showing `previous` sees when `actor_id` sets `agent_id`'s presence
/// to `chosen` while it holds `used` of `total` units: the agent's own choice, or a
/// supervisor's. Recorded even when nothing shown changes, since a choice by hand still
/// ends RONA and sets the reason.
pub fn set_by_hand(
    agent_id: &str,
    actor_id: &str,
    previous: Presence,
    chosen: Presence,
    used: i32,
    total: i32,
) -> PresenceChange {
    PresenceChange {
        shown: shown(chosen, used, total),
        previous,
        cause: if actor_id == agent_id {
            PresenceCause::Agent
        } else {
            PresenceCause::Supervisor
        },
    }
}

/// The change, if any, that a capacity change from `used_before` to `used_after` of
/// `total_after` units (with the total `total_before` before) makes to what an agent who
/// chose `chosen` shows.
pub fn after_capacity_change(
    chosen: Presence,
    (used_before, total_before): (i32, i32),
    (used_after, total_after): (i32, i32),
) -> Option<PresenceChange> {
    let previous = shown(chosen, used_before, total_before);
    let now = shown(chosen, used_after, total_after);
    (previous != now).then_some(PresenceChange {
        shown: now,
        previous,
        cause: PresenceCause::Capacity,
    })
}

/// The `idle_since` time after a presence change at `now`: becoming Available starts a
/// new idle period, anything else keeps the old one.
pub fn idle_since_after_change(old: Presence, new: Presence, idle_since: i64, now: i64) -> i64 {
    if new == Presence::Available && old != Presence::Available {
        now
    } else {
        idle_since
    }
}

/// The `login_time` after a presence change at `now`: leaving Offline is a login, anything
/// else keeps the old one.
pub fn login_time_after_change(old: Presence, new: Presence, login_time: i64, now: i64) -> i64 {
    if new.is_signed_in() && !old.is_signed_in() {
        now
    } else {
        login_time
    }
}

/// Whether a presence change is a logout (a signed-in agent going Offline), after which
/// the agent's conversations in queues that return them on logout go back to their queue.
pub fn is_logout(old: Presence, new: Presence) -> bool {
    old.is_signed_in() && !new.is_signed_in()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cannot_set_rona_but_may_set_everything_else() {
        assert_eq!(
            check_manual(Presence::Rona),
            Err(PresenceError::RonaBySystemOnly)
        );
        for presence in Presence::ALL
            .iter()
            .copied()
            .filter(|p| *p != Presence::Rona)
        {
            assert_eq!(check_manual(presence), Ok(presence));
        }
    }

    #[test]
    fn rona_ends_only_by_the_agents_own_available_or_away_or_a_logout() {
        for target in Presence::ALL
            .iter()
            .copied()
            .filter(|p| *p != Presence::Rona)
        {
            let by_agent = check_leaving(Presence::Rona, target, true);
            let by_supervisor = check_leaving(Presence::Rona, target, false);
            match target {
                Presence::Available | Presence::Away => {
                    assert_eq!(by_agent, Ok(()), "{target:?}");
                    assert_eq!(by_supervisor, Err(RonaError::EndedByTheAgentOnly));
                }
                Presence::Offline => {
                    assert_eq!(by_agent, Ok(()));
                    assert_eq!(by_supervisor, Ok(()));
                }
                _ => {
                    assert_eq!(by_agent, Err(RonaError::EndedByTheAgentOnly), "{target:?}");
                    assert_eq!(by_supervisor, Err(RonaError::EndedByTheAgentOnly));
                }
            }
        }
        for current in Presence::ALL
            .iter()
            .copied()
            .filter(|p| *p != Presence::Rona)
        {
            for target in Presence::ALL {
                assert_eq!(check_leaving(current, *target, false), Ok(()));
            }
        }
    }

    #[test]
    fn only_available_receives_offers() {
        for presence in Presence::ALL {
            assert_eq!(
                presence.receives_offers(),
                *presence == Presence::Available,
                "{presence:?}"
            );
        }
        assert!(!Presence::Rona.receives_offers());
    }

    #[test]
    fn a_capacity_change_shows_busy_only_when_it_fills_an_available_agent() {
        let filled = after_capacity_change(Presence::Available, (1, 2), (2, 2));
        assert_eq!(
            filled,
            Some(PresenceChange {
                shown: Presence::Busy,
                previous: Presence::Available,
                cause: PresenceCause::Capacity,
            })
        );
        let freed = after_capacity_change(Presence::Available, (2, 2), (1, 2)).unwrap();
        assert_eq!(
            (freed.previous, freed.shown),
            (Presence::Busy, Presence::Available)
        );
        assert_eq!(
            after_capacity_change(Presence::Available, (0, 2), (1, 2)),
            None
        );
        assert_eq!(
            after_capacity_change(Presence::Away, (1, 2), (2, 2)),
            None,
            "a presence chosen by hand is never overwritten"
        );
        let smaller_profile = after_capacity_change(Presence::Available, (2, 3), (2, 2)).unwrap();
        assert_eq!(smaller_profile.shown, Presence::Busy);
    }

    #[test]
    fn a_presence_set_by_hand_names_who_set_it() {
        let own = set_by_hand("ada", "ada", Presence::Rona, Presence::Available, 0, 2);
        assert_eq!(own.cause, PresenceCause::Agent);
        assert_eq!(
            (own.previous, own.shown),
            (Presence::Rona, Presence::Available)
        );
        let full = set_by_hand("ada", "sue", Presence::Away, Presence::Available, 2, 2);
        assert_eq!(full.cause, PresenceCause::Supervisor);
        assert_eq!(full.shown, Presence::Busy);
    }

    #[test]
    fn becoming_available_restarts_idle_time() {
        assert_eq!(
            idle_since_after_change(Presence::Rona, Presence::Available, 5, 9),
            9
        );
        assert_eq!(
            idle_since_after_change(Presence::Available, Presence::Available, 5, 9),
            5
        );
        assert_eq!(
            idle_since_after_change(Presence::Available, Presence::Away, 5, 9),
            5
        );
    }

    #[test]
    fn leaving_offline_is_a_login_and_only_that() {
        assert_eq!(
            login_time_after_change(Presence::Offline, Presence::Available, 5, 9),
            9
        );
        assert_eq!(
            login_time_after_change(Presence::Offline, Presence::Busy, 5, 9),
            9,
            "signing in Busy is a login too"
        );
        for old in Presence::ALL.iter().copied().filter(|p| p.is_signed_in()) {
            for new in Presence::ALL {
                assert_eq!(
                    login_time_after_change(old, *new, 5, 9),
                    5,
                    "{old:?} -> {new:?}"
                );
            }
        }
        assert_eq!(
            login_time_after_change(Presence::Offline, Presence::Offline, 5, 9),
            5
        );
    }

    #[test]
    fn only_a_signed_in_agent_going_offline_logs_out() {
        for old in Presence::ALL {
            for new in Presence::ALL {
                let expected = *old != Presence::Offline && *new == Presence::Offline;
                assert_eq!(is_logout(*old, *new), expected, "{old:?} -> {new:?}");
            }
        }
    }

    #[test]
    fn an_available_agent_with_every_unit_taken_shows_busy() {
        assert_eq!(shown(Presence::Available, 2, 2), Presence::Busy);
        assert_eq!(
            shown(Presence::Available, 3, 2),
            Presence::Busy,
            "over by override"
        );
        assert_eq!(shown(Presence::Available, 1, 2), Presence::Available);
        assert_eq!(
            shown(Presence::Available, 0, 0),
            Presence::Available,
            "no units at all is not full"
        );
        for chosen in [
            Presence::Offline,
            Presence::Busy,
            Presence::Away,
            Presence::DoNotDisturb,
            Presence::Rona,
        ] {
            assert_eq!(
                shown(chosen, 2, 2),
                chosen,
                "{chosen:?} is never overwritten"
            );
            assert_eq!(shown(chosen, 0, 2), chosen);
        }
    }
}
