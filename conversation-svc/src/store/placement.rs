//! Where a conversation waits in routing-svc, as this service last asked: the enqueue key of
//! its latest EnqueueConversation, against which assignments routing-svc makes are checked.

use super::Mutation;
use crate::error::Result;

impl Mutation {
    /// Records that conversation `conversation_id` now waits under `enqueue_key` (empty:
    /// nowhere), as the command written in this transaction asks routing-svc.
    pub async fn set_enqueue_key(
        &mut self,
        conversation_id: &str,
        enqueue_key: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE conversations SET enqueue_key = $2 WHERE id = $1")
            .bind(conversation_id)
            .bind(enqueue_key)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The enqueue key conversation `conversation_id` waits under: empty when it waits
    /// nowhere, `None` when it was last queued before keys were kept.
    pub async fn enqueue_key(&mut self, conversation_id: &str) -> Result<Option<String>> {
        let key: Option<(Option<String>,)> =
            sqlx::query_as("SELECT enqueue_key FROM conversations WHERE id = $1")
                .bind(conversation_id)
                .fetch_optional(self.conn())
                .await?;
        Ok(key.and_then(|(key,)| key))
    }
}
