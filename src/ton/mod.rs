//! The TON layer: seeds and keys, wallet contracts, signed transfers, and the toncenter
//! HTTP client. Built on tonlib-core for cells, BOCs and wallet code; this module adds what
//! it lacks (BIP39 seeds, zeroized keys, normalized message hashes, an HTTP client).

pub mod address;
pub mod amount;
pub mod boc;
pub mod client;
pub mod encoding;
pub mod external;
pub mod jetton;
pub mod keys;
pub mod seed;
pub mod transfer;
pub mod wallet;

pub use address::{AddressError, AddressForm, ParsedAddress};
pub use amount::Nanoton;
pub use keys::{KeyPair, PublicKey};
pub use seed::{Seed, SeedError, SeedFormat};
pub use tonlib_core::{TonAddress, TonHash};
pub use transfer::{MessageBody, OutgoingMessage, SignedTransfer, TransferError};
pub use wallet::{Network, WalletContract, WalletVersion};
