//! Waiting conversations, offers, capacity held by assignments, and presence.
//!
//! Everything that two routing replicas could race on is a conditional update whose
//! affected-row count decides the winner: claiming a waiting item (`state = 'waiting'`),
//! moving it to its overflow queue (same queue, still waiting, same due time), resolving an
//! offer (`state = PENDING`), holding or reserving units (`capacity_used +
//! pending_units + units <= capacity_total`) and releasing them (`DELETE … RETURNING`).
//! Every path that adds an offer or an assignment for an agent updates the agent's row
//! before counting the agent's load, so that under PostgreSQL's READ COMMITTED the row
//! lock serialises those counts too.

mod capacity;
mod decisions;
mod ledger;
mod offers;
mod overflow;
mod waiting;

pub use capacity::*;
pub use decisions::*;
pub use ledger::*;
pub use offers::*;
pub use overflow::*;
pub use waiting::*;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::domain::matching::missing_skill;
use crate::domain::offer::{OfferError, check_accept, time_outs};
use crate::domain::overflow::overflow_due;
use crate::domain::presence::PresenceChange;
use crate::domain::{
    Agent, AssignmentMethod, AssignmentSource, Candidate, Channel, Offer, OfferKind, OfferState,
    Omitted, Presence, PresenceCause, Queue, RoutingDecision, WaitingItem, channel_units,
};
use crate::error::{Error, Result};
use crate::store::catalog;
use crate::store::outbox::{self, OutboxEntry};
use crate::store::page::PageRequest;
use crate::store::{
    NewEvent, Tx, changes_one_row, enum_column, fetch_all, fetch_optional, fetch_page, get_by_id,
    i32_or_max, int_column, json_column, kind, placeholders, to_json,
};

pub(super) const WAITING: &str = "waiting";
pub(super) const OFFERED: &str = "offered";

/// The SET clause that keeps `presence_change_time` the time the shown presence last
/// changed (see [`crate::domain::presence::shown`]) in an update adding `delta` to
/// `capacity_used` at `now` (both SQL expressions): an Available agent becoming full, or
/// no longer full, shows another presence from then on.
fn shown_presence_time(delta: &str, now: &str) -> String {
    format!(
        "presence_change_time = CASE WHEN presence = {available} AND capacity_total > 0 \
         AND ((capacity_used >= capacity_total) <> (capacity_used + ({delta}) >= capacity_total)) \
         THEN {now} ELSE presence_change_time END",
        available = Presence::Available.as_i32()
    )
}
