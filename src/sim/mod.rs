//! Strict local simulators of the services the gateway talks to, for tests and `sandbox`
//! mode. They serve the same HTTP paths and shapes as the real services and refuse what the
//! real ones refuse, so a bug in a client fails a test instead of passing silently.

pub mod faults;
pub mod fragment;
mod server;
pub mod ton;

use serde::Deserialize;

/// Settings of both simulators, as `fragment-gateway sim --config FILE` reads them
/// (config/sim.example.toml lists every key).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimFileConfig {
    pub ton: ton::TonSimConfig,
    pub fragment: fragment::FragmentSimConfig,
}

impl SimFileConfig {
    pub fn from_toml(text: &str) -> Result<SimFileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_says_what_it_sets() {
        let c = SimFileConfig::from_toml(include_str!("../../config/sim.example.toml")).unwrap();
        assert_eq!(c.ton.block_time, std::time::Duration::from_millis(400));
        assert_eq!(c.ton.keyless_rps, Some(1.0));
        assert_eq!(c.fragment.prices.star, 5_000_000);
        assert!(c
            .fragment
            .users
            .iter()
            .any(|u| u.username == "premium_pete" && u.premium));
        assert!(!c.fragment.rules.require_confirm);
        let err = SimFileConfig::from_toml("[ton]\nblock_time = 5").unwrap_err();
        assert!(err.contains("block_time"), "{err}");
    }
}
