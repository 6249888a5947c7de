//! Pure rules of the gateway: where a path goes, who may call what, API key secrets,
//! deadlines, directory field rules, teams and pagination. No tonic, no sqlx.

pub mod api_key;
pub mod authz;
pub mod deadline;
pub mod directory;
pub mod operator;
pub mod page;
pub mod route;
pub mod team;
