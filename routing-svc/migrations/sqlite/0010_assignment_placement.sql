-- The enqueue key of the waiting item an accepted queue offer or claim came from, sent with
-- the assignment so that conversation-svc refuses an offer made before the conversation was
-- moved, closed or queued again. Empty for transfers, invitations and older entries.
ALTER TABLE outbox ADD COLUMN enqueue_key TEXT NOT NULL DEFAULT '';
