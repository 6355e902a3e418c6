pub mod ton;
