//! Contacts, conversations and what hangs off them: pre-chat data, bot transcript,
//! participants, segments, messages and applied assignments.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::{
    Bind, ChannelIdentity, Conversation, Message, Mutation, NewConversation, NewMessage,
    Participant, PreChatField, Segment, Store, TranscriptLine, bind_all, corrupt, join_ids,
    placeholders, split_ids,
};
use crate::domain::access::ParticipantRole;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::store::Contact;

pub(super) const CONVERSATION_SELECT: &str = "SELECT c.id, c.tenant_id, c.channel, c.state, c.queue_id, \
     c.program_id, c.contact_id, k.display_name AS contact_display_name, \
     c.channel_address, c.owner_agent_id, c.owner_display_name, \
     c.last_owner_agent_id, c.status_label_id, c.mode, c.wrap_up_reason_ids, c.segment_count, \
     c.message_count, c.current_segment_id, c.create_time, c.update_time, c.close_time, \
     c.close_reason, c.last_event_sequence, c.previous_conversation_id, c.invitation_count \
     FROM conversations c JOIN contacts k ON k.id = c.contact_id";

const MESSAGE_SELECT: &str = "SELECT id, conversation_id, ordinal, sender, sender_id, \
     sender_display_name, text, internal, create_time, sequence FROM messages";

const SEGMENT_SELECT: &str = "SELECT id, conversation_id, ordinal, agent_id, queue_id, \
     start_reason, end_reason, start_time, end_time, wrap_up_reason_ids FROM segments";

/// Which conversations to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct ConversationQuery {
    /// The caller's tenant.
    pub tenant_id: String,
    /// The caller.
    pub viewer_id: String,
    /// Whether the caller sees every conversation of the tenant; otherwise only OPEN
    /// unassigned ones of `viewer_queues`, owned ones and those the caller is present in.
    pub sees_all: bool,
    /// The queues whose OPEN unassigned conversations a caller who does not see all sees.
    pub viewer_queues: Vec<String>,
    /// Only these `Conversation.State` numbers; empty for all.
    pub states: Vec<i32>,
    /// Only this queue.
    pub queue_id: Option<String>,
    /// Only this owner.
    pub owner_agent_id: Option<String>,
    /// Only conversations strictly older than this (create time, id): the page token.
    pub before: Option<(i64, String)>,
    /// Whether to load pre-chat data, transcripts and contact identities (the FULL view).
    pub full: bool,
    /// At most this many.
    pub limit: i64,
}

pub(super) fn conversation_from_row(row: &AnyRow) -> Result<Conversation> {
    let state: i64 = row.try_get("state")?;
    Ok(Conversation {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        channel: row.try_get::<i64, _>("channel")? as i32,
        state: State::from_code(state).ok_or_else(|| corrupt(format!("state {state}")))?,
        queue_id: row.try_get("queue_id")?,
        program_id: row.try_get("program_id")?,
        contact: Contact {
            id: row.try_get("contact_id")?,
            display_name: row.try_get("contact_display_name")?,
            identities: Vec::new(),
        },
        owner_agent_id: row.try_get("owner_agent_id")?,
        owner_display_name: row.try_get("owner_display_name")?,
        last_owner_agent_id: row.try_get("last_owner_agent_id")?,
        status_label_id: row.try_get("status_label_id")?,
        mode: row.try_get::<i64, _>("mode")? as i32,
        wrap_up_reason_ids: split_ids(&row.try_get::<String, _>("wrap_up_reason_ids")?),
        segment_count: row.try_get("segment_count")?,
        message_count: row.try_get("message_count")?,
        current_segment_id: row.try_get("current_segment_id")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        close_time: row.try_get("close_time")?,
        pre_chat: Vec::new(),
        transcript: Vec::new(),
        participants: Vec::new(),
        invitations: Vec::new(),
        channel_address: row.try_get("channel_address")?,
        close_reason: row.try_get::<i64, _>("close_reason")? as i32,
        last_event_sequence: row.try_get("last_event_sequence")?,
        previous_conversation_id: row.try_get("previous_conversation_id")?,
        invitation_count: row.try_get("invitation_count")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<Message> {
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        ordinal: row.try_get("ordinal")?,
        sender: row.try_get::<i64, _>("sender")? as i32,
        sender_id: row.try_get("sender_id")?,
        sender_display_name: row.try_get("sender_display_name")?,
        text: row.try_get("text")?,
        internal: row.try_get::<i64, _>("internal")? != 0,
        create_time: row.try_get("create_time")?,
        sequence: row.try_get("sequence")?,
    })
}

pub(super) fn segment_from_row(row: &AnyRow) -> Result<Segment> {
    Ok(Segment {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        ordinal: row.try_get("ordinal")?,
        agent_id: row.try_get("agent_id")?,
        queue_id: row.try_get("queue_id")?,
        start_reason: row.try_get("start_reason")?,
        end_reason: row.try_get("end_reason")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        wrap_up_reason_ids: split_ids(&row.try_get::<String, _>("wrap_up_reason_ids")?),
    })
}

/// The rows of `select`, a query of a child table, that belong to `convs`, in `order_by`
/// order; each comes with the position in `convs` of its conversation.
pub(super) async fn child_rows(
    conn: &mut AnyConnection,
    convs: &[Conversation],
    select: &str,
    order_by: &str,
) -> Result<Vec<(usize, AnyRow)>> {
    let index: HashMap<&str, usize> = convs
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let ids = convs.iter().map(|c| Bind::Text(c.id.clone())).collect();
    let list = placeholders(1, convs.len());
    let sql = format!("{select} WHERE conversation_id IN ({list}) ORDER BY {order_by}");
    bind_all(sqlx::query(AssertSqlSafe(sql)), ids)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|row| {
            let conv: String = row.try_get("conversation_id")?;
            Ok((index[conv.as_str()], row))
        })
        .collect()
}

/// Loads participants of `convs`, and with `full` also invitations, pre-chat data,
/// transcripts and the contacts' identities, one query each.
pub(super) async fn attach_children(
    conn: &mut AnyConnection,
    convs: &mut [Conversation],
    full: bool,
) -> Result<()> {
    if convs.is_empty() {
        return Ok(());
    }
    attach_participants(conn, convs).await?;
    if !full {
        return Ok(());
    }
    // Invitations matter to changes of ownership and to the FULL view, not to messages.
    super::invitations::attach_invitations(conn, convs).await?;
    for conv in convs.iter_mut() {
        conv.contact.identities = contact_identities(conn, &conv.contact.id).await?;
    }
    let select = "SELECT conversation_id, name, label, value FROM pre_chat_fields";
    for (i, row) in child_rows(conn, convs, select, "conversation_id, position").await? {
        convs[i].pre_chat.push(PreChatField {
            name: row.try_get("name")?,
            label: row.try_get("label")?,
            value: row.try_get("value")?,
        });
    }

    let select = "SELECT conversation_id, sender, text, create_time, sender_display_name \
                  FROM transcript_entries";
    for (i, row) in child_rows(conn, convs, select, "conversation_id, position").await? {
        convs[i].transcript.push(TranscriptLine {
            sender: row.try_get::<i64, _>("sender")? as i32,
            text: row.try_get("text")?,
            create_time: row.try_get("create_time")?,
            sender_display_name: row.try_get("sender_display_name")?,
        });
    }
    Ok(())
}

/// Every (channel, address) of contact `contact_id`, oldest first.
async fn contact_identities(
    conn: &mut AnyConnection,
    contact_id: &str,
) -> Result<Vec<ChannelIdentity>> {
    sqlx::query(
        "SELECT channel, address FROM contact_identities WHERE contact_id = $1 \
         ORDER BY create_time, channel, address",
    )
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(ChannelIdentity {
            channel: row.try_get::<i64, _>("channel")? as i32,
            address: row.try_get("address")?,
        })
    })
    .collect()
}

/// Loads the participants of `convs`.
async fn attach_participants(conn: &mut AnyConnection, convs: &mut [Conversation]) -> Result<()> {
    let select = "SELECT id, conversation_id, user_id, display_name, role, join_time, \
                  leave_time, invitation_id FROM participants";
    for (i, row) in child_rows(conn, convs, select, "conversation_id, join_time, id").await? {
        let role: i64 = row.try_get("role")?;
        convs[i].participants.push(Participant {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            display_name: row.try_get("display_name")?,
            role: ParticipantRole::from_code(role)
                .ok_or_else(|| corrupt(format!("participant role {role}")))?,
            join_time: row.try_get("join_time")?,
            leave_time: row.try_get("leave_time")?,
            invitation_id: row.try_get("invitation_id")?,
        });
    }
    Ok(())
}

async fn load_conversation(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
    lock: &str,
) -> Result<Option<Conversation>> {
    load_conversation_with(conn, tenant_id, id, lock, true).await
}

/// The conversation with its participants, and with its contact's identities, pre-chat
/// fields and bot transcript when `full`.
async fn load_conversation_with(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
    lock: &str,
    full: bool,
) -> Result<Option<Conversation>> {
    let sql = format!("{CONVERSATION_SELECT} WHERE c.id = $1 AND c.tenant_id = $2{lock}");
    let Some(row) = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut convs = [conversation_from_row(&row)?];
    attach_children(conn, &mut convs, full).await?;
    let [conv] = convs;
    Ok(Some(conv))
}

/// Re-reads a conversation this transaction has just written, which must be there.
async fn load_written(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> Result<Conversation> {
    load_conversation(conn, tenant_id, id, "")
        .await?
        .ok_or_else(|| corrupt(format!("conversation {id} vanished")))
}

impl Store {
    /// The conversation `id` of `tenant_id`, if any.
    pub async fn conversation(&self, tenant_id: &str, id: &str) -> Result<Option<Conversation>> {
        let mut conn = self.conn().await?;
        load_conversation(&mut conn, tenant_id, id, "").await
    }

    /// Conversations matching `query`, newest first.
    pub async fn list_conversations(&self, query: &ConversationQuery) -> Result<Vec<Conversation>> {
        let mut sql = format!("{CONVERSATION_SELECT} WHERE c.tenant_id = $1");
        let mut binds = vec![Bind::Text(query.tenant_id.clone())];
        if !query.states.is_empty() {
            sql.push_str(&format!(
                " AND c.state IN ({})",
                placeholders(binds.len() + 1, query.states.len())
            ));
            binds.extend(query.states.iter().map(|s| Bind::Int(i64::from(*s))));
        }
        if let Some(queue_id) = &query.queue_id {
            binds.push(Bind::Text(queue_id.clone()));
            sql.push_str(&format!(" AND c.queue_id = ${}", binds.len()));
        }
        if let Some(owner) = &query.owner_agent_id {
            binds.push(Bind::Text(owner.clone()));
            sql.push_str(&format!(" AND c.owner_agent_id = ${}", binds.len()));
        }
        if let Some((time, id)) = &query.before {
            binds.push(Bind::Int(*time));
            let t = binds.len();
            binds.push(Bind::Text(id.clone()));
            let i = binds.len();
            sql.push_str(&format!(
                " AND (c.create_time < ${t} OR (c.create_time = ${t} AND c.id < ${i}))"
            ));
        }
        if !query.sees_all {
            let waiting = if query.viewer_queues.is_empty() {
                "1 = 0".to_owned()
            } else {
                let first = binds.len() + 1;
                binds.extend(query.viewer_queues.iter().cloned().map(Bind::Text));
                format!(
                    "c.queue_id IN ({})",
                    placeholders(first, query.viewer_queues.len())
                )
            };
            binds.push(Bind::Text(query.viewer_id.clone()));
            let v = binds.len();
            sql.push_str(&format!(
                " AND ((c.state = {open} AND c.owner_agent_id = '' AND {waiting}) \
                 OR c.owner_agent_id = ${v} \
                 OR EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = c.id \
                 AND p.user_id = ${v} AND p.leave_time IS NULL))",
                open = State::Open.code()
            ));
        }
        binds.push(Bind::Int(query.limit));
        sql.push_str(&format!(
            " ORDER BY c.create_time DESC, c.id DESC LIMIT ${}",
            binds.len()
        ));
        let mut conn = self.conn().await?;
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?;
        let mut convs = rows
            .iter()
            .map(conversation_from_row)
            .collect::<Result<Vec<_>>>()?;
        attach_children(&mut conn, &mut convs, query.full).await?;
        Ok(convs)
    }

    /// The contact `id` of `tenant_id` with its identities, if any.
    pub async fn contact(&self, tenant_id: &str, id: &str) -> Result<Option<Contact>> {
        let mut conn = self.conn().await?;
        let Some(row) =
            sqlx::query("SELECT id, display_name FROM contacts WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(None);
        };
        Ok(Some(Contact {
            id: row.try_get("id")?,
            display_name: row.try_get("display_name")?,
            identities: contact_identities(&mut conn, id).await?,
        }))
    }

    /// Messages of a conversation after `after_ordinal`, oldest first; internal ones only
    /// when `include_internal`.
    pub async fn messages(
        &self,
        conversation_id: &str,
        after_ordinal: i64,
        limit: i64,
        include_internal: bool,
    ) -> Result<Vec<Message>> {
        let filter = if include_internal {
            ""
        } else {
            " AND internal = 0"
        };
        let select = format!("{MESSAGE_SELECT} WHERE conversation_id = $1{filter}");
        self.ordinal_page(
            &select,
            conversation_id,
            after_ordinal,
            limit,
            message_from_row,
        )
        .await
    }

    /// One message by id.
    pub async fn message(&self, id: &str) -> Result<Option<Message>> {
        let mut conn = self.conn().await?;
        sqlx::query(AssertSqlSafe(format!("{MESSAGE_SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(message_from_row)
            .transpose()
    }

    /// Segments of a conversation after `after_ordinal`, in order.
    pub async fn segments(
        &self,
        conversation_id: &str,
        after_ordinal: i64,
        limit: i64,
    ) -> Result<Vec<Segment>> {
        let select = format!("{SEGMENT_SELECT} WHERE conversation_id = $1");
        self.ordinal_page(
            &select,
            conversation_id,
            after_ordinal,
            limit,
            segment_from_row,
        )
        .await
    }

    /// Up to `limit` rows of `select` (filtered on `conversation_id = $1`) after
    /// `after_ordinal`, in ordinal order.
    async fn ordinal_page<T>(
        &self,
        select: &str,
        conversation_id: &str,
        after_ordinal: i64,
        limit: i64,
        from_row: fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let sql = format!("{select} AND ordinal > $2 ORDER BY ordinal LIMIT $3");
        let mut conn = self.conn().await?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(conversation_id)
            .bind(after_ordinal)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }
}

impl Mutation {
    /// The conversation `id` of `tenant_id`, locked until commit on PostgreSQL.
    pub async fn conversation_for_update(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Conversation>> {
        let lock = self.lock_clause("c");
        load_conversation(self.conn(), tenant_id, id, &lock).await
    }

    /// The conversation `id` of `tenant_id` with its participants only (no contact
    /// identities, pre-chat fields, transcript or invitations), locked until commit on PostgreSQL: for
    /// changes that answer with something else than the conversation, such as a message.
    pub async fn conversation_basic_for_update(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Conversation>> {
        let lock = self.lock_clause("c");
        load_conversation_with(self.conn(), tenant_id, id, &lock, false).await
    }

    /// Re-reads a conversation inside the transaction, with its children.
    pub async fn reload(&mut self, conv: &Conversation) -> Result<Conversation> {
        load_written(self.conn(), &conv.tenant_id, &conv.id).await
    }

    /// The contact a new conversation belongs to: the one named by `new.contact_id` (the
    /// address is attached to it), else the one the address already leads to, else a new
    /// one. A given display name replaces the stored one, so a returning customer shows the
    /// newest name. Fails when the address already belongs to another contact than the one
    /// named, or the named contact is not the tenant's. Says whether the contact is new.
    async fn resolve_contact(&mut self, new: &NewConversation) -> Result<(String, bool)> {
        let known: Option<(String,)> = sqlx::query_as(
            "SELECT contact_id FROM contact_identities \
             WHERE tenant_id = $1 AND channel = $2 AND address = $3",
        )
        .bind(&new.tenant_id)
        .bind(i64::from(new.channel))
        .bind(&new.channel_address)
        .fetch_optional(self.conn())
        .await?;
        let known = known.map(|(id,)| id);
        let contact_id = match (&new.contact_id, known) {
            (Some(named), Some(known)) if *named != known => {
                return Err(Error::WrongState(format!(
                    "channel_address already belongs to contact {known}, not {named}"
                )));
            }
            (Some(named), known) => {
                let exists: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM contacts WHERE id = $1 AND tenant_id = $2")
                        .bind(named)
                        .bind(&new.tenant_id)
                        .fetch_optional(self.conn())
                        .await?;
                if exists.is_none() {
                    return Err(Error::NotFound(format!("contact {named} not found")));
                }
                if known.is_none() {
                    self.add_identity(new, named).await?;
                }
                named.clone()
            }
            (None, Some(known)) => known,
            (None, None) => {
                let id = uuid::Uuid::new_v4().to_string();
                // Two first messages from one address at once: the second insert waits for
                // the first and then adds nothing, and its conversation joins that contact.
                let inserted = sqlx::query(
                    "INSERT INTO contacts (id, tenant_id, channel, channel_address, \
                     display_name, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&id)
                .bind(&new.tenant_id)
                .bind(i64::from(new.channel))
                .bind(&new.channel_address)
                .bind(&new.contact_display_name)
                .bind(new.now)
                .execute(self.conn())
                .await?;
                if inserted.rows_affected() == 1 {
                    self.add_identity(new, &id).await?;
                    return Ok((id, true));
                }
                let winner: Option<(String,)> = sqlx::query_as(
                    "SELECT contact_id FROM contact_identities \
                     WHERE tenant_id = $1 AND channel = $2 AND address = $3",
                )
                .bind(&new.tenant_id)
                .bind(i64::from(new.channel))
                .bind(&new.channel_address)
                .fetch_optional(self.conn())
                .await?;
                winner.map(|(id,)| id).ok_or_else(|| {
                    Error::Conflict(format!(
                        "contact of channel_address {} was created concurrently; retry",
                        new.channel_address
                    ))
                })?
            }
        };
        if !new.contact_display_name.is_empty() {
            sqlx::query("UPDATE contacts SET display_name = $2, update_time = $3 WHERE id = $1")
                .bind(&contact_id)
                .bind(&new.contact_display_name)
                .bind(new.now)
                .execute(self.conn())
                .await?;
        }
        Ok((contact_id, false))
    }

    async fn add_identity(&mut self, new: &NewConversation, contact_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO contact_identities (tenant_id, channel, address, contact_id, \
             create_time) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.tenant_id)
        .bind(i64::from(new.channel))
        .bind(&new.channel_address)
        .bind(contact_id)
        .bind(new.now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Creates an OPEN conversation for the contact its channel identity leads to (see
    /// `resolve_contact`).
    pub async fn create_conversation(&mut self, new: &NewConversation) -> Result<Conversation> {
        let (contact_id, contact_is_new) = self.resolve_contact(new).await?;
        sqlx::query(
            "INSERT INTO conversations (id, tenant_id, channel, state, queue_id, program_id, \
             contact_id, mode, create_time, update_time, channel_address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(i64::from(new.channel))
        .bind(i64::from(State::Open.code()))
        .bind(&new.queue_id)
        .bind(&new.program_id)
        .bind(&contact_id)
        .bind(i64::from(
            switchboard_proto::conversation::v1::Mode::Messaging as i32,
        ))
        .bind(new.now)
        .bind(&new.channel_address)
        .execute(self.conn())
        .await?;
        for (position, field) in new.pre_chat.iter().enumerate() {
            sqlx::query(
                "INSERT INTO pre_chat_fields (conversation_id, position, name, label, value) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&new.id)
            .bind(position as i64)
            .bind(&field.name)
            .bind(&field.label)
            .bind(&field.value)
            .execute(self.conn())
            .await?;
        }
        for (position, line) in new.transcript.iter().enumerate() {
            sqlx::query(
                "INSERT INTO transcript_entries (conversation_id, position, sender, text, \
                 create_time, sender_display_name) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&new.id)
            .bind(position as i64)
            .bind(i64::from(line.sender))
            .bind(&line.text)
            .bind(line.create_time)
            .bind(&line.sender_display_name)
            .execute(self.conn())
            .await?;
        }
        if !contact_is_new {
            // A known contact brings its other identities and maybe its stored name.
            return load_written(self.conn(), &new.tenant_id, &new.id).await;
        }
        // Everything about a new conversation of a new contact was just written from
        // `new`: answer from it rather than read it all back (five queries on the
        // hottest write path).
        Ok(Conversation {
            id: new.id.clone(),
            tenant_id: new.tenant_id.clone(),
            channel: new.channel,
            state: State::Open,
            queue_id: new.queue_id.clone(),
            program_id: new.program_id.clone(),
            contact: Contact {
                id: contact_id,
                display_name: new.contact_display_name.clone(),
                identities: vec![ChannelIdentity {
                    channel: new.channel,
                    address: new.channel_address.clone(),
                }],
            },
            owner_agent_id: String::new(),
            owner_display_name: String::new(),
            last_owner_agent_id: String::new(),
            status_label_id: String::new(),
            mode: switchboard_proto::conversation::v1::Mode::Messaging as i32,
            wrap_up_reason_ids: Vec::new(),
            segment_count: 0,
            message_count: 0,
            current_segment_id: String::new(),
            create_time: new.now,
            update_time: new.now,
            close_time: None,
            pre_chat: new.pre_chat.clone(),
            transcript: new.transcript.clone(),
            participants: Vec::new(),
            invitations: Vec::new(),
            channel_address: new.channel_address.clone(),
            close_reason: 0,
            last_event_sequence: 0,
            previous_conversation_id: String::new(),
            invitation_count: 0,
        })
    }

    /// Writes the conversation's changeable columns as they are in `conv`; a conversation
    /// not in WRAP_UP loses its wrap-up deadline.
    pub async fn save_conversation(&mut self, conv: &Conversation) -> Result<()> {
        sqlx::query(
            "UPDATE conversations SET state = $2, queue_id = $3, program_id = $4, \
             owner_agent_id = $5, owner_display_name = $6, last_owner_agent_id = $7, \
             status_label_id = $8, mode = $9, wrap_up_reason_ids = $10, segment_count = $11, \
             message_count = $12, current_segment_id = $13, update_time = $14, close_time = $15, \
             close_reason = $16, \
             wrap_up_deadline = CASE WHEN $2 = $17 THEN wrap_up_deadline ELSE NULL END \
             WHERE id = $1",
        )
        .bind(&conv.id)
        .bind(i64::from(conv.state.code()))
        .bind(&conv.queue_id)
        .bind(&conv.program_id)
        .bind(&conv.owner_agent_id)
        .bind(&conv.owner_display_name)
        .bind(&conv.last_owner_agent_id)
        .bind(&conv.status_label_id)
        .bind(i64::from(conv.mode))
        .bind(join_ids(&conv.wrap_up_reason_ids))
        .bind(conv.segment_count)
        .bind(conv.message_count)
        .bind(&conv.current_segment_id)
        .bind(conv.update_time)
        .bind(conv.close_time)
        .bind(i64::from(conv.close_reason))
        // Leaving WRAP_UP stops its clock.
        .bind(i64::from(State::WrapUp.code()))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Appends a message (its ordinal follows the conversation's last one).
    pub async fn add_message(
        &mut self,
        conv: &mut Conversation,
        new: NewMessage,
        id: String,
        sequence: i64,
        now: i64,
    ) -> Result<Message> {
        conv.message_count += 1;
        conv.update_time = now;
        let message = Message {
            id,
            sequence,
            conversation_id: conv.id.clone(),
            ordinal: conv.message_count,
            sender: new.sender,
            sender_id: new.sender_id,
            sender_display_name: new.sender_display_name,
            text: new.text,
            internal: new.internal,
            create_time: now,
        };
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, ordinal, sender, sender_id, \
             sender_display_name, text, internal, create_time, sequence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&message.id)
        .bind(&conv.tenant_id)
        .bind(&message.conversation_id)
        .bind(message.ordinal)
        .bind(i64::from(message.sender))
        .bind(&message.sender_id)
        .bind(&message.sender_display_name)
        .bind(&message.text)
        .bind(i64::from(message.internal))
        .bind(message.create_time)
        .bind(message.sequence)
        .execute(self.conn())
        .await?;
        sqlx::query("UPDATE conversations SET message_count = $2, update_time = $3 WHERE id = $1")
            .bind(&conv.id)
            .bind(conv.message_count)
            .bind(now)
            .execute(self.conn())
            .await?;
        Ok(message)
    }

    /// Adds `user_id` as a participant with `role`.
    pub async fn add_participant(
        &mut self,
        conv: &mut Conversation,
        user_id: &str,
        display_name: &str,
        role: ParticipantRole,
        now: i64,
    ) -> Result<()> {
        let participant = Participant {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            display_name: display_name.to_owned(),
            role,
            join_time: now,
            leave_time: None,
            invitation_id: String::new(),
        };
        sqlx::query(
            "INSERT INTO participants (id, conversation_id, user_id, display_name, role, \
             join_time) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&participant.id)
        .bind(&conv.id)
        .bind(&participant.user_id)
        .bind(&participant.display_name)
        .bind(i64::from(role.code()))
        .bind(now)
        .execute(self.conn())
        .await?;
        conv.participants.push(participant);
        Ok(())
    }

    /// Ends the present participation of `user_id` (every role) at `now`; returns the roles
    /// it had, none when the user was not present.
    pub async fn leave_participant(
        &mut self,
        conv: &mut Conversation,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<ParticipantRole>> {
        let mut left = Vec::new();
        for p in conv
            .participants
            .iter_mut()
            .filter(|p| p.user_id == user_id && p.leave_time.is_none())
        {
            p.leave_time = Some(now);
            left.push(p.role);
        }
        if !left.is_empty() {
            sqlx::query(
                "UPDATE participants SET leave_time = $3 \
                 WHERE conversation_id = $1 AND user_id = $2 AND leave_time IS NULL",
            )
            .bind(&conv.id)
            .bind(user_id)
            .bind(now)
            .execute(self.conn())
            .await?;
        }
        Ok(left)
    }

    /// Starts the next segment of `conv` with `agent_id` and makes it current.
    pub async fn start_segment(
        &mut self,
        conv: &mut Conversation,
        agent_id: &str,
        queue_id: &str,
        start_reason: &str,
        now: i64,
    ) -> Result<Segment> {
        conv.segment_count += 1;
        let segment = Segment {
            id: uuid::Uuid::new_v4().to_string(),
            conversation_id: conv.id.clone(),
            ordinal: conv.segment_count,
            agent_id: agent_id.to_owned(),
            queue_id: queue_id.to_owned(),
            start_reason: start_reason.to_owned(),
            end_reason: String::new(),
            start_time: now,
            end_time: None,
            wrap_up_reason_ids: Vec::new(),
        };
        sqlx::query(
            "INSERT INTO segments (id, tenant_id, conversation_id, ordinal, agent_id, queue_id, \
             start_reason, start_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&segment.id)
        .bind(&conv.tenant_id)
        .bind(&segment.conversation_id)
        .bind(segment.ordinal)
        .bind(&segment.agent_id)
        .bind(&segment.queue_id)
        .bind(&segment.start_reason)
        .bind(now)
        .execute(self.conn())
        .await?;
        conv.current_segment_id = segment.id.clone();
        Ok(segment)
    }

    /// Ends segment `id` with `end_reason`, recording the wrap-up reasons and note (empty
    /// ones keep what the segment holds: reasons a transfer's sender gave in advance).
    pub async fn end_segment(
        &mut self,
        id: &str,
        end_reason: &str,
        wrap_up_reason_ids: &[String],
        note: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE segments SET end_reason = $2, end_time = $3, \
             wrap_up_reason_ids = CASE WHEN $4 = '' THEN wrap_up_reason_ids ELSE $4 END, \
             wrap_up_note = CASE WHEN $5 = '' THEN wrap_up_note ELSE $5 END WHERE id = $1",
        )
        .bind(id)
        .bind(end_reason)
        .bind(now)
        .bind(join_ids(wrap_up_reason_ids))
        .bind(note)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The conversation an offer was applied to, if it was.
    pub async fn assignment_by_offer(&mut self, offer_id: &str) -> Result<Option<AppliedOffer>> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT tenant_id, conversation_id, agent_id FROM assignments WHERE offer_id = $1",
        )
        .bind(offer_id)
        .fetch_optional(self.conn())
        .await?;
        Ok(
            row.map(|(tenant_id, conversation_id, agent_id)| AppliedOffer {
                tenant_id,
                conversation_id,
                agent_id,
            }),
        )
    }

    /// Remembers that `offer_id` made `agent_id` the owner, starting `segment_id`.
    pub async fn record_assignment(
        &mut self,
        offer_id: &str,
        conv: &Conversation,
        agent_id: &str,
        segment_id: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO assignments (offer_id, tenant_id, conversation_id, agent_id, segment_id, \
             apply_time) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(offer_id)
        .bind(&conv.tenant_id)
        .bind(&conv.id)
        .bind(agent_id)
        .bind(segment_id)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

/// An offer already applied by `ApplyAssignment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOffer {
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The agent who became owner.
    pub agent_id: String,
}
