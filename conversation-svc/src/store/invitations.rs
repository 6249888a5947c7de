//! Invitations to consult or conference, and the participant an accepted one brings in.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::conversations::child_rows;
use super::{Conversation, Mutation, Participant, corrupt};
use crate::domain::access::ParticipantRole;
use crate::error::Result;

/// `AnswerOutcome.PENDING`: the invited agent has not answered yet.
pub const PENDING: i32 = 1;

/// An invitation of an agent to consult on or join a conversation, with its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// UUID; the routing offer's reference.
    pub id: String,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The agent invited.
    pub agent_id: String,
    /// The agent's display name, known once it joins.
    pub display_name: String,
    /// CONSULTANT or CONFERENCE.
    pub role: ParticipantRole,
    /// The owner who sent it.
    pub inviter_id: String,
    /// routing-svc's offer proposing it.
    pub offer_id: String,
    /// `AnswerOutcome` number.
    pub outcome: i32,
    /// The agent's reason when declining.
    pub reject_reason: String,
    /// Note for the invited agent.
    pub note: String,
    /// When it was sent.
    pub invite_time: i64,
    /// When it was answered or ended.
    pub resolve_time: Option<i64>,
}

impl Invitation {
    /// Whether the agent has not answered yet.
    pub fn pending(&self) -> bool {
        self.outcome == PENDING
    }
}

const INVITATION_SELECT: &str = "SELECT id, tenant_id, conversation_id, agent_id, display_name, \
     role, inviter_id, offer_id, outcome, reject_reason, note, invite_time, resolve_time \
     FROM invitations";

fn invitation_from_row(row: &AnyRow) -> Result<Invitation> {
    let role: i64 = row.try_get("role")?;
    Ok(Invitation {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        agent_id: row.try_get("agent_id")?,
        display_name: row.try_get("display_name")?,
        role: ParticipantRole::from_code(role)
            .ok_or_else(|| corrupt(format!("invitation role {role}")))?,
        inviter_id: row.try_get("inviter_id")?,
        offer_id: row.try_get("offer_id")?,
        outcome: row.try_get::<i64, _>("outcome")? as i32,
        reject_reason: row.try_get("reject_reason")?,
        note: row.try_get("note")?,
        invite_time: row.try_get("invite_time")?,
        resolve_time: row.try_get("resolve_time")?,
    })
}

/// Loads the invitations of `convs`, oldest first; no query when none ever had one.
pub(super) async fn attach_invitations(
    conn: &mut AnyConnection,
    convs: &mut [Conversation],
) -> Result<()> {
    if convs.iter().all(|c| c.invitation_count == 0) {
        return Ok(());
    }
    for (i, row) in child_rows(
        conn,
        convs,
        INVITATION_SELECT,
        "conversation_id, invite_time, id",
    )
    .await?
    {
        convs[i].invitations.push(invitation_from_row(&row)?);
    }
    Ok(())
}

impl Mutation {
    /// Records a new invitation, and adds it to `conv`.
    pub async fn insert_invitation(
        &mut self,
        conv: &mut Conversation,
        invitation: Invitation,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO invitations (id, tenant_id, conversation_id, agent_id, display_name, \
             role, inviter_id, offer_id, outcome, reject_reason, note, invite_time, \
             resolve_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&invitation.id)
        .bind(&invitation.tenant_id)
        .bind(&invitation.conversation_id)
        .bind(&invitation.agent_id)
        .bind(&invitation.display_name)
        .bind(i64::from(invitation.role.code()))
        .bind(&invitation.inviter_id)
        .bind(&invitation.offer_id)
        .bind(i64::from(invitation.outcome))
        .bind(&invitation.reject_reason)
        .bind(&invitation.note)
        .bind(invitation.invite_time)
        .bind(invitation.resolve_time)
        .execute(self.conn())
        .await?;
        sqlx::query(
            "UPDATE conversations SET invitation_count = invitation_count + 1 WHERE id = $1",
        )
        .bind(&conv.id)
        .execute(self.conn())
        .await?;
        conv.invitation_count += 1;
        conv.invitations.push(invitation);
        Ok(())
    }

    /// The invitation routing-svc's `offer_id` proposes, if any.
    pub async fn invitation_by_offer(&mut self, offer_id: &str) -> Result<Option<Invitation>> {
        let sql = format!("{INVITATION_SELECT} WHERE offer_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(offer_id)
            .fetch_optional(self.conn())
            .await?
            .as_ref()
            .map(invitation_from_row)
            .transpose()
    }

    /// Ends `conv`'s pending invitation `id` with `outcome` (and the agent's reason), the
    /// copy in `conv` too; false when it was no longer pending.
    pub async fn resolve_invitation(
        &mut self,
        conv: &mut Conversation,
        id: &str,
        outcome: i32,
        reject_reason: &str,
        display_name: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE invitations SET outcome = $2, reject_reason = $3, display_name = $4, \
             resolve_time = $5 WHERE id = $1 AND outcome = $6",
        )
        .bind(id)
        .bind(i64::from(outcome))
        .bind(reject_reason)
        .bind(display_name)
        .bind(now)
        .bind(i64::from(PENDING))
        .execute(self.conn())
        .await?
        .rows_affected()
            == 1;
        if done && let Some(invitation) = conv.invitations.iter_mut().find(|i| i.id == id) {
            invitation.outcome = outcome;
            invitation.reject_reason = reject_reason.to_owned();
            invitation.display_name = display_name.to_owned();
            invitation.resolve_time = Some(now);
        }
        Ok(done)
    }

    /// Adds the agent an accepted `invitation` brings in as a participant of `conv`.
    pub async fn add_invited_participant(
        &mut self,
        conv: &mut Conversation,
        invitation: &Invitation,
        display_name: &str,
        now: i64,
    ) -> Result<()> {
        let participant = Participant {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: invitation.agent_id.clone(),
            display_name: display_name.to_owned(),
            role: invitation.role,
            join_time: now,
            leave_time: None,
            invitation_id: invitation.id.clone(),
        };
        sqlx::query(
            "INSERT INTO participants (id, conversation_id, user_id, display_name, role, \
             join_time, invitation_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&participant.id)
        .bind(&conv.id)
        .bind(&participant.user_id)
        .bind(&participant.display_name)
        .bind(i64::from(participant.role.code()))
        .bind(now)
        .bind(&participant.invitation_id)
        .execute(self.conn())
        .await?;
        conv.participants.push(participant);
        Ok(())
    }
}
