-- Conversation events now carry two positions: `sequence` within their conversation and
-- `log_sequence` in conversation-svc's service-wide log. The cursor and the assignment keys
-- always held the log position; the column names now say so.
ALTER TABLE consumer_cursor RENAME COLUMN sequence TO log_sequence;
ALTER TABLE conversation_facts RENAME COLUMN last_sequence TO last_log_sequence;
ALTER TABLE assignment_facts RENAME COLUMN sequence TO log_sequence;
