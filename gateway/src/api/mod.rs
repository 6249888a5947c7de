//! gRPC services the gateway serves itself.

mod convert;
mod directory;

pub use directory::DirectoryApi;
