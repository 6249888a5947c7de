-- Contact history: a customer who writes after the reopen window of a closed conversation
-- starts a new one that names the closed one. A closed conversation has at most one
-- follow-up, so a customer's later messages to it all land in the same new conversation.
ALTER TABLE conversations ADD COLUMN previous_conversation_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX conversations_by_previous
    ON conversations (previous_conversation_id) WHERE previous_conversation_id <> '';
