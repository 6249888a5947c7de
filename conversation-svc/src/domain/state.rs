//! The conversation lifecycle: OPEN → ACTIVE ⇄ WAITING → WRAP_UP → CLOSED, with the moves
//! that return an owned conversation to a queue (unassign, move) and a supervisor's force close.

use std::fmt;

/// Where a conversation is in its lifecycle; the numbers are the protobuf values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// In a queue, not assigned to anyone.
    Open,
    /// An agent owns it and is working it.
    Active,
    /// Owned, waiting on the customer or on hold.
    Waiting,
    /// The agent ended the chat and is choosing wrap-up reasons.
    WrapUp,
    /// Finished.
    Closed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Open,
        State::Active,
        State::Waiting,
        State::WrapUp,
        State::Closed,
    ];

    /// The stored and protobuf number of the state.
    pub fn code(self) -> i32 {
        match self {
            State::Open => 1,
            State::Active => 2,
            State::Waiting => 3,
            State::WrapUp => 4,
            State::Closed => 5,
        }
    }

    /// The state of a stored or protobuf number; `None` for anything else.
    pub fn from_code(code: i64) -> Option<State> {
        State::ALL.into_iter().find(|s| i64::from(s.code()) == code)
    }

    /// The name clients see, as in the protobuf enum without its prefix.
    pub fn name(self) -> &'static str {
        match self {
            State::Open => "OPEN",
            State::Active => "ACTIVE",
            State::Waiting => "WAITING",
            State::WrapUp => "WRAP_UP",
            State::Closed => "CLOSED",
        }
    }

    /// Whether an agent owns the conversation in this state.
    pub fn is_owned(self) -> bool {
        matches!(self, State::Active | State::Waiting | State::WrapUp)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something that changes a conversation's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// An agent becomes owner (accepted offer, claim).
    Assign,
    /// The owner puts it on hold or waits on the customer.
    SetWaiting,
    /// The owner takes it off hold.
    Resume,
    /// The owner ends the chat.
    End,
    /// The owner submits wrap-up reasons.
    SubmitWrapUp,
    /// The owner, a supervisor or a parent-tenant user returns it to its queue.
    Unassign,
    /// It goes to another queue: an OPEN one stays OPEN, an owned one is released.
    Move,
    /// A supervisor closes it, whatever it was doing.
    ForceClose,
    /// Its owner or a supervisor transfers it to a queue, where it waits again.
    TransferToQueue,
    /// Its queue's wrap-up time limit passes before wrap-up is submitted.
    ExpireWrapUp,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 10] = [
        Action::Assign,
        Action::SetWaiting,
        Action::Resume,
        Action::End,
        Action::SubmitWrapUp,
        Action::Unassign,
        Action::Move,
        Action::ForceClose,
        Action::TransferToQueue,
        Action::ExpireWrapUp,
    ];

    /// A lowercase verb phrase for messages ("end", "submit wrap-up for").
    pub fn verb(self) -> &'static str {
        match self {
            Action::Assign => "assign",
            Action::SetWaiting => "set waiting",
            Action::Resume => "resume",
            Action::End => "end",
            Action::SubmitWrapUp => "submit wrap-up for",
            Action::Unassign => "unassign",
            Action::Move => "move",
            Action::ForceClose => "force close",
            Action::TransferToQueue => "transfer",
            Action::ExpireWrapUp => "close on the wrap-up time limit",
        }
    }
}

/// An action the current state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a conversation in state {from}", .action.verb())]
pub struct IllegalTransition {
    /// The state the conversation is in.
    pub from: State,
    /// What was attempted.
    pub action: Action,
}

/// The state after `action`, or why `action` is not allowed in `from`.
pub fn transition(from: State, action: Action) -> Result<State, IllegalTransition> {
    use Action::*;
    use State::*;
    match (from, action) {
        (Open, Assign) => Ok(Active),
        (Active, SetWaiting) => Ok(Waiting),
        (Waiting, Resume) => Ok(Active),
        (Active | Waiting, End) => Ok(WrapUp),
        (WrapUp, SubmitWrapUp | ExpireWrapUp) => Ok(Closed),
        (Active | Waiting, Unassign) => Ok(Open),
        (Open | Active | Waiting, Move) => Ok(Open),
        (Open | Active | Waiting | WrapUp, ForceClose) => Ok(Closed),
        (Active | Waiting, TransferToQueue) => Ok(Open),
        _ => Err(IllegalTransition { from, action }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table: every (state, action) pair and its expected outcome.
    #[test]
    fn every_transition_is_as_specified() {
        use Action::*;
        use State::*;
        let expected = |from: State, action: Action| -> Option<State> {
            match (from, action) {
                (Open, Assign) => Some(Active),
                (Active, SetWaiting) => Some(Waiting),
                (Waiting, Resume) => Some(Active),
                (Active, End) => Some(WrapUp),
                (Waiting, End) => Some(WrapUp),
                (WrapUp, SubmitWrapUp) => Some(Closed),
                (WrapUp, ExpireWrapUp) => Some(Closed),
                (Active | Waiting, Unassign) => Some(Open),
                (Open | Active | Waiting, Move) => Some(Open),
                (Open | Active | Waiting | WrapUp, ForceClose) => Some(Closed),
                (Active | Waiting, TransferToQueue) => Some(Open),
                _ => None,
            }
        };
        let mut allowed = 0;
        for from in State::ALL {
            for action in Action::ALL {
                let got = transition(from, action);
                match expected(from, action) {
                    Some(to) => {
                        assert_eq!(got, Ok(to), "{from} {action:?}");
                        allowed += 1;
                    }
                    None => assert_eq!(
                        got,
                        Err(IllegalTransition { from, action }),
                        "{from} {action:?}"
                    ),
                }
            }
        }
        assert_eq!(allowed, 18);
    }

    #[test]
    fn closed_is_final() {
        for action in Action::ALL {
            assert!(transition(State::Closed, action).is_err(), "{action:?}");
        }
    }

    #[test]
    fn the_happy_path_reaches_closed() {
        let mut state = State::Open;
        for action in [
            Action::Assign,
            Action::SetWaiting,
            Action::Resume,
            Action::SetWaiting,
            Action::End,
            Action::SubmitWrapUp,
        ] {
            state = transition(state, action).unwrap();
        }
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn illegal_transition_names_the_state() {
        let err = transition(State::Open, Action::End).unwrap_err();
        assert_eq!(err.to_string(), "cannot end a conversation in state OPEN");
        let err = transition(State::Active, Action::SubmitWrapUp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot submit wrap-up for a conversation in state ACTIVE"
        );
    }

    #[test]
    fn codes_round_trip_and_match_the_protobuf_enum() {
        use switchboard_proto::conversation::v1::conversation::State as Proto;
        for state in State::ALL {
            assert_eq!(State::from_code(i64::from(state.code())), Some(state));
            let proto = Proto::try_from(state.code()).unwrap();
            assert_eq!(proto.as_str_name(), format!("STATE_{}", state.name()));
        }
        assert_eq!(State::from_code(0), None);
        assert_eq!(State::from_code(6), None);
    }

    #[test]
    fn owned_states() {
        let owned: Vec<State> = State::ALL.into_iter().filter(|s| s.is_owned()).collect();
        assert_eq!(owned, vec![State::Active, State::Waiting, State::WrapUp]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_action() -> impl Strategy<Value = Action> {
        prop::sample::select(Action::ALL.to_vec())
    }

    proptest! {
        /// Whatever is attempted, a conversation walks the lifecycle in order: it never
        /// leaves CLOSED, reaches WRAP_UP only by End, CLOSED only by wrap-up (submitted or
        /// timed out) or force close, OPEN again only by unassign, move or a transfer to a
        /// queue, and is owned exactly while ACTIVE, WAITING or
        /// WRAP_UP, so that each assignment follows a return to the queue.
        #[test]
        fn random_attempts_follow_the_lifecycle(actions in prop::collection::vec(any_action(), 0..60)) {
            let mut state = State::Open;
            let mut assigned = 0;
            let mut returned = 0;
            for action in actions {
                let before = state;
                match transition(state, action) {
                    Ok(next) => {
                        prop_assert_ne!(before, State::Closed);
                        if action == Action::Assign { assigned += 1; }
                        if next == State::WrapUp { prop_assert_eq!(action, Action::End); }
                        if next == State::Closed {
                            prop_assert!(matches!(
                                action,
                                Action::SubmitWrapUp | Action::ForceClose | Action::ExpireWrapUp
                            ));
                        }
                        if next == State::Open {
                            prop_assert!(matches!(
                                action,
                                Action::Unassign | Action::Move | Action::TransferToQueue
                            ));
                            if before.is_owned() { returned += 1; }
                        }
                        state = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, before);
                    }
                }
            }
            prop_assert!(assigned <= returned + 1);
        }
    }
}
