//! Pure conversation rules: the lifecycle state machine, who may see and act on a
//! conversation, and card-number masking. Nothing here knows about gRPC or SQL.

pub mod access;
pub mod masking;
pub mod state;
