//! Pure conversation rules: the lifecycle state machine and who may see and act on a
//! conversation. Nothing here knows about gRPC or SQL. Card-number masking is shared by
//! every service and lives in `switchboard_server_kit::masking`.

pub mod access;
pub mod reopen;
pub mod state;
