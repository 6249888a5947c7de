//! The gRPC surface: validate, convert, call the store and the domain, convert back.

mod export;
pub mod filter;
pub mod page_token;
pub mod reporting;

pub use reporting::ReportingApi;
