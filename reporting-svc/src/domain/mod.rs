//! Pure reporting rules: facts folded from events, what the reports count, the transfer ledger, report periods in a time zone,
//! statistics, report rows, pages and CSV. No I/O here.

pub mod activity;
pub mod csv;
pub mod facts;
pub mod ledger;
pub mod metrics;
pub mod page;
pub mod period;
pub mod reports;
pub mod stats;
