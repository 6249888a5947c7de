-- Status labels and canned responses ("smart phrases"): tenant configuration of
-- conversations. A label's name and a phrase's keyword are unique per tenant regardless of
-- case: each row keeps the lowercase key it is found by (conversation-svc domain::keys),
-- compared byte by byte, so that a keyword prefix is a range of the (tenant_id,
-- keyword_key) index.

CREATE TABLE status_labels (
    id           TEXT   PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    name_key     TEXT COLLATE BINARY NOT NULL,
    create_time  BIGINT NOT NULL,
    update_time  BIGINT NOT NULL,
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE canned_responses (
    id          TEXT   PRIMARY KEY,
    tenant_id   TEXT   NOT NULL,
    keyword     TEXT   NOT NULL,
    keyword_key TEXT COLLATE BINARY NOT NULL,
    text        TEXT   NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    UNIQUE (tenant_id, keyword_key)
);

-- Counting a tenant's conversations by label, and finding those a deleted label leaves.
CREATE INDEX conversations_by_status_label ON conversations (tenant_id, status_label_id);
