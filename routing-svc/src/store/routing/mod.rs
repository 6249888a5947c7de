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

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::domain::offer::{OfferError, check_accept};
use crate::domain::overflow::overflow_due;
use crate::domain::{
    Agent, AssignmentSource, Candidate, Channel, Offer, OfferKind, OfferState, Omitted, Presence,
    Queue, RoutingDecision, WaitingItem, channel_units,
};
use crate::error::{Error, Result};
use crate::store::catalog::get_agent;
use crate::store::outbox::{self, OutboxEntry};
use crate::store::page::PageRequest;
use crate::store::{
    NewEvent, Tx, changes_one_row, enum_column, fetch_all, fetch_optional, fetch_page, get_by_id,
    i32_or_max, int_column, json_column, to_json,
};

pub(super) const WAITING: &str = "waiting";
pub(super) const OFFERED: &str = "offered";
