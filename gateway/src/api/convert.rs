//! Stored records to API messages.

use switchboard_proto::directory::v1 as pb;
use switchboard_server_kit::db::micros_to_timestamp;

use crate::store::{
    ApiKeyRecord, AuditRecord, SettingsRecord, TeamRecord, TenantRecord, UserRecord,
};

pub fn tenant(record: TenantRecord) -> pb::Tenant {
    pb::Tenant {
        id: record.id,
        parent_tenant_id: record.parent_tenant_id.unwrap_or_default(),
        display_name: record.display_name,
        create_time: Some(micros_to_timestamp(record.created_at)),
    }
}

pub fn settings(record: SettingsRecord) -> pb::TenantSettings {
    pb::TenantSettings {
        tenant_id: record.tenant_id,
        enabled_supervisor_actions: record
            .enabled_supervisor_actions
            .into_iter()
            .map(i32::from)
            .collect(),
        reopen_window: Some(prost_types::Duration {
            seconds: record.reopen_window.as_secs() as i64,
            nanos: record.reopen_window.subsec_nanos() as i32,
        }),
        time_zone: record.time_zone,
    }
}

/// A user with the ids of its teams (ascending).
pub fn user(record: UserRecord, team_ids: Vec<String>) -> pb::User {
    pb::User {
        team_ids,
        id: record.id,
        tenant_id: record.tenant_id,
        display_name: record.display_name,
        email: record.email,
        roles: record.roles.into_iter().map(i32::from).collect(),
        active: record.active,
        create_time: Some(micros_to_timestamp(record.created_at)),
    }
}

/// What the internal directory API tells other services about a user, with the ids of its
/// teams (ascending).
pub fn user_info(
    record: UserRecord,
    team_ids: Vec<String>,
) -> switchboard_proto::directory::internal::v1::UserInfo {
    switchboard_proto::directory::internal::v1::UserInfo {
        id: record.id,
        tenant_id: record.tenant_id,
        display_name: record.display_name,
        roles: record.roles.into_iter().map(i32::from).collect(),
        active: record.active,
        team_ids,
    }
}

pub fn team(record: TeamRecord) -> pb::Team {
    pb::Team {
        id: record.id,
        tenant_id: record.tenant_id,
        display_name: record.display_name,
        create_time: Some(micros_to_timestamp(record.created_at)),
    }
}

pub fn api_key(record: ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: record.id,
        tenant_id: record.tenant_id,
        display_name: record.display_name,
        roles: record.roles.into_iter().map(i32::from).collect(),
        prefix: record.prefix,
        create_time: Some(micros_to_timestamp(record.created_at)),
        revoke_time: record.revoked_at.map(micros_to_timestamp),
    }
}

pub fn audit_entry(record: AuditRecord) -> pb::AuditLogEntry {
    pb::AuditLogEntry {
        id: record.id,
        tenant_id: record.tenant_id,
        actor_id: record.actor_id,
        method: record.method,
        target_id: record.target_id,
        request_id: record.request_id,
        create_time: Some(micros_to_timestamp(record.created_at)),
    }
}
