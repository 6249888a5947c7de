-- Live views of a tenant's ongoing conversations: a stream reads its tenant's events after
-- its cursor, and its snapshot pages through the conversations not CLOSED (state 5), newest
-- first, without walking the tenant's closed history.
CREATE INDEX events_by_tenant ON events (tenant_id, sequence);
CREATE INDEX conversations_ongoing ON conversations (tenant_id, create_time DESC, id DESC)
    WHERE state <> 5;
