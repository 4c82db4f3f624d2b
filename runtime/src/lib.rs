//! # scl-runtime — everything that touches the world
//!
//! The `scl` command line, the store-and-forward engine, and the site and
//! central roles. Nothing depends on this crate.

pub mod bulk_cli;
pub mod bundle;
pub mod central;
pub mod check;
pub mod cli;
pub mod database;
pub mod deployment;
pub mod external;
pub mod failover;
mod http_server;
pub mod keys;
pub mod modules;
pub mod notify;
pub mod params;
pub mod pool;
pub mod protocol;
pub mod run;
pub mod runs;
pub mod saf;
pub mod serve;
pub mod site;
pub mod timelog;
pub mod webhooks;
