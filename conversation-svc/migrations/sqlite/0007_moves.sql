-- What events of moves between owners, queues and participants say besides the common
-- fields: the queue before a move, the participant who joined or left and as what, the
-- mode after an escalation, the units a supervisor's override put an agent over capacity,
-- and how the owner's segment ended.
ALTER TABLE events ADD COLUMN previous_queue_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN participant_user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN participant_role INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN mode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN units_over_capacity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN segment_end TEXT NOT NULL DEFAULT '';
