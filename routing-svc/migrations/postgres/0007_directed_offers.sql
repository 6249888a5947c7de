-- Offers conversation-svc asks for (a transfer to an agent; later invitations): which
-- transfer or invitation they propose, who sent it and the note; and outbox entries that
-- tell conversation-svc how such an offer ended when it was not accepted.
ALTER TABLE offers ADD COLUMN reference_id TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN sender_id TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN sender_display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN note TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX offers_by_reference ON offers (tenant_id, reference_id) WHERE reference_id <> '';
ALTER TABLE outbox ADD COLUMN offer_state INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN reject_reason TEXT NOT NULL DEFAULT '';
