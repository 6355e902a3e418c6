//! Request bodies that may carry secrets (seeds, Fragment cookies), read into a buffer wiped on
//! drop, their secret fields parsed straight into wiped strings: never into a `String`, a
//! `serde_json::Value` or serde_json's scratch buffer. Every client body goes through `SecretJson`.
//!
//! Out of our reach: actix's own buffers (the connection's read buffer, the `Bytes` a chunk
//! arrives in, a decompressor's output), which it frees unwiped.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::config::Secret;

/// The fields whose values are secrets wherever they appear at the top of a body: they never
/// enter the `Value` tree of the other fields. `mnemonic` is read by no endpoint, but a client
/// that sends its seed under that name (the URL guard refuses both names) has it wiped too.
pub const SECRET_FIELDS: &[&str] = &["seed", "mnemonic", "fragment_cookies"];

/// The largest body read when the app registered no `BodyLimit` (config/default.toml's).
const DEFAULT_BODY_LIMIT: usize = 65_536;

/// How large a body `SecretJson` reads (`server.body_limit_bytes`), as app data.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A secret JSON value. Strings are unescaped by us straight into wiped buffers; what is not a
/// string or a list of them is never copied at all, only named by its shape.
pub enum SecretValue {
    Null,
    Text(Secret),
    /// A list's items; a list inside the list is `Other`, not read further.
    List(Vec<SecretValue>),
    /// A number, a boolean, an object (or a list in a list): contents skipped unread.
    Other,
}

impl<'de> Deserialize<'de> for SecretValue {
    /// Borrows the value's JSON text from the body (serde_json's raw value): serde_json only
    /// checks it, without unescaping it into its scratch buffer, which it frees unwiped.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        SecretValue::from_json(raw.get(), true).map_err(de::Error::custom)
    }
}

impl SecretValue {
    /// `text` is one JSON value serde_json has already checked.
    fn from_json(text: &str, list_allowed: bool) -> Result<SecretValue, &'static str> {
        match text.as_bytes().first() {
            Some(b'"') => unescape(text).map(SecretValue::Text),
            Some(b'n') => Ok(SecretValue::Null),
            Some(b'[') if list_allowed => {
                // Borrowed slices of the body: the items' text is not copied.
                let items: Vec<&RawValue> =
                    serde_json::from_str(text).map_err(|_| "invalid list")?;
                items
                    .iter()
                    .map(|item| SecretValue::from_json(item.get(), false))
                    .collect::<Result<_, _>>()
                    .map(SecretValue::List)
            }
            _ => Ok(SecretValue::Other),
        }
    }
}

/// A JSON string literal, quotes included and already checked by serde_json, unescaped into a
/// wiped string. Unescaping never lengthens the text, so the buffer, sized up front, never
/// reallocates (which would free an unwiped copy).
fn unescape(literal: &str) -> Result<Secret, &'static str> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or("invalid string")?;
    let mut out = Zeroizing::new(String::with_capacity(inner.len()));
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let unescaped = match chars.next() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let first = hex4(&mut chars)?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if chars.next() != Some('\\') || chars.next() != Some('u') {
                            return Err("unexpected end of hex escape");
                        }
                        match hex4(&mut chars)? {
                            low @ 0xDC00..=0xDFFF => {
                                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                            }
                            _ => return Err("lone leading surrogate in hex escape"),
                        }
                    }
                    // serde_json words a lone trailing surrogate so too.
                    0xDC00..=0xDFFF => return Err("lone leading surrogate in hex escape"),
                    code => code,
                };
                char::from_u32(code).ok_or("invalid unicode code point")?
            }
            _ => return Err("invalid escape"),
        };
        out.push(unescaped);
    }
    debug_assert!(out.capacity() == inner.len() || inner.is_empty());
    Ok(Secret::from(out))
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Result<u32, &'static str> {
    (0..4).try_fold(0, |n, _| {
        let digit = chars.next().and_then(|c| c.to_digit(16));
        digit.map(|d| n * 16 + d).ok_or("invalid escape")
    })
}

/// The secret fields of an object body, each taken out once.
#[derive(Default)]
pub struct Secrets(Vec<(&'static str, SecretValue)>);

impl Secrets {
    /// The field's value; `None` when the body does not have it.
    pub fn take(&mut self, name: &str) -> Option<SecretValue> {
        let at = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.swap_remove(at).1)
    }

    /// A repeated field keeps its last value, as a JSON object does; the earlier is wiped.
    fn put(&mut self, name: &'static str, value: SecretValue) {
        drop(self.take(name));
        self.0.push((name, value));
    }
}

/// A JSON body, with its secrets apart.
pub enum Body {
    Object {
        /// Every field but the secret ones.
        fields: Map<String, Value>,
        secrets: Secrets,
    },
    /// Any other JSON value; kept as a secret value, since it may be one (a bare cookies string
    /// of `/admin/owner-cookies`).
    Other(SecretValue),
}

impl Body {
    /// Parses a whole body. Errors are serde_json's (they name a line and column, never the
    /// input), as for any JSON body.
    pub fn parse(json: &[u8]) -> Result<Body, serde_json::Error> {
        let first = json
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        match first {
            Some(b'{') => {
                let ObjectBody(fields, secrets) = serde_json::from_slice(json)?;
                Ok(Body::Object { fields, secrets })
            }
            _ => serde_json::from_slice(json).map(Body::Other),
        }
    }
}

struct ObjectBody(Map<String, Value>, Secrets);

impl<'de> Deserialize<'de> for ObjectBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ObjectBody, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ObjectBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectBody, A::Error> {
                let mut fields = Map::new();
                let mut secrets = Secrets::default();
                while let Some(key) = map.next_key::<String>()? {
                    match SECRET_FIELDS.iter().find(|name| **name == key) {
                        Some(name) => secrets.put(name, map.next_value()?),
                        None => {
                            fields.insert(key, map.next_value()?);
                        }
                    }
                }
                Ok(ObjectBody(fields, secrets))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// The raw body in a buffer wiped on drop. It grows by moving into a larger wiped buffer (the
/// old one wiped as it is dropped), never by `Vec`'s reallocation, which frees the old block
/// unwiped.
struct BodyBuffer {
    bytes: Zeroizing<Vec<u8>>,
    limit: usize,
}

/// The first buffer of a body of unknown length (chunked).
const FIRST_CAPACITY: usize = 1024;

impl BodyBuffer {
    fn new(length: Option<usize>, limit: usize) -> BodyBuffer {
        let capacity = length.unwrap_or(FIRST_CAPACITY).min(limit);
        BodyBuffer {
            bytes: Zeroizing::new(Vec::with_capacity(capacity)),
            limit,
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), JsonPayloadError> {
        let len = self.bytes.len() + chunk.len();
        if len > self.limit {
            return Err(JsonPayloadError::Overflow { limit: self.limit });
        }
        if len > self.bytes.capacity() {
            let capacity = len.max(self.bytes.capacity() * 2).min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.bytes);
            self.bytes = bigger;
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }
}

/// The extractor of every client body that may carry a secret, in place of `web::Json`: the
/// same checks and the same errors (the app's `json_error`), in the same order: Content-Type,
/// a declared length over the limit, the limit while reading, then the JSON.
pub struct SecretJson(pub Body);

impl FromRequest for SecretJson {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<SecretJson, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let fail = |e: JsonPayloadError| -> Self::Future {
            let error = super::json_error(e);
            Box::pin(async move { Err(error.into()) })
        };
        use actix_web::mime::JSON;
        let is_json = matches!(req.mime_type(),
            Ok(Some(mime)) if mime.subtype() == JSON || mime.suffix() == Some(JSON));
        if !is_json {
            return fail(JsonPayloadError::ContentType);
        }
        let length = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(length) = length.filter(|l| *l > limit) {
            return fail(JsonPayloadError::OverflowKnownLength { length, limit });
        }
        // Decompressed as `web::Json` would: the decoder's buffers are actix's.
        let mut payload = actix_web::dev::Decompress::from_headers(payload.take(), req.headers());
        Box::pin(async move {
            let mut buffer = BodyBuffer::new(length, limit);
            let read = async {
                while let Some(chunk) = payload.next().await {
                    buffer.push(&chunk.map_err(JsonPayloadError::Payload)?)?;
                }
                Body::parse(&buffer.bytes).map_err(JsonPayloadError::Deserialize)
            };
            match read.await {
                Ok(body) => Ok(SecretJson(body)),
                Err(e) => Err(super::json_error(e).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{web, FromRequest, ResponseError};
    use futures_util::FutureExt;
    use serde_json::json;

    use super::leak_check::freed_copies;
    use super::*;
    use crate::api::input::Fields;

    /// The base64 of a mnemonic, with a `/` a JSON encoder may escape as `\/`.
    const SEED: &str = "YXJ0IGhvY2tleSB2aWN0b3J5IHNraWxsIGJ1YmJsZSBzdG9vbCBoZWFydCBnYXM/ZGVicmlz";

    /// The part of `SEED` before its `/`, which every copy of it holds, escaped or not.
    fn canary() -> &'static [u8] {
        &SEED.as_bytes()[..40]
    }

    /// A request with `body`, and a second reference to the payload's bytes: the test keeps
    /// them alive, so that freeing actix's copy of the body is not counted against our code.
    fn request(body: &str) -> (HttpRequest, Payload, web::Bytes) {
        let body = web::Bytes::from(body.to_string());
        let keep = body.clone();
        let (req, payload) = actix_web::test::TestRequest::post()
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
            .to_http_parts();
        (req, payload, keep)
    }

    fn extract(req: &HttpRequest, payload: &mut Payload) -> Result<Body, actix_web::Error> {
        SecretJson::from_request(req, payload)
            .now_or_never()
            .expect("the payload is all there")
            .map(|b| b.0)
    }

    /// The envelope's `error` of a failed extraction.
    fn error_of(e: actix_web::Error) -> (u16, String) {
        let api = e.as_error::<crate::api::ApiError>().expect("an ApiError");
        (api.status_code().as_u16(), api.message.clone())
    }

    #[test]
    fn a_body_with_a_seed_leaves_no_plain_copy_even_when_another_field_fails() {
        // The old `web::Json<Value>` left two: its body buffer, and the seed's `String`
        // in the `Value` tree, dropped with it when the username failed first.
        let body = format!(r#"{{"username":"@no-dashes","amount":100,"seed":"{SEED}"}}"#);
        let (req, mut payload, keep) = request(&body);
        let ((), copies) = freed_copies(canary(), || {
            let mut f = Fields::new(extract(&req, &mut payload).unwrap()).unwrap();
            assert!(f.username("username").is_err());
        });
        drop(keep);
        assert_eq!(copies, 0, "freed blocks still holding the seed");
    }

    #[test]
    fn an_escaped_seed_is_unescaped_into_a_wiped_string_only() {
        // serde_json unescapes into a scratch buffer it frees unwiped: the old code left
        // three copies here.
        let escaped = SEED.replace('/', "\\/");
        let body = format!(r#"{{"seed":"{escaped}","wallet_version":"v4r2"}}"#);
        let (req, mut payload, keep) = request(&body);
        let (seed, copies) = freed_copies(canary(), || {
            let mut f = Fields::new(extract(&req, &mut payload).unwrap()).unwrap();
            let seed: Option<Secret> = f.take_seed();
            let same = seed.as_ref().map(|s| s.expose() == SEED);
            drop(seed);
            same
        });
        drop(keep);
        assert_eq!(seed, Some(true), "the seed, unescaped");
        assert_eq!(copies, 0, "freed blocks still holding the seed");
    }

    #[test]
    fn cookies_leave_no_plain_copy_when_the_order_fails_first() {
        let cookies = "c3RlbF9zc2lkLWNhbmFyeS1jb29raWVzLTAxMjM0NTY3ODk=";
        let body = format!(r#"{{"username":"alice","fragment_cookies":"{cookies}"}}"#);
        let (req, mut payload, keep) = request(&body);
        let ((), copies) = freed_copies(cookies.as_bytes(), || {
            let mut f = Fields::new(extract(&req, &mut payload).unwrap()).unwrap();
            assert!(f.username("username").is_err());
        });
        drop(keep);
        assert_eq!(copies, 0, "freed blocks still holding the cookies");
    }

    #[test]
    fn a_bare_list_of_cookies_is_all_secret() {
        let cookies = "c3RlbF9zc2lkLWNhbmFyeS1jb29raWVzLTAxMjM0NTY3ODk=";
        let body = format!(r#"["{cookies}", 7, null, ["{cookies}"], {{"x": "{cookies}"}}]"#);
        let (kinds, copies) = freed_copies(cookies.as_bytes(), || {
            let Body::Other(SecretValue::List(items)) = Body::parse(body.as_bytes()).unwrap()
            else {
                panic!("a list");
            };
            items
                .iter()
                .map(|i| match i {
                    SecretValue::Text(s) if s.expose() == cookies => "text",
                    SecretValue::Null => "null",
                    SecretValue::Other => "other",
                    _ => "unexpected",
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(kinds, ["text", "other", "null", "other", "other"]);
        assert_eq!(copies, 0);
    }

    #[test]
    fn secret_fields_never_enter_the_value_tree() {
        let body =
            json!({"seed": SEED, "mnemonic": "a b c", "fragment_cookies": "x", "username": "@a"});
        let Body::Object {
            fields,
            mut secrets,
        } = Body::parse(body.to_string().as_bytes()).unwrap()
        else {
            panic!("an object");
        };
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["username"]);
        assert!(!Value::Object(fields).to_string().contains(&SEED[..20]));
        for name in SECRET_FIELDS {
            assert!(
                matches!(secrets.take(name), Some(SecretValue::Text(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn a_repeated_secret_keeps_its_last_value_as_json_does() {
        let Body::Object { mut secrets, .. } =
            Body::parse(br#"{"seed": "first", "seed": "second"}"#).unwrap()
        else {
            panic!("an object");
        };
        assert!(
            matches!(secrets.take("seed"), Some(SecretValue::Text(s)) if s.expose() == "second")
        );
        assert!(secrets.take("seed").is_none());
    }

    #[test]
    fn strings_unescape_as_serde_json_does() {
        for text in [
            r#""plain""#,
            r#""a\/b\"c\\d\n\t\r\b\f""#,
            r#""\u0041\u00e9\u20ac\ud83d\ude00""#,
            r#""é€😀 raw utf-8""#,
            r#""""#,
        ] {
            let ours = unescape(text).unwrap();
            let theirs: String = serde_json::from_str(text).unwrap();
            assert_eq!(ours.expose(), theirs, "{text}");
        }
        assert!(unescape(r#""\ud800""#).is_err());
        assert!(unescape(r#""\ude00x""#).is_err());
        assert!(unescape(r#""\ud800\u0041""#).is_err());
    }

    #[test]
    fn malformed_bodies_get_the_errors_a_value_parse_gives() {
        for body in [
            "",
            "{\"username\": ",
            "{\"seed\": \"abc",
            "{\"seed\": \"a\\x\"}",
            "{\"seed\": 1,}",
            "{\"fragment_cookies\": [\"a\" \"b\"]}",
            "[1,",
            "\"unterminated",
            "{\"a\": 1} trailing",
            "nul",
        ] {
            let ours = Body::parse(body.as_bytes()).err().map(|e| e.to_string());
            let theirs = serde_json::from_str::<Value>(body)
                .err()
                .map(|e| e.to_string());
            assert!(ours.is_some(), "{body:?} was accepted");
            assert_eq!(ours, theirs, "{body:?}");
        }
        // serde_json's checking pass names the column of a raw control character in a secret
        // string one before its parsing pass does (14 before the change); the message is
        // otherwise the same. Another field is parsed as before: its column is the old one.
        for (body, column) in [
            ("{\"seed\": \"tab\there\"}", 13),
            ("{\"other\": \"tab\there\"}", 15),
        ] {
            let ours = Body::parse(body.as_bytes()).err().unwrap().to_string();
            assert_eq!(
                ours,
                "control character (\\u0000-\\u001F) found while parsing a string at line 1 \
                 column "
                    .to_string()
                    + &column.to_string()
            );
        }
        // A bad surrogate in a secret string is refused by our unescaping with serde_json's
        // words; only the position differs (ours is where the string ends).
        for string in [
            r#""\ud800x""#,
            r#""\ud800\u0041""#,
            r#""\ude00""#,
            r#""\ud800""#,
        ] {
            let body = format!(r#"{{"seed": {string}}}"#);
            let words = |e: serde_json::Error| {
                let e = e.to_string();
                e[..e.find(" at line").unwrap()].to_string()
            };
            let ours = words(Body::parse(body.as_bytes()).err().unwrap());
            let theirs = words(serde_json::from_str::<Value>(&body).err().unwrap());
            assert_eq!(ours, theirs, "{body}");
        }
    }

    #[test]
    fn content_type_size_and_json_errors_are_the_envelopes_of_before() {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .set_payload(r#"{"seed":"x"}"#)
            .to_http_parts();
        let (status, message) = error_of(extract(&req, &mut payload).err().unwrap());
        assert_eq!(status, 400);
        assert!(
            message.contains("Content-Type: application/json"),
            "{message}"
        );

        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header(("content-type", "application/json"))
            .app_data(BodyLimit(10))
            .set_payload(r#"{"seed":"more than ten bytes"}"#)
            .to_http_parts();
        let (_, message) = error_of(extract(&req, &mut payload).err().unwrap());
        assert_eq!(message, "the request body is larger than 10 bytes");

        let (req, mut payload, _keep) = request("{\"username\": ");
        let (_, message) = error_of(extract(&req, &mut payload).err().unwrap());
        assert_eq!(
            message,
            "the request body is not valid JSON: EOF while parsing a value at line 1 column 13"
        );

        // A `+json` type is JSON, as for `web::Json`.
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header(("content-type", "application/vnd.api+json"))
            .set_payload(r#"{"seed":"x"}"#)
            .to_http_parts();
        assert!(extract(&req, &mut payload).is_ok());
    }

    #[test]
    fn the_body_buffer_grows_without_leaving_copies_and_stops_at_the_limit() {
        let chunk = format!("{SEED},");
        let (out, copies) = freed_copies(canary(), || {
            let mut buffer = BodyBuffer::new(None, 64 * 1024);
            for _ in 0..200 {
                buffer.push(chunk.as_bytes()).unwrap();
            }
            let ok = buffer.bytes.len() == 200 * chunk.len()
                && buffer
                    .bytes
                    .chunks(chunk.len())
                    .all(|c| c == chunk.as_bytes());
            drop(buffer);
            ok
        });
        assert!(out, "the chunks, in order");
        assert_eq!(copies, 0, "a growth left the old buffer unwiped");

        let mut buffer = BodyBuffer::new(Some(4), 8);
        buffer.push(b"1234").unwrap();
        buffer.push(b"5678").unwrap();
        assert!(matches!(
            buffer.push(b"9"),
            Err(JsonPayloadError::Overflow { limit: 8 })
        ));
    }

    #[test]
    fn the_leak_check_sees_a_vec_that_grows_by_reallocation() {
        // The check that the tests above rely on fails where it should.
        let ((), copies) = freed_copies(canary(), || {
            let mut plain = Zeroizing::new(Vec::with_capacity(8));
            for _ in 0..50 {
                plain.extend_from_slice(SEED.as_bytes());
            }
        });
        assert!(copies > 0, "Vec's own growth moves the block unwiped");
    }
}

#[cfg(test)]
pub(crate) mod leak_check {
    //! A test-only global allocator that, while armed on a thread, looks into every heap
    //! block that thread frees or moves for a canary (a seed, a key): a freed block that
    //! still holds it is a plain copy left behind in memory.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Watch;

    thread_local! {
        // Const-initialised and without `Drop`: no allocation and no destructor, so the
        // allocator can read them at any time.
        static CANARY: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
        static FOUND: Cell<usize> = const { Cell::new(0) };
    }

    /// Whether `block` holds `canary`. Volatile reads: the block is about to be freed, and the
    /// optimiser must not reason about its contents.
    unsafe fn holds(block: *const u8, size: usize, canary: *const u8, len: usize) -> bool {
        if len == 0 || size < len {
            return false;
        }
        (0..=size - len).any(|start| {
            (0..len).all(|i| unsafe {
                std::ptr::read_volatile(block.add(start + i))
                    == std::ptr::read_volatile(canary.add(i))
            })
        })
    }

    fn inspect(block: *const u8, size: usize) {
        let _ = CANARY.try_with(|c| {
            let (canary, len) = c.get();
            if len > 0 && unsafe { holds(block, size, canary, len) } {
                let _ = FOUND.try_with(|f| f.set(f.get() + 1));
            }
        });
    }

    unsafe impl GlobalAlloc for Watch {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            inspect(ptr, layout.size());
            unsafe { System.dealloc(ptr, layout) }
        }
        /// A block holding the canary that grows may move and leave the old one behind
        /// unwiped: counted too.
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            inspect(ptr, layout.size());
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static WATCH: Watch = Watch;

    /// Runs `f` and counts the heap blocks this thread freed or moved meanwhile that still held
    /// `canary`. `canary` itself must outlive the call (it is borrowed, so it does).
    pub(crate) fn freed_copies<R>(canary: &[u8], f: impl FnOnce() -> R) -> (R, usize) {
        FOUND.with(|n| n.set(0));
        CANARY.with(|c| c.set((canary.as_ptr(), canary.len())));
        let out = f();
        CANARY.with(|c| c.set((std::ptr::null(), 0)));
        (out, FOUND.with(Cell::get))
    }

    #[test]
    fn the_check_sees_a_plain_copy_and_not_a_wiped_one() {
        let canary = b"canary-0123456789-canary";
        let ((), plain) = freed_copies(canary, || drop(String::from_utf8(canary.to_vec())));
        assert_eq!(plain, 1, "a plain String freed with the canary is seen");
        let ((), wiped) = freed_copies(canary, || drop(zeroize::Zeroizing::new(canary.to_vec())));
        assert_eq!(wiped, 0, "a Zeroizing buffer is wiped before it is freed");
    }
}
