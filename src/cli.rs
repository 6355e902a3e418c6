//! The work behind the command-line subcommands, kept in the library so tests call it.

use serde_json::{json, Value};

use crate::ton::{Network, Seed, SeedError, WalletContract, WalletVersion};

/// `fragment-gateway wallet`: the addresses a seed controls, as JSON. The seed itself never
/// appears in the output.
pub fn wallet_report(input: &str, account_index: Option<u32>) -> Result<Value, SeedError> {
    let seed = Seed::from_text(input)?;
    let key = seed.derive_key(account_index)?;
    let public_key = key.public_key();
    drop(key);
    let mut wallets = serde_json::Map::new();
    for version in WalletVersion::ALL {
        let w = WalletContract::new(version, Network::Mainnet, public_key);
        wallets.insert(
            version.as_str().to_string(),
            json!({
                "wallet_id": w.wallet_id() as u32,
                "raw": w.raw_address(),
                "bounceable": w.friendly_address(true),
                "non_bounceable": w.friendly_address(false),
                // TON Connect's `walletStateInit`, for building an `account`.
                "state_init": w.state_init_boc(),
            }),
        );
    }
    Ok(json!({
        "seed_format": seed.format(),
        "word_count": seed.word_count(),
        "account_index": match seed.format() {
            crate::ton::SeedFormat::Bip39 => Some(account_index.unwrap_or(0)),
            crate::ton::SeedFormat::Ton => None,
        },
        "public_key": public_key.to_hex(),
        "network": "mainnet",
        "wallets": wallets,
    }))
}
