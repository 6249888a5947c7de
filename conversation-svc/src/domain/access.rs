//! Who may see a conversation, read a contact's history, and write in a conversation
//! (product rules 1 and 14, and "contact history is readable by whoever handles the
//! customer").

use std::fmt;

use super::state::State;

/// A participant's role in a conversation; the numbers are the protobuf values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParticipantRole {
    /// The agent who owns the conversation.
    Owner,
    /// A previous owner after a transfer, or a consulted agent; hidden from the customer.
    Consultant,
    /// A second agent in a conference, visible to the customer.
    Conference,
    /// A supervisor monitoring silently.
    Monitor,
    /// A supervisor who joined visibly.
    Supervisor,
}

impl ParticipantRole {
    /// Every role.
    pub const ALL: [ParticipantRole; 5] = [
        ParticipantRole::Owner,
        ParticipantRole::Consultant,
        ParticipantRole::Conference,
        ParticipantRole::Monitor,
        ParticipantRole::Supervisor,
    ];

    /// The stored and protobuf number of the role.
    pub fn code(self) -> i32 {
        match self {
            ParticipantRole::Owner => 1,
            ParticipantRole::Consultant => 2,
            ParticipantRole::Conference => 3,
            ParticipantRole::Monitor => 4,
            ParticipantRole::Supervisor => 5,
        }
    }

    /// The role of a stored or protobuf number.
    pub fn from_code(code: i64) -> Option<ParticipantRole> {
        ParticipantRole::ALL
            .into_iter()
            .find(|r| i64::from(r.code()) == code)
    }
}

impl fmt::Display for ParticipantRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParticipantRole::Owner => "owner",
            ParticipantRole::Consultant => "consultant",
            ParticipantRole::Conference => "conference agent",
            ParticipantRole::Monitor => "monitoring supervisor",
            ParticipantRole::Supervisor => "joined supervisor",
        })
    }
}

/// The caller, as far as visibility is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Viewer<'a> {
    /// The caller's user id.
    pub user_id: &'a str,
    /// Supervisors, administrators and bots see every conversation of their tenant;
    /// agents see only some.
    pub sees_all: bool,
    /// The queues the agent serves: it sees the OPEN conversations of these only.
    pub queues: &'a [String],
}

/// What visibility depends on, for one conversation.
#[derive(Clone, Copy, Debug)]
pub struct Exposure<'a> {
    /// The conversation's state.
    pub state: State,
    /// The owner, if any.
    pub owner: Option<&'a str>,
    /// User ids of the participants currently present (not left).
    pub present: &'a [&'a str],
    /// The queue it is in (or was last in).
    pub queue_id: &'a str,
}

/// Whether `viewer` may see the conversation: all of the tenant for supervisors,
/// administrators and bots; for an agent, OPEN conversations nobody owns in the agent's
/// queues and those the agent takes part in. A conversation assigned to someone else is
/// hidden, and so is one waiting in a queue the agent does not serve.
pub fn can_view(viewer: Viewer<'_>, conv: Exposure<'_>) -> bool {
    viewer.sees_all
        || (conv.state == State::Open
            && conv.owner.is_none()
            && viewer.queues.iter().any(|q| q == conv.queue_id))
        || conv.owner == Some(viewer.user_id)
        || conv.present.contains(&viewer.user_id)
}

/// Whether `viewer` handles the conversation now: owns it or takes part in it, and it is not
/// CLOSED yet (a closed conversation keeps its last owner, who no longer handles it).
pub fn handles_now(viewer: Viewer<'_>, conv: Exposure<'_>) -> bool {
    conv.state != State::Closed
        && (conv.owner == Some(viewer.user_id) || conv.present.contains(&viewer.user_id))
}

/// Whether `viewer` may read a contact and its history (contact history): supervisors,
/// administrators and bots always; an agent who handles one of `contact_conversations`
/// (the contact's conversations) now.
pub fn can_read_contact<'a>(
    viewer: Viewer<'_>,
    contact_conversations: impl IntoIterator<Item = Exposure<'a>>,
) -> bool {
    viewer.sees_all
        || contact_conversations
            .into_iter()
            .any(|conv| handles_now(viewer, conv))
}

/// Whether `viewer` may read (never act on) a conversation: when it may see it
/// ([`can_view`]), or, for a CLOSED one, through contact history when it handles now another
/// conversation of the same contact, whoever handled this one (`contact_conversations`: the
/// contact's conversations). History is the past: work another agent holds now stays
/// hidden (rule 1).
pub fn can_read<'a>(
    viewer: Viewer<'_>,
    conv: Exposure<'_>,
    contact_conversations: impl IntoIterator<Item = Exposure<'a>>,
) -> bool {
    can_view(viewer, conv)
        || (conv.state == State::Closed && can_read_contact(viewer, contact_conversations))
}

/// Why a message may not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageRefusal {
    /// Nobody writes in this state (agents: WRAP_UP or CLOSED; customers: CLOSED).
    #[error("cannot send a message to a conversation in state {0}")]
    State(State),
    /// The caller does not take part in the conversation.
    #[error("caller is not a participant of the conversation")]
    NotParticipant,
    /// The caller's role does not write to the customer.
    #[error("a {0} cannot write in the conversation")]
    Silent(ParticipantRole),
    /// A consultant writes only internal notes.
    #[error("a consultant writes only internal messages")]
    ConsultantPublic,
}

/// Whether a user (agent or supervisor) whose current role in the conversation is `role`
/// may write, visibly to the customer unless `internal`.
pub fn check_user_message(
    state: State,
    role: Option<ParticipantRole>,
    internal: bool,
) -> Result<(), MessageRefusal> {
    if matches!(state, State::WrapUp | State::Closed | State::Open) {
        return Err(MessageRefusal::State(state));
    }
    match role {
        None => Err(MessageRefusal::NotParticipant),
        Some(
            ParticipantRole::Owner | ParticipantRole::Conference | ParticipantRole::Supervisor,
        ) => Ok(()),
        Some(ParticipantRole::Consultant) if internal => Ok(()),
        Some(ParticipantRole::Consultant) => Err(MessageRefusal::ConsultantPublic),
        Some(role @ ParticipantRole::Monitor) => Err(MessageRefusal::Silent(role)),
    }
}

/// Whether the customer (through a connector) or the bot may write: any time before CLOSED.
pub fn check_customer_message(state: State) -> Result<(), MessageRefusal> {
    if state == State::Closed {
        return Err(MessageRefusal::State(state));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "agent-me";
    const OTHER: &str = "agent-other";
    const MY_QUEUE: &str = "queue-mine";

    fn my_queues() -> &'static [String] {
        Box::leak(vec![MY_QUEUE.to_owned()].into_boxed_slice())
    }

    fn agent() -> Viewer<'static> {
        Viewer {
            user_id: ME,
            sees_all: false,
            queues: my_queues(),
        }
    }

    fn supervisor() -> Viewer<'static> {
        Viewer {
            user_id: "sup",
            sees_all: true,
            queues: &[],
        }
    }

    #[test]
    fn unassigned_open_conversations_are_visible_to_agents() {
        let conv = Exposure {
            state: State::Open,
            owner: None,
            present: &[],
            queue_id: MY_QUEUE,
        };
        assert!(can_view(agent(), conv));
        assert!(can_view(supervisor(), conv));
        // Waiting in a queue the agent does not serve: only the supervisor sees it.
        let elsewhere = Exposure {
            queue_id: "queue-other",
            ..conv
        };
        assert!(!can_view(agent(), elsewhere));
        assert!(can_view(supervisor(), elsewhere));
    }

    #[test]
    fn a_conversation_owned_by_another_agent_is_hidden() {
        for state in [State::Active, State::Waiting, State::WrapUp, State::Closed] {
            let conv = Exposure {
                state,
                owner: Some(OTHER),
                present: &[OTHER],
                queue_id: MY_QUEUE,
            };
            assert!(!can_view(agent(), conv), "{state}");
            assert!(can_view(supervisor(), conv), "{state}");
        }
    }

    #[test]
    fn owners_and_participants_see_it() {
        for state in State::ALL {
            let owned = Exposure {
                state,
                owner: Some(ME),
                present: &[ME],
                queue_id: MY_QUEUE,
            };
            assert!(can_view(agent(), owned), "{state}");
            let consulting = Exposure {
                state,
                owner: Some(OTHER),
                present: &[OTHER, ME],
                queue_id: MY_QUEUE,
            };
            assert!(can_view(agent(), consulting), "{state}");
        }
    }

    #[test]
    fn closed_or_unowned_but_not_open_is_hidden_from_agents() {
        // A closed conversation nobody owned (for example closed while waiting) is not
        // "unassigned and open": agents do not see it.
        let conv = Exposure {
            state: State::Closed,
            owner: None,
            present: &[],
            queue_id: MY_QUEUE,
        };
        assert!(!can_view(agent(), conv));
        assert!(can_view(supervisor(), conv));
    }

    #[test]
    fn only_an_unclosed_conversation_makes_its_agents_handlers() {
        for state in State::ALL {
            let owned = Exposure {
                state,
                owner: Some(ME),
                present: &[ME],
                queue_id: MY_QUEUE,
            };
            let consulting = Exposure {
                state,
                owner: Some(OTHER),
                present: &[OTHER, ME],
                queue_id: MY_QUEUE,
            };
            let elsewhere = Exposure {
                state,
                owner: Some(OTHER),
                present: &[OTHER],
                queue_id: MY_QUEUE,
            };
            let handling = state != State::Closed;
            assert_eq!(handles_now(agent(), owned), handling, "{state}");
            assert_eq!(handles_now(agent(), consulting), handling, "{state}");
            assert!(!handles_now(agent(), elsewhere), "{state}");
        }
    }

    #[test]
    fn contact_history_is_read_by_whoever_handles_the_customer_now() {
        let earlier = Exposure {
            state: State::Closed,
            owner: Some(OTHER),
            present: &[OTHER],
            queue_id: MY_QUEUE,
        };
        let mine_now = Exposure {
            state: State::Active,
            owner: Some(ME),
            present: &[ME],
            queue_id: MY_QUEUE,
        };
        // Handling the contact's current conversation opens its earlier ones, read only.
        assert!(!can_view(agent(), earlier));
        assert!(can_read(agent(), earlier, [earlier, mine_now]));
        assert!(can_read_contact(agent(), [earlier, mine_now]));
        // So does taking part without owning (a consultant), in WAITING or WRAP_UP.
        for state in [State::Waiting, State::WrapUp] {
            let consulting = Exposure {
                state,
                owner: Some(OTHER),
                present: &[OTHER, ME],
                queue_id: MY_QUEUE,
            };
            assert!(can_read(agent(), earlier, [earlier, consulting]), "{state}");
        }
        // Another agent's work in progress on the same contact is not history: hidden.
        let theirs_now = Exposure {
            state: State::Waiting,
            owner: Some(OTHER),
            present: &[OTHER],
            queue_id: MY_QUEUE,
        };
        assert!(!can_read(
            agent(),
            theirs_now,
            [earlier, mine_now, theirs_now]
        ));
    }

    #[test]
    fn having_handled_the_customer_once_opens_nothing() {
        let theirs_now = Exposure {
            state: State::Active,
            owner: Some(OTHER),
            present: &[OTHER],
            queue_id: MY_QUEUE,
        };
        let mine_closed = Exposure {
            state: State::Closed,
            owner: Some(ME),
            present: &[ME],
            queue_id: MY_QUEUE,
        };
        assert!(!can_read(agent(), theirs_now, [theirs_now, mine_closed]));
        assert!(!can_read_contact(agent(), [theirs_now, mine_closed]));
        // A contact with nothing handled by the agent (or no conversation at all) stays
        // hidden; supervisors read every contact.
        assert!(!can_read_contact(agent(), []));
        assert!(can_read_contact(supervisor(), []));
        assert!(can_read(supervisor(), theirs_now, []));
        // Unassigned OPEN work stays readable as before.
        let waiting = Exposure {
            state: State::Open,
            owner: None,
            present: &[],
            queue_id: MY_QUEUE,
        };
        assert!(can_read(agent(), waiting, []));
    }

    #[test]
    fn user_message_rules() {
        use ParticipantRole::*;
        for state in State::ALL {
            for role in ParticipantRole::ALL {
                for internal in [false, true] {
                    let got = check_user_message(state, Some(role), internal);
                    let expected = if matches!(state, State::Open | State::WrapUp | State::Closed) {
                        Err(MessageRefusal::State(state))
                    } else {
                        match (role, internal) {
                            (Owner | Conference | Supervisor, _) => Ok(()),
                            (Consultant, true) => Ok(()),
                            (Consultant, false) => Err(MessageRefusal::ConsultantPublic),
                            (Monitor, _) => Err(MessageRefusal::Silent(Monitor)),
                        }
                    };
                    assert_eq!(got, expected, "{state} {role} internal={internal}");
                }
            }
            let outsider = check_user_message(state, None, false);
            if matches!(state, State::Active | State::Waiting) {
                assert_eq!(outsider, Err(MessageRefusal::NotParticipant));
            } else {
                assert_eq!(outsider, Err(MessageRefusal::State(state)));
            }
        }
    }

    #[test]
    fn customers_write_until_closed() {
        for state in State::ALL {
            assert_eq!(
                check_customer_message(state).is_ok(),
                state != State::Closed,
                "{state}"
            );
        }
    }

    #[test]
    fn role_codes_round_trip() {
        for role in ParticipantRole::ALL {
            assert_eq!(
                ParticipantRole::from_code(i64::from(role.code())),
                Some(role)
            );
        }
        assert_eq!(ParticipantRole::from_code(0), None);
    }
}
