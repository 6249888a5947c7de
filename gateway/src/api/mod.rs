//! gRPC services the gateway serves itself.

mod convert;
mod directory;
mod internal;
mod platform;
mod team;

pub use directory::DirectoryApi;
pub use internal::{DirectoryInternalApi, MAX_USER_IDS};
pub use platform::{PLATFORM_SCOPE, PlatformApi};
