//! Strict local simulators of the services the gateway talks to, for tests and `sandbox`
//! mode. They serve the same HTTP paths and shapes as the real services and refuse what the
//! real ones refuse, so a bug in a client fails a test instead of passing silently.

pub mod faults;
pub mod fragment;
mod server;
pub mod ton;
