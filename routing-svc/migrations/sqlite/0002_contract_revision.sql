-- Contract revision before the conversation lifecycle: skill levels on queue requirements,
-- channels a capacity profile excludes, and what offers show (channel address, queue name,
-- wait start, reject reason).

-- required_skills held skill names; it now holds [{"name", "min_level"}]. Names stored
-- before had no level: any level qualifies, which is min_level 1.
UPDATE queues SET required_skills = (
    SELECT json_group_array(json_object('name', value, 'min_level', 1))
    FROM json_each(queues.required_skills)
);

-- Channels (contract numbers, JSON) an agent of the profile never receives; copied onto
-- the agent like channel_costs.
ALTER TABLE capacity_profiles ADD COLUMN excluded_channels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN excluded_channels TEXT NOT NULL DEFAULT '[]';

-- The customer's address on the channel, from the enqueue, shown on offers.
ALTER TABLE enqueues ADD COLUMN channel_address TEXT NOT NULL DEFAULT '';
ALTER TABLE waiting ADD COLUMN channel_address TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN channel_address TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN queue_display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE offers ADD COLUMN wait_start_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE offers ADD COLUMN reject_reason TEXT NOT NULL DEFAULT '';

UPDATE offers SET queue_display_name = COALESCE(
    (SELECT q.display_name FROM queues q WHERE q.id = offers.queue_id), '');
UPDATE offers SET wait_start_time = COALESCE(
    (SELECT MIN(e.enqueue_time) FROM enqueues e WHERE e.conversation_id = offers.conversation_id),
    offers.create_time);

-- ListOffers: a tenant's offers newest first.
CREATE INDEX offers_tenant_time ON offers (tenant_id, create_time, id);
-- Agent and dashboard streams follow one tenant's events.
CREATE INDEX events_tenant ON events (tenant_id, sequence);
