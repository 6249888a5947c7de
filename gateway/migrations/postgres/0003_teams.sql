-- Teams of a tenant and their members (User.team_ids), which reports and live views filter
-- by. Ids are UUID strings; times are microseconds since the unix epoch.

CREATE TABLE teams (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    display_name TEXT    NOT NULL,
    -- The name lowercased: a tenant's team names are unique without regard to case.
    name_key     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE UNIQUE INDEX teams_by_tenant_name_key ON teams (tenant_id, name_key);
CREATE INDEX teams_by_tenant ON teams (tenant_id, display_name, id);

-- A user is a member of a team of its own tenant (checked by the directory before it writes).
-- Deleting a team deletes its memberships: DeleteTeam does so itself, and the cascade keeps
-- the tables consistent whatever else deletes a team.
CREATE TABLE team_members (
    team_id    TEXT    NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_user ON team_members (user_id, team_id);
