//! Finding the tenant's canned responses by keyword prefix.

use super::*;
use crate::domain::keys::{self, MAX_KEYWORD};

impl ConversationApi {
    pub(super) async fn search_phrases(
        &self,
        request: Request<pb::SearchCannedResponsesRequest>,
    ) -> Result<pb::SearchCannedResponsesResponse> {
        let identity = authorized(&request, &READER_ROLES, "searching canned responses")?;
        let req = request.get_ref();
        text_field("keyword_prefix", &req.keyword_prefix, 0, MAX_KEYWORD)?;
        let limit = page_size(req.page_size)?;
        let after = token::decode(&req.page_token, 1)?.map(|mut parts| parts.remove(0));
        let mut phrases = self
            .ctx
            .store
            .search_canned_responses(
                &identity.tenant_id,
                &req.keyword_prefix,
                after.as_deref(),
                limit + 1,
            )
            .await?;
        let next_page_token = next_page(&mut phrases, limit, |last| {
            token::encode(&[&keys::keyword_key(&last.keyword)])
        });
        Ok(pb::SearchCannedResponsesResponse {
            canned_responses: phrases.iter().map(convert::canned_response).collect(),
            next_page_token,
        })
    }
}
