//! Fragment session cookies, as clients hand them to us (`fragment_cookies`: base64 of a JSON
//! object `{"stel_ssid": "..."}` or of a browser export `[{"name", "value", "domain"}]`).
//!
//! Cookie values are secrets: they log a Telegram account and a wallet into Fragment. They
//! are kept in wiped-on-drop buffers and never shown by `Debug`, errors or logs.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::ton::encoding::decode_base64;

/// The session id; the API hash is bound to it.
pub const SSID: &str = "stel_ssid";
/// Timezone offset in minutes; always sent, optional in input.
pub const DT: &str = "stel_dt";
/// Telegram login.
pub const TOKEN: &str = "stel_token";
/// Wallet connection (ton_proof).
pub const TON_TOKEN: &str = "stel_ton_token";

/// What a client's own Fragment session (KYC mode) must carry.
pub const REQUIRED_FOR_KYC: [&str; 3] = [SSID, TOKEN, TON_TOKEN];

/// Why `fragment_cookies` was refused (the API's INVALID_COOKIES). Names cookies, never
/// their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("fragment_cookies is not valid base64: send the base64 of the cookies' JSON")]
    NotBase64,
    #[error("fragment_cookies does not decode to JSON text")]
    NotJson,
    #[error(
        "fragment_cookies must be a JSON object of cookie names to values, or a browser export \
         array of {{\"name\", \"value\"}} objects"
    )]
    WrongShape,
    #[error("fragment_cookies lacks {}: log in to fragment.com (Telegram and wallet) and export the cookies again", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("cookie {0} has an empty value")]
    Empty(String),
    #[error("cookie {0} has characters a cookie cannot carry")]
    BadValue(String),
}

/// A set of fragment.com cookies.
#[derive(Clone, Default)]
pub struct FragmentCookies {
    cookies: Vec<(String, Zeroizing<String>)>,
}

impl CookieError {
    /// The API's error code: every cookie problem is the client's to fix.
    pub fn api_code(&self) -> (&'static str, u16) {
        ("INVALID_COOKIES", 400)
    }
}

impl FragmentCookies {
    /// Parses the API form and checks that the cookies KYC mode needs are there.
    pub fn parse_kyc(encoded: &str) -> Result<FragmentCookies, CookieError> {
        let cookies = Self::parse(encoded)?;
        cookies.require(&REQUIRED_FOR_KYC)?;
        Ok(cookies)
    }

    /// Parses the API form (base64 of either JSON shape) without checking which cookies are
    /// present.
    pub fn parse(encoded: &str) -> Result<FragmentCookies, CookieError> {
        let bytes = decode_base64(encoded).ok_or(CookieError::NotBase64)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CookieError::NotJson)?;
        Self::from_json(text)
    }

    /// Parses the JSON text of either shape. Values go straight from the text into wiped
    /// buffers: no JSON tree holds them on the way (its strings would be freed unwiped).
    pub fn from_json(text: &str) -> Result<FragmentCookies, CookieError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = serde::de::DeserializeSeed::deserialize(Shapes, &mut de)
            .and_then(|cookies| de.end().map(|()| cookies));
        let cookies = match parsed {
            Ok(cookies) => cookies?,
            Err(e) if e.is_data() => return Err(CookieError::WrongShape),
            Err(_) => return Err(CookieError::NotJson),
        };
        if cookies.cookies.is_empty() {
            return Err(CookieError::WrongShape);
        }
        Ok(cookies)
    }

    /// Takes a cookie from the client's input: Fragment's own (`stel_*`) must be sendable;
    /// another that is not (an analytics cookie with quotes, say) is left out rather than
    /// failing the whole set.
    fn take(&mut self, name: &str, value: Zeroizing<String>) -> Result<(), CookieError> {
        match self.set(name, value) {
            Err(_) if !name.starts_with("stel_") => Ok(()),
            other => other,
        }
    }

    /// Fails with the names of the cookies missing from `names`.
    pub fn require(&self, names: &[&'static str]) -> Result<(), CookieError> {
        let missing: Vec<&'static str> = names
            .iter()
            .copied()
            .filter(|n| self.get(n).is_none())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(CookieError::Missing(missing))
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets or replaces a cookie.
    pub fn set(&mut self, name: &str, value: Zeroizing<String>) -> Result<(), CookieError> {
        if value.is_empty() {
            return Err(CookieError::Empty(name.to_string()));
        }
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b',' && b != b'"')
        };
        if !ok(name) || !ok(&value) {
            return Err(CookieError::BadValue(name.to_string()));
        }
        match self.cookies.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.cookies.push((name.to_string(), value)),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.retain(|(n, _)| n != name);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cookies.iter().map(|(n, _)| n.as_str())
    }

    /// The `Cookie:` header value. Wiped when dropped.
    pub fn header(&self) -> Zeroizing<String> {
        let len = self
            .cookies
            .iter()
            .map(|(n, v)| n.len() + v.len() + 3)
            .sum();
        let mut out = Zeroizing::new(String::with_capacity(len));
        for (i, (n, v)) in self.cookies.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(n);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

impl fmt::Debug for FragmentCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragmentCookies")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The two JSON shapes of `fragment_cookies`, read with serde's visitors rather than into a
/// `serde_json::Value`. The outer `Result` is the JSON's (its syntax, or a value of the wrong
/// kind); the inner one a cookie refused on its merits, which stops the parse at once.
struct Shapes;

impl<'de> DeserializeSeed<'de> for Shapes {
    type Value = Result<FragmentCookies, CookieError>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shapes {
    type Value = Result<FragmentCookies, CookieError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of cookie values or an array of cookies")
    }

    /// `{"stel_ssid": "...", ...}`
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut cookies = FragmentCookies::default();
        while let Some(name) = map.next_key::<String>()? {
            let SecretText(value) = map.next_value()?;
            if let Err(e) = cookies.take(&name, value) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(cookies))
    }

    /// `[{"name": "...", "value": "...", "domain": "..."}, ...]`, a browser's export.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut cookies = FragmentCookies::default();
        while let Some(Exported {
            name,
            value,
            domain,
        }) = seq.next_element()?
        {
            // Exports can hold other sites' cookies; keep fragment.com's.
            let host = domain.trim_start_matches('.');
            if !domain.is_empty() && host != "fragment.com" && !host.ends_with(".fragment.com") {
                continue;
            }
            if let Err(e) = cookies.take(&name, value) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(cookies))
    }
}

/// A JSON string read into a wiped buffer: borrowed from the text and copied once (an
/// escaped string comes through serde_json's scratch buffer, which cookie values, plain
/// ASCII without quotes, have no reason to need).
struct SecretText(Zeroizing<String>);

impl<'de> de::Deserialize<'de> for SecretText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = SecretText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
                let mut out = Zeroizing::new(String::with_capacity(v.len()));
                out.push_str(v);
                Ok(SecretText(out))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SecretText, E> {
                Ok(SecretText(Zeroizing::new(v)))
            }
        }
        d.deserialize_str(Text)
    }
}

/// One cookie of a browser export; its other fields (`httpOnly`, `path`, ...) are skipped.
struct Exported {
    name: String,
    value: Zeroizing<String>,
    domain: String,
}

impl<'de> de::Deserialize<'de> for Exported {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item;
        impl<'de> Visitor<'de> for Item {
            type Value = Exported;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a cookie with a name and a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Exported, A::Error> {
                let (mut name, mut value, mut domain) = (None, None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "value" => value = Some(map.next_value::<SecretText>()?.0),
                        "domain" => domain = Some(map.next_value::<String>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match (name, value) {
                    (Some(name), Some(value)) => Ok(Exported {
                        name,
                        value,
                        domain: domain.unwrap_or_default(),
                    }),
                    _ => Err(de::Error::custom("a cookie needs a name and a value")),
                }
            }
        }
        d.deserialize_map(Item)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const OBJECT: &str = r#"{"stel_ssid":"a1b2c3d4e5f6a7b8c9_1234567890123456789","stel_dt":"-180","stel_token":"tok-secret-1","stel_ton_token":"ton-secret-2"}"#;

    #[test]
    fn both_shapes_parse_to_the_same_cookies() {
        let obj = FragmentCookies::parse_kyc(&b64(OBJECT)).unwrap();
        let export = r#"[
            {"name":"stel_ssid","value":"a1b2c3d4e5f6a7b8c9_1234567890123456789","domain":"fragment.com"},
            {"name":"stel_dt","value":"-180","domain":".fragment.com"},
            {"name":"stel_token","value":"tok-secret-1","domain":"fragment.com","httpOnly":true},
            {"name":"stel_ton_token","value":"ton-secret-2","domain":"fragment.com"},
            {"name":"other","value":"x","domain":"example.com"}
        ]"#;
        let arr = FragmentCookies::parse_kyc(&b64(export)).unwrap();
        let mut names: Vec<&str> = obj.names().collect();
        names.sort();
        let mut arr_names: Vec<&str> = arr.names().collect();
        arr_names.sort();
        assert_eq!(names, arr_names);
        for n in names {
            assert_eq!(obj.get(n), arr.get(n), "{n}");
        }
        assert_eq!(arr.get("other"), None);
        assert_eq!(obj.get(TOKEN), Some("tok-secret-1"));
    }

    #[test]
    fn every_bad_form_has_its_error() {
        assert_eq!(
            FragmentCookies::parse("%%%").unwrap_err(),
            CookieError::NotBase64
        );
        assert_eq!(
            FragmentCookies::parse(&b64("not json")).unwrap_err(),
            CookieError::NotJson
        );
        assert_eq!(
            FragmentCookies::parse(&b64("[1,2]")).unwrap_err(),
            CookieError::WrongShape
        );
        assert_eq!(
            FragmentCookies::parse(&b64(r#"{"stel_ssid": 5}"#)).unwrap_err(),
            CookieError::WrongShape
        );
        assert_eq!(
            FragmentCookies::parse(&b64("{}")).unwrap_err(),
            CookieError::WrongShape
        );
        assert_eq!(
            FragmentCookies::parse_kyc(&b64(r#"{"stel_ssid":"x","stel_dt":"-180"}"#)).unwrap_err(),
            CookieError::Missing(vec![TOKEN, TON_TOKEN])
        );
        assert_eq!(
            FragmentCookies::parse(&b64(r#"{"stel_ssid":""}"#)).unwrap_err(),
            CookieError::Empty("stel_ssid".into())
        );
        assert_eq!(
            FragmentCookies::parse(&b64(r#"{"stel_ssid":"a;b"}"#)).unwrap_err(),
            CookieError::BadValue("stel_ssid".into())
        );
        assert_eq!(CookieError::NotBase64.api_code(), ("INVALID_COOKIES", 400));
        // Someone else's cookies, or an unsendable one that is not Fragment's, are left out.
        let export = r#"[
            {"name":"stel_ssid","value":"s","domain":"fragment.com"},
            {"name":"stel_token","value":"t","domain":"evilfragment.com"},
            {"name":"_ga","value":"\"quoted\"","domain":".fragment.com"}
        ]"#;
        let c = FragmentCookies::parse(&b64(export)).unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), vec!["stel_ssid"]);
    }

    /// Parsing keeps each value in a wiped buffer only: no freed block of the parse (a JSON
    /// tree, a copy taken from it) still holds a value, whether the set is taken or refused.
    #[test]
    fn parsing_leaves_no_plain_copy_of_a_value() {
        let ssid = "canary-ssid-0123456789abcdef0123";
        let inputs = [
            format!(r#"{{"stel_ssid":"{ssid}","stel_dt":"-180"}}"#),
            format!(r#"{{"stel_ssid":"{ssid}","stel_dt":5}}"#),
            format!(r#"[{{"name":"stel_ssid","value":"{ssid}","domain":"fragment.com"}}]"#),
            format!(
                r#"[{{"name":"stel_ssid","value":"{ssid}","domain":"fragment.com","httpOnly":true}},
                   {{"name":"stel_token","value":"","domain":"fragment.com"}}]"#
            ),
            format!(r#"[{{"name":"stel_ssid","value":"{ssid}"}}, 7]"#),
        ];
        for json in &inputs {
            let (outcome, copies) =
                crate::api::secret::leak_check::freed_copies(ssid.as_bytes(), || {
                    FragmentCookies::from_json(json).map(|c| c.get(SSID).map(str::len))
                });
            assert_eq!(
                copies, 0,
                "plain copies of the value left by parsing {json}: {outcome:?}"
            );
        }
    }

    #[test]
    fn values_never_show() {
        let c = FragmentCookies::parse_kyc(&b64(OBJECT)).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("stel_token"));
        assert!(!shown.contains("tok-secret-1") && !shown.contains("ton-secret-2"));
        let err = FragmentCookies::parse(&b64(r#"{"stel_token":"sec;ret"}"#)).unwrap_err();
        assert!(!err.to_string().contains("sec"));
    }
}
