//! The `switchboard` command's library: the whole suite in one process (`suite`) and the
//! demo tenant (`seed`). The end-to-end tests use the same code as `switchboard dev`.

pub mod dev;
pub mod seed;
pub mod suite;
