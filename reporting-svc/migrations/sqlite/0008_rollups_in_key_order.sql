-- Rollups are only ever read and written by their key. Stored in the key's order (WITHOUT
-- ROWID), a report's range of slots is one walk over the table's leaves; before, it walked
-- the primary key's index and looked every row up in the table. The rows are copied once.
CREATE TABLE rollups_in_key_order (
    tenant_id  TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    slot       INTEGER NOT NULL,
    queue_id   TEXT    NOT NULL,
    channel    INTEGER NOT NULL,
    program_id TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    label      TEXT    NOT NULL,
    n          INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, metric, slot, queue_id, channel, program_id, agent_id, label)
) WITHOUT ROWID;

INSERT INTO rollups_in_key_order
SELECT tenant_id, metric, slot, queue_id, channel, program_id, agent_id, label, n, total
FROM rollups;

DROP TABLE rollups;
ALTER TABLE rollups_in_key_order RENAME TO rollups;
