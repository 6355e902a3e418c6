//! The work behind the command-line subcommands, kept in the library so tests call it.

use serde_json::{json, Value};

use crate::sim::SimFileConfig;
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

/// `sim` flags that override the configuration file when given.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SimOverrides {
    /// Block time of the simulated chain, in milliseconds (0: only on POST /sim/block).
    #[arg(long)]
    pub block_time_ms: Option<u64>,
    /// Latency added to every TON API request, in milliseconds.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Fraction (0..1) of TON API requests that fail with a 503.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Fraction (0..1) of accepted messages that are silently lost.
    #[arg(long)]
    pub drop_rate: Option<f64>,
    /// Require this API key (X-API-Key or ?api_key=); other keys get 401.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Requests per second allowed without the key, like toncenter (1); default unlimited.
    #[arg(long)]
    pub keyless_rps: Option<f64>,
    /// Requests per second allowed with the key, like toncenter's free tier (10).
    #[arg(long)]
    pub keyed_rps: Option<f64>,
    /// Latency added to every fragment.com page and API request, in milliseconds.
    #[arg(long)]
    pub fragment_latency_ms: Option<u64>,
    /// Fraction (0..1) of fragment.com requests that fail with a 503.
    #[arg(long)]
    pub fragment_error_rate: Option<f64>,
}

/// The simulators' settings: the file (if any) with the flags given on top, checked.
pub fn sim_settings(file: Option<&str>, o: &SimOverrides) -> Result<SimFileConfig, String> {
    let mut c = match file {
        Some(text) => SimFileConfig::from_toml(text).map_err(|e| format!("sim config: {e}"))?,
        None => SimFileConfig::default(),
    };
    let ms = std::time::Duration::from_millis;
    if let Some(v) = o.block_time_ms {
        c.ton.block_time = ms(v);
    }
    if let Some(v) = o.latency_ms {
        c.ton.faults.latency = ms(v);
    }
    if let Some(v) = o.error_rate {
        c.ton.faults.error_rate = v;
    }
    if let Some(v) = o.drop_rate {
        c.ton.drop_rate = v;
    }
    if let Some(v) = &o.api_key {
        c.ton.api_key = Some(v.clone());
    }
    if o.keyless_rps.is_some() {
        c.ton.keyless_rps = o.keyless_rps;
    }
    if o.keyed_rps.is_some() {
        c.ton.keyed_rps = o.keyed_rps;
    }
    if let Some(v) = o.fragment_latency_ms {
        c.fragment.faults.latency = ms(v);
    }
    if let Some(v) = o.fragment_error_rate {
        c.fragment.faults.error_rate = v;
    }
    for (name, rate) in [
        ("error rate", c.ton.faults.error_rate),
        ("drop rate", c.ton.drop_rate),
        ("fragment error rate", c.fragment.faults.error_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("the {name} must be between 0 and 1, got {rate}"));
        }
    }
    for (name, rps) in [("keyless", c.ton.keyless_rps), ("keyed", c.ton.keyed_rps)] {
        if rps.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
            return Err(format!(
                "the {name} rate limit must be a positive number of requests per second"
            ));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_are_refused() {
        let file = "[ton]\nblock_time_ms = 1000\ndrop_rate = 0.5\n";
        let c = sim_settings(
            Some(file),
            &SimOverrides {
                block_time_ms: Some(50),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.ton.block_time, std::time::Duration::from_millis(50));
        assert_eq!(c.ton.drop_rate, 0.5);
        let bad = SimOverrides {
            error_rate: Some(1.5),
            ..Default::default()
        };
        assert!(sim_settings(None, &bad)
            .unwrap_err()
            .contains("between 0 and 1"));
        let zero = SimOverrides {
            keyless_rps: Some(0.0),
            ..Default::default()
        };
        assert!(sim_settings(None, &zero).is_err());
        assert!(
            sim_settings(Some("[ton]\nbogus = 1"), &SimOverrides::default())
                .unwrap_err()
                .contains("bogus")
        );
    }
}
