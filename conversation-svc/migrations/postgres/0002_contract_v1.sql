-- Contract v1 revision: several channel identities per contact, per-conversation event
-- sequences (clients never see the service-wide counter), close reasons, bot names on
-- transcript lines and wrap-up reason codes.

-- A contact may be reached on several channels; each (channel, address) names one contact.
CREATE TABLE contact_identities (
    tenant_id   TEXT    NOT NULL,
    channel     BIGINT  NOT NULL,
    address     TEXT    NOT NULL,
    contact_id  TEXT    NOT NULL REFERENCES contacts (id),
    create_time BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, channel, address)
);
CREATE INDEX contact_identities_by_contact ON contact_identities (contact_id, create_time);
INSERT INTO contact_identities (tenant_id, channel, address, contact_id, create_time)
    SELECT tenant_id, channel, channel_address, id, create_time FROM contacts;

-- The address this conversation reached the customer at.
ALTER TABLE conversations ADD COLUMN channel_address TEXT NOT NULL DEFAULT '';
UPDATE conversations SET channel_address =
    (SELECT k.channel_address FROM contacts k WHERE k.id = conversations.contact_id);
CREATE INDEX conversations_by_contact ON conversations (contact_id, create_time DESC, id DESC);

-- How a CLOSED conversation closed (CloseReason number); only wrap-up closed them so far.
ALTER TABLE conversations ADD COLUMN close_reason BIGINT  NOT NULL DEFAULT 0;
UPDATE conversations SET close_reason = 1 WHERE state = 5;

-- Per-conversation event numbering: 1, 2, 3... within each conversation, with no gaps.
ALTER TABLE events ADD COLUMN conversation_sequence BIGINT NOT NULL DEFAULT 0;
UPDATE events SET conversation_sequence =
    (SELECT COUNT(*) FROM events e
      WHERE e.conversation_id = events.conversation_id AND e.sequence <= events.sequence);
CREATE UNIQUE INDEX events_by_conversation_sequence ON events (conversation_id, conversation_sequence);
ALTER TABLE conversations ADD COLUMN last_event_sequence BIGINT NOT NULL DEFAULT 0;
UPDATE conversations SET last_event_sequence =
    (SELECT COALESCE(MAX(e.conversation_sequence), 0) FROM events e
      WHERE e.conversation_id = conversations.id);

-- The tenant's reopen window when a CLOSED event was written, in seconds.
ALTER TABLE events ADD COLUMN reopen_window_secs BIGINT NOT NULL DEFAULT 0;

-- A message carries the sequence of the event that added it.
ALTER TABLE messages ADD COLUMN sequence BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET sequence = COALESCE(
    (SELECT e.conversation_sequence FROM events e
      WHERE e.conversation_id = messages.conversation_id AND e.message_id = messages.id), 0);

ALTER TABLE transcript_entries ADD COLUMN sender_display_name TEXT NOT NULL DEFAULT '';

ALTER TABLE wrap_up_reasons ADD COLUMN code TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX wrap_up_reasons_by_code ON wrap_up_reasons (tenant_id, code) WHERE code <> '';
