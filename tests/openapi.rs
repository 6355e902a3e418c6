//! `GET /openapi.json` against a sandbox gateway: the document covers exactly the routes the
//! server answers (`api::all_routes()`, the tables the router registers), and real answers carry
//! exactly the properties their documented schemas name, of the documented types.

mod sandbox;

use std::collections::{BTreeMap, BTreeSet};

use fragment_gateway::api::all_routes;
use sandbox::{spawn, TestApp};
use serde_json::{json, Value};

impl TestApp {
    /// An admin request with the key the admin test gateways are started with.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.keyed(method, path, ADMIN_KEY, body).await
    }

    async fn keyed(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send_with(method, path, &[("X-Admin-Key", key)], body)
            .await
    }

    async fn document(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        r.json().await.unwrap()
    }
}

const ADMIN_KEY: &str = "an-admin-key-for-the-openapi-tests";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The (method, path) pairs the document describes.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// `{name}` segments replaced by a fresh UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[actix_web::test]
async fn the_document_describes_exactly_the_routes_the_server_answers() {
    let t = spawn(&[("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0")]).await;
    let doc = t.document().await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(doc["info"]["title"], "fragment-gateway");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!doc["info"]["description"].as_str().unwrap().is_empty());
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let expected_tags = [
        "orders",
        "checkout",
        "queue",
        "premium",
        "wallet",
        "commission",
        "prices",
        "health",
        "admin",
    ];
    assert_eq!(tags, expected_tags.into_iter().collect());
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_key"]["in"],
        "header"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_key"]["name"],
        "X-Admin-Key"
    );

    let served: BTreeSet<(String, String)> = all_routes()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        served.len(),
        all_routes().count(),
        "a route is registered twice"
    );
    assert!(served.contains(&("get".into(), "/admin/orders".into())));
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
    );

    // Each operation: a unique id, a tag, a success answer, its errors in the envelope, and
    // every `$ref` in the document points at a schema it has.
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        let tag = op["tags"][0].as_str().unwrap();
        assert!(expected_tags.contains(&tag), "{method} {path}: tag {tag}");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{method} {path}");
        assert!(responses.contains_key("400"), "{method} {path}");
        // Client routes are rate-limited, except polling; admin routes lock out wrong keys.
        let admin = path.starts_with("/admin/");
        let limited = admin || path.starts_with("/api/") && path != "/api/v1/queue/{request_id}";
        assert_eq!(
            responses.contains_key("429"),
            limited,
            "{method} {path}: 429"
        );
        assert_eq!(responses.contains_key("401"), admin, "{method} {path}: 401");
        if admin {
            assert_eq!(
                op["security"],
                json!([{"admin_key": []}]),
                "{method} {path}"
            );
        }
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        // Every POST reads a JSON body, except the rebuild (only its query) and a cancel
        // (only its path).
        let bodiless = [
            "/admin/projections/rebuild",
            "/api/v1/orders/{order_id}/cancel",
        ];
        if method == "post" && !bodiless.contains(&path.as_str()) {
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{method} {path}: request body"
            );
        }
    }
    let mut refs = vec![];
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{r}");
    }

    // Every documented route answers something other than "no such route".
    let (status, body) = t.get("/api/v1/no/such/route").await;
    assert_eq!(
        (status, &body["error"]["error_code"]),
        (404, &json!("NOT_FOUND"))
    );
    for (method, path) in &documented {
        let body = (method == "post").then(|| json!({}));
        let (status, answer) = t.send(method, &concrete(path), body).await;
        assert!(
            !(status == 404 && answer["error"]["error_code"] == "NOT_FOUND"),
            "{method} {path} is documented but not routed: {answer}"
        );
        let documented_status = doc["paths"][path][method]["responses"]
            .get(status.to_string())
            .is_some();
        assert!(
            documented_status,
            "{method} {path} answered an undocumented {status}: {answer}"
        );
    }
    t.app.stop().await;
}

#[actix_web::test]
async fn the_document_is_not_rate_limited() {
    let t = spawn(&[
        ("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "1"),
        ("FG_RATE_LIMIT__BURST", "1"),
    ])
    .await;
    assert_eq!(t.get("/api/v1/queue").await.0, 200);
    assert_eq!(t.get("/api/v1/queue").await.0, 429);
    for _ in 0..5 {
        t.document().await;
    }
    t.app.stop().await;
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Checks JSON values against the document's schemas, strictly: every property of an object
/// must be documented (as if `additionalProperties` were false), every required one present,
/// and types, enums, formats, patterns and bounds hold. `$ref`s are followed and `allOf`
/// members apply together (their properties add up).
struct Checker<'d> {
    doc: &'d Value,
}

impl<'d> Checker<'d> {
    fn resolve(&self, mut schema: &'d Value) -> &'d Value {
        while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            schema = &self.doc["components"]["schemas"][name];
            assert!(schema.is_object(), "dangling {r}");
        }
        schema
    }

    /// The schemas that all apply to one value: `$ref`s resolved, `allOf`s spread.
    fn spread(&self, schema: &'d Value, out: &mut Vec<&'d Value>) {
        let schema = self.resolve(schema);
        out.push(schema);
        for member in schema["allOf"].as_array().into_iter().flatten() {
            self.spread(member, out);
        }
    }

    /// The answer of `method path` with `status`, as documented.
    fn response(&self, method: &str, path: &str, status: u16) -> &'d Value {
        let schema = &self.doc["paths"][path][method]["responses"][status.to_string()]["content"]
            ["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} documents no {status} answer"
        );
        schema
    }

    fn errors(&self, schema: &'d Value, value: &Value) -> Vec<String> {
        let mut errors = vec![];
        let mut all = vec![];
        self.spread(schema, &mut all);
        self.check(&all, value, "$", &mut errors);
        errors
    }

    fn check(&self, schemas: &[&'d Value], value: &Value, at: &str, errors: &mut Vec<String>) {
        for schema in schemas {
            self.check_scalar(schema, value, at, errors);
            if let Some(branches) = schema["oneOf"].as_array() {
                let matching = branches
                    .iter()
                    .filter(|b| self.errors(b, value).is_empty())
                    .count();
                if matching != 1 {
                    errors.push(format!(
                        "{at}: {value} matches {matching} of the oneOf branches"
                    ));
                }
            }
        }
        if let Value::Object(map) = value {
            let mut known: BTreeMap<&str, Vec<&'d Value>> = BTreeMap::new();
            let mut required = BTreeSet::new();
            let mut described = false;
            for schema in schemas {
                if let Some(props) = schema["properties"].as_object() {
                    described = true;
                    for (k, s) in props {
                        self.spread(s, known.entry(k.as_str()).or_default());
                    }
                }
                for r in schema["required"].as_array().into_iter().flatten() {
                    required.insert(r.as_str().unwrap());
                }
            }
            for r in &required {
                if !map.contains_key(*r) {
                    errors.push(format!("{at}: required property {r} is missing"));
                }
            }
            for (k, v) in map {
                match known.get(k.as_str()) {
                    Some(sub) => self.check(sub, v, &format!("{at}.{k}"), errors),
                    None if described => {
                        errors.push(format!("{at}: property {k} is not documented"))
                    }
                    None => {}
                }
            }
        }
        if let Value::Array(items) = value {
            for schema in schemas {
                if let Some(item_schema) = schema.get("items") {
                    let mut item_schemas = vec![];
                    self.spread(item_schema, &mut item_schemas);
                    for (i, item) in items.iter().enumerate() {
                        self.check(&item_schemas, item, &format!("{at}[{i}]"), errors);
                    }
                }
            }
        }
    }

    fn check_scalar(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let type_ok = types.is_empty()
            || types.contains(&actual)
            || (actual == "integer" && types.contains(&"number"));
        if !type_ok {
            errors.push(format!("{at}: {value} is {actual}, documented {types:?}"));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Value::String(s) = value {
            let format_ok = match schema["format"].as_str() {
                Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
                _ => true,
            };
            if !format_ok {
                errors.push(format!("{at}: {s:?} is not a {}", schema["format"]));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                if !regex::Regex::new(pattern).unwrap().is_match(s) {
                    errors.push(format!("{at}: {s:?} does not match {pattern}"));
                }
            }
        }
        if let Some(n) = value.as_f64() {
            if schema["minimum"].as_f64().is_some_and(|min| n < min)
                || schema["maximum"].as_f64().is_some_and(|max| n > max)
            {
                errors.push(format!("{at}: {n} is out of the documented bounds"));
            }
        }
    }
}

/// Checks a real answer of `method path` against its documented schema.
fn assert_documented(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let checker = Checker { doc };
    let errors = checker.errors(checker.response(method, path, status), body);
    assert!(
        errors.is_empty(),
        "{method} {path} ({status}) does not match its documentation:\n  {}\nanswer: {body}",
        errors.join("\n  ")
    );
}

#[actix_web::test]
async fn real_answers_match_their_documented_schemas() {
    let t = spawn(&[("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0")]).await;
    let doc = t.document().await;
    let check = |method: &str, path: &str, (status, body): &(u16, Value)| {
        assert_documented(&doc, method, path, *status, body);
    };

    let r = t.get("/health").await;
    assert_eq!(r.0, 200);
    check("get", "/health", &r);

    // A two-step Stars order, paid with the demo wallet, read back once completed.
    let r = t
        .post(
            "/api/v1/orders/stars",
            json!({"username": "@alice", "amount": 100}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/orders/stars", &r);
    let order_id = r.1["data"]["order_id"].as_str().unwrap().to_string();
    let r = t
        .post(
            &format!("/api/v1/orders/{order_id}/pay"),
            json!({"seed": t.seed}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/orders/{order_id}/pay", &r);
    let request_id = r.1["data"]["request_id"].as_str().unwrap().to_string();
    let r = t
        .post(
            "/api/v1/stars/pay",
            json!({"order_id": order_id, "seed": t.seed}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/stars/pay", &r);
    let r = t.get(&format!("/api/v1/queue/{request_id}")).await;
    check("get", "/api/v1/queue/{request_id}", &r);
    let done = t.wait_request_answer(&request_id).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    assert!(done["data"]["result"].is_object());
    check("get", "/api/v1/queue/{request_id}", &(200, done));
    let r = t.get(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(r.1["data"]["status"], "success", "{}", r.1);
    check("get", "/api/v1/orders/{order_id}", &r);

    // A Premium order has `months` where a Stars order has `amount`.
    let r = t
        .post(
            "/api/v1/premium/create",
            json!({"username": "@bob", "months": 6}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["data"]["months"], 6);
    check("post", "/api/v1/premium/create", &r);

    // One-shot buys.
    let r = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed, "payment_method": "TON"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/stars/buy", &r);
    let r = t
        .post(
            "/api/v1/premium/buy",
            json!({"username": "@bob", "duration": 3, "seed": t.seed}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/premium/buy", &r);
    let premium = t
        .wait_request_answer(r.1["data"]["request_id"].as_str().unwrap())
        .await;

    // Paid in USDT: the order and the result have their USDT fields.
    let r = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed, "payment_method": "usdt_ton"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/stars/buy", &r);
    let usdt = t
        .wait_request_answer(r.1["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(usdt["data"]["result"]["cost_usdt_ton"], "0.75", "{usdt}");
    check("get", "/api/v1/queue/{request_id}", &(200, usdt.clone()));
    let r = t
        .get(&format!(
            "/api/v1/orders/{}",
            usdt["data"]["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.1["data"]["payment_method"], "usdt_ton", "{}", r.1);
    assert_eq!(r.1["data"]["price_usdt_ton"], "0.75", "{}", r.1);
    check("get", "/api/v1/orders/{order_id}", &r);

    // Under an Idempotency-Key: the retry is the first answer, another request a 409.
    let keyed = async |amount: u32| {
        t.send_with(
            "post",
            "/api/v1/stars/buy",
            &[("Idempotency-Key", "documented-key")],
            Some(json!({"username": "@alice", "amount": amount, "seed": t.seed})),
        )
        .await
    };
    let first = keyed(50).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = keyed(50).await;
    assert_eq!(again, first);
    check("post", "/api/v1/stars/buy", &again);
    let reused = keyed(60).await;
    assert_eq!(reused.1["error"]["error_code"], "IDEMPOTENCY_KEY_REUSED");
    check("post", "/api/v1/stars/buy", &reused);
    for (method, path) in [
        ("post", "/api/v1/stars/create"),
        ("post", "/api/v1/orders/stars"),
        ("post", "/api/v1/premium/create"),
        ("post", "/api/v1/orders/premium"),
        ("post", "/api/v1/stars/pay"),
        ("post", "/api/v1/orders/{order_id}/pay"),
        ("post", "/api/v1/stars/buy"),
        ("post", "/api/v1/premium/buy"),
        ("post", "/api/v1/checkouts"),
        ("post", "/admin/wallets/{address}/settle"),
    ] {
        let op = &doc["paths"][path][method];
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{method} {path} documents the key"
        );
        assert!(
            op["responses"]["200"]["headers"]["Idempotent-Replayed"].is_object(),
            "{method} {path} documents replays"
        );
        let conflict = op["responses"]["409"].to_string();
        assert!(
            conflict.contains("IDEMPOTENCY_KEY_REUSED")
                && conflict.contains("IDEMPOTENCY_KEY_IN_PROGRESS"),
            "{method} {path}: {conflict}"
        );
    }
    assert_eq!(premium["data"]["status"], "completed", "{premium}");
    check("get", "/api/v1/queue/{request_id}", &(200, premium));

    // A checkout for the demo wallet (deployed by now: its key is read from the chain),
    // read back, refused when tampered with, then paid with the wallet's own signature.
    let demo = t.sandbox().demo_wallet.friendly_address(false);
    let r = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "premium", "username": "@alice", "months": 3, "wallet_address": demo}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/checkouts", &r);
    let checkout = r.1["data"]["checkout_id"].as_str().unwrap().to_string();
    let transaction = r.1["data"]["transaction"].clone();
    let r = t.get(&format!("/api/v1/checkouts/{checkout}")).await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("get", "/api/v1/checkouts/{checkout_id}", &r);
    let tampered = t.sign_checkout(&transaction, |m| {
        m[0].amount = fragment_gateway::ton::Nanoton::new(m[0].amount.as_u64() + 1)
    });
    let r = t
        .post(
            &format!("/api/v1/checkouts/{checkout}/submit"),
            json!({"boc": tampered}),
        )
        .await;
    assert_eq!(r.1["error"]["error_code"], "CHECKOUT_REJECTED", "{}", r.1);
    check("post", "/api/v1/checkouts/{checkout_id}/submit", &r);
    let signed = t.sign_checkout(&transaction, |_| {});
    let r = t
        .post(
            &format!("/api/v1/checkouts/{checkout}/submit"),
            json!({"boc": signed}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/checkouts/{checkout_id}/submit", &r);
    let done = t
        .wait_request_answer(r.1["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(done["data"]["status"], "completed", "{done}");

    // Cancel: an unpaid order, then a paid one; a wallet's orders by cursor.
    let r = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    let unpaid = r.1["data"]["order_id"].as_str().unwrap().to_string();
    let r = t
        .post(&format!("/api/v1/orders/{unpaid}/cancel"), json!({}))
        .await;
    assert_eq!(r.1["data"]["status"], "cancelled", "{}", r.1);
    check("post", "/api/v1/orders/{order_id}/cancel", &r);
    let r = t
        .post(&format!("/api/v1/orders/{order_id}/cancel"), json!({}))
        .await;
    assert_eq!(
        r.1["error"]["error_code"], "ORDER_NOT_CANCELLABLE",
        "{}",
        r.1
    );
    check("post", "/api/v1/orders/{order_id}/cancel", &r);
    let wallet = t.sandbox().demo_wallet.friendly_address(false);
    for query in ["limit=1", "status=success&limit=100"] {
        let r = t
            .get(&format!("/api/v1/orders?wallet_address={wallet}&{query}"))
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        check("get", "/api/v1/orders", &r);
    }

    for path in [
        "/api/v1/queue/status",
        "/api/v1/queue",
        "/api/v1/commission/rates",
        "/api/v1/prices",
    ] {
        let r = t.get(path).await;
        assert_eq!(r.0, 200, "{path}: {}", r.1);
        check("get", path, &r);
    }

    for username in ["@bob", "@premium_pete", "@ghost_user"] {
        let r = t
            .post(
                "/api/v1/premium/check-eligibility",
                json!({"username": username}),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        check("post", "/api/v1/premium/check-eligibility", &r);
    }

    // The wallet's side.
    let r = t
        .post("/api/v1/wallet/resolve", json!({"seed": t.seed}))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/api/v1/wallet/resolve", &r);
    let wallet = r.1["data"]["wallet_address"].as_str().unwrap().to_string();
    for path in [
        "/api/v1/wallet/balance",
        "/api/v1/commission/balance",
        "/api/v1/transactions",
    ] {
        let r = t.get(&format!("{path}?wallet_address={wallet}")).await;
        assert_eq!(r.0, 200, "{path}: {}", r.1);
        check("get", path, &r);
    }
    let r = t
        .get(&format!("/api/v1/transactions?wallet_address={wallet}"))
        .await;
    assert!(r.1["data"]["total"].as_u64().unwrap() >= 3, "{}", r.1);
    // The USDT purchase's line says what it cost in USDT.
    let usdt_line = r.1["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["payment_method"] == "usdt_ton")
        .cloned()
        .unwrap_or_else(|| panic!("no USDT line: {}", r.1));
    assert_eq!(usdt_line["cost_usdt_ton"], "0.75", "{usdt_line}");
    assert_eq!(usdt_line["cost_ton"], "0", "{usdt_line}");

    // Errors: each in its operation's documented statuses and codes.
    let r = t
        .post("/api/v1/stars/create", json!({"amount": "lots"}))
        .await;
    assert_eq!(r.0, 400);
    check("post", "/api/v1/stars/create", &r);
    let r = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "alice", "amount": 50}),
        )
        .await;
    assert_eq!(r.1["error"]["error_code"], "INVALID_USERNAME_FORMAT");
    check("post", "/api/v1/stars/create", &r);
    let r = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@ghost_user", "amount": 50}),
        )
        .await;
    assert_eq!(r.0, 404);
    check("post", "/api/v1/stars/create", &r);
    let r = t
        .post(
            "/api/v1/premium/create",
            json!({"username": "@premium_pete", "months": 3}),
        )
        .await;
    assert_eq!(r.1["error"]["error_code"], "PREMIUM_ALREADY_ACTIVE");
    check("post", "/api/v1/premium/create", &r);
    let r = t
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.0, 404);
    check("get", "/api/v1/orders/{order_id}", &r);
    let r = t
        .get(&format!("/api/v1/queue/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.0, 404);
    check("get", "/api/v1/queue/{request_id}", &r);
    let r = t
        .get(&format!("/api/v1/wallet/balance?seed={}", t.seed))
        .await;
    assert_eq!(r.0, 400);
    check("get", "/api/v1/wallet/balance", &r);
    let r = t
        .post(
            &format!("/api/v1/orders/{order_id}/pay"),
            json!({"seed": "bm90IGEgc2VlZA=="}),
        )
        .await;
    assert_eq!(r.1["error"]["error_code"], "INVALID_SEED");
    check("post", "/api/v1/orders/{order_id}/pay", &r);
    t.app.stop().await;
}

#[actix_web::test]
async fn admin_answers_match_their_documented_schemas() {
    let t = spawn(&[
        ("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0"),
        ("FG_ADMIN__KEY", ADMIN_KEY),
    ])
    .await;
    let doc = t.document().await;
    let check = |method: &str, path: &str, (status, body): &(u16, Value)| {
        assert_documented(&doc, method, path, *status, body);
    };

    // Something to list: a completed no-KYC purchase (a commission debt) and an unpaid order.
    let r = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 100, "seed": t.seed}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let order_id = r.1["data"]["order_id"].as_str().unwrap().to_string();
    let done = t
        .wait_request_answer(r.1["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    let wallet = done["data"]["wallet_address"].as_str().unwrap().to_string();
    let r = t
        .post(
            "/api/v1/premium/create",
            json!({"username": "@bob", "months": 3}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);

    for (path, filled) in [
        ("/admin/orders", true),
        ("/admin/orders/unconfirmed", false),
        ("/admin/requests", true),
        ("/admin/commission", true),
    ] {
        let r = t.admin("get", path, None).await;
        assert_eq!(r.0, 200, "{path}: {}", r.1);
        assert_eq!(
            !r.1["data"]["items"].as_array().unwrap().is_empty(),
            filled,
            "{path}: {}",
            r.1
        );
        check("get", path, &r);
    }
    let r = t.admin("get", "/admin/orders?status=created", None).await;
    assert_eq!(r.1["data"]["total"], 1, "{}", r.1);
    check("get", "/admin/orders", &r);
    let r = t.admin("get", "/admin/orders?state=created", None).await;
    assert_eq!(r.0, 400, "{}", r.1);
    check("get", "/admin/orders", &r);

    // The audit of an order, of a wallet, and a stream's events.
    let r = t
        .admin("get", &format!("/admin/audit/{order_id}"), None)
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1["data"]["commission"].is_null());
    check("get", "/admin/audit/{target}", &r);
    let r = t
        .admin("get", &format!("/admin/audit/{wallet}"), None)
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        r.1["data"]["orders"].as_array().unwrap().len(),
        1,
        "{}",
        r.1
    );
    check("get", "/admin/audit/{target}", &r);
    let r = t
        .admin(
            "get",
            &format!("/admin/audit/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(r.0, 404, "{}", r.1);
    check("get", "/admin/audit/{target}", &r);
    let r = t
        .admin(
            "get",
            &format!("/admin/streams/order-{order_id}/events"),
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("get", "/admin/streams/{stream}/events", &r);
    let r = t
        .admin("get", "/admin/streams/no-such-stream/events", None)
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    check("get", "/admin/streams/{stream}/events", &r);

    // Settling part of the debt; more than the debt is refused.
    let path = format!("/admin/wallets/{wallet}/settle");
    let body = json!({"amount_ton": "0.001", "reference": "openapi test"});
    let r = t.admin("post", &path, Some(body)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/admin/wallets/{address}/settle", &r);
    let body = json!({"amount_ton": "1000", "reference": "too much"});
    let r = t.admin("post", &path, Some(body)).await;
    assert_eq!(r.0, 400, "{}", r.1);
    check("post", "/admin/wallets/{address}/settle", &r);

    let r = t.admin("post", "/admin/projections/rebuild", None).await;
    assert_eq!((r.0, &r.1["data"]["equal"]), (200, &json!(true)), "{}", r.1);
    check("post", "/admin/projections/rebuild", &r);

    let r = t
        .admin(
            "post",
            "/admin/owner-cookies",
            Some(json!({"fragment_cookies": ["e30="]})),
        )
        .await;
    assert_eq!(r.1["error"]["error_code"], "INVALID_COOKIES", "{}", r.1);
    check("post", "/admin/owner-cookies", &r);
    let (_, owner) = sandbox::fragment_login(&t.app, "owner");
    let body = json!({"fragment_cookies": [owner]});
    let r = t.admin("post", "/admin/owner-cookies", Some(body)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/admin/owner-cookies", &r);

    // Without the key; then an address that sent too many wrong keys.
    let r = t.get("/admin/orders").await;
    assert_eq!(r.0, 401, "{}", r.1);
    check("get", "/admin/orders", &r);
    let mut locked = None;
    for _ in 0..20 {
        let r = t
            .keyed("get", "/admin/commission", "not-the-key", None)
            .await;
        if r.0 == 429 {
            locked = Some(r);
            break;
        }
        check("get", "/admin/commission", &r);
    }
    let locked = locked.expect("wrong keys are limited");
    check("get", "/admin/commission", &locked);

    // Webhooks: an order with a webhook to the sandbox's inbox, its delivery listed with its
    // attempts, then redelivered.
    let inbox = format!("{}/sim/webhooks", t.sandbox().ton.url());
    let r = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@bob", "amount": 50, "webhook_url": inbox}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let hooked = r.1["data"]["order_id"].as_str().unwrap().to_string();
    let path = format!("/admin/webhooks?order_id={hooked}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let listed = loop {
        let r = t.admin("get", &path, None).await;
        if r.1["data"]["items"][0]["status"] == "delivered" {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {}",
            r.1
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    check("get", "/admin/webhooks", &listed);
    let event_id = listed.1["data"]["items"][0]["event_id"].as_str().unwrap();
    let r = t
        .admin(
            "post",
            &format!("/admin/webhooks/{event_id}/redeliver"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check("post", "/admin/webhooks/{event_id}/redeliver", &r);
    let r = t.admin("get", "/admin/webhooks?status=nope", None).await;
    assert_eq!(r.0, 400);
    check("get", "/admin/webhooks", &r);
    t.app.stop().await;
}

#[test]
fn the_checker_catches_drift() {
    let doc = serde_json::to_value(fragment_gateway::api::openapi::document()).unwrap();
    let checker = Checker { doc: &doc };
    let order = checker.response("get", "/api/v1/orders/{order_id}", 200);
    let good = json!({"success": true, "data": {
        "order_id": uuid::Uuid::new_v4(), "type": "stars", "amount": 100, "username": "@alice",
        "mode": "no_kyc", "status": "created", "price_ton": "0.5", "commission_rate": 0.01,
        "commission_ton": "0.005", "total_ton": "0.505", "created_at": "2026-01-01T00:00:00.000Z",
        "expires_at": "2026-01-01T00:10:00.000Z", "wallet_address": null, "request_id": null,
        "tx_hash": null, "error_code": null, "error": null, "completed_at": null,
        "delivery_confirmed": null,
    }});
    assert_eq!(checker.errors(order, &good), Vec::<String>::new());
    let drifted = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        checker.errors(order, &v)
    };
    assert_eq!(drifted(&|v| v["data"]["new_field"] = json!(1)).len(), 1);
    assert_eq!(
        drifted(&|v| {
            v["data"].as_object_mut().unwrap().remove("expires_at");
        })
        .len(),
        1
    );
    assert_eq!(drifted(&|v| v["data"]["price_ton"] = json!(0.5)).len(), 1);
    assert_eq!(drifted(&|v| v["data"]["price_ton"] = json!("0,5")).len(), 1);
    assert_eq!(drifted(&|v| v["data"]["amount"] = json!(10)).len(), 1);
    assert_eq!(drifted(&|v| v["data"]["status"] = json!("paid")).len(), 1);
    assert_eq!(
        drifted(&|v| v["data"]["error_code"] = json!("OOPS")).len(),
        1
    );
    assert_eq!(
        drifted(&|v| v["data"]["created_at"] = json!("today")).len(),
        1
    );
    assert_eq!(drifted(&|v| v["success"] = json!(false)).len(), 1);

    // Errors: the envelope's properties plus the operation's narrowed codes.
    let not_found = checker.response("get", "/api/v1/orders/{order_id}", 404);
    let error = json!({"success": false, "error": {"code": 404, "error_code": "ORDER_NOT_FOUND",
        "message": "Order not found", "details": []}});
    assert_eq!(checker.errors(not_found, &error), Vec::<String>::new());
    let mut wrong = error.clone();
    wrong["error"]["error_code"] = json!("USER_NOT_FOUND");
    assert_eq!(checker.errors(not_found, &wrong).len(), 1);
    wrong["error"]["extra"] = json!(true);
    assert_eq!(checker.errors(not_found, &wrong).len(), 2);
}
