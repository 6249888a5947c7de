//! Who may take a conversation out of its owner's hands or look over it (product rules 1-4,
//! 11 and 12), and when a conversation may be escalated to a call.

use super::access::ParticipantRole;
use super::state::State;

/// The conversation mode, as the protobuf `Mode` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Text messages.
    Messaging,
    /// Escalated to a voice call.
    Voice,
    /// Escalated to a video call.
    Video,
}

impl Mode {
    /// The stored and protobuf number.
    pub fn code(self) -> i32 {
        match self {
            Mode::Messaging => 1,
            Mode::Voice => 2,
            Mode::Video => 3,
        }
    }

    /// The mode of a stored or protobuf number.
    pub fn from_code(code: i32) -> Option<Mode> {
        [Mode::Messaging, Mode::Voice, Mode::Video]
            .into_iter()
            .find(|m| m.code() == code)
    }

    /// Whether the conversation is a call now: no more transfers across agents.
    pub fn is_escalated(self) -> bool {
        self != Mode::Messaging
    }
}

/// Why a supervisor's or owner's action is refused; each is FAILED_PRECONDITION.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The action needs another state.
    #[error("cannot {action} a conversation in state {state}")]
    State {
        /// What was attempted.
        action: &'static str,
        /// The state the conversation is in.
        state: State,
    },
    /// A supervisor never monitors or joins a conversation assigned to themself.
    #[error("the conversation is assigned to the caller")]
    OwnConversation,
    /// The caller already takes part in that role.
    #[error("the caller already takes part as {0}")]
    AlreadyPresent(ParticipantRole),
    /// Only the owner, a supervisor or an administrator may do this.
    #[error("only the owner or a supervisor can {0}")]
    NotOwner(&'static str),
    /// A supervisor assigns only conversations nobody owns.
    #[error("the conversation is already assigned to agent {0}")]
    Owned(String),
    /// Already a call.
    #[error("the conversation is already escalated")]
    AlreadyEscalated,
    /// A call is never transferred across agents (rule 7).
    #[error("the conversation was escalated to a call and cannot be transferred")]
    Escalated,
    /// Transfers stay within the conversation's program (rule 7).
    #[error("queue {queue} is in another program than the conversation's")]
    OtherProgram {
        /// The target queue.
        queue: String,
    },
}

/// Silent monitoring: ACTIVE or WRAP_UP, never one's own, once.
pub fn check_monitor(
    state: State,
    owner: Option<&str>,
    caller: &str,
    present_as: Option<ParticipantRole>,
) -> Result<(), Refusal> {
    if !matches!(state, State::Active | State::WrapUp) {
        return Err(Refusal::State {
            action: "monitor",
            state,
        });
    }
    if owner == Some(caller) {
        return Err(Refusal::OwnConversation);
    }
    match present_as {
        None => Ok(()),
        Some(role) => Err(Refusal::AlreadyPresent(role)),
    }
}

/// Joining visibly: while the chat goes on (ACTIVE or WAITING), never one's own, directly or
/// from monitoring.
pub fn check_join(
    state: State,
    owner: Option<&str>,
    caller: &str,
    present_as: Option<ParticipantRole>,
) -> Result<(), Refusal> {
    if !matches!(state, State::Active | State::Waiting) {
        return Err(Refusal::State {
            action: "join",
            state,
        });
    }
    if owner == Some(caller) {
        return Err(Refusal::OwnConversation);
    }
    match present_as {
        None | Some(ParticipantRole::Monitor) => Ok(()),
        Some(role) => Err(Refusal::AlreadyPresent(role)),
    }
}

/// A supervisor's assignment: only an OPEN conversation that no agent has (rule 3).
pub fn check_assign(state: State, owner: Option<&str>) -> Result<(), Refusal> {
    if let Some(owner) = owner {
        return Err(Refusal::Owned(owner.to_owned()));
    }
    if state != State::Open {
        return Err(Refusal::State {
            action: "assign",
            state,
        });
    }
    Ok(())
}

/// Unassign and moving an owned conversation: its owner, or a supervisor or administrator
/// of the tenant (`oversees`).
pub fn check_releaser(
    action: &'static str,
    owner: Option<&str>,
    caller: &str,
    oversees: bool,
) -> Result<(), Refusal> {
    if oversees || owner == Some(caller) {
        Ok(())
    } else {
        Err(Refusal::NotOwner(action))
    }
}

/// Escalation to a call: the owner's ACTIVE or WAITING messaging conversation, once.
pub fn check_escalate(state: State, mode: Mode) -> Result<(), Refusal> {
    if !matches!(state, State::Active | State::Waiting) {
        return Err(Refusal::State {
            action: "escalate",
            state,
        });
    }
    if mode.is_escalated() {
        return Err(Refusal::AlreadyEscalated);
    }
    Ok(())
}

/// A transfer (rule 7): an ACTIVE or WAITING conversation, never once escalated, only to a
/// queue of the same program (`target_program`; the channel is checked by routing-svc).
pub fn check_transfer(
    state: State,
    mode: Mode,
    program: &str,
    target_queue: &str,
    target_program: &str,
) -> Result<(), Refusal> {
    if !matches!(state, State::Active | State::Waiting) {
        return Err(Refusal::State {
            action: "transfer",
            state,
        });
    }
    if mode.is_escalated() {
        return Err(Refusal::Escalated);
    }
    if program != target_program {
        return Err(Refusal::OtherProgram {
            queue: target_queue.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUP: &str = "sup";
    const AGENT: &str = "agent";

    #[test]
    fn monitoring_is_for_active_or_wrap_up_conversations_of_others() {
        for state in State::ALL {
            let got = check_monitor(state, Some(AGENT), SUP, None);
            assert_eq!(
                got.is_ok(),
                matches!(state, State::Active | State::WrapUp),
                "{state}"
            );
        }
        assert_eq!(
            check_monitor(State::Active, Some(SUP), SUP, None),
            Err(Refusal::OwnConversation)
        );
        assert_eq!(
            check_monitor(
                State::Active,
                Some(AGENT),
                SUP,
                Some(ParticipantRole::Monitor)
            ),
            Err(Refusal::AlreadyPresent(ParticipantRole::Monitor))
        );
    }

    #[test]
    fn joining_works_from_monitoring_but_not_twice() {
        assert!(
            check_join(
                State::Active,
                Some(AGENT),
                SUP,
                Some(ParticipantRole::Monitor)
            )
            .is_ok()
        );
        assert!(check_join(State::Waiting, Some(AGENT), SUP, None).is_ok());
        assert_eq!(
            check_join(
                State::Active,
                Some(AGENT),
                SUP,
                Some(ParticipantRole::Supervisor)
            ),
            Err(Refusal::AlreadyPresent(ParticipantRole::Supervisor))
        );
        assert_eq!(
            check_join(State::Active, Some(SUP), SUP, None),
            Err(Refusal::OwnConversation)
        );
        for state in [State::Open, State::WrapUp, State::Closed] {
            assert!(
                check_join(state, Some(AGENT), SUP, None).is_err(),
                "{state}"
            );
        }
    }

    #[test]
    fn only_open_unowned_conversations_are_assigned() {
        assert!(check_assign(State::Open, None).is_ok());
        assert_eq!(
            check_assign(State::Open, Some(AGENT)),
            Err(Refusal::Owned(AGENT.into()))
        );
        for state in [State::Active, State::Waiting, State::WrapUp, State::Closed] {
            assert!(check_assign(state, None).is_err(), "{state}");
        }
    }

    #[test]
    fn the_owner_or_an_overseer_releases() {
        assert!(check_releaser("unassign", Some(AGENT), AGENT, false).is_ok());
        assert!(check_releaser("unassign", Some(AGENT), SUP, true).is_ok());
        assert_eq!(
            check_releaser("unassign", Some(AGENT), "other", false),
            Err(Refusal::NotOwner("unassign"))
        );
        assert!(check_releaser("unassign", None, "other", false).is_err());
    }

    #[test]
    fn escalation_happens_once_while_the_chat_goes_on() {
        for state in State::ALL {
            assert_eq!(
                check_escalate(state, Mode::Messaging).is_ok(),
                matches!(state, State::Active | State::Waiting),
                "{state}"
            );
        }
        assert_eq!(
            check_escalate(State::Active, Mode::Voice),
            Err(Refusal::AlreadyEscalated)
        );
    }

    #[test]
    fn transfers_stay_in_the_program_and_never_leave_a_call() {
        for state in State::ALL {
            assert_eq!(
                check_transfer(state, Mode::Messaging, "p", "q", "p").is_ok(),
                matches!(state, State::Active | State::Waiting),
                "{state}"
            );
        }
        assert_eq!(
            check_transfer(State::Active, Mode::Video, "p", "q", "p"),
            Err(Refusal::Escalated)
        );
        assert_eq!(
            check_transfer(State::Active, Mode::Messaging, "p", "q", "other"),
            Err(Refusal::OtherProgram { queue: "q".into() })
        );
    }

    #[test]
    fn mode_codes_match_the_protobuf_enum() {
        use switchboard_proto::conversation::v1::Mode as Proto;
        for mode in [Mode::Messaging, Mode::Voice, Mode::Video] {
            assert_eq!(Mode::from_code(mode.code()), Some(mode));
            assert!(Proto::try_from(mode.code()).is_ok());
        }
        assert_eq!(Mode::from_code(0), None);
    }
}
