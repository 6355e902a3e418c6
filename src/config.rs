//! Settings, layered: the built-in `config/default.toml`, then the mode's file
//! (`config/sandbox.toml` for `sandbox`, the operator's file for `serve`), then `FG_*`
//! environment variables (`FG_SECTION__KEY`, e.g. `FG_SERVER__LISTEN=0.0.0.0:8080`).
//!
//! Unknown keys are refused, so a typo cannot silently leave a default in place. Secrets (the
//! admin key, the TON API key) are wiped on drop and never shown by `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::domain::Policy;
use crate::ton::Nanoton;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const SANDBOX_TOML: &str = include_str!("../config/sandbox.toml");

/// Environment variables with this prefix override settings.
pub const ENV_PREFIX: &str = "FG_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{source_name}: {error}")]
    Parse { source_name: String, error: String },
    #[error("environment variable {name}: {error}")]
    Env { name: String, error: String },
    #[error("invalid setting {key}: {error}")]
    Invalid { key: &'static str, error: String },
    #[error("missing setting {key}: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
}

/// A secret string: wiped on drop, never printed.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(|s| Secret(Zeroizing::new(s)))
    }
}

/// A copy of `s` in a buffer of exactly its size, wiped on drop.
impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(Zeroizing::new(s.to_owned()))
    }
}

impl From<Zeroizing<String>> for Secret {
    fn from(s: Zeroizing<String>) -> Secret {
        Secret(s)
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(…)"
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub network: NetworkSettings,
    pub ton: TonSettings,
    pub fragment: FragmentSettings,
    pub commission: CommissionSettings,
    pub orders: OrderSettings,
    pub rate_limit: RateLimitSettings,
    pub admin: AdminSettings,
    pub sandbox: SandboxSettings,
    pub idempotency: IdempotencySection,
    pub webhooks: WebhookSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// On shutdown, how long payments being signed or broadcast may take to reach a
    /// recorded state.
    pub shutdown_grace_seconds: u64,
    /// `text` for a terminal, `json` for log collectors.
    pub log_format: String,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client for
    /// rate limits; empty: the connection's peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl ServerSettings {
    /// `trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::api::limit::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|s| crate::api::limit::IpNet::parse(s))
            .collect::<Result<_, _>>()
            .map_err(|error| ConfigError::Invalid {
                key: "server.trusted_proxies",
                error,
            })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite`: the embedded store in `data_dir`; `postgres`: the database at `url`.
    pub backend: String,
    /// The embedded store's file and the session key.
    pub data_dir: PathBuf,
    /// `postgres://user:password@host:port/database`. Secret: never logged.
    pub url: Secret,
    /// The PostgreSQL schema the service creates its tables in.
    pub schema: String,
    /// Most PostgreSQL connections for reads (the writer and the listener have their own).
    pub pool_size: u32,
    /// Longest a PostgreSQL statement may run before the server cancels it.
    pub statement_timeout_seconds: u64,
    /// Longest the service waits for a PostgreSQL connection.
    pub connect_timeout_seconds: u64,
    /// Orders (and as many payment requests) kept in memory for polls, most recent first.
    pub cache_rows: usize,
}

/// Which event store the settings name, ready to open.
#[derive(Clone, Debug)]
pub enum StoreBackend {
    Sqlite { data_dir: PathBuf },
    Postgres(crate::store::PostgresConfig),
}

impl StoreSettings {
    /// `cache_rows`, checked.
    pub fn cache_rows(&self) -> Result<std::num::NonZeroUsize, ConfigError> {
        std::num::NonZeroUsize::new(self.cache_rows)
            .filter(|n| n.get() <= 10_000_000)
            .ok_or_else(|| ConfigError::Invalid {
                key: "store.cache_rows",
                error: format!("{} must be between 1 and 10000000", self.cache_rows),
            })
    }

    /// The backend, with every setting it uses checked.
    pub fn backend(&self) -> Result<StoreBackend, ConfigError> {
        match self.backend.as_str() {
            "sqlite" => Ok(StoreBackend::Sqlite {
                data_dir: self.data_dir.clone(),
            }),
            "postgres" => {
                if self.url.is_empty() {
                    return Err(ConfigError::Missing {
                        key: "store.url",
                        hint: "store.backend = \"postgres\" needs the database's URL, \
                               postgres://user:password@host:port/database (best from \
                               FG_STORE__URL)",
                    });
                }
                let url = self.url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::Invalid {
                        key: "store.url",
                        error: "must start with postgres:// or postgresql://".into(),
                    });
                }
                if !crate::store::postgres::valid_schema(&self.schema) {
                    return Err(ConfigError::Invalid {
                        key: "store.schema",
                        error: format!(
                            "{:?} must be a lower-case identifier: a-z, 0-9 and _, not starting \
                             with a digit, at most 63 bytes",
                            self.schema
                        ),
                    });
                }
                if !(1..=1000).contains(&self.pool_size) {
                    return Err(ConfigError::Invalid {
                        key: "store.pool_size",
                        error: format!("{} must be between 1 and 1000", self.pool_size),
                    });
                }
                let seconds = |key: &'static str, value: u64| {
                    if (1..=3600).contains(&value) {
                        Ok(std::time::Duration::from_secs(value))
                    } else {
                        Err(ConfigError::Invalid {
                            key,
                            error: format!("{value} must be between 1 and 3600 seconds"),
                        })
                    }
                };
                Ok(StoreBackend::Postgres(crate::store::PostgresConfig {
                    url: self.url.clone(),
                    schema: self.schema.clone(),
                    pool_size: self.pool_size,
                    statement_timeout: seconds(
                        "store.statement_timeout_seconds",
                        self.statement_timeout_seconds,
                    )?,
                    connect_timeout: seconds(
                        "store.connect_timeout_seconds",
                        self.connect_timeout_seconds,
                    )?,
                    migrate: true,
                }))
            }
            other => Err(ConfigError::Invalid {
                key: "store.backend",
                error: format!("{other:?} must be \"sqlite\" or \"postgres\""),
            }),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// `mainnet` or `testnet` (`sandbox` mode sets its own).
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TonSettings {
    /// Base URL of a toncenter-compatible HTTP API (without `/api/v2`).
    pub api_url: String,
    pub api_key: Secret,
    /// Requests per second to the TON API: `auto` (toncenter's budget at 80 %: 0.8 without a
    /// key, 8 with one), a number, or `unlimited` (a local node or simulator).
    pub requests_per_second: String,
    /// How long a signed wallet message stays valid.
    pub sign_ttl_seconds: u32,
    /// USDT's jetton master on this network (for `payment_method: "usdt_ton"`).
    pub usdt_master: String,
    /// The longest a client's read (a balance, a new payment's balance check) waits for the
    /// request budget, which payments use first; then SERVICE_UNAVAILABLE with Retry-After.
    pub public_read_max_wait_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentSettings {
    pub base_url: String,
    /// A file with the operator's `fragment_cookies` (base64 JSON), one session per line, for
    /// no-KYC orders. Empty: no-KYC mode is off (OWNER_COOKIES_NOT_CONFIGURED).
    pub owner_cookies_file: PathBuf,
    /// Addresses Fragment takes payments at; a payment link to any other is refused.
    pub payment_addresses: Vec<String>,
    pub timeout_seconds: u64,
    /// How long to wait for Fragment to report a paid purchase delivered.
    pub delivery_timeout_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionSettings {
    /// Fractions: `0.01` is 1 %.
    pub rate_no_kyc: Decimal,
    pub rate_kyc: Decimal,
    /// TON, as decimal strings.
    pub collection_threshold_ton: String,
    pub debt_limit_ton: String,
    pub network_fee_reserve_ton: String,
    /// Where collected commission goes. Empty: debt accrues but is never collected.
    pub fee_address: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSettings {
    pub expiry_seconds: i64,
    pub queue_timeout_seconds: i64,
    /// Most payments waiting in the queue (each holds its wallet key in memory); more are
    /// refused with SERVICE_UNAVAILABLE until some have started.
    pub queue_limit: usize,
    /// How long a checkout's transaction may be signed and sent; at most what Fragment's
    /// invoice allows, and it ends 30 s before the order expires at the latest.
    pub checkout_ttl_seconds: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Where events of orders without their own `webhook_url` go; empty: nowhere.
    pub default_url: String,
    /// Signing secrets (secret); empty: webhooks are off.
    pub secrets: Vec<Secret>,
    /// Whether webhooks may go to loopback and private addresses.
    pub allow_private_targets: bool,
    pub retry_window_hours: u64,
    pub timeout_seconds: u64,
    pub first_retry_seconds: u64,
    pub max_retry_seconds: u64,
    pub concurrency: usize,
}

impl WebhookSection {
    pub fn settings(&self) -> Result<crate::webhooks::WebhookSettings, ConfigError> {
        let invalid = |key, error: String| ConfigError::Invalid { key, error };
        let default_url = match self.default_url.trim() {
            "" => None,
            url => {
                crate::webhooks::target::parse(url, self.allow_private_targets)
                    .map_err(|e| invalid("webhooks.default_url", e))?;
                Some(url.to_string())
            }
        };
        let secrets: Vec<_> = self
            .secrets
            .iter()
            .filter(|s| !s.expose().trim().is_empty())
            .map(|s| std::sync::Arc::new(Secret::from(s.expose().trim())))
            .collect();
        if default_url.is_some() && secrets.is_empty() {
            return Err(invalid(
                "webhooks.secrets",
                "webhooks.default_url is set: give at least one secret to sign deliveries with"
                    .into(),
            ));
        }
        if self.timeout_seconds == 0 || self.concurrency == 0 || self.first_retry_seconds == 0 {
            return Err(invalid(
                "webhooks",
                "timeout_seconds, first_retry_seconds and concurrency must be more than 0".into(),
            ));
        }
        Ok(crate::webhooks::WebhookSettings {
            default_url,
            secrets,
            allow_private_targets: self.allow_private_targets,
            retry_window: std::time::Duration::from_secs(
                self.retry_window_hours.saturating_mul(3600),
            ),
            timeout: std::time::Duration::from_secs(self.timeout_seconds),
            first_retry: std::time::Duration::from_secs(self.first_retry_seconds),
            max_retry: std::time::Duration::from_secs(
                self.max_retry_seconds.max(self.first_retry_seconds),
            ),
            concurrency: self.concurrency,
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySection {
    /// Hours an `Idempotency-Key` stays bound to its first request; at least 24.
    pub retention_hours: u64,
    /// Seconds a request under a key is taken to be running before a retry runs it again.
    pub lease_seconds: u64,
    /// Seconds a retry waits for the first request under its key before answering
    /// IDEMPOTENCY_KEY_IN_PROGRESS.
    pub wait_seconds: u64,
}

impl IdempotencySection {
    pub fn settings(&self) -> Result<crate::idempotency::IdempotencySettings, ConfigError> {
        let invalid = |key, error: &str| ConfigError::Invalid {
            key,
            error: error.to_string(),
        };
        if self.retention_hours < 24 {
            return Err(invalid(
                "idempotency.retention_hours",
                "must be at least 24: clients retry for up to a day",
            ));
        }
        if self.lease_seconds == 0 {
            return Err(invalid("idempotency.lease_seconds", "must be more than 0"));
        }
        Ok(crate::idempotency::IdempotencySettings {
            retention: std::time::Duration::from_secs(self.retention_hours.saturating_mul(3600)),
            lease: std::time::Duration::from_secs(self.lease_seconds),
            wait: std::time::Duration::from_secs(self.wait_seconds),
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Client routes, per IP address. 0 disables the limit.
    pub requests_per_minute: u32,
    pub burst: u32,
    /// Most clients tracked at once; clients beyond it share one bucket.
    pub max_clients: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// `X-Admin-Key` for `/admin/*`. Empty: the admin API is disabled.
    pub key: Secret,
}

/// `sandbox` mode only: the simulators and their fixtures.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    pub ton_listen: SocketAddr,
    pub fragment_listen: SocketAddr,
    /// The demo wallet's 24 words: a sandbox key, worthless anywhere else.
    pub demo_mnemonic: String,
    pub demo_balance_ton: String,
    /// USDT minted to the demo wallet at start (decimal USDT).
    pub demo_balance_usdt: String,
    pub block_time_ms: u64,
}

impl TonSettings {
    /// `usdt_master`, parsed.
    pub fn usdt_master(&self) -> Result<crate::ton::TonAddress, ConfigError> {
        crate::ton::address::parse_address(&self.usdt_master).map_err(|e| ConfigError::Invalid {
            key: "ton.usdt_master",
            error: format!("{:?} is not a TON address: {e}", self.usdt_master),
        })
    }

    /// `None`: no pacing.
    pub fn pacing(&self) -> Result<Option<f64>, ConfigError> {
        let invalid = |error: String| ConfigError::Invalid {
            key: "ton.requests_per_second",
            error,
        };
        match self.requests_per_second.trim() {
            "auto" => Ok(Some(if self.api_key.is_empty() { 0.8 } else { 8.0 })),
            "unlimited" => Ok(None),
            n => match n.parse::<f64>() {
                Ok(r) if r > 0.0 && r.is_finite() => Ok(Some(r)),
                _ => Err(invalid(format!(
                    "{n:?} must be auto, unlimited or a positive number"
                ))),
            },
        }
    }
}

impl Settings {
    /// The built-in defaults, then each file's text in order, then the environment.
    pub fn load(
        layers: &[(&str, &str)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut merged = parse_layer("config/default.toml (built in)", DEFAULT_TOML)?;
        for (name, text) in layers {
            merge(&mut merged, parse_layer(name, text)?);
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // FG_TEST_SEED and the like are not settings: only SECTION__KEY names are.
            let Some((section, key)) = path.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let table = merged
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| ConfigError::Env {
                    name: name.clone(),
                    error: format!("there is no settings section [{section}]"),
                })?;
            let Some(current) = table.get(&key) else {
                return Err(ConfigError::Env {
                    name,
                    error: format!("there is no setting {key} in [{section}]"),
                });
            };
            let parsed = env_value(current, &value).map_err(|error| ConfigError::Env {
                name: name.clone(),
                error,
            })?;
            table.insert(key, parsed);
        }
        let settings: Settings =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    source_name: "settings".into(),
                    error: e.message().to_string(),
                })?;
        settings.policy()?;
        settings.store.backend()?;
        settings.store.cache_rows()?;
        settings.ton.pacing()?;
        settings.ton.usdt_master()?;
        settings.server.trusted_proxies()?;
        for (key, value) in [
            ("orders.queue_limit", settings.orders.queue_limit),
            ("rate_limit.max_clients", settings.rate_limit.max_clients),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    error: "must be at least 1".into(),
                });
            }
        }
        if settings.orders.checkout_ttl_seconds < 30 {
            return Err(ConfigError::Invalid {
                key: "orders.checkout_ttl_seconds",
                error: "must be at least 30: a wallet needs time to sign".into(),
            });
        }
        if !["text", "json"].contains(&settings.server.log_format.as_str()) {
            return Err(ConfigError::Invalid {
                key: "server.log_format",
                error: format!("{:?} must be text or json", settings.server.log_format),
            });
        }
        Ok(settings)
    }

    /// Reads `path` as the operator's layer.
    pub fn load_file(
        path: &Path,
        extra_first: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let name = path.display().to_string();
        let mut layers = vec![];
        if let Some(extra) = extra_first {
            layers.push(("config/sandbox.toml (built in)", extra));
        }
        layers.push((name.as_str(), text.as_str()));
        Settings::load(&layers, env)
    }

    /// The business rules these settings configure.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let c = &self.commission;
        let ton = |key: &'static str, s: &str| {
            Nanoton::parse_ton(s).map_err(|e| ConfigError::Invalid {
                key,
                error: format!("{s:?} is not an amount of TON: {e}"),
            })
        };
        let rate = |key: &'static str, r: Decimal| {
            if r >= Decimal::ZERO && r < Decimal::ONE {
                Ok(r)
            } else {
                Err(ConfigError::Invalid {
                    key,
                    error: format!("{r} must be a fraction from 0 to below 1 (0.01 is 1 %)"),
                })
            }
        };
        let positive = |key: &'static str, s: i64| {
            if s > 0 {
                Ok(chrono::Duration::seconds(s))
            } else {
                Err(ConfigError::Invalid {
                    key,
                    error: "must be a positive number of seconds".into(),
                })
            }
        };
        Ok(Policy {
            order_ttl: positive("orders.expiry_seconds", self.orders.expiry_seconds)?,
            queue_timeout: positive(
                "orders.queue_timeout_seconds",
                self.orders.queue_timeout_seconds,
            )?,
            rate_no_kyc: rate("commission.rate_no_kyc", c.rate_no_kyc)?,
            rate_kyc: rate("commission.rate_kyc", c.rate_kyc)?,
            collection_threshold_nanoton: ton(
                "commission.collection_threshold_ton",
                &c.collection_threshold_ton,
            )?,
            debt_limit_nanoton: ton("commission.debt_limit_ton", &c.debt_limit_ton)?,
            network_fee_reserve_nanoton: ton(
                "commission.network_fee_reserve_ton",
                &c.network_fee_reserve_ton,
            )?,
            // Known once the fee address is parsed; `Core::start` sets it from the services.
            collection_enabled: !c.fee_address.trim().is_empty(),
        })
    }
}

fn parse_layer(name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        source_name: name.to_string(),
        error: e.message().to_string(),
    })
}

/// Later layers win, key by key within a section.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An environment value takes the type of the setting it replaces.
fn env_value(current: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match current {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a whole number"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not true or false"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a number"))?,
        ),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            return Err("this setting cannot be set from the environment".into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_built_in_defaults_are_the_documented_policy() {
        let s = Settings::load(&[], env(&[])).unwrap();
        let p = s.policy().unwrap();
        // The built-in configuration names no fee address, so it collects nothing.
        assert_eq!(
            p,
            Policy {
                collection_enabled: false,
                ..Policy::default()
            }
        );
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.admin.key.is_empty());
    }

    #[test]
    fn files_then_environment_override_key_by_key() {
        let s = Settings::load(
            &[(
                "a.toml",
                "[commission]\nrate_no_kyc = \"0.02\"\n[server]\nlisten = \"0.0.0.0:9000\"\n",
            )],
            env(&[
                ("FG_SERVER__LISTEN", "127.0.0.1:9001"),
                ("FG_ORDERS__EXPIRY_SECONDS", "60"),
                ("FG_ADMIN__KEY", "k3y"),
                ("FG_TEST_SEED", "1"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(s.commission.rate_no_kyc, Decimal::new(2, 2));
        assert_eq!(s.orders.expiry_seconds, 60);
        assert_eq!(s.admin.key.expose(), "k3y");
        assert_eq!(format!("{:?}", s.admin.key), "Secret(…)");
    }

    #[test]
    fn store_settings_are_checked_by_name_and_the_url_is_never_shown() {
        let url = "postgres://fg:pa55-w0rd@db.internal:5432/fg";
        let postgres = |more: &[(&str, &str)]| {
            let mut vars = vec![("FG_STORE__BACKEND", "postgres"), ("FG_STORE__URL", url)];
            vars.extend_from_slice(more);
            Settings::load(&[], env(&vars))
        };
        let s = postgres(&[
            ("FG_STORE__SCHEMA", "gateway"),
            ("FG_STORE__POOL_SIZE", "3"),
            ("FG_STORE__STATEMENT_TIMEOUT_SECONDS", "7"),
        ])
        .unwrap();
        match s.store.backend().unwrap() {
            StoreBackend::Postgres(c) => {
                assert_eq!(c.url.expose(), url);
                assert_eq!(c.schema, "gateway");
                assert_eq!(c.pool_size, 3);
                assert_eq!(c.statement_timeout, std::time::Duration::from_secs(7));
                assert!(!format!("{c:?}").contains("pa55-w0rd"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{s:?}").contains("pa55-w0rd"),
            "settings' Debug shows the URL"
        );
        for (vars, key) in [
            (vec![("FG_STORE__BACKEND", "mysql")], "store.backend"),
            (vec![("FG_STORE__BACKEND", "postgres")], "store.url"),
            (
                vec![
                    ("FG_STORE__BACKEND", "postgres"),
                    ("FG_STORE__URL", "mysql://fg:pa55-w0rd@db/fg"),
                ],
                "store.url",
            ),
        ] {
            let err = Settings::load(&[], env(&vars)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(!err.contains("pa55-w0rd"), "{err}");
        }
        for (var, value, key) in [
            ("FG_STORE__SCHEMA", "Gate-Way", "store.schema"),
            ("FG_STORE__POOL_SIZE", "0", "store.pool_size"),
            (
                "FG_STORE__STATEMENT_TIMEOUT_SECONDS",
                "0",
                "store.statement_timeout_seconds",
            ),
            (
                "FG_STORE__CONNECT_TIMEOUT_SECONDS",
                "99999",
                "store.connect_timeout_seconds",
            ),
        ] {
            let err = postgres(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
            assert!(!err.contains("pa55-w0rd"), "{err}");
        }
    }

    #[test]
    fn memory_bounds_are_settings_and_zero_is_refused() {
        let s = Settings::load(&[], env(&[])).unwrap();
        assert_eq!(
            (
                s.store.cache_rows,
                s.orders.queue_limit,
                s.rate_limit.max_clients
            ),
            (10_000, 10_000, 100_000)
        );
        for (var, key) in [
            ("FG_STORE__CACHE_ROWS", "store.cache_rows"),
            ("FG_ORDERS__QUEUE_LIMIT", "orders.queue_limit"),
            ("FG_RATE_LIMIT__MAX_CLIENTS", "rate_limit.max_clients"),
        ] {
            let err = Settings::load(&[], env(&[(var, "0")]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{var}=0: {err}");
        }
    }

    #[test]
    fn typos_and_bad_values_are_refused_by_name() {
        let err = Settings::load(&[("a.toml", "[server]\nlisen = \"x\"\n")], env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Settings::load(&[], env(&[("FG_SERVER__LISEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FG_SERVER__LISEN") && err.contains("lisen"),
            "{err}"
        );
        let err = Settings::load(&[], env(&[("FG_ORDERS__EXPIRY_SECONDS", "ten")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a whole number"), "{err}");
        let err = Settings::load(
            &[("a.toml", "[commission]\nrate_no_kyc = \"1.5\"\n")],
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("commission.rate_no_kyc"), "{err}");
        let err = Settings::load(
            &[("a.toml", "[commission]\ndebt_limit_ton = \"two\"\n")],
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("commission.debt_limit_ton"), "{err}");
        let err = Settings::load(
            &[],
            env(&[("FG_SERVER__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/40")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("10.0.0.0/40"),
            "{err}"
        );
        let s = Settings::load(
            &[],
            env(&[("FG_SERVER__TRUSTED_PROXIES", "127.0.0.1, fd00::/8")]),
        )
        .unwrap();
        assert_eq!(s.server.trusted_proxies().unwrap().len(), 2);
    }

    #[test]
    fn the_shipped_files_parse() {
        Settings::load(&[("config/sandbox.toml", SANDBOX_TOML)], env(&[])).unwrap();
        let example = include_str!("../config/production.example.toml");
        Settings::load(&[("config/production.example.toml", example)], env(&[])).unwrap();
    }
}
