//! Contact history: a contact and its conversations on every channel. Supervisors,
//! administrators and bots read every contact of their tenant; an agent reads, never acts
//! on, the contact of a conversation it handles now, with every conversation of that
//! contact, whoever handled it (`domain::access::can_read`).

use super::*;
use crate::domain::access::{Exposure, Viewer, can_read, can_read_contact};
use crate::store::Contact;

/// The users present in `conv` now.
fn present_users(conv: &Conversation) -> Vec<&str> {
    conv.participants
        .iter()
        .filter(|p| p.leave_time.is_none())
        .map(|p| p.user_id.as_str())
        .collect()
}

/// What visibility depends on for `conv`, with `present` its [`present_users`].
fn exposure<'a>(conv: &'a Conversation, present: &'a [&'a str]) -> Exposure<'a> {
    Exposure {
        state: conv.state,
        owner: conv.owner(),
        present,
        queue_id: &conv.queue_id,
    }
}

impl ConversationApi {
    /// The contact's conversations that can make `viewer` its handler now (those it took
    /// part in); none are read for a viewer who sees the whole tenant.
    async fn handled_conversations(
        &self,
        viewer: Viewer<'_>,
        tenant_id: &str,
        contact_id: &str,
    ) -> Result<Vec<Conversation>> {
        if viewer.sees_all {
            return Ok(Vec::new());
        }
        self.ctx
            .store
            .contact_conversations_of_user(tenant_id, contact_id, viewer.user_id)
            .await
    }

    /// A conversation the caller may read, or NOT_FOUND: one it sees (product rule 1), or,
    /// read only, any conversation of the contact of a conversation it handles now (contact
    /// history). Actions keep using what the caller sees.
    pub(super) async fn readable(
        &self,
        identity: &Caller,
        conversation_id: &str,
    ) -> Result<Conversation> {
        let not_found = || Error::conversation_not_found(conversation_id);
        let conv = self
            .ctx
            .store
            .conversation(&identity.tenant_id, conversation_id)
            .await?
            .ok_or_else(not_found)?;
        let viewer = viewer(identity);
        let handled = if conv.visible_to(viewer) {
            Vec::new()
        } else {
            self.handled_conversations(viewer, &identity.tenant_id, &conv.contact.id)
                .await?
        };
        let present = present_users(&conv);
        let presents: Vec<Vec<&str>> = handled.iter().map(present_users).collect();
        let others = handled.iter().zip(&presents).map(|(c, p)| exposure(c, p));
        if can_read(viewer, exposure(&conv, &present), others) {
            Ok(conv)
        } else {
            Err(not_found())
        }
    }

    /// The contact `contact_id` if the caller may read it and its history, else NOT_FOUND
    /// (a contact of another tenant, or one the agent does not handle now, looks missing).
    async fn readable_contact(&self, identity: &Caller, contact_id: &str) -> Result<Contact> {
        let not_found = || Error::NotFound(format!("contact {contact_id} not found"));
        let contact = self
            .ctx
            .store
            .contact(&identity.tenant_id, contact_id)
            .await?
            .ok_or_else(not_found)?;
        let viewer = viewer(identity);
        let handled = self
            .handled_conversations(viewer, &identity.tenant_id, contact_id)
            .await?;
        let presents: Vec<Vec<&str>> = handled.iter().map(present_users).collect();
        let exposures = handled.iter().zip(&presents).map(|(c, p)| exposure(c, p));
        if can_read_contact(viewer, exposures) {
            Ok(contact)
        } else {
            Err(not_found())
        }
    }

    pub(super) async fn contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<pb::GetContactResponse> {
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "reading a contact")?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("contact_id", &req.contact_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let contact = self.readable_contact(&identity, &id).await?;
        Ok(pb::GetContactResponse {
            contact: Some(convert::contact(&contact, true)),
        })
    }

    pub(super) async fn contact_history(
        &self,
        request: Request<pb::ListContactHistoryRequest>,
    ) -> Result<pb::ListContactHistoryResponse> {
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &READER_ROLES,
                "reading contact history",
            )?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("contact_id", &req.contact_id)?;
        let view = view_field(req.view, pb::ConversationView::Basic)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let limit = page_size(req.page_size)?;
        let before = token::decode_time_id(&req.page_token)?;
        self.readable_contact(&identity, &id).await?;
        let mut convs = self
            .ctx
            .store
            .contact_history(
                &identity.tenant_id,
                &id,
                before,
                limit + 1,
                view == pb::ConversationView::Full,
            )
            .await?;
        let next_page_token = next_page(&mut convs, limit, |last| {
            token::encode(&[&last.create_time.to_string(), &last.id])
        });
        Ok(pb::ListContactHistoryResponse {
            conversations: convs
                .iter()
                .map(|c| convert::conversation(c, view))
                .collect(),
            next_page_token,
        })
    }
}
