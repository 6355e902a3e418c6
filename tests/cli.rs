//! The `wallet` and `sim` subcommands, run as a user runs them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fragment-gateway");

fn run_wallet(stdin: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("wallet")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/ton_vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// No fragment of the phrase (two consecutive words) anywhere, and no seed word among the
/// tokens of any JSON string value (keys such as "account_index" are fixed vocabulary).
fn assert_no_seed_words(text: &str, mnemonic: &str) {
    let words: Vec<&str> = mnemonic.split(' ').collect();
    for pair in words.windows(2) {
        let fragment = pair.join(" ");
        assert!(
            !text.contains(&fragment),
            "output shows {fragment:?}:\n{text}"
        );
    }
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        let mut values = vec![];
        collect_strings(&json, &mut values);
        for v in values {
            for token in v.split(|c: char| !c.is_ascii_alphabetic()) {
                assert!(
                    !words.contains(&token),
                    "output value shows seed word {token:?}"
                );
            }
        }
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

#[test]
fn wallet_prints_the_reference_addresses_for_every_seed_format() {
    let v = vectors();
    for seed in v["seeds"].as_array().unwrap() {
        let mnemonic = seed["mnemonic"].as_str().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(mnemonic);
        let index = seed["account_index"].as_u64().map(|i| i.to_string());
        let mut args = vec![];
        if let Some(i) = &index {
            args.extend(["--account-index", i.as_str()]);
        }
        // Base64 on one line with a newline, as `echo "<b64>" |` sends it; and the plain
        // words.
        for input in [format!("{b64}\n"), mnemonic.to_string()] {
            let (code, stdout, stderr) = run_wallet(&input, &args);
            assert_eq!(code, 0, "{stderr}");
            let report: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(report["seed_format"], seed["format"]);
            assert_eq!(report["public_key"], seed["public_key"]);
            for version in ["v4r2", "v5r1"] {
                for form in ["raw", "bounceable", "non_bounceable"] {
                    assert_eq!(
                        report["wallets"][version][form], seed[version][form],
                        "{} {version} {form}",
                        seed["name"]
                    );
                }
            }
            assert_no_seed_words(&stdout, mnemonic);
            assert_no_seed_words(&stderr, mnemonic);
        }
    }
}

#[test]
fn wallet_explains_a_bad_seed_without_echoing_it() {
    let words = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";
    let typo = words.replace("gadget", "gadgett");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&typo);
    let (code, stdout, stderr) = run_wallet(&b64, &[]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("word 13"), "{stderr}");
    assert!(!stderr.contains("gadgett"));
    assert_no_seed_words(&stderr, words);

    let (code, _, stderr) = run_wallet("%%%not-base64%%%", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("base64"), "{stderr}");

    let (code, _, stderr) = run_wallet(words, &["--account-index", "1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("account_index applies only to BIP39"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sim_serves_both_simulators_standalone() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--ton-listen",
            "127.0.0.1:0",
            "--fragment-listen",
            "127.0.0.1:0",
            "--block-time-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url_of = |prefix: &str| {
        let line = lines.next().unwrap().unwrap();
        assert!(line.starts_with(prefix), "{line}");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("the URL is printed")
            .to_string();
        assert!(!url.ends_with(":0"), "the real port is printed: {url}");
        url
    };
    let fragment_url = url_of("fragment.com simulator");
    let url = url_of("TON simulator");

    // fragment.com: a page with an API hash, and a login that gives cookies.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{fragment_url}/stars/buy"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fragment_gateway::fragment::html::api_hash(&page).is_some());
    let login: Value = http
        .post(format!("{fragment_url}/sim/login"))
        .json(&serde_json::json!({"account": "client"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cookies = login["fragment_cookies"].as_str().unwrap();
    fragment_gateway::fragment::FragmentCookies::parse_kyc(cookies).unwrap_err();
    fragment_gateway::fragment::FragmentCookies::parse(cookies).unwrap();

    let address = "UQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XglxD";
    let funded: Value = http
        .post(format!("{url}/sim/faucet"))
        .json(&serde_json::json!({"address": address, "amount": "2500000000"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(funded["ok"], true, "{funded}");
    let info: Value = http
        .get(format!("{url}/api/v2/getAddressInformation"))
        .query(&[("address", address)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["result"]["balance"], "2500000000");
    assert_eq!(info["result"]["state"], "uninitialized");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// No Docker engine runs here: the Dockerfile is checked against the tree instead. Every path
/// it copies exists, it builds with the README's command, and it runs this package's binary.
#[test]
fn the_dockerfile_builds_what_the_readme_says_from_paths_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let build = "cargo build --release --locked";
    assert!(readme.contains(build), "the README names the build command");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("RUN ") && l.contains(build)),
        "the Dockerfile builds with the README's command"
    );
    let mut copied = 0;
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        if parts[0].starts_with("--from=") {
            // The binary from the build stage: this package's binary name.
            assert!(
                parts[1].ends_with(&format!("/release/{}", env!("CARGO_PKG_NAME"))),
                "{line}"
            );
            continue;
        }
        for source in &parts[..parts.len() - 1] {
            assert!(
                root.join(source).exists(),
                "{line}: {source} does not exist"
            );
            copied += 1;
        }
    }
    assert!(copied >= 5, "the build stage copies the workspace");
    let entry = format!("/usr/local/bin/{}", env!("CARGO_PKG_NAME"));
    assert!(dockerfile.contains(&format!("ENTRYPOINT [\"{entry}\"]")));
    assert!(
        dockerfile.contains(r#"CMD ["serve", "--config", "/etc/fragment-gateway/config.toml"]"#)
    );
    assert!(
        dockerfile.contains("USER gateway")
            && dockerfile.contains("VOLUME /var/lib/fragment-gateway")
    );
    // The members the workspace needs are all copied.
    for member in [
        "events",
        "projections",
        "src",
        "config",
        "benches",
        "Cargo.lock",
    ] {
        assert!(
            dockerfile.contains(&format!("COPY {member}"))
                || dockerfile.contains(&format!(" {member} ")),
            "{member}"
        );
    }
}
