//! Pure conversation rules: the lifecycle state machine, who may see and act on a
//! conversation, which tenant a call reaches, who may take it out of its owner's hands, what
//! a logout returns to its queue, whether a queue overflow still applies, and the lookup
//! keys of tenant-defined names. Nothing here knows about gRPC or SQL. Card-number masking
//! is shared by every service and lives in `switchboard_server_kit::masking`.

pub mod access;
pub mod invitation;
pub mod keys;
pub mod logout;
pub mod overflow;
pub mod reopen;
pub mod state;
pub mod supervision;
pub mod tenancy;
pub mod transfer;
