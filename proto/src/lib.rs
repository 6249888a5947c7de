//! Switchboard's gRPC API contract: the Rust code generated from `proto/`, and the
//! descriptor sets that reflection serves.

// Stream responses are oneofs that carry whole messages (a conversation, an offer, an
// event) beside small markers; boxing them would only make every client match on a Box.
#![allow(clippy::large_enum_variant)]

/// Types shared by every API package.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("switchboard.common.v1");
    }
}

/// Routing: programs, queues, presence, capacity and offers (routing-svc).
pub mod routing {
    /// Version 1 of the public API.
    pub mod v1 {
        tonic::include_proto!("switchboard.routing.v1");
    }
    /// Service-to-service API; never routed by the gateway.
    pub mod internal {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("switchboard.routing.internal.v1");
        }
    }
}

/// Conversations: lifecycle, messages, transfers, supervision and configuration
/// (conversation-svc).
pub mod conversation {
    /// Version 1 of the public API.
    pub mod v1 {
        tonic::include_proto!("switchboard.conversation.v1");
    }
    /// Service-to-service API; never routed by the gateway.
    pub mod internal {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("switchboard.conversation.internal.v1");
        }
    }
}

/// Reports and CSV export (reporting-svc).
pub mod reporting {
    /// Version 1 of the public API.
    pub mod v1 {
        tonic::include_proto!("switchboard.reporting.v1");
    }
}

/// Tenants, users, roles, API keys and settings (served by the gateway).
pub mod directory {
    /// Version 1 of the public API.
    pub mod v1 {
        tonic::include_proto!("switchboard.directory.v1");
    }
    /// Service-to-service API, served on the gateway's internal listener only.
    pub mod internal {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("switchboard.directory.internal.v1");
        }
    }
}

/// Encoded `FileDescriptorSet` of every package, internal ones included: what each service
/// serves for reflection on its own port.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_all.bin"));

/// Encoded `FileDescriptorSet` of the public packages only: what the gateway serves for
/// reflection, so that internal services are never advertised to clients.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_public.bin"));
