//! Function-level authorization: which roles may call which method, and which supervisor
//! action a method needs the tenant to have enabled. Taken from the comments of the public
//! protos; the services check again, so this table only keeps obviously unauthorized calls
//! away from them.
//!
//! Rules are looked up by full method first, then by service. A method of a known public
//! service with no rule of either kind (for example one added to the contract after this
//! table) needs only an authenticated caller: the owning service answers it.

use switchboard_server_kit::{Identity, PrincipalKind, Role};

/// What a caller needs to call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// At least one of these roles; empty means any authenticated caller.
    pub roles: &'static [Role],
    /// A supervisor action the caller's tenant must have enabled, by its lowercase name.
    pub action: Option<&'static str>,
    /// Only platform operators may call it, and no tenant principal whatever its roles.
    pub operators_only: bool,
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The caller has none of the roles the method needs.
    RoleRequired {
        /// The full method.
        method: String,
        /// The roles that would have been accepted.
        roles: &'static [Role],
    },
    /// The tenant has not enabled the supervisor action the method performs.
    ActionDisabled {
        /// The action, e.g. `force_close`.
        action: &'static str,
    },
    /// A tenant principal called a platform operators' method.
    OperatorRequired {
        /// The full method.
        method: String,
    },
    /// A platform operator called a method of a tenant: operators are users of no tenant.
    NotForOperators {
        /// The full method.
        method: String,
    },
}

const ANY: &[Role] = &[];
const AGENT_OR_SUPERVISOR: &[Role] = &[Role::Agent, Role::Supervisor];
const ADMIN: &[Role] = &[Role::Administrator];
const SUPERVISOR: &[Role] = &[Role::Supervisor];
const SUPERVISOR_OR_ADMIN: &[Role] = &[Role::Supervisor, Role::Administrator];
const STAFF: &[Role] = &[Role::Agent, Role::Supervisor, Role::Administrator];
const CONVERSATION_ROLES: &[Role] = &[
    Role::Agent,
    Role::Supervisor,
    Role::Administrator,
    Role::Bot,
];
const REPORT_READERS: &[Role] = &[Role::Analyst, Role::Supervisor, Role::Administrator];

const fn roles(roles: &'static [Role]) -> Rule {
    Rule {
        roles,
        action: None,
        operators_only: false,
    }
}

const fn supervisor_action(action: &'static str) -> Rule {
    Rule {
        roles: SUPERVISOR,
        action: Some(action),
        operators_only: false,
    }
}

const OPERATORS: Rule = Rule {
    roles: ANY,
    action: None,
    operators_only: true,
};

/// Keys ending in `/` are service rules (`/package.Service/`); the others are full methods.
const RULES: &[(&str, Rule)] = &[
    // routing: an agent's own routing; a supervisor may act for an agent.
    (
        "/switchboard.routing.v1.AgentService/",
        roles(AGENT_OR_SUPERVISOR),
    ),
    // routing: configuration is changed by administrators and read by staff.
    (
        "/switchboard.routing.v1.QueueService/CreateProgram",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/CreateQueue",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/UpdateQueue",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/DeleteQueue",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/CreateCapacityProfile",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/SetAgentProfile",
        roles(ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/GetProgram",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListPrograms",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/GetQueue",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListQueues",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListCapacityProfiles",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/GetAgentProfile",
        roles(STAFF),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListAgentProfiles",
        roles(STAFF),
    ),
    // routing: live state and decision records are for supervisors (administrators too,
    // since the service decides the finer rule).
    (
        "/switchboard.routing.v1.QueueService/ListAgentStates",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/StreamAgentStates",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/GetQueueState",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListRoutingDecisions",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.routing.v1.QueueService/ListOffers",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    // routing: transfer targets serve the agent transferring (or a supervisor reassigning).
    (
        "/switchboard.routing.v1.QueueService/ListTransferTargets",
        roles(AGENT_OR_SUPERVISOR),
    ),
    // conversation: agents, supervisors, administrators and bots; object rules in the service.
    (
        "/switchboard.conversation.v1.ConversationService/",
        roles(CONVERSATION_ROLES),
    ),
    // conversation: each supervisor action needs SUPERVISOR and the tenant's consent.
    (
        "/switchboard.conversation.v1.SupervisorService/",
        roles(SUPERVISOR),
    ),
    (
        "/switchboard.conversation.v1.SupervisorService/MonitorConversation",
        supervisor_action("monitor"),
    ),
    (
        "/switchboard.conversation.v1.SupervisorService/JoinConversation",
        supervisor_action("join"),
    ),
    (
        "/switchboard.conversation.v1.SupervisorService/AssignConversation",
        supervisor_action("assign"),
    ),
    (
        "/switchboard.conversation.v1.SupervisorService/TransferConversation",
        supervisor_action("transfer"),
    ),
    (
        "/switchboard.conversation.v1.SupervisorService/ForceCloseConversation",
        supervisor_action("force_close"),
    ),
    // conversation: status counts are an insight, not an action on a conversation.
    (
        "/switchboard.conversation.v1.SupervisorService/CountConversationsByStatus",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    // conversation configuration: anyone reads, administrators change (supervisors may
    // manage canned responses).
    (
        "/switchboard.conversation.v1.ConversationConfigService/CreateWrapUpReason",
        roles(ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/UpdateWrapUpReason",
        roles(ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/CreateStatusLabel",
        roles(ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/UpdateStatusLabel",
        roles(ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/DeleteStatusLabel",
        roles(ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/CreateCannedResponse",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/UpdateCannedResponse",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/DeleteCannedResponse",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/ListWrapUpReasons",
        roles(ANY),
    ),
    (
        "/switchboard.conversation.v1.ConversationConfigService/ListStatusLabels",
        roles(ANY),
    ),
    // reporting.
    (
        "/switchboard.reporting.v1.ReportingService/",
        roles(REPORT_READERS),
    ),
    // directory, served here.
    (
        "/switchboard.directory.v1.DirectoryService/GetCurrentIdentity",
        roles(ANY),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/CreateTenant",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/GetTenant",
        roles(ANY),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/ListTenants",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/GetTenantSettings",
        roles(ANY),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/UpdateTenantSettings",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/CreateUser",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/GetUser",
        roles(ANY),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/ListUsers",
        roles(SUPERVISOR_OR_ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/UpdateUser",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/CreateApiKey",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/ListApiKeys",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/RevokeApiKey",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/ListAuditLogEntries",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/CreateTeam",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/ListTeams",
        roles(ANY),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/UpdateTeam",
        roles(ADMIN),
    ),
    (
        "/switchboard.directory.v1.DirectoryService/DeleteTeam",
        roles(ADMIN),
    ),
    // platform: operators only, and operators nothing else (see authorize_operator).
    ("/switchboard.directory.v1.PlatformService/", OPERATORS),
];

/// The rule for the full method `path` (`/package.Service/Method`), if any.
pub fn rule_for(path: &str) -> Option<Rule> {
    let exact = RULES.iter().find(|(key, _)| *key == path);
    let service = || {
        let end = path.rfind('/')?;
        let prefix = &path[..=end];
        RULES.iter().find(|(key, _)| *key == prefix)
    };
    exact.or_else(service).map(|(_, rule)| *rule)
}

/// Whether `identity` (a tenant principal) may call `path`.
pub fn authorize(path: &str, identity: &Identity) -> Result<(), Denial> {
    let Some(rule) = rule_for(path) else {
        return Ok(());
    };
    if rule.operators_only {
        return Err(Denial::OperatorRequired {
            method: path.to_owned(),
        });
    }
    if !rule.roles.is_empty() && !identity.has_any_role(rule.roles) {
        return Err(Denial::RoleRequired {
            method: path.to_owned(),
            roles: rule.roles,
        });
    }
    if let Some(action) = rule.action
        && !identity
            .enabled_supervisor_actions
            .iter()
            .any(|enabled| enabled == action)
    {
        return Err(Denial::ActionDisabled { action });
    }
    Ok(())
}

/// Whether a platform operator may call `path`: only the methods marked for operators, so
/// that a method added anywhere else stays closed to them.
pub fn authorize_operator(path: &str) -> Result<(), Denial> {
    match rule_for(path) {
        Some(rule) if rule.operators_only => Ok(()),
        _ => Err(Denial::NotForOperators {
            method: path.to_owned(),
        }),
    }
}

/// Whether `identity` may call the internal API at `path`: only a Switchboard service
/// (a signed service principal holding the Service role), never a tenant's user or key.
pub fn authorize_service(path: &str, identity: &Identity) -> Result<(), Denial> {
    if identity.principal_kind == PrincipalKind::Service && identity.has_role(Role::Service) {
        Ok(())
    } else {
        Err(Denial::RoleRequired {
            method: path.to_owned(),
            roles: &[Role::Service],
        })
    }
}

/// The keys of the table, for checks against the API contract.
pub fn rule_keys() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|(key, _)| *key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message as _;

    use super::*;

    fn caller(roles: &[Role], actions: &[&str]) -> Identity {
        Identity {
            tenant_id: "t".to_owned(),
            tenant_ancestry: Vec::new(),
            principal_id: "u".to_owned(),
            principal_kind: PrincipalKind::User,
            display_name: "U".to_owned(),
            roles: roles.to_vec(),
            enabled_supervisor_actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        }
    }

    fn allowed(path: &str, roles: &[Role], actions: &[&str]) -> bool {
        authorize(path, &caller(roles, actions)).is_ok()
    }

    /// Every method of the public contract, as `/package.Service/Method`.
    fn public_methods() -> HashSet<String> {
        let set =
            prost_types::FileDescriptorSet::decode(switchboard_proto::PUBLIC_FILE_DESCRIPTOR_SET)
                .unwrap();
        let mut out = HashSet::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    out.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_rule_names_a_public_method_or_service() {
        let methods = public_methods();
        for key in rule_keys() {
            if key.ends_with('/') {
                assert!(
                    methods.iter().any(|m| m.starts_with(key)),
                    "no public service {key}"
                );
            } else {
                assert!(methods.contains(key), "no public method {key}");
            }
        }
    }

    #[test]
    fn every_method_of_a_per_method_service_has_a_rule() {
        // Services without a service-wide rule must list each method, so that a new method
        // is a conscious decision.
        for method in public_methods() {
            assert!(rule_for(&method).is_some(), "no rule for {method}");
        }
    }

    #[test]
    fn agent_service_needs_agent_or_supervisor() {
        let path = "/switchboard.routing.v1.AgentService/SetPresence";
        assert!(allowed(path, &[Role::Agent], &[]));
        assert!(allowed(path, &[Role::Supervisor], &[]));
        assert!(!allowed(path, &[Role::Administrator, Role::Analyst], &[]));
        // A method the table does not know yet falls under the service rule.
        assert!(!allowed(
            "/switchboard.routing.v1.AgentService/Future",
            &[Role::Bot],
            &[]
        ));
    }

    #[test]
    fn queue_changes_need_administrator_and_reads_need_staff() {
        let create = "/switchboard.routing.v1.QueueService/CreateQueue";
        assert!(allowed(create, &[Role::Administrator], &[]));
        assert!(!allowed(create, &[Role::Supervisor, Role::Agent], &[]));
        let read = "/switchboard.routing.v1.QueueService/ListQueues";
        for role in [Role::Agent, Role::Supervisor, Role::Administrator] {
            assert!(allowed(read, &[role], &[]), "{role:?}");
        }
        assert!(!allowed(read, &[Role::Analyst, Role::Bot], &[]));
        let live = "/switchboard.routing.v1.QueueService/StreamAgentStates";
        assert!(allowed(live, &[Role::Supervisor], &[]));
        assert!(!allowed(live, &[Role::Agent], &[]));
    }

    #[test]
    fn conversations_take_staff_and_bots_but_not_analysts() {
        let path = "/switchboard.conversation.v1.ConversationService/CreateConversation";
        assert!(allowed(path, &[Role::Bot], &[]));
        assert!(allowed(path, &[Role::Agent], &[]));
        assert!(!allowed(path, &[Role::Analyst], &[]));
    }

    #[test]
    fn supervisor_actions_need_the_role_and_the_enabled_action() {
        let cases = [
            ("MonitorConversation", "monitor"),
            ("JoinConversation", "join"),
            ("AssignConversation", "assign"),
            ("TransferConversation", "transfer"),
            ("ForceCloseConversation", "force_close"),
        ];
        for (method, action) in cases {
            let path = format!("/switchboard.conversation.v1.SupervisorService/{method}");
            assert!(allowed(&path, &[Role::Supervisor], &[action]), "{method}");
            let others: Vec<&str> = cases
                .iter()
                .map(|(_, a)| *a)
                .filter(|a| *a != action)
                .collect();
            assert_eq!(
                authorize(&path, &caller(&[Role::Supervisor], &others)),
                Err(Denial::ActionDisabled { action }),
                "{method}"
            );
            assert!(matches!(
                authorize(
                    &path,
                    &caller(&[Role::Agent, Role::Administrator], &[action])
                ),
                Err(Denial::RoleRequired { .. })
            ));
        }
        let stream = "/switchboard.conversation.v1.SupervisorService/StreamOngoingConversations";
        assert!(allowed(stream, &[Role::Supervisor], &[]));
        assert!(!allowed(stream, &[Role::Agent], &[]));
    }

    #[test]
    fn conversation_config_reads_are_open_and_changes_are_not() {
        let list = "/switchboard.conversation.v1.ConversationConfigService/ListStatusLabels";
        assert!(allowed(list, &[Role::Analyst], &[]));
        let create = "/switchboard.conversation.v1.ConversationConfigService/CreateStatusLabel";
        assert!(allowed(create, &[Role::Administrator], &[]));
        assert!(!allowed(create, &[Role::Supervisor], &[]));
        let canned = "/switchboard.conversation.v1.ConversationConfigService/CreateCannedResponse";
        assert!(allowed(canned, &[Role::Supervisor], &[]));
        assert!(!allowed(canned, &[Role::Agent], &[]));
    }

    #[test]
    fn reports_are_for_analysts_supervisors_and_administrators() {
        let path = "/switchboard.reporting.v1.ReportingService/ExportReport";
        for role in [Role::Analyst, Role::Supervisor, Role::Administrator] {
            assert!(allowed(path, &[role], &[]), "{role:?}");
        }
        assert!(!allowed(path, &[Role::Agent, Role::Bot], &[]));
    }

    #[test]
    fn directory_rules_follow_its_comments() {
        let dir = |m: &str| format!("/switchboard.directory.v1.DirectoryService/{m}");
        assert!(allowed(&dir("GetCurrentIdentity"), &[Role::Bot], &[]));
        assert!(allowed(&dir("GetTenantSettings"), &[Role::Agent], &[]));
        assert!(allowed(&dir("ListUsers"), &[Role::Supervisor], &[]));
        assert!(!allowed(&dir("ListUsers"), &[Role::Agent], &[]));
        for admin_only in [
            "CreateUser",
            "UpdateUser",
            "CreateApiKey",
            "RevokeApiKey",
            "UpdateTenantSettings",
        ] {
            assert!(allowed(&dir(admin_only), &[Role::Administrator], &[]));
            assert!(
                !allowed(&dir(admin_only), &[Role::Supervisor, Role::Agent], &[]),
                "{admin_only}"
            );
        }
    }

    #[test]
    fn platform_methods_are_for_operators_and_operators_get_nothing_else() {
        let create = "/switchboard.directory.v1.PlatformService/CreateTopLevelTenant";
        let every_role = [
            Role::Agent,
            Role::Supervisor,
            Role::Administrator,
            Role::Analyst,
            Role::Bot,
            Role::Service,
        ];
        assert_eq!(
            authorize(create, &caller(&every_role, &[])),
            Err(Denial::OperatorRequired {
                method: create.to_owned()
            })
        );
        assert_eq!(authorize_operator(create), Ok(()));
        assert!(authorize_operator("/switchboard.directory.v1.PlatformService/Future").is_ok());
        for method in public_methods() {
            if !method.starts_with("/switchboard.directory.v1.PlatformService/") {
                assert_eq!(
                    authorize_operator(&method),
                    Err(Denial::NotForOperators {
                        method: method.clone()
                    })
                );
            }
        }
        // A method no rule names yet is closed to operators too.
        assert!(authorize_operator("/switchboard.routing.v1.QueueService/Future").is_err());
    }

    #[test]
    fn unknown_method_of_a_per_method_service_passes_to_the_service() {
        assert_eq!(
            rule_for("/switchboard.routing.v1.QueueService/Future"),
            None
        );
        assert!(allowed(
            "/switchboard.routing.v1.QueueService/Future",
            &[Role::Bot],
            &[]
        ));
    }

    #[test]
    fn only_services_may_call_internal_apis() {
        let path = "/switchboard.directory.internal.v1.DirectoryInternalService/GetUsers";
        assert_eq!(
            authorize_service(path, &Identity::service("routing-svc")),
            Ok(())
        );
        // A user holding every tenant role is still no service.
        let admin = caller(&[Role::Administrator, Role::Supervisor, Role::Agent], &[]);
        assert!(authorize_service(path, &admin).is_err());
        // Neither kind nor role alone is enough.
        let mut service_kind_without_role = Identity::service("routing-svc");
        service_kind_without_role.roles = vec![Role::Administrator];
        assert!(authorize_service(path, &service_kind_without_role).is_err());
        let user_with_service_role = caller(&[Role::Service], &[]);
        assert!(authorize_service(path, &user_with_service_role).is_err());
    }
}
