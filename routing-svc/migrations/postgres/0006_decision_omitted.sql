-- Decisions list at most 25 candidates; the others are counted by reason here (JSON).
ALTER TABLE routing_decisions ADD COLUMN omitted TEXT NOT NULL DEFAULT '[]';
