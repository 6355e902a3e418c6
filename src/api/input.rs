//! Request bodies into validated values. A body is read as a JSON object and every field is
//! checked, so one answer names every invalid field (`details`), not just the first.
//! Unknown fields are ignored: clients of the original service send a few we do not use.
//! The secret fields come from `secret::Body` already apart, in wiped strings.

use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};
use super::secret::{Body, SecretValue, Secrets};
use crate::actors::PayerKey;
use crate::config::Secret;
use crate::domain::{PremiumMonths, StarsAmount, Username};
use crate::fragment::FragmentCookies;
use crate::ton::{
    Network, ParsedAddress, Seed, SeedError, SeedFormat, WalletContract, WalletVersion,
};

/// Collects field errors while values are taken out of a body.
pub struct Fields {
    /// The body's other fields.
    body: Map<String, Value>,
    /// `seed`, `fragment_cookies`: dropped (so wiped) with `Fields` if never taken.
    secrets: Secrets,
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new(body: Body) -> Result<Fields, ApiError> {
        match body {
            Body::Object { fields, secrets } => Ok(Fields {
                body: fields,
                secrets,
                errors: vec![],
            }),
            Body::Other(_) => Err(ApiError::bad_request(
                "the request body must be a JSON object",
            )),
        }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records an error found outside the body's fields (a header).
    pub fn fail_with(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Whether the body has a non-null `field`.
    pub fn has(&self, field: &str) -> bool {
        self.present(field).is_some()
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.body.get(field).filter(|v| !v.is_null())
    }

    pub fn optional_string(&mut self, field: &str) -> Option<String> {
        match self.present(field)? {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    pub fn string(&mut self, field: &str) -> Option<String> {
        if self.present(field).is_none() {
            self.fail(field, "is required");
            return None;
        }
        let s = self.optional_string(field);
        if s.is_none() && !self.errors.iter().any(|e| e.field == field) {
            self.fail(field, "must not be empty");
        }
        s
    }

    /// A whole number, given as a JSON number or a string of digits.
    pub fn optional_integer(&mut self, field: &str) -> Option<u64> {
        let value = self.present(field)?;
        let n = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if n.is_none() {
            self.fail(field, "must be a whole number");
        }
        n
    }

    /// `true` or `false`; absent or null is `None`.
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.present(field)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(field, "must be true or false");
                None
            }
        }
    }

    pub fn integer(&mut self, field: &str) -> Option<u64> {
        if self.present(field).is_none() {
            self.fail(field, "is required");
            return None;
        }
        self.optional_integer(field)
    }

    /// `@name`, as API.md and the original service require.
    pub fn username(&mut self, field: &str) -> Result<Option<Username>, ApiError> {
        let Some(raw) = self.string(field) else {
            return Ok(None);
        };
        Username::parse(raw.trim()).map(Some).map_err(|e| ApiError {
            details: vec![FieldError::new(field, e.to_string())],
            ..ApiError::new(400, "INVALID_USERNAME_FORMAT", "Invalid username format: the username must be @ followed by 1 to 32 letters, digits or underscores")
        })
    }

    pub fn stars_amount(&mut self, field: &str) -> Option<StarsAmount> {
        let n = self.integer(field)?;
        match StarsAmount::new(n) {
            Ok(a) => Some(a),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    /// Months of Premium under `field`, or under `alias` when only that one is sent; a
    /// missing value is reported on `field`, the name the endpoint documents.
    pub fn months_or_alias(
        &mut self,
        field: &str,
        alias: &str,
        required: bool,
    ) -> Option<PremiumMonths> {
        let name = if !self.has(field) && self.has(alias) {
            alias
        } else {
            field
        };
        self.months(name, required)
    }

    pub fn months(&mut self, field: &str, required: bool) -> Option<PremiumMonths> {
        let n = if required {
            self.integer(field)?
        } else {
            self.optional_integer(field)?
        };
        match PremiumMonths::new(n) {
            Ok(m) => Some(m),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    pub fn account_index(&mut self) -> Option<u32> {
        let n = self.optional_integer("account_index")?;
        match u32::try_from(n).ok().filter(|n| *n < 1 << 31) {
            Some(n) => Some(n),
            None => {
                self.fail("account_index", "must be between 0 and 2147483647");
                None
            }
        }
    }

    pub fn wallet_version(&mut self) -> Option<WalletVersion> {
        let raw = self.optional_string("wallet_version")?;
        match parse_version(&raw) {
            Some(v) => Some(v),
            None => {
                self.fail("wallet_version", "must be v4r2 or v5r1 (W5)");
                None
            }
        }
    }

    pub fn wallet_address(&mut self) -> Option<ParsedAddress> {
        let raw = self.optional_string("wallet_address")?;
        match ParsedAddress::parse(&raw) {
            Ok(a) => Some(a),
            Err(e) => {
                self.fail("wallet_address", e.to_string());
                None
            }
        }
    }

    /// `fragment_cookies`: present, they select KYC mode and must parse and hold the KYC
    /// cookies. Parsed from the body into a buffer wiped on drop (`secret`). Absent or null:
    /// no-KYC mode. Present, even empty, it must be valid: a blank value is a mistake
    /// (INVALID_COOKIES), never a silent switch to the mode that charges commission.
    pub fn cookies(&mut self) -> Result<Option<FragmentCookies>, ApiError> {
        let raw = match self.secrets.take("fragment_cookies") {
            None | Some(SecretValue::Null) => return Ok(None),
            Some(SecretValue::Text(s)) => s,
            Some(_) => {
                self.fail(
                    "fragment_cookies",
                    "must be a string: the base64 of your fragment.com cookies' JSON",
                );
                return Ok(None);
            }
        };
        FragmentCookies::parse_kyc(raw.expose().trim())
            .map(Some)
            .map_err(ApiError::from)
    }

    /// `payment_method`: `ton` or `usdt_ton` (any case), as the original SDK sends it;
    /// `None` when absent.
    pub fn payment_method(&mut self) -> Option<events::PaymentMethod> {
        let m = self.optional_string("payment_method")?;
        match m.trim().to_ascii_lowercase().as_str() {
            "ton" => Some(events::PaymentMethod::Ton),
            "usdt_ton" => Some(events::PaymentMethod::UsdtTon),
            _ => {
                self.fail(
                    "payment_method",
                    "must be \"ton\" or \"usdt_ton\" (USDT on TON)",
                );
                None
            }
        }
    }

    /// The field errors so far, as one VALIDATION_ERROR.
    pub fn finish(self) -> Result<Map<String, Value>, ApiError> {
        if self.errors.is_empty() {
            Ok(self.body)
        } else {
            Err(ApiError::validation(self.errors))
        }
    }

    /// `seed`, parsed from the body into a buffer wiped on drop (`secret`).
    pub fn take_seed(&mut self) -> Option<Secret> {
        match self.secrets.take("seed") {
            Some(SecretValue::Text(s)) if !s.expose().trim().is_empty() => Some(s),
            Some(SecretValue::Text(_)) | None | Some(SecretValue::Null) => {
                self.fail(
                    "seed",
                    "is required: the base64 of your wallet's mnemonic words",
                );
                None
            }
            Some(_) => {
                self.fail(
                    "seed",
                    "must be a string: the base64 of your wallet's mnemonic words",
                );
                None
            }
        }
    }
}

/// The `X-Wallet-Seed` header, copied once into a buffer wiped on drop (the key is derived on
/// another thread, so the seed must outlive the request's borrow). The `HeaderValue` itself is
/// actix's, in the request, out of our reach.
pub fn header_seed(value: &actix_web::http::header::HeaderValue) -> Result<Secret, ApiError> {
    value
        .to_str()
        .map(Secret::from)
        .map_err(|_| ApiError::from(SeedError::NotBase64))
}

pub fn parse_version(s: &str) -> Option<WalletVersion> {
    match s.trim().to_ascii_lowercase().as_str() {
        "v4r2" | "v4" | "wallet_v4r2" | "v4_r2" => Some(WalletVersion::V4R2),
        "v5r1" | "v5" | "w5" | "wallet_v5r1" | "v5_r1" => Some(WalletVersion::V5R1),
        _ => None,
    }
}

/// How the client's wallet was chosen among those its seed controls.
pub struct WalletChoice {
    pub address: Option<ParsedAddress>,
    pub version: Option<WalletVersion>,
    pub account_index: Option<u32>,
}

/// A seed's key and the wallet it pays from.
pub struct ResolvedWallet {
    pub payer: PayerKey,
    pub seed_format: SeedFormat,
    pub account_index: Option<u32>,
}

/// Derives the key (CPU-heavy for TON mnemonics: run it off the async threads) and picks the
/// wallet: the one at `address` if given, else `version`, else v4r2 for a TON mnemonic
/// and v5r1 (W5) for a BIP39 one.
pub fn resolve_wallet(
    seed: &str,
    choice: &WalletChoice,
    network: Network,
) -> Result<ResolvedWallet, ApiError> {
    let seed = Seed::from_base64(seed)?;
    // The seed is valid: an index it cannot take is the `account_index` field's mistake.
    let key = seed.derive_key(choice.account_index).map_err(|e| match e {
        SeedError::AccountIndexNotApplicable | SeedError::AccountIndexOutOfRange => {
            ApiError::validation(vec![FieldError::new("account_index", e.to_string())])
        }
        other => other.into(),
    })?;
    let format = seed.format();
    drop(seed);
    let account_index = match format {
        SeedFormat::Bip39 => Some(choice.account_index.unwrap_or(0)),
        SeedFormat::Ton => None,
    };
    let versions: Vec<WalletVersion> = match choice.version {
        Some(v) => vec![v],
        None => WalletVersion::ALL.to_vec(),
    };
    let wallet = match &choice.address {
        Some(wanted) => versions
            .iter()
            .map(|v| WalletContract::new(*v, network, key.public_key()))
            .find(|w| w.address() == &wanted.address)
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError::new(
                    "wallet_address",
                    match choice.version {
                        Some(v) => format!(
                            "is not the {} wallet of this seed{}",
                            v.as_str(),
                            account_index
                                .map_or(String::new(), |i| format!(" at account_index {i}"))
                        ),
                        None => "is not a v4r2 or v5r1 wallet of this seed".to_string(),
                    },
                )])
            })?,
        None => {
            let version = choice.version.unwrap_or(match format {
                SeedFormat::Ton => WalletVersion::V4R2,
                SeedFormat::Bip39 => WalletVersion::V5R1,
            });
            WalletContract::new(version, network, key.public_key())
        }
    };
    Ok(ResolvedWallet {
        payer: PayerKey { key, wallet },
        seed_format: format,
        account_index,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `Fields` of a body, parsed as a request's would be.
    fn fields(body: Value) -> Fields {
        Fields::new(Body::parse(body.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn every_invalid_field_is_named_at_once() {
        let mut f = fields(json!({"amount": "ten", "months": 4, "account_index": -1}));
        f.string("username");
        f.stars_amount("amount");
        f.months("months", true);
        f.account_index();
        let err = f.finish().unwrap_err();
        let fields: Vec<&str> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["username", "amount", "months", "account_index"]);
        assert_eq!(err.code, "VALIDATION_ERROR");
    }

    #[test]
    fn amounts_are_bounded_and_may_be_strings() {
        let mut f = fields(json!({"a": "100", "b": 49, "c": 1_000_001}));
        assert_eq!(f.stars_amount("a").map(StarsAmount::get), Some(100));
        assert!(f.stars_amount("b").is_none());
        assert!(f.stars_amount("c").is_none());
        let err = f.finish().unwrap_err();
        assert!(
            err.details[0].message.contains("between 50 and 1000000"),
            "{err:?}"
        );
    }

    #[test]
    fn a_bad_username_has_its_own_code() {
        let mut f = fields(json!({"username": "@no-dashes"}));
        let err = f.username("username").unwrap_err();
        assert_eq!(err.code, "INVALID_USERNAME_FORMAT");
        let mut f = fields(json!({"username": "alice"}));
        assert_eq!(
            f.username("username").unwrap_err().code,
            "INVALID_USERNAME_FORMAT"
        );
        let mut f = fields(json!({"username": "@alice_1"}));
        assert_eq!(f.username("username").unwrap().unwrap().as_str(), "alice_1");
    }

    #[test]
    fn the_seed_and_cookie_fields_are_checked_as_before() {
        let required = "is required: the base64 of your wallet's mnemonic words";
        let string = "must be a string: the base64 of your wallet's mnemonic words";
        for (body, message) in [
            (json!({}), required),
            (json!({"seed": "  "}), required),
            (json!({"seed": null}), required),
            (json!({"seed": 7}), string),
            (json!({"seed": ["x"]}), string),
            (json!({"seed": {"words": "x"}}), string),
        ] {
            let mut f = fields(body.clone());
            assert!(f.take_seed().is_none(), "{body}");
            let err = f.finish().unwrap_err();
            assert_eq!(err.details, [FieldError::new("seed", message)], "{body}");
        }
        let mut f = fields(json!({"seed": " c2VlZA== "}));
        assert_eq!(f.take_seed().unwrap().expose(), " c2VlZA== ");

        assert!(fields(json!({"fragment_cookies": null}))
            .cookies()
            .unwrap()
            .is_none());
        assert!(fields(json!({})).cookies().unwrap().is_none());
        let blank = fields(json!({"fragment_cookies": " "})).cookies();
        assert_eq!(blank.err().map(|e| e.code), Some("INVALID_COOKIES"));
        let mut f = fields(json!({"fragment_cookies": 1}));
        assert!(f.cookies().unwrap().is_none());
        assert_eq!(f.finish().unwrap_err().details[0].field, "fragment_cookies");
    }

    #[test]
    fn the_header_seed_is_one_wiped_copy() {
        // As before the change, the header's one copy is wiped; now it is a `Secret` by type.
        const SEED: &str = "YXJ0IGhvY2tleSB2aWN0b3J5IHNraWxsIGJ1YmJsZSBzdG9vbCBoZWFydCBnYXM";
        let value = actix_web::http::header::HeaderValue::from_static(SEED);
        let (same, copies) = crate::api::secret::leak_check::freed_copies(SEED.as_bytes(), || {
            let seed: Secret = header_seed(&value).unwrap();
            seed.expose() == SEED
        });
        assert!(same);
        assert_eq!(copies, 0, "freed blocks still holding the seed");
        let bad = actix_web::http::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(header_seed(&bad).unwrap_err().code, "INVALID_SEED");
    }
}
