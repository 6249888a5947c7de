//! Which component answers a gRPC path. Decided on the path alone, before anything else
//! happens to the call, so that an internal API can never be reached through the gateway.

/// A service the gateway forwards calls to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// routing-svc: `switchboard.routing.v1`.
    Routing,
    /// conversation-svc: `switchboard.conversation.v1`.
    Conversation,
    /// reporting-svc: `switchboard.reporting.v1`.
    Reporting,
}

impl Upstream {
    /// The name used in logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Routing => "routing-svc",
            Upstream::Conversation => "conversation-svc",
            Upstream::Reporting => "reporting-svc",
        }
    }
}

/// Where a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Forwarded, body untouched, to a service.
    Upstream(Upstream),
    /// Served by the gateway's own DirectoryService.
    Directory,
    /// Served by the gateway's own PlatformService (platform operators).
    Platform,
    /// Not a public API: answered UNIMPLEMENTED without contacting anything.
    Unknown,
}

/// Public package prefixes and who owns them, the first match winning. Internal packages
/// (`switchboard.<area>.internal.v1`) match none of them by construction.
const PREFIXES: [(&str, Target); 5] = [
    (
        "/switchboard.routing.v1.",
        Target::Upstream(Upstream::Routing),
    ),
    (
        "/switchboard.conversation.v1.",
        Target::Upstream(Upstream::Conversation),
    ),
    (
        "/switchboard.reporting.v1.",
        Target::Upstream(Upstream::Reporting),
    ),
    // Before the directory package, which it is part of.
    (
        "/switchboard.directory.v1.PlatformService/",
        Target::Platform,
    ),
    ("/switchboard.directory.v1.", Target::Directory),
];

/// The target of a gRPC call to `path` (`/package.Service/Method`).
pub fn target_of(path: &str) -> Target {
    let Some((service, method)) = split(path) else {
        return Target::Unknown;
    };
    if service.contains(".internal.") || method.is_empty() {
        return Target::Unknown;
    }
    PREFIXES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(Target::Unknown, |(_, target)| *target)
}

/// Splits `/package.Service/Method` into its service and method; `None` when the path has
/// another shape.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_packages_go_to_their_owner() {
        assert_eq!(
            target_of("/switchboard.routing.v1.AgentService/SetPresence"),
            Target::Upstream(Upstream::Routing)
        );
        assert_eq!(
            target_of("/switchboard.conversation.v1.SupervisorService/JoinConversation"),
            Target::Upstream(Upstream::Conversation)
        );
        assert_eq!(
            target_of("/switchboard.reporting.v1.ReportingService/ExportReport"),
            Target::Upstream(Upstream::Reporting)
        );
        assert_eq!(
            target_of("/switchboard.directory.v1.DirectoryService/CreateUser"),
            Target::Directory
        );
        assert_eq!(
            target_of("/switchboard.directory.v1.PlatformService/CreateTopLevelTenant"),
            Target::Platform
        );
    }

    #[test]
    fn internal_and_unknown_paths_are_not_routed() {
        for path in [
            "/switchboard.routing.internal.v1.RoutingInternalService/ReserveCapacity",
            "/switchboard.conversation.internal.v1.ConversationInternalService/Subscribe",
            "/switchboard.directory.internal.v1.DirectoryInternalService/GetUsers",
            "/switchboard.directory.internal.v1.DirectoryInternalService/GetTenantAncestry",
            "/switchboard.routing.v1.internal.X/Y",
            "/switchboard.routing.v1.AgentService/",
            "/switchboard.routing.v1.AgentService/A/B",
            "/switchboard.routing.v2.AgentService/SetPresence",
            "/switchboard.routingv1.AgentService/SetPresence",
            "/grpc.health.v1.Health/Check",
            "/other.Service/Method",
            "switchboard.routing.v1.AgentService/SetPresence",
            "/",
            "",
        ] {
            assert_eq!(target_of(path), Target::Unknown, "{path}");
        }
    }
}
