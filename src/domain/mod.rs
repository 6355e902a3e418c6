//! Order and wallet decision logic, and the validated values it works with. Everything here
//! is pure: no I/O, no actors.

pub mod values;

pub use values::{PremiumMonths, StarsAmount, Username, ValueError};
