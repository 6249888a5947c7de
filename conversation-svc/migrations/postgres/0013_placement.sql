-- The enqueue key of the conversation's latest EnqueueConversation to routing-svc: an
-- assignment routing-svc makes from another one (an offer made before the conversation was
-- moved, closed or queued again) is refused. Empty while it waits nowhere; NULL for
-- conversations queued before this release, which are not checked.
ALTER TABLE conversations ADD COLUMN enqueue_key TEXT;
