//! `switchboard.routing.v1.QueueService`: programs, queues, capacity profiles, agents'
//! routing profiles, live state and routing decision records.

use std::time::Duration;

use switchboard_proto::routing::v1 as pb;
use switchboard_proto::routing::v1::queue_service_server::QueueService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::identity::Role;
use switchboard_server_kit::mask_pans;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::api::{
    Begun, MAX_TEXT, RequestKey, begin_mutation, caller, caller_agent_id, caller_tenant,
    checked_caller, commit_mutation, display_name, optional_id, parse_id, require_any, required,
    respond,
};
use crate::convert::{self, duration_micros, timestamp_micros};
use crate::domain::membership::name_if_not_a_member;
use crate::domain::profile;
use crate::domain::transfer::{CandidateQueue, TargetKind, TransferTarget, transfer_targets};
use crate::domain::{
    AssignmentMethod, CapacityProfile, Channel, ChannelCost, LogoutBehavior, OfferKind, OfferState,
    Program, Queue, Skill, SkillRequirement, TransferFallback,
};
use crate::engine::{Context, streams};
use crate::error::{Error, Result};
use crate::store::Tx;
use crate::store::catalog::{self, AgentProfileInput, QueueLock};
use crate::store::page::{self, PageRequest};
use crate::store::routing::{self, DecisionFilter, OfferFilter};
use tokio_stream::wrappers::ReceiverStream;

const CREATE_PROGRAM: &str = "/switchboard.routing.v1.QueueService/CreateProgram";
const CREATE_QUEUE: &str = "/switchboard.routing.v1.QueueService/CreateQueue";
const UPDATE_QUEUE: &str = "/switchboard.routing.v1.QueueService/UpdateQueue";
const DELETE_QUEUE: &str = "/switchboard.routing.v1.QueueService/DeleteQueue";
const CREATE_CAPACITY_PROFILE: &str = "/switchboard.routing.v1.QueueService/CreateCapacityProfile";
const SET_AGENT_PROFILE: &str = "/switchboard.routing.v1.QueueService/SetAgentProfile";

/// Default time an agent has to answer an offer.
pub const DEFAULT_OFFER_TIMEOUT_US: i64 = 30_000_000;
/// Longest offer timeout: an offer waiting longer than a day is not an offer any more.
const MAX_OFFER_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Longest wait before overflow.
const MAX_OVERFLOW_AFTER: Duration = Duration::from_secs(30 * 86_400);
/// Longest wrap-up time limit.
const MAX_WRAP_UP_TIME_LIMIT: Duration = Duration::from_secs(86_400);
/// Longest skill name accepted.
const MAX_SKILL: usize = 100;
/// Most skills a queue may require.
const MAX_REQUIRED_SKILLS: usize = 20;
/// Most paths one update mask may name.
const MAX_MASK_PATHS: usize = 64;
/// Queue settings UpdateQueue changes, as update_mask names them; `*` names them all.
const UPDATABLE_QUEUE_FIELDS: &[&str] = &[
    "display_name",
    "accepted_channels",
    "assignment_method",
    "max_open_per_agent",
    "offer_timeout",
    "logout_behavior",
    "offer_waiting_on_login",
    "required_skills",
    "priority",
    "overflow_queue_id",
    "overflow_after",
    "transfer_fallback",
    "wrap_up_time_limit",
];
/// Queue fields no update changes.
const FIXED_QUEUE_FIELDS: &[&str] = &[
    "id",
    "tenant_id",
    "program_id",
    "create_time",
    "update_time",
];
/// Most values in one ListOffers filter list.
const MAX_FILTER_VALUES: usize = 10;
/// Most queues one agent profile may name.
const MAX_PROFILE_QUEUES: usize = 500;
/// Most skills one agent profile may list.
const MAX_PROFILE_SKILLS: usize = 100;

const ADMIN: &[Role] = &[Role::Administrator];
const READERS: &[Role] = &[Role::Supervisor, Role::Administrator];
const QUEUE_READERS: &[Role] = &[Role::Agent, Role::Supervisor, Role::Administrator];

/// Serves QueueService.
#[derive(Clone)]
pub struct QueueApi {
    context: Context,
}

impl QueueApi {
    /// The service over `context`.
    pub fn new(context: Context) -> QueueApi {
        QueueApi { context }
    }
}

/// A required channel field.
pub(crate) fn parse_channel(field: &str, value: i32) -> Result<Channel> {
    match Channel::from_i32(value) {
        Some(channel) => Ok(channel),
        None if value == 0 => Err(Error::invalid(field, "is required")),
        None => Err(Error::invalid(field, "is not a known channel")),
    }
}

/// An optional enum field: `default` when 0, INVALID_ARGUMENT when unknown.
fn enum_or<T>(field: &str, value: i32, default: T, from: fn(i32) -> Option<T>) -> Result<T> {
    if value == 0 {
        return Ok(default);
    }
    from(value).ok_or_else(|| Error::invalid(field, "is not a known value"))
}

/// Validates a queue to create, filling in defaults.
fn validate_queue(tenant_id: &str, input: &pb::Queue, now: i64) -> Result<Queue> {
    let program_id = parse_id("queue.program_id", &input.program_id)?;
    let name = display_name("queue.display_name", &input.display_name)?;
    if input.accepted_channels.is_empty() {
        return Err(Error::invalid(
            "queue.accepted_channels",
            "needs at least one channel",
        ));
    }
    let mut channels = Vec::new();
    for value in &input.accepted_channels {
        let channel = parse_channel("queue.accepted_channels", *value)?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    let assignment_method = enum_or(
        "queue.assignment_method",
        input.assignment_method,
        AssignmentMethod::MostAvailableCapacity,
        AssignmentMethod::from_i32,
    )?;
    if input.max_open_per_agent < 0 {
        return Err(Error::invalid(
            "queue.max_open_per_agent",
            "must not be negative",
        ));
    }
    let offer_timeout_us = match duration_micros(
        "queue.offer_timeout",
        input.offer_timeout.as_ref(),
        MAX_OFFER_TIMEOUT,
    )? {
        None | Some(0) => DEFAULT_OFFER_TIMEOUT_US,
        Some(us) => us,
    };
    let logout_behavior = enum_or(
        "queue.logout_behavior",
        input.logout_behavior,
        LogoutBehavior::Keep,
        LogoutBehavior::from_i32,
    )?;
    let skills = validate_required_skills(&input.required_skills)?;
    let overflow_queue_id = optional_id("queue.overflow_queue_id", &input.overflow_queue_id)?;
    let overflow_after_us = duration_micros(
        "queue.overflow_after",
        input.overflow_after.as_ref(),
        MAX_OVERFLOW_AFTER,
    )?
    .unwrap_or(0);
    let transfer_fallback = enum_or(
        "queue.transfer_fallback",
        input.transfer_fallback,
        TransferFallback::ReturnToSender,
        TransferFallback::from_i32,
    )?;
    let wrap_up_time_limit_us = duration_micros(
        "queue.wrap_up_time_limit",
        input.wrap_up_time_limit.as_ref(),
        MAX_WRAP_UP_TIME_LIMIT,
    )?
    .unwrap_or(0);
    Ok(Queue {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.to_owned(),
        program_id,
        display_name: name,
        accepted_channels: channels,
        assignment_method,
        max_open_per_agent: input.max_open_per_agent,
        offer_timeout_us,
        logout_behavior,
        // Unset means true: a new agent signing in drains the backlog.
        offer_waiting_on_login: input.offer_waiting_on_login.unwrap_or(true),
        required_skills: skills,
        priority: input.priority,
        overflow_queue_id,
        overflow_after_us,
        transfer_fallback,
        wrap_up_time_limit_us,
        create_time: now,
        update_time: now,
    })
}

/// The queue settings an update mask names, checked: snake_case or lowerCamelCase paths
/// of [`UPDATABLE_QUEUE_FIELDS`], or `*` for all of them.
fn queue_mask(mask: &prost_types::FieldMask) -> Result<Vec<&'static str>> {
    const FIELD: &str = "update_mask";
    if mask.paths.is_empty() {
        return Err(Error::invalid(FIELD, "must name at least one field"));
    }
    if mask.paths.len() > MAX_MASK_PATHS {
        return Err(Error::invalid(
            FIELD,
            format!("may name at most {MAX_MASK_PATHS} fields"),
        ));
    }
    let mut fields: Vec<&'static str> = Vec::new();
    for path in &mask.paths {
        let snake = switchboard_server_kit::fields::snake_case_path(path.trim());
        if snake == "*" {
            return Ok(UPDATABLE_QUEUE_FIELDS.to_vec());
        }
        if let Some(field) = UPDATABLE_QUEUE_FIELDS.iter().find(|f| **f == snake) {
            if !fields.contains(field) {
                fields.push(field);
            }
        } else if FIXED_QUEUE_FIELDS.contains(&snake.as_str()) {
            return Err(Error::invalid(FIELD, format!("{snake} cannot be changed")));
        } else {
            let shown: String = mask_pans(path).chars().take(MAX_SKILL).collect();
            return Err(Error::invalid(
                FIELD,
                format!(
                    "\"{shown}\" is not a queue setting; use one of {}",
                    UPDATABLE_QUEUE_FIELDS.join(", ")
                ),
            ));
        }
    }
    Ok(fields)
}

/// `current` with the settings named in `fields` taken from `input`.
fn merge_queue(mut current: pb::Queue, input: pb::Queue, fields: &[&str]) -> pb::Queue {
    for field in fields {
        match *field {
            "display_name" => current.display_name.clone_from(&input.display_name),
            "accepted_channels" => current
                .accepted_channels
                .clone_from(&input.accepted_channels),
            "assignment_method" => current.assignment_method = input.assignment_method,
            "max_open_per_agent" => current.max_open_per_agent = input.max_open_per_agent,
            "offer_timeout" => current.offer_timeout = input.offer_timeout,
            "logout_behavior" => current.logout_behavior = input.logout_behavior,
            "offer_waiting_on_login" => {
                current.offer_waiting_on_login = input.offer_waiting_on_login;
            }
            "required_skills" => current.required_skills.clone_from(&input.required_skills),
            "priority" => current.priority = input.priority,
            "overflow_queue_id" => current
                .overflow_queue_id
                .clone_from(&input.overflow_queue_id),
            "overflow_after" => current.overflow_after = input.overflow_after,
            "transfer_fallback" => current.transfer_fallback = input.transfer_fallback,
            "wrap_up_time_limit" => current.wrap_up_time_limit = input.wrap_up_time_limit,
            _ => {}
        }
    }
    current
}

/// Checks where `queue` overflows to: a queue of the tenant, not the queue itself, and not
/// a chain of overflows that comes back to it.
async fn check_overflow(tx: &mut Tx, queue: &Queue) -> Result<()> {
    const FIELD: &str = "queue.overflow_queue_id";
    let Some(first) = &queue.overflow_queue_id else {
        return Ok(());
    };
    if *first == queue.id {
        return Err(Error::invalid(FIELD, "a queue cannot overflow into itself"));
    }
    let mut chain = vec![queue.display_name.clone()];
    let mut next = Some(first.clone());
    while let Some(id) = next {
        let target = catalog::get_queue(tx.conn(), &queue.tenant_id, &id)
            .await?
            .ok_or_else(|| Error::not_found("overflow queue", &id))?;
        chain.push(target.display_name.clone());
        if target.overflow_queue_id.as_deref() == Some(queue.id.as_str()) {
            chain.push(queue.display_name.clone());
            return Err(Error::invalid(
                FIELD,
                format!("would overflow in a cycle: {}", chain.join(" → ")),
            ));
        }
        // Existing chains are acyclic (each update is checked), so this ends; the bound
        // only guards against a store changed by hand.
        if chain.len() > 1_000 {
            break;
        }
        next = target.overflow_queue_id;
    }
    Ok(())
}

/// Why a queue cannot be deleted yet, with what to do about it.
fn in_use_message(queue: &Queue, used: &catalog::QueueUse) -> String {
    let mut held = Vec::new();
    if used.waiting > 0 {
        held.push(format!("{} conversations waiting", used.waiting));
    }
    if used.held > 0 {
        held.push(format!("{} conversations held by agents", used.held));
    }
    if used.pending_offers > 0 {
        held.push(format!("{} offers not yet answered", used.pending_offers));
    }
    if !used.overflow_from.is_empty() {
        held.push(format!(
            "queues overflowing into it ({})",
            used.overflow_from.join(", ")
        ));
    }
    format!(
        "queue \"{}\" still has {}; move or close its conversations and point the other \
         queues' overflow elsewhere first",
        queue.display_name,
        held.join(", ")
    )
}

/// Validates a queue's required skills: at most 20, names of 1 to 100 characters listed
/// once (without regard to case), minimum levels 1 to 10 where 0 means 1.
fn validate_required_skills(input: &[pb::SkillRequirement]) -> Result<Vec<SkillRequirement>> {
    const FIELD: &str = "queue.required_skills";
    if input.len() > MAX_REQUIRED_SKILLS {
        return Err(Error::invalid(
            FIELD,
            format!("may list at most {MAX_REQUIRED_SKILLS} skills"),
        ));
    }
    let mut skills: Vec<SkillRequirement> = Vec::with_capacity(input.len());
    for skill in input {
        let masked = mask_pans(skill.name.trim());
        let name = masked.as_ref();
        if name.is_empty() || name.chars().count() > MAX_SKILL {
            return Err(Error::invalid(
                "queue.required_skills.name",
                format!("needs 1 to {MAX_SKILL} characters"),
            ));
        }
        let min_level = match skill.min_level {
            0 => 1,
            level @ 1..=10 => level,
            _ => {
                return Err(Error::invalid(
                    "queue.required_skills.min_level",
                    "must be from 1 to 10 (0 means 1)",
                ));
            }
        };
        if skills.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
            return Err(Error::invalid(
                FIELD,
                format!("lists skill \"{name}\" twice"),
            ));
        }
        skills.push(SkillRequirement {
            name: name.to_owned(),
            min_level,
        });
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(skills)
}

/// Validates a capacity profile to create.
fn validate_capacity_profile(
    tenant_id: &str,
    input: &pb::CapacityProfile,
) -> Result<CapacityProfile> {
    let name = display_name("capacity_profile.display_name", &input.display_name)?;
    if input.total_units < 1 {
        return Err(Error::invalid(
            "capacity_profile.total_units",
            "must be at least 1",
        ));
    }
    let mut costs: Vec<ChannelCost> = Vec::new();
    for cost in &input.channel_costs {
        let channel = parse_channel("capacity_profile.channel_costs.channel", cost.channel)?;
        if cost.units < 1 {
            return Err(Error::invalid(
                "capacity_profile.channel_costs.units",
                "must be at least 1",
            ));
        }
        if costs.iter().any(|c| c.channel == channel.as_i32()) {
            return Err(Error::invalid(
                "capacity_profile.channel_costs",
                "lists a channel twice",
            ));
        }
        costs.push(ChannelCost {
            channel: channel.as_i32(),
            units: cost.units,
        });
    }
    let mut excluded: Vec<Channel> = Vec::new();
    for value in &input.excluded_channels {
        let channel = parse_channel("capacity_profile.excluded_channels", *value)?;
        if excluded.contains(&channel) {
            return Err(Error::invalid(
                "capacity_profile.excluded_channels",
                "lists a channel twice",
            ));
        }
        if costs.iter().any(|c| c.channel == channel.as_i32()) {
            return Err(Error::invalid(
                "capacity_profile.excluded_channels",
                format!("excludes {channel:?}, which channel_costs also costs"),
            ));
        }
        excluded.push(channel);
    }
    Ok(CapacityProfile {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.to_owned(),
        display_name: name,
        total_units: input.total_units,
        channel_costs: costs,
        excluded_channels: excluded,
    })
}

/// The parts of an agent profile that need no database to check. The display name is not
/// one of them: it is the directory's, refreshed when the agent calls routing.
struct ProfileFields {
    agent_id: String,
    capacity_profile_id: String,
    queue_ids: Vec<String>,
    skills: Vec<Skill>,
}

fn validate_agent_profile(input: &pb::AgentProfile) -> Result<ProfileFields> {
    let agent_id = parse_id("agent_profile.agent_id", &input.agent_id)?;
    let capacity_profile_id = parse_id(
        "agent_profile.capacity_profile_id",
        &input.capacity_profile_id,
    )?;
    // Bounded before any work: duplicate checks below are quadratic.
    if input.queue_ids.len() > MAX_PROFILE_QUEUES {
        return Err(Error::invalid(
            "agent_profile.queue_ids",
            format!("may list at most {MAX_PROFILE_QUEUES} queues"),
        ));
    }
    if input.skills.len() > MAX_PROFILE_SKILLS {
        return Err(Error::invalid(
            "agent_profile.skills",
            format!("may list at most {MAX_PROFILE_SKILLS} skills"),
        ));
    }
    let mut queue_ids = Vec::new();
    for queue_id in &input.queue_ids {
        let queue_id = parse_id("agent_profile.queue_ids", queue_id)?;
        if !queue_ids.contains(&queue_id) {
            queue_ids.push(queue_id);
        }
    }
    let mut skills: Vec<Skill> = Vec::new();
    for skill in &input.skills {
        let masked = mask_pans(skill.name.trim());
        let name = masked.as_ref();
        if name.is_empty() || name.chars().count() > MAX_SKILL {
            return Err(Error::invalid(
                "agent_profile.skills.name",
                format!("needs 1 to {MAX_SKILL} characters"),
            ));
        }
        if !(1..=10).contains(&skill.level) {
            return Err(Error::invalid(
                "agent_profile.skills.level",
                "must be from 1 to 10",
            ));
        }
        if skills.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
            return Err(Error::invalid(
                "agent_profile.skills",
                format!("lists skill \"{name}\" twice"),
            ));
        }
        skills.push(Skill {
            name: name.to_owned(),
            level: skill.level,
        });
    }
    Ok(ProfileFields {
        agent_id,
        capacity_profile_id,
        queue_ids,
        skills,
    })
}

/// Checks a list filter of contract enum numbers: at most ten known values.
fn enum_list<T: PartialEq>(
    field: &str,
    values: &[i32],
    from: fn(i32) -> Option<T>,
) -> Result<Vec<T>> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            field,
            format!("may list at most {MAX_FILTER_VALUES} values"),
        ));
    }
    let mut parsed = Vec::with_capacity(values.len());
    for value in values {
        let item = from(*value).ok_or_else(|| Error::invalid(field, "is not a known value"))?;
        if !parsed.contains(&item) {
            parsed.push(item);
        }
    }
    Ok(parsed)
}

/// An optional time range of a list filter as [start, end) microseconds; INVALID_ARGUMENT
/// unless both ends are set and start is before end.
fn time_range(
    field: &str,
    range: Option<&switchboard_proto::common::v1::TimeRange>,
) -> Result<Option<(i64, i64)>> {
    let Some(range) = range else {
        return Ok(None);
    };
    let start_field = format!("{field}.start_time");
    let end_field = format!("{field}.end_time");
    let start = timestamp_micros(
        &start_field,
        required(&start_field, range.start_time.as_ref())?,
    )?;
    let end = timestamp_micros(&end_field, required(&end_field, range.end_time.as_ref())?)?;
    if start >= end {
        return Err(Error::invalid(field, "start_time must be before end_time"));
    }
    Ok(Some((start, end)))
}

/// Validates the filters of ListOffers.
fn validate_offer_filter(req: &pb::ListOffersRequest) -> Result<OfferFilter> {
    let created = time_range("create_time_range", req.create_time_range.as_ref())?;
    Ok(OfferFilter {
        conversation_id: optional_id("conversation_id", &req.conversation_id)?,
        agent_id: optional_id("agent_id", &req.agent_id)?,
        queue_id: optional_id("queue_id", &req.queue_id)?,
        kinds: enum_list("kinds", &req.kinds, OfferKind::from_i32)?,
        states: enum_list("states", &req.states, OfferState::from_i32)?,
        created,
    })
}

impl QueueApi {
    async fn create_program_impl(
        &self,
        request: Request<pb::CreateProgramRequest>,
    ) -> Result<pb::CreateProgramResponse> {
        let (identity, tenant_id) = checked_caller(&request, ADMIN, "QueueService/CreateProgram")?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, CREATE_PROGRAM, &req.request_id, &req)?;
        let input = required("program", req.program)?;
        let program = Program {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant_id.clone(),
            display_name: display_name("program.display_name", &input.display_name)?,
            create_time: now_micros(),
        };
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        catalog::insert_program(&mut tx, &program).await?;
        let response = pb::CreateProgramResponse {
            program: Some(convert::program(&program)),
        };
        commit_mutation(tx, &key, &response).await?;
        info!(program_id = %program.id, "program created");
        Ok(response)
    }

    async fn get_program_impl(
        &self,
        request: Request<pb::GetProgramRequest>,
    ) -> Result<pb::GetProgramResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/GetProgram")?;
        let program_id = parse_id("program_id", &request.get_ref().program_id)?;
        let mut conn = self.context.store.conn().await?;
        let program = catalog::get_program(&mut conn, &tenant_id, &program_id)
            .await?
            .ok_or_else(|| Error::not_found("program", &program_id))?;
        Ok(pb::GetProgramResponse {
            program: Some(convert::program(&program)),
        })
    }

    async fn list_programs_impl(
        &self,
        request: Request<pb::ListProgramsRequest>,
    ) -> Result<pb::ListProgramsResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/ListPrograms")?;
        let req = request.get_ref();
        let page = PageRequest::parse("programs", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (programs, next_page_token) =
            catalog::list_programs(&mut conn, &tenant_id, &page).await?;
        Ok(pb::ListProgramsResponse {
            programs: programs.iter().map(convert::program).collect(),
            next_page_token,
        })
    }

    async fn create_queue_impl(
        &self,
        request: Request<pb::CreateQueueRequest>,
    ) -> Result<pb::CreateQueueResponse> {
        let (identity, tenant_id) = checked_caller(&request, ADMIN, "QueueService/CreateQueue")?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, CREATE_QUEUE, &req.request_id, &req)?;
        let input = required("queue", req.queue)?;
        let queue = validate_queue(&tenant_id, &input, now_micros())?;
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        catalog::get_program(tx.conn(), &tenant_id, &queue.program_id)
            .await?
            .ok_or_else(|| Error::not_found("program", &queue.program_id))?;
        check_overflow(&mut tx, &queue).await?;
        catalog::insert_queue(&mut tx, &queue).await?;
        let response = pb::CreateQueueResponse {
            queue: Some(convert::queue(&queue)),
        };
        commit_mutation(tx, &key, &response).await?;
        info!(queue_id = %queue.id, program_id = %queue.program_id, "queue created");
        Ok(response)
    }

    async fn get_queue_impl(
        &self,
        request: Request<pb::GetQueueRequest>,
    ) -> Result<pb::GetQueueResponse> {
        let (_, tenant_id) = checked_caller(&request, QUEUE_READERS, "QueueService/GetQueue")?;
        let queue_id = parse_id("queue_id", &request.get_ref().queue_id)?;
        let mut conn = self.context.store.conn().await?;
        let queue = catalog::get_queue(&mut conn, &tenant_id, &queue_id)
            .await?
            .ok_or_else(|| Error::not_found("queue", &queue_id))?;
        Ok(pb::GetQueueResponse {
            queue: Some(convert::queue(&queue)),
        })
    }

    async fn list_queues_impl(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Result<pb::ListQueuesResponse> {
        let (_, tenant_id) = checked_caller(&request, QUEUE_READERS, "QueueService/ListQueues")?;
        let req = request.get_ref();
        let program_id = optional_id("program_id", &req.program_id)?.unwrap_or_default();
        let page = PageRequest::parse("queues", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (queues, next_page_token) =
            catalog::list_queues(&mut conn, &tenant_id, &program_id, &page).await?;
        Ok(pb::ListQueuesResponse {
            queues: queues.iter().map(convert::queue).collect(),
            next_page_token,
        })
    }

    async fn update_queue_impl(
        &self,
        request: Request<pb::UpdateQueueRequest>,
    ) -> Result<pb::UpdateQueueResponse> {
        let (identity, tenant_id) = checked_caller(&request, ADMIN, "QueueService/UpdateQueue")?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, UPDATE_QUEUE, &req.request_id, &req)?;
        let input = required("queue", req.queue)?;
        let queue_id = parse_id("queue.id", &input.id)?;
        let fields = queue_mask(&required("update_mask", req.update_mask)?)?;
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        // Locked: two updates of one queue apply one after the other, neither lost.
        let current = catalog::queue_for_write(&mut tx, &tenant_id, &queue_id, QueueLock::Locked)
            .await?
            .ok_or_else(|| Error::not_found("queue", &queue_id))?;
        let merged = merge_queue(convert::queue(&current), input, &fields);
        let queue = Queue {
            id: current.id.clone(),
            create_time: current.create_time,
            ..validate_queue(&tenant_id, &merged, now_micros())?
        };
        if queue.overflow_queue_id.is_some() && queue.overflow_queue_id != current.overflow_queue_id
        {
            catalog::serialize_overflow_changes(&mut tx, &tenant_id).await?;
        }
        check_overflow(&mut tx, &queue).await?;
        catalog::update_queue(&mut tx, &queue).await?;
        if (&queue.overflow_queue_id, queue.overflow_after_us)
            != (&current.overflow_queue_id, current.overflow_after_us)
        {
            routing::reschedule_overflow(tx.conn(), &queue).await?;
        }
        let response = pb::UpdateQueueResponse {
            queue: Some(convert::queue(&queue)),
        };
        commit_mutation(tx, &key, &response).await?;
        // Waiting work is matched under the new settings from the next pass: now.
        self.context.wake_matcher();
        info!(queue_id = %queue.id, fields = ?fields, "queue updated");
        Ok(response)
    }

    async fn delete_queue_impl(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Result<pb::DeleteQueueResponse> {
        let (identity, tenant_id) = checked_caller(&request, ADMIN, "QueueService/DeleteQueue")?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, DELETE_QUEUE, &req.request_id, &req)?;
        let queue_id = parse_id("queue_id", &req.queue_id)?;
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let queue = catalog::queue_for_write(&mut tx, &tenant_id, &queue_id, QueueLock::Locked)
            .await?
            .ok_or_else(|| Error::not_found("queue", &queue_id))?;
        let used = catalog::queue_use(&mut tx, &tenant_id, &queue_id).await?;
        if !used.is_empty() {
            return Err(Error::WrongState(in_use_message(&queue, &used)));
        }
        catalog::delete_queue(&mut tx, &tenant_id, &queue_id, now_micros()).await?;
        let response = pb::DeleteQueueResponse {};
        commit_mutation(tx, &key, &response).await?;
        info!(queue_id = %queue_id, "queue deleted");
        Ok(response)
    }

    async fn create_capacity_profile_impl(
        &self,
        request: Request<pb::CreateCapacityProfileRequest>,
    ) -> Result<pb::CreateCapacityProfileResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, ADMIN, "QueueService/CreateCapacityProfile")?;
        let req = request.into_inner();
        let key = RequestKey::parse(
            &identity,
            &tenant_id,
            CREATE_CAPACITY_PROFILE,
            &req.request_id,
            &req,
        )?;
        let input = required("capacity_profile", req.capacity_profile)?;
        let profile = validate_capacity_profile(&tenant_id, &input)?;
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        catalog::insert_capacity_profile(&mut tx, &profile, now_micros()).await?;
        let response = pb::CreateCapacityProfileResponse {
            capacity_profile: Some(convert::capacity_profile(&profile)),
        };
        commit_mutation(tx, &key, &response).await?;
        info!(capacity_profile_id = %profile.id, "capacity profile created");
        Ok(response)
    }

    async fn list_capacity_profiles_impl(
        &self,
        request: Request<pb::ListCapacityProfilesRequest>,
    ) -> Result<pb::ListCapacityProfilesResponse> {
        let (_, tenant_id) =
            checked_caller(&request, READERS, "QueueService/ListCapacityProfiles")?;
        let req = request.get_ref();
        let page = PageRequest::parse("capacity_profiles", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (profiles, next_page_token) =
            catalog::list_capacity_profiles(&mut conn, &tenant_id, &page).await?;
        Ok(pb::ListCapacityProfilesResponse {
            capacity_profiles: profiles.iter().map(convert::capacity_profile).collect(),
            next_page_token,
        })
    }

    async fn set_agent_profile_impl(
        &self,
        request: Request<pb::SetAgentProfileRequest>,
    ) -> Result<pb::SetAgentProfileResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, ADMIN, "QueueService/SetAgentProfile")?;
        let req = request.into_inner();
        let key = RequestKey::parse(
            &identity,
            &tenant_id,
            SET_AGENT_PROFILE,
            &req.request_id,
            &req,
        )?;
        let input = required("agent_profile", req.agent_profile)?;
        let fields = validate_agent_profile(&input)?;
        // A retry is answered before the directory is asked again, so it gets the first
        // answer even if the user has changed since.
        if let Some(response) = self.context.store.replay(&key.as_log_key()).await? {
            return Ok(response);
        }
        // Only a user of the caller's tenant may get a profile: routing holds no users,
        // so the directory decides, and gives the name shown with the profile. Asked
        // before the transaction, which must not wait on another service.
        let user = self
            .context
            .directory
            .user(&tenant_id, &fields.agent_id)
            .await?;
        let agent_name = profile::check_subject(&fields.agent_id, user)?;
        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let capacity =
            catalog::get_capacity_profile(tx.conn(), &tenant_id, &fields.capacity_profile_id)
                .await?
                .ok_or_else(|| Error::not_found("capacity profile", &fields.capacity_profile_id))?;
        for queue_id in &fields.queue_ids {
            catalog::get_queue(tx.conn(), &tenant_id, queue_id)
                .await?
                .ok_or_else(|| Error::not_found("queue", queue_id))?;
        }
        let agent = catalog::upsert_agent_profile(
            &mut tx,
            &AgentProfileInput {
                tenant_id: tenant_id.clone(),
                agent_id: fields.agent_id,
                display_name: agent_name,
                capacity,
                queue_ids: fields.queue_ids,
                skills: fields.skills,
            },
            now_micros(),
        )
        .await?;
        let response = pb::SetAgentProfileResponse {
            agent_profile: Some(convert::agent_profile(&agent)),
        };
        commit_mutation(tx, &key, &response).await?;
        self.context.wake_matcher();
        info!(agent_id = %agent.agent_id, "agent profile set");
        Ok(response)
    }

    async fn get_agent_profile_impl(
        &self,
        request: Request<pb::GetAgentProfileRequest>,
    ) -> Result<pb::GetAgentProfileResponse> {
        let identity = caller(&request)?;
        let tenant_id = caller_tenant(&identity)?;
        let agent_id = parse_id("agent_id", &request.get_ref().agent_id)?;
        let own = crate::api::caller_agent_id(&identity).ok().as_deref() == Some(agent_id.as_str());
        if !own {
            require_any(&identity, READERS, "QueueService/GetAgentProfile")?;
        }
        let mut conn = self.context.store.conn().await?;
        let agent = catalog::get_agent(&mut conn, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("agent {agent_id} has no routing profile")))?;
        Ok(pb::GetAgentProfileResponse {
            agent_profile: Some(convert::agent_profile(&agent)),
        })
    }

    async fn list_agent_profiles_impl(
        &self,
        request: Request<pb::ListAgentProfilesRequest>,
    ) -> Result<pb::ListAgentProfilesResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/ListAgentProfiles")?;
        let req = request.get_ref();
        let queue_id = optional_id("queue_id", &req.queue_id)?.unwrap_or_default();
        let page = PageRequest::parse("agents", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (agents, next_page_token) =
            catalog::list_agents(&mut conn, &tenant_id, &queue_id, &page).await?;
        Ok(pb::ListAgentProfilesResponse {
            agent_profiles: agents.iter().map(convert::agent_profile).collect(),
            next_page_token,
        })
    }

    async fn list_agent_states_impl(
        &self,
        request: Request<pb::ListAgentStatesRequest>,
    ) -> Result<pb::ListAgentStatesResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/ListAgentStates")?;
        let req = request.get_ref();
        let queue_id = optional_id("queue_id", &req.queue_id)?.unwrap_or_default();
        let page = PageRequest::parse("agents", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (agents, next_page_token) =
            catalog::list_agents(&mut conn, &tenant_id, &queue_id, &page).await?;
        let mut agent_states = Vec::with_capacity(agents.len());
        for agent in &agents {
            let (open, pending) =
                catalog::agent_load(&mut conn, &tenant_id, &agent.agent_id).await?;
            agent_states.push(convert::agent_state(agent, open, pending));
        }
        Ok(pb::ListAgentStatesResponse {
            agent_states,
            next_page_token,
        })
    }

    async fn get_queue_state_impl(
        &self,
        request: Request<pb::GetQueueStateRequest>,
    ) -> Result<pb::GetQueueStateResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/GetQueueState")?;
        let queue_id = parse_id("queue_id", &request.get_ref().queue_id)?;
        let mut conn = self.context.store.conn().await?;
        catalog::get_queue(&mut conn, &tenant_id, &queue_id)
            .await?
            .ok_or_else(|| Error::not_found("queue", &queue_id))?;
        let state = catalog::queue_state(&mut conn, &tenant_id, &queue_id).await?;
        Ok(pb::GetQueueStateResponse {
            queue_state: Some(convert::queue_state(&queue_id, &state)),
        })
    }

    async fn stream_agent_states_impl(
        &self,
        request: Request<pb::StreamAgentStatesRequest>,
    ) -> Result<ReceiverStream<std::result::Result<pb::StreamAgentStatesResponse, Status>>> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/StreamAgentStates")?;
        let queue_id = optional_id("queue_id", &request.get_ref().queue_id)?.unwrap_or_default();
        let team = match optional_id("team_id", &request.get_ref().team_id)? {
            None => None,
            Some(team_id) => {
                let directory = self.context.directory.clone();
                let members = directory
                    .team_members(&tenant_id, &team_id)
                    .await?
                    .ok_or_else(|| Error::not_found("team", &team_id))?;
                Some(streams::TeamFilter {
                    directory,
                    team_id,
                    members,
                })
            }
        };
        Ok(streams::agent_states(
            self.context.store.clone(),
            tenant_id,
            queue_id,
            team,
            self.context.pace(),
            self.context.shutdown.clone(),
        ))
    }

    async fn list_transfer_targets_impl(
        &self,
        request: Request<pb::ListTransferTargetsRequest>,
    ) -> Result<pb::ListTransferTargetsResponse> {
        let (identity, tenant_id) = checked_caller(
            &request,
            &[Role::Agent, Role::Supervisor],
            "QueueService/ListTransferTargets",
        )?;
        let req = request.into_inner();
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        if req.name_filter.chars().count() > MAX_TEXT {
            return Err(Error::invalid(
                "name_filter",
                format!("must be at most {MAX_TEXT} characters"),
            ));
        }
        let name_filter = req.name_filter.trim();
        use pb::list_transfer_targets_request::Kind;
        let kind = match Kind::try_from(req.kind) {
            Ok(Kind::Unspecified) => TargetKind::All,
            Ok(Kind::Queues) => TargetKind::Queues,
            Ok(Kind::Agents) => TargetKind::Agents,
            Err(_) => return Err(Error::invalid("kind", "is not a known value")),
        };
        let page = PageRequest::parse("transfer_targets", req.page_size, &req.page_token)?;
        let after = page.after.clone();
        if after.as_ref().is_some_and(|key| key.len() != 3) {
            return Err(Error::invalid(
                "page_token",
                "is not a token returned by this list",
            ));
        }
        let caller_id = caller_agent_id(&identity).unwrap_or_default();

        let mut conn = self.context.store.conn().await?;
        let not_routed =
            || Error::NotFound(format!("conversation {conversation_id} was never routed"));
        let (queue_id, channel) =
            routing::conversation_route(&mut conn, &tenant_id, &conversation_id)
                .await?
                .ok_or_else(not_routed)?;
        let queue = catalog::get_queue(&mut conn, &tenant_id, &queue_id)
            .await?
            .ok_or_else(not_routed)?;
        let mut candidates = Vec::new();
        for queue in catalog::program_queues(&mut conn, &tenant_id, &queue.program_id).await? {
            if !queue.accepts(channel) {
                continue;
            }
            let state = catalog::queue_state(&mut conn, &tenant_id, &queue.id).await?;
            let members = catalog::queue_members(&mut conn, &tenant_id, &queue.id).await?;
            candidates.push(CandidateQueue {
                queue,
                waiting: state.waiting,
                agents_available: state.agents_available,
                members,
            });
        }
        drop(conn);
        let targets: Vec<TransferTarget> =
            transfer_targets(&candidates, channel, &caller_id, name_filter, kind)
                .into_iter()
                .filter(|target| after.as_ref().is_none_or(|key| &target.sort_key() > key))
                .take(usize::try_from(page.fetch_limit()).unwrap_or(usize::MAX))
                .collect();
        let (targets, next_page_token) =
            page::finish("transfer_targets", &page, targets, TransferTarget::sort_key);
        Ok(pb::ListTransferTargetsResponse {
            targets: targets.iter().map(convert::transfer_target).collect(),
            next_page_token,
        })
    }

    async fn list_offers_impl(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<pb::ListOffersResponse> {
        let (_, tenant_id) = checked_caller(&request, READERS, "QueueService/ListOffers")?;
        let req = request.into_inner();
        let filter = validate_offer_filter(&req)?;
        let page = PageRequest::parse("offers", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        let (offers, next_page_token) =
            routing::list_offers(&mut conn, &tenant_id, &filter, &page).await?;
        Ok(pb::ListOffersResponse {
            offers: offers.iter().map(convert::offer).collect(),
            next_page_token,
        })
    }

    async fn list_routing_decisions_impl(
        &self,
        request: Request<pb::ListRoutingDecisionsRequest>,
    ) -> Result<pb::ListRoutingDecisionsResponse> {
        let (_, tenant_id) =
            checked_caller(&request, READERS, "QueueService/ListRoutingDecisions")?;
        let req = request.get_ref();
        let filter = DecisionFilter {
            conversation_id: optional_id("conversation_id", &req.conversation_id)?,
            queue_id: optional_id("queue_id", &req.queue_id)?,
            agent_id: optional_id("agent_id", &req.agent_id)?,
            decided: time_range("decide_time_range", req.decide_time_range.as_ref())?,
        };
        if filter.conversation_id.is_none()
            && filter.queue_id.is_none()
            && filter.agent_id.is_none()
        {
            return Err(Error::invalid(
                "conversation_id",
                "is required unless queue_id or agent_id is given",
            ));
        }
        let page = PageRequest::parse("routing_decisions", req.page_size, &req.page_token)?;
        let mut conn = self.context.store.conn().await?;
        if let Some(conversation_id) = &filter.conversation_id
            && !routing::conversation_known(&mut conn, &tenant_id, conversation_id).await?
        {
            return Err(Error::NotFound(format!(
                "conversation {conversation_id} was never routed"
            )));
        }
        if let Some(queue_id) = &filter.queue_id {
            catalog::get_queue(&mut conn, &tenant_id, queue_id)
                .await?
                .ok_or_else(|| Error::not_found("queue", queue_id))?;
        }
        let periods = match &filter.agent_id {
            Some(agent_id) => {
                catalog::get_agent(&mut conn, &tenant_id, agent_id)
                    .await?
                    .ok_or_else(|| Error::not_found("agent", agent_id))?;
                catalog::membership_periods(&mut conn, &tenant_id, agent_id).await?
            }
            None => Vec::new(),
        };
        let (mut decisions, next_page_token) =
            routing::list_decisions(&mut conn, &tenant_id, &filter, &page).await?;
        if let Some(agent_id) = &filter.agent_id {
            for decision in &mut decisions {
                name_if_not_a_member(decision, agent_id, &periods);
            }
        }
        Ok(pb::ListRoutingDecisionsResponse {
            routing_decisions: decisions.iter().map(convert::routing_decision).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    async fn create_program(
        &self,
        request: Request<pb::CreateProgramRequest>,
    ) -> std::result::Result<Response<pb::CreateProgramResponse>, Status> {
        respond(self.create_program_impl(request).await)
    }

    async fn get_program(
        &self,
        request: Request<pb::GetProgramRequest>,
    ) -> std::result::Result<Response<pb::GetProgramResponse>, Status> {
        respond(self.get_program_impl(request).await)
    }

    async fn list_programs(
        &self,
        request: Request<pb::ListProgramsRequest>,
    ) -> std::result::Result<Response<pb::ListProgramsResponse>, Status> {
        respond(self.list_programs_impl(request).await)
    }

    async fn create_queue(
        &self,
        request: Request<pb::CreateQueueRequest>,
    ) -> std::result::Result<Response<pb::CreateQueueResponse>, Status> {
        respond(self.create_queue_impl(request).await)
    }

    async fn get_queue(
        &self,
        request: Request<pb::GetQueueRequest>,
    ) -> std::result::Result<Response<pb::GetQueueResponse>, Status> {
        respond(self.get_queue_impl(request).await)
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> std::result::Result<Response<pb::ListQueuesResponse>, Status> {
        respond(self.list_queues_impl(request).await)
    }

    async fn update_queue(
        &self,
        request: Request<pb::UpdateQueueRequest>,
    ) -> std::result::Result<Response<pb::UpdateQueueResponse>, Status> {
        respond(self.update_queue_impl(request).await)
    }

    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> std::result::Result<Response<pb::DeleteQueueResponse>, Status> {
        respond(self.delete_queue_impl(request).await)
    }

    async fn create_capacity_profile(
        &self,
        request: Request<pb::CreateCapacityProfileRequest>,
    ) -> std::result::Result<Response<pb::CreateCapacityProfileResponse>, Status> {
        respond(self.create_capacity_profile_impl(request).await)
    }

    async fn list_capacity_profiles(
        &self,
        request: Request<pb::ListCapacityProfilesRequest>,
    ) -> std::result::Result<Response<pb::ListCapacityProfilesResponse>, Status> {
        respond(self.list_capacity_profiles_impl(request).await)
    }

    async fn set_agent_profile(
        &self,
        request: Request<pb::SetAgentProfileRequest>,
    ) -> std::result::Result<Response<pb::SetAgentProfileResponse>, Status> {
        respond(self.set_agent_profile_impl(request).await)
    }

    async fn get_agent_profile(
        &self,
        request: Request<pb::GetAgentProfileRequest>,
    ) -> std::result::Result<Response<pb::GetAgentProfileResponse>, Status> {
        respond(self.get_agent_profile_impl(request).await)
    }

    async fn list_agent_profiles(
        &self,
        request: Request<pb::ListAgentProfilesRequest>,
    ) -> std::result::Result<Response<pb::ListAgentProfilesResponse>, Status> {
        respond(self.list_agent_profiles_impl(request).await)
    }

    async fn list_agent_states(
        &self,
        request: Request<pb::ListAgentStatesRequest>,
    ) -> std::result::Result<Response<pb::ListAgentStatesResponse>, Status> {
        respond(self.list_agent_states_impl(request).await)
    }

    type StreamAgentStatesStream =
        ReceiverStream<std::result::Result<pb::StreamAgentStatesResponse, Status>>;

    async fn stream_agent_states(
        &self,
        request: Request<pb::StreamAgentStatesRequest>,
    ) -> std::result::Result<Response<Self::StreamAgentStatesStream>, Status> {
        respond(self.stream_agent_states_impl(request).await)
    }

    async fn get_queue_state(
        &self,
        request: Request<pb::GetQueueStateRequest>,
    ) -> std::result::Result<Response<pb::GetQueueStateResponse>, Status> {
        respond(self.get_queue_state_impl(request).await)
    }

    async fn list_transfer_targets(
        &self,
        request: Request<pb::ListTransferTargetsRequest>,
    ) -> std::result::Result<Response<pb::ListTransferTargetsResponse>, Status> {
        respond(self.list_transfer_targets_impl(request).await)
    }

    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> std::result::Result<Response<pb::ListOffersResponse>, Status> {
        respond(self.list_offers_impl(request).await)
    }

    async fn list_routing_decisions(
        &self,
        request: Request<pb::ListRoutingDecisionsRequest>,
    ) -> std::result::Result<Response<pb::ListRoutingDecisionsResponse>, Status> {
        respond(self.list_routing_decisions_impl(request).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_input() -> pb::Queue {
        pb::Queue {
            program_id: uuid::Uuid::new_v4().to_string(),
            display_name: " Billing ".into(),
            accepted_channels: vec![1, 1, 6],
            ..Default::default()
        }
    }

    #[test]
    fn queue_defaults_are_filled_in() {
        let queue = validate_queue("t", &queue_input(), 7).unwrap();
        assert_eq!(queue.display_name, "Billing");
        assert_eq!(
            queue.accepted_channels,
            vec![Channel::Webchat, Channel::Voice]
        );
        assert_eq!(
            queue.assignment_method,
            AssignmentMethod::MostAvailableCapacity
        );
        assert_eq!(queue.offer_timeout_us, 30_000_000);
        assert_eq!(queue.logout_behavior, LogoutBehavior::Keep);
        assert_eq!(queue.transfer_fallback, TransferFallback::ReturnToSender);
        assert_eq!(queue.create_time, 7);
    }

    #[test]
    fn queue_validation_names_the_field() {
        let field_of = |queue: pb::Queue| match validate_queue("t", &queue, 0) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        };
        assert_eq!(
            field_of(pb::Queue {
                accepted_channels: vec![],
                ..queue_input()
            }),
            "queue.accepted_channels"
        );
        assert_eq!(
            field_of(pb::Queue {
                accepted_channels: vec![0],
                ..queue_input()
            }),
            "queue.accepted_channels"
        );
        assert_eq!(
            field_of(pb::Queue {
                display_name: "x".repeat(201),
                ..queue_input()
            }),
            "queue.display_name"
        );
        assert_eq!(
            field_of(pb::Queue {
                program_id: "nope".into(),
                ..queue_input()
            }),
            "queue.program_id"
        );
        assert_eq!(
            field_of(pb::Queue {
                max_open_per_agent: -1,
                ..queue_input()
            }),
            "queue.max_open_per_agent"
        );
        assert_eq!(
            field_of(pb::Queue {
                offer_timeout: Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0
                }),
                ..queue_input()
            }),
            "queue.offer_timeout"
        );
        assert_eq!(
            field_of(pb::Queue {
                assignment_method: 99,
                ..queue_input()
            }),
            "queue.assignment_method"
        );
    }

    #[test]
    fn capacity_profiles_need_units_and_distinct_channels() {
        let ok = pb::CapacityProfile {
            display_name: "Chat".into(),
            total_units: 3,
            channel_costs: vec![pb::ChannelCost {
                channel: 6,
                units: 3,
            }],
            ..Default::default()
        };
        assert!(validate_capacity_profile("t", &ok).is_ok());
        assert!(
            validate_capacity_profile(
                "t",
                &pb::CapacityProfile {
                    total_units: 0,
                    ..ok.clone()
                }
            )
            .is_err()
        );
        let twice = pb::CapacityProfile {
            channel_costs: vec![ok.channel_costs[0], ok.channel_costs[0]],
            ..ok.clone()
        };
        assert!(validate_capacity_profile("t", &twice).is_err());
    }
}
