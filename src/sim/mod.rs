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

    #[test]
    fn the_fault_switches_can_start_on_from_the_file() {
        let c = SimFileConfig::from_toml(
            "[ton]\nindexer_lag_ms = 1500\n\
             [ton.hangs]\nrate = 0.05\nduration_ms = 40000\nthen = \"answer\"\n\
             [fragment.rules]\nlink_answer = \"latest_request\"\n\
             poll_from_any_session_of_account = true\n\
             [fragment.hangs]\nrate = 0.1",
        )
        .unwrap();
        assert_eq!(c.ton.indexer_lag, std::time::Duration::from_millis(1500));
        assert_eq!(c.ton.hangs.duration, std::time::Duration::from_secs(40));
        assert_eq!(c.ton.hangs.then, faults::AfterTimeout::Answer);
        assert_eq!(
            c.fragment.rules.link_answer,
            fragment::state::LinkAnswer::LatestRequest
        );
        assert!(c.fragment.rules.poll_from_any_session_of_account);
        assert_eq!(c.fragment.hangs.rate, 0.1);
        assert_eq!(c.fragment.hangs.then, faults::AfterTimeout::Close);
    }
}
