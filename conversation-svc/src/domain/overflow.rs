//! Whether a queue overflow routing-svc made still applies to a conversation: routing moves
//! waiting work on its own clock, and the conversation may have moved on since.

use std::fmt;

use crate::domain::state::State;

/// Why an overflow leaves the conversation as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Only an OPEN conversation waits in a queue.
    NotOpen(State),
    /// An agent owns it (an offer was accepted meanwhile).
    Owned,
    /// It was moved, closed or queued again since: its placement is another one.
    MovedOn,
    /// It is already in the overflow queue.
    AlreadyThere,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotOpen(state) => write!(f, "it is {state:?}"),
            Ignored::Owned => f.write_str("an agent owns it"),
            Ignored::MovedOn => f.write_str("it was moved, closed or queued again since"),
            Ignored::AlreadyThere => f.write_str("it is already in that queue"),
        }
    }
}

/// Whether a conversation in `state`, owned by `owner`, placed in routing under `placement`
/// (`None`: queued before placements were kept, not checked) and now in `queue_id`, moves to
/// `to_queue_id` on an overflow routing made of its placement `enqueue_key`.
pub fn overflow_applies(
    state: State,
    owner: Option<&str>,
    placement: Option<&str>,
    enqueue_key: &str,
    queue_id: &str,
    to_queue_id: &str,
) -> Result<(), Ignored> {
    if state != State::Open {
        return Err(Ignored::NotOpen(state));
    }
    if owner.is_some() {
        return Err(Ignored::Owned);
    }
    if placement.is_some_and(|placement| placement != enqueue_key) {
        return Err(Ignored::MovedOn);
    }
    if queue_id == to_queue_id {
        return Err(Ignored::AlreadyThere);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_conversation_still_under_that_placement_moves() {
        assert_eq!(
            overflow_applies(State::Open, None, Some("k"), "k", "a", "b"),
            Ok(())
        );
        assert_eq!(
            overflow_applies(State::Open, None, None, "k", "a", "b"),
            Ok(()),
            "a placement older than the check is not checked"
        );
    }

    #[test]
    fn a_conversation_that_moved_on_stays() {
        assert_eq!(
            overflow_applies(State::Open, None, Some("newer"), "k", "a", "b"),
            Err(Ignored::MovedOn)
        );
        assert_eq!(
            overflow_applies(State::Open, None, Some(""), "k", "a", "b"),
            Err(Ignored::MovedOn),
            "it waits nowhere"
        );
        for state in [State::Active, State::Waiting, State::WrapUp, State::Closed] {
            assert_eq!(
                overflow_applies(state, None, Some("k"), "k", "a", "b"),
                Err(Ignored::NotOpen(state))
            );
        }
        assert_eq!(
            overflow_applies(State::Open, Some("agent"), Some("k"), "k", "a", "b"),
            Err(Ignored::Owned)
        );
        assert_eq!(
            overflow_applies(State::Open, None, Some("k"), "k", "b", "b"),
            Err(Ignored::AlreadyThere)
        );
    }
}
