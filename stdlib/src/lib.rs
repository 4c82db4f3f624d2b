//! # scl-stdlib — the built-in modules
//!
//! The signatures of `ExternalSystem`, `Notify`, `Database`, `Route`,
//! `Attributes`, `Instance`, `Scripts`, `Shared`, `Deliveries`, `Log`, `Json`,
//! `Time` and `Math` are declared once, here, and read by the checker and the
//! language server.

pub mod core_modules;
pub mod database;
pub mod external;
pub mod notify;
pub mod signatures;
