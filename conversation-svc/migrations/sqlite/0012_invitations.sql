-- Invitations to consult or conference: which agent was invited by whom, the routing offer
-- that proposed it and how it ended; the participant an accepted invitation brought in; the
-- invitation an event is about; and how many invitations a conversation ever had, so that
-- loading the many that never had one costs no query.
CREATE TABLE invitations (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    agent_id        TEXT    NOT NULL,
    display_name    TEXT    NOT NULL DEFAULT '',
    role            INTEGER NOT NULL,
    inviter_id      TEXT    NOT NULL,
    offer_id        TEXT    NOT NULL,
    outcome         INTEGER NOT NULL,
    reject_reason   TEXT    NOT NULL DEFAULT '',
    note            TEXT    NOT NULL DEFAULT '',
    invite_time     BIGINT  NOT NULL,
    resolve_time    BIGINT
);
CREATE INDEX invitations_by_conversation ON invitations (conversation_id, invite_time);
CREATE INDEX invitations_by_offer ON invitations (offer_id);
ALTER TABLE participants ADD COLUMN invitation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN invitation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN invitation_count BIGINT NOT NULL DEFAULT 0;
