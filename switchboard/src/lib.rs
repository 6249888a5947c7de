//! The `switchboard` command's library: the whole suite in one process (`suite`), the
//! demo tenant (`seed`) and the platform operator's commands (`admin`). The end-to-end tests
//! use the same code as `switchboard dev`.

pub mod admin;
pub mod bench;
pub mod dev;
pub mod seed;
pub mod suite;
