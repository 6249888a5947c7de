//! gRPC services the gateway serves itself.

mod convert;
mod directory;
mod platform;

pub use directory::DirectoryApi;
pub use platform::{PLATFORM_SCOPE, PlatformApi};
