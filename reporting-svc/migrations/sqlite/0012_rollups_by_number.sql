-- Rollups keyed by numbers: every text of a rollup's key (tenant, metric, queue, program,
-- agent, label) is named once in `names` and the rows hold its number. A month's report
-- reads tens of thousands of nearly unique rows; keyed by 36-character ids they were three
-- times as wide, and so was the text a report reads them as. Id 0 is the empty text (a
-- dimension not known).
CREATE TABLE names (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);

INSERT INTO names (id, name) VALUES (0, '');

INSERT INTO names (name)
SELECT name FROM (
    SELECT tenant_id AS name FROM rollups UNION SELECT metric FROM rollups
    UNION SELECT queue_id FROM rollups UNION SELECT program_id FROM rollups
    UNION SELECT agent_id FROM rollups UNION SELECT label FROM rollups
)
WHERE name <> ''
ORDER BY name;

CREATE TABLE rollups_by_number (
    tenant  INTEGER NOT NULL,
    metric  INTEGER NOT NULL,
    slot    INTEGER NOT NULL,
    queue   INTEGER NOT NULL,
    channel INTEGER NOT NULL,
    program INTEGER NOT NULL,
    agent   INTEGER NOT NULL,
    label   INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    total   INTEGER NOT NULL,
    points  TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, metric, slot, queue, channel, program, agent, label)
) WITHOUT ROWID;

INSERT INTO rollups_by_number
SELECT t.id, m.id, r.slot, q.id, r.channel, p.id, a.id, l.id, r.n, r.total, r.points
FROM rollups r
JOIN names t ON t.name = r.tenant_id
JOIN names m ON m.name = r.metric
JOIN names q ON q.name = r.queue_id
JOIN names p ON p.name = r.program_id
JOIN names a ON a.name = r.agent_id
JOIN names l ON l.name = r.label
ORDER BY 1, 2, 3, 4, 5, 6, 7, 8;

DROP TABLE rollups;
ALTER TABLE rollups_by_number RENAME TO rollups;
