//! The `switchboard` command's library: the whole suite in one process (`suite`), the
//! demo tenant (`seed`), the platform operator's commands (`admin`), the benchmark
//! (`bench`) and a simulated contact center against a running stack (`simulate`). The
//! end-to-end tests use the same code as `switchboard dev`.

pub mod admin;
pub mod bench;
pub mod dev;
pub mod seed;
pub mod simulate;
pub mod suite;
