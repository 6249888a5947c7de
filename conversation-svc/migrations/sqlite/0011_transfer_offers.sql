-- A transfer to an agent waits for the agent's answer to routing-svc's offer: the queue's
-- fallback, kept from when it was asked for, applies if the agent does not take it.
ALTER TABLE transfers ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0;
CREATE INDEX transfers_by_offer ON transfers (offer_id);
