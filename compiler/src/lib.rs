//! # scl-compiler — the SCL engine
//!
//! `hir::Program → ir::Module → cranelift → native code`, the value model and
//! the host-call ABI. **Architecture invariant:** no tokio, no network, no
//! knowledge of sites or deployments; host functions arrive through the
//! embedding API.
