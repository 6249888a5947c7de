//! The routing vocabulary: enums whose numbers match the API contract, so that storage
//! and the API convert with a plain integer, and the records the rules work on.

use serde::{Deserialize, Serialize};

/// Declares an enum backed by the contract's integer values, with checked conversions.
macro_rules! int_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value),+
        }

        impl $name {
            /// Every value, in contract order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value with contract number `value`, if any.
            pub fn from_i32(value: i32) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The contract number of this value.
            pub fn as_i32(self) -> i32 {
                self as i32
            }
        }
    };
}

int_enum! {
    /// The medium a conversation travels on.
    Channel {
        /// Chat in a web page widget.
        Webchat = 1,
        /// Text messages.
        Sms = 2,
        /// Facebook Messenger.
        Messenger = 3,
        /// WhatsApp.
        Whatsapp = 4,
        /// Email threads.
        Email = 5,
        /// Phone calls.
        Voice = 6,
    }
}

int_enum! {
    /// How a queue picks the agent to offer a waiting conversation to.
    AssignmentMethod {
        /// Agents take turns in a fixed rotation (by agent id).
        RoundRobin = 1,
        /// The eligible agent with the most free units first.
        MostAvailableCapacity = 2,
        /// The eligible agent idle the longest first.
        LongestIdle = 3,
        /// Nothing is offered; agents pick waiting work themselves.
        ManualPick = 4,
    }
}

int_enum! {
    /// What happens to an agent's conversations when the agent goes Offline.
    LogoutBehavior {
        /// They go back to their queue.
        ReturnToQueue = 1,
        /// They stay with the agent.
        Keep = 2,
    }
}

int_enum! {
    /// What happens to a transfer the receiving agent does not take.
    TransferFallback {
        /// Back to the sender.
        ReturnToSender = 1,
        /// Back to the target queue.
        Requeue = 2,
        /// Closed.
        Drop = 3,
    }
}

int_enum! {
    /// An agent's presence.
    Presence {
        /// Logged out.
        Offline = 1,
        /// Receives offers while capacity is free.
        Available = 2,
        /// Working; no offers.
        Busy = 3,
        /// Away or idle; no offers.
        Away = 4,
        /// Do not disturb; no offers.
        DoNotDisturb = 5,
        /// Redirected on no answer; set by the system only.
        Rona = 6,
    }
}

int_enum! {
    /// Why an agent's shown presence changed.
    PresenceCause {
        /// The agent set it.
        Agent = 1,
        /// A supervisor set it for the agent.
        Supervisor = 2,
        /// An offer timed out and the system set RONA.
        OfferTimedOut = 3,
        /// The agent's capacity filled up (Available shows Busy) or freed again.
        Capacity = 4,
    }
}

int_enum! {
    /// Why an offer was made.
    OfferKind {
        /// A conversation waiting in a queue.
        Queue = 1,
        /// A transfer from another agent.
        Transfer = 2,
        /// An invitation to join in a conference.
        Conference = 3,
        /// An invitation to consult.
        Consult = 4,
    }
}

int_enum! {
    /// Where an offer stands.
    OfferState {
        /// Waiting for the agent's answer.
        Pending = 1,
        /// Accepted; the conversation is the agent's.
        Accepted = 2,
        /// Rejected; the conversation went back to its queue.
        Rejected = 3,
        /// The deadline passed; back to the queue, agent in RONA.
        TimedOut = 4,
        /// Withdrawn before an answer.
        Withdrawn = 5,
    }
}

int_enum! {
    /// Why an agent was or was not chosen for an offer.
    PassReason {
        /// Chosen.
        Chosen = 1,
        /// Not Available.
        NotAvailable = 2,
        /// In RONA.
        Rona = 3,
        /// Not enough free units for the channel.
        NoCapacity = 4,
        /// Holds the queue's max open conversations.
        MaxOpenReached = 5,
        /// Lacks a required skill.
        MissingSkill = 6,
        /// Eligible but ranked lower.
        RankedLower = 7,
        /// Already offered, rejected or missed this conversation.
        AlreadyOffered = 8,
        /// Not a member of the queue.
        NotAMember = 9,
        /// The agent's capacity profile excludes the conversation's channel.
        ChannelExcluded = 10,
        /// Waiting since before the agent logged in, in a queue that does not offer
        /// waiting conversations on login.
        WaitingBeforeLogin = 11,
    }
}

int_enum! {
    /// How an agent came to own a conversation routing assigned.
    AssignmentSource {
        /// The agent accepted a queue offer.
        QueueOffer = 1,
        /// The agent picked it from the waiting work.
        Claim = 2,
        /// The agent accepted a transfer offered to them.
        Transfer = 3,
        /// The agent accepted an invitation to consult (no ownership, no capacity).
        Consult = 4,
        /// The agent accepted an invitation to a conference (no ownership; capacity held).
        Conference = 5,
    }
}

impl AssignmentSource {
    /// How accepting an offer of `kind` gives the agent the conversation.
    pub fn of_offer(kind: OfferKind) -> AssignmentSource {
        match kind {
            OfferKind::Queue => AssignmentSource::QueueOffer,
            OfferKind::Transfer => AssignmentSource::Transfer,
            OfferKind::Consult => AssignmentSource::Consult,
            OfferKind::Conference => AssignmentSource::Conference,
        }
    }

    /// The invitation this source joins by, if it is one.
    pub fn invitation(self) -> Option<OfferKind> {
        match self {
            AssignmentSource::Consult => Some(OfferKind::Consult),
            AssignmentSource::Conference => Some(OfferKind::Conference),
            _ => None,
        }
    }

    /// The word stored in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentSource::QueueOffer => "offer",
            AssignmentSource::Claim => "claim",
            AssignmentSource::Transfer => "transfer",
            AssignmentSource::Consult => "consult",
            AssignmentSource::Conference => "conference",
        }
    }

    /// The source stored as `word` by [`AssignmentSource::as_str`].
    pub fn parse(word: &str) -> Option<AssignmentSource> {
        AssignmentSource::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == word)
    }
}

/// A program: a group of queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Unique within the tenant.
    pub display_name: String,
    /// Microseconds since the epoch.
    pub create_time: i64,
}

/// A queue and its settings; durations in microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Program of the queue.
    pub program_id: String,
    /// Unique within the program.
    pub display_name: String,
    /// At least one.
    pub accepted_channels: Vec<Channel>,
    /// How an agent is chosen.
    pub assignment_method: AssignmentMethod,
    /// 0 means no limit besides capacity.
    pub max_open_per_agent: i32,
    /// Time an agent has to answer an offer.
    pub offer_timeout_us: i64,
    /// What happens on logout.
    pub logout_behavior: LogoutBehavior,
    /// Whether waiting conversations are offered when an agent logs in.
    pub offer_waiting_on_login: bool,
    /// Skills an agent needs, each at a minimum level.
    pub required_skills: Vec<SkillRequirement>,
    /// Higher is offered first.
    pub priority: i32,
    /// Overflow target, if any.
    pub overflow_queue_id: Option<String>,
    /// Wait before overflow.
    pub overflow_after_us: i64,
    /// What happens to an untaken transfer.
    pub transfer_fallback: TransferFallback,
    /// Wrap-up limit; 0 means none.
    pub wrap_up_time_limit_us: i64,
    /// Microseconds since the epoch.
    pub create_time: i64,
    /// Microseconds since the epoch.
    pub update_time: i64,
}

impl Queue {
    /// Whether conversations on `channel` may wait here.
    pub fn accepts(&self, channel: Channel) -> bool {
        self.accepted_channels.contains(&channel)
    }
}

#[cfg(test)]
impl Queue {
    /// A queue `id` of tenant `t` for the rules' tests: web chat and voice, most available
    /// capacity, no limits, no overflow.
    pub(crate) fn sample(id: &str) -> Queue {
        Queue {
            id: id.to_owned(),
            tenant_id: "t".into(),
            program_id: "p".into(),
            display_name: "Support".into(),
            accepted_channels: vec![Channel::Webchat, Channel::Voice],
            assignment_method: AssignmentMethod::MostAvailableCapacity,
            max_open_per_agent: 0,
            offer_timeout_us: 30_000_000,
            logout_behavior: LogoutBehavior::Keep,
            offer_waiting_on_login: true,
            required_skills: vec![],
            priority: 0,
            overflow_queue_id: None,
            overflow_after_us: 0,
            transfer_fallback: TransferFallback::ReturnToSender,
            wrap_up_time_limit_us: 0,
            create_time: 0,
            update_time: 0,
        }
    }
}

/// A skill a queue requires, with the lowest qualifying level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillRequirement {
    /// Skill name, compared without case.
    pub name: String,
    /// 1 to 10.
    pub min_level: i32,
}

/// Units one conversation on a channel costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCost {
    /// Contract number of the channel.
    pub channel: i32,
    /// At least 1.
    pub units: i32,
}

/// An agent's units and what each channel costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityProfile {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Units in all, at least 1.
    pub total_units: i32,
    /// Per-channel costs; unlisted channels cost 1.
    pub channel_costs: Vec<ChannelCost>,
    /// Channels an agent of this profile never receives.
    pub excluded_channels: Vec<Channel>,
}

/// Units a conversation on `channel` costs under `costs`; unlisted channels cost 1.
pub fn channel_units(costs: &[ChannelCost], channel: Channel) -> i32 {
    costs
        .iter()
        .find(|cost| cost.channel == channel.as_i32())
        .map_or(1, |cost| cost.units)
}

/// A skill with a level from 1 to 10.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    /// Skill name.
    pub name: String,
    /// 1 (basic) to 10 (expert).
    pub level: i32,
}

/// An agent's routing profile and live state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Owning tenant.
    pub tenant_id: String,
    /// The agent's user id.
    pub agent_id: String,
    /// The directory's display name as routing last saw it (taken from the directory when
    /// the profile is set, refreshed by the agent's own calls).
    pub display_name: String,
    /// Capacity profile the units come from.
    pub capacity_profile_id: String,
    /// Units in all (copied from the profile).
    pub capacity_total: i32,
    /// Channel costs (copied from the profile).
    pub channel_costs: Vec<ChannelCost>,
    /// Channels never offered to the agent (copied from the profile).
    pub excluded_channels: Vec<Channel>,
    /// Member queues.
    pub queue_ids: Vec<String>,
    /// Skills.
    pub skills: Vec<Skill>,
    /// Current presence.
    pub presence: Presence,
    /// Free-text reason.
    pub presence_reason: String,
    /// When the presence last changed.
    pub presence_change_time: i64,
    /// Since when the agent has been without new work, for longest-idle ranking.
    pub idle_since: i64,
    /// When the agent last left Offline (logged in); 0 when never recorded.
    pub login_time: i64,
    /// Units held by assigned conversations.
    pub capacity_used: i32,
    /// Units promised to pending offers.
    pub pending_units: i32,
}

impl Agent {
    /// The presence others see: the one the agent (or a supervisor) chose, except that an
    /// Available agent whose capacity is all taken shows Busy until some frees.
    pub fn shown_presence(&self) -> Presence {
        crate::domain::presence::shown(self.presence, self.capacity_used, self.capacity_total)
    }

    /// Whether the agent's capacity profile excludes `channel`.
    pub fn excludes(&self, channel: Channel) -> bool {
        self.excluded_channels.contains(&channel)
    }

    /// The agent's capacity ledger.
    pub fn capacity(&self) -> crate::domain::capacity::Capacity {
        crate::domain::capacity::Capacity {
            total: self.capacity_total,
            used: self.capacity_used,
            pending: self.pending_units,
        }
    }
}

/// A waiting conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingItem {
    /// The conversation.
    pub conversation_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The queue it waits in.
    pub queue_id: String,
    /// Its channel.
    pub channel: Channel,
    /// Shown on offers.
    pub customer_display_name: String,
    /// The customer's address on the channel, shown on offers.
    pub channel_address: String,
    /// When the customer started waiting (keeps its place across offers).
    pub enqueue_time: i64,
    /// When routing took this enqueue; rejections before it do not count.
    pub entered_time: i64,
    /// Whether an offer is pending for it.
    pub offered: bool,
    /// The queue's priority.
    pub priority: i32,
}

/// An offer of a conversation to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// UUID.
    pub id: String,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The queue it waited in.
    pub queue_id: String,
    /// The agent offered to.
    pub agent_id: String,
    /// The conversation's channel.
    pub channel: Channel,
    /// Why the offer was made.
    pub kind: OfferKind,
    /// Where it stands.
    pub state: OfferState,
    /// When it was made.
    pub create_time: i64,
    /// Deadline.
    pub expire_time: i64,
    /// When it was resolved.
    pub resolve_time: Option<i64>,
    /// The customer's display name.
    pub customer_display_name: String,
    /// Units the conversation takes when accepted.
    pub capacity_units: i32,
    /// The customer's address on the channel.
    pub channel_address: String,
    /// The queue's name when the offer was made.
    pub queue_display_name: String,
    /// When the conversation started waiting.
    pub wait_start_time: i64,
    /// The agent's reason when rejecting; empty otherwise.
    pub reject_reason: String,
    /// The transfer or invitation (conversation-svc's id) a directed offer proposes; empty
    /// for a queue offer.
    pub reference_id: String,
    /// Who sent the transfer or invitation; empty for a queue offer.
    pub sender_id: String,
    /// That user's display name.
    pub sender_display_name: String,
    /// The sender's note.
    pub note: String,
}

/// One agent's part in a routing decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The agent.
    pub agent_id: String,
    /// Contract number of the [`PassReason`].
    pub reason: i32,
    /// Free units at decision time.
    pub free_units: i32,
}

/// Agents of a decision counted rather than listed, for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    /// Contract number of the [`PassReason`].
    pub reason: i32,
    /// How many agents.
    pub count: i32,
}

/// A routing decision record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingDecision {
    /// UUID of the record.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// The offer made; `None` when nobody was eligible.
    pub offer_id: Option<String>,
    /// The conversation routed.
    pub conversation_id: String,
    /// The queue it waited in.
    pub queue_id: String,
    /// The method used.
    pub assignment_method: AssignmentMethod,
    /// The agents considered, at most [`crate::domain::matching::LISTED_CANDIDATES`].
    pub candidates: Vec<Candidate>,
    /// The others, counted by reason.
    pub omitted: Vec<Omitted>,
    /// When it was decided.
    pub decide_time: i64,
}

/// Live numbers of one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Conversations waiting (offered or not).
    pub waiting: i32,
    /// Enqueue time of the longest-waiting one.
    pub oldest_enqueue_time: Option<i64>,
    /// Member agents Available.
    pub agents_available: i32,
    /// Member agents signed in but not Available.
    pub agents_unavailable: i32,
    /// Pending offers of the queue.
    pub pending_offers: i32,
}
