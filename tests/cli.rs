//! The binary as a user runs it: the `wallet` and `sim` subcommands, the README's curl
//! walkthrough against `sandbox`, and the Dockerfile's agreement with the README.

mod pyenv;
mod spawned;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// One step of a README shell block: a command (continuation lines joined) and, when the
/// README shows it, its output (`…` standing for anything).
#[derive(Debug)]
struct Step {
    command: String,
    expected: Option<String>,
}

/// The steps of the first `sh` block after `heading` in the README. A `# …` line under a
/// command is its output when it looks like output (JSON, a string, a number); other comment
/// lines are prose. A trailing `# a → b → c` comment says the output moves through those
/// states: the step waits for the last.
fn readme_steps(heading: &str) -> Vec<Step> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find(heading).expect("the walkthrough's heading")..];
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a sh block")
        .0;
    let mut steps: Vec<Step> = vec![];
    let mut pending = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if let Some(comment) = line.trim_start().strip_prefix('#') {
            let comment = comment.trim();
            let looks_like_output = comment.starts_with(['{', '[', '"'])
                || comment.chars().next().is_some_and(|c| c.is_ascii_digit());
            if let (true, Some(last)) = (looks_like_output, steps.last_mut()) {
                assert!(last.expected.is_none(), "two outputs for {}", last.command);
                last.expected = Some(comment.to_string());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (command, expected) = match full.split_once("  #") {
            Some((command, states)) if states.contains('→') => {
                let last = states.rsplit('→').next().unwrap().trim();
                (command.trim().to_string(), Some(format!("\"{last}\"")))
            }
            _ => (full.trim().to_string(), None),
        };
        steps.push(Step { command, expected });
    }
    steps
}

/// Whether `actual` is `expected` up to whitespace, `…` matching anything.
fn matches_shown(expected: &str, actual: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let (expected, actual) = (squeeze(expected), squeeze(actual));
    let mut parts = expected.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Runs `command` in bash with `vars` as environment variables; its stdout, trimmed.
fn bash(command: &str, vars: &[(String, String)]) -> Result<String, String> {
    let out = Command::new("bash")
        .args(["-c", &format!("set -o pipefail\n{command}")])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("bash could not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "exit {:?}: {stdout} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let tools = bash("command -v curl && command -v jq", &[]);
    assert!(
        tools.is_ok(),
        "the README's walkthrough uses curl and jq: install them (apt-get install curl jq)"
    );
    let python = pyenv::virtualenv(
        "fragmentapi",
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt"),
    );
    let sandbox = spawned::Sandbox::start();
    let steps = readme_steps("## A purchase with curl (sandbox)");
    assert!(steps.len() >= 10, "{steps:#?}");
    let mut vars: Vec<(String, String)> = vec![];
    for step in &steps {
        let context = || {
            format!(
                "README step `{}`\nserver log:\n{}",
                step.command,
                sandbox.log()
            )
        };
        // Assignments: the two the reader fills in, and those that capture an answer.
        if let Some((name, value)) = step
            .command
            .split_once('=')
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        {
            let value = match name {
                "API" => {
                    // The documented address; the test's sandbox is on a free port instead.
                    assert_eq!(value, "http://127.0.0.1:8080/api/v1", "{}", context());
                    format!("{}/api/v1", sandbox.url)
                }
                "SEED" => {
                    assert!(value.starts_with('<'), "{}", context());
                    sandbox.seed.clone()
                }
                "PY" => {
                    // A Python with tonutils, for the wallet app the README runs.
                    assert_eq!(value, "python3", "{}", context());
                    python.display().to_string()
                }
                "TON" => {
                    assert_eq!(value, "http://127.0.0.1:8081", "{}", context());
                    sandbox.faucet.replace("/sim/faucet", "")
                }
                "HOOKS" => {
                    // The TON simulator's webhook inbox, on the test sandbox's port.
                    assert_eq!(value, "http://127.0.0.1:8081/sim/webhooks", "{}", context());
                    sandbox.faucet.replace("/sim/faucet", "/sim/webhooks")
                }
                _ => {
                    let got = bash(&format!("{}\nprintf %s \"${name}\"", step.command), &vars)
                        .unwrap_or_else(|e| panic!("{e}\n{}", context()));
                    assert!(
                        !got.is_empty() && got != "null",
                        "{name} is {got:?}\n{}",
                        context()
                    );
                    got
                }
            };
            vars.retain(|(n, _)| n != name);
            vars.push((name.to_string(), value));
            continue;
        }
        // Reads are repeated until they show what the README shows, as a reader polls.
        let repeatable = !step.command.contains("-XPOST");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = bash(&step.command, &vars).unwrap_or_else(|e| panic!("{e}\n{}", context()));
            let Some(expected) = &step.expected else {
                assert!(!got.is_empty() && got != "null", "{got:?}\n{}", context());
                break;
            };
            if matches_shown(expected, &got) {
                break;
            }
            assert!(
                repeatable && Instant::now() < deadline,
                "the README shows {expected}\nbut it printed {got}\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The README's wallet address is the demo wallet the sandbox prints.
    let shown = steps
        .iter()
        .find_map(|s| s.command.split_once("wallet_address=").map(|(_, a)| a))
        .expect("a step with the wallet's address");
    assert!(shown.starts_with(&sandbox.wallet_address), "{shown}");

    // The faucet command under the block funds another wallet.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let faucet = readme
        .split('`')
        .find(|s| s.contains("/sim/faucet") && s.starts_with("curl"))
        .expect("the README's faucet command");
    let (host, _) = sandbox
        .faucet
        .trim_start_matches("http://")
        .split_once('/')
        .unwrap();
    let other = "UQBjQJuBWjnGocXFxoX_2tZ6ypXzxN7LTnEeUg0PIj6BC42Z";
    let command = faucet
        .replace("127.0.0.1:8081", host)
        .replace("<any form>", other)
        .replace("<nanoton>", "1500000000");
    assert_ne!(command, faucet, "the faucet command names 127.0.0.1:8081");
    bash(&command, &[]).unwrap_or_else(|e| panic!("{e}: {command}"));
    let api = format!("{}/api/v1", sandbox.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let balance = bash(
            &format!(
                "curl -s '{api}/wallet/balance?wallet_address={other}' | jq -r .data.balance_ton"
            ),
            &[],
        )
        .unwrap();
        if balance == "1.5" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the faucet's TON never arrived: {balance}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readme_steps_are_read_as_a_reader_reads_them() {
    assert!(matches_shown(
        r#"{"a": "8652…", "b": "0.5"}"#,
        "{\n  \"a\": \"86529f\",\n  \"b\": \"0.5\"\n}"
    ));
    assert!(!matches_shown(
        r#"{"a": "8652…", "b": "0.5"}"#,
        r#"{"a": "86529f", "b": "0.6"}"#
    ));
    assert!(!matches_shown("2", "12"));
    assert!(matches_shown("\"completed\"", "\"completed\""));
    let steps = readme_steps("## A purchase with curl (sandbox)");
    let poll = steps
        .iter()
        .find(|s| s.command.ends_with("jq .data.status"))
        .expect("the polling step");
    assert_eq!(poll.expected.as_deref(), Some("\"completed\""));
    assert!(steps.iter().all(|s| !s.command.contains('#')), "{steps:#?}");
}
