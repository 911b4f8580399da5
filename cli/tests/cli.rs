//! The `rulegate` command as operators run it: the built binary, fixture
//! files, and a process environment set per test (never inherited, so a
//! key in the developer's shell cannot change an outcome).

// Fixtures and helpers unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const SEGMENT_KEY: &str = "seg-key-0002";
const FULLCONTACT_KEY: &str = "fc-key-0001";
const SLACK_PATH: &str = "/services/T0/B0/slack-path-secret";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// A scratch file under cargo's per-target temporary directory, removed
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Scratch {
        // Tests run in parallel threads of one process: number each file.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = format!("rulegate-cli-{}-{number}-{name}", std::process::id());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
        std::fs::write(&path, text).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn rulegate(args: &[&str], env: &[(&str, &str)]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_rulegate"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// The secrets `try.json` names.
fn try_env() -> Vec<(&'static str, String)> {
    vec![
        ("RG_TEST_FULLCONTACT_KEY", FULLCONTACT_KEY.to_string()),
        ("RG_TEST_SEGMENT_KEY", SEGMENT_KEY.to_string()),
        (
            "RG_TEST_SLACK_URL",
            format!("https://hooks.slack.com{SLACK_PATH}"),
        ),
    ]
}

fn as_pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A well-formed id_token whose signature is not a signature at all.
fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": "provider-key-1", "typ": "JWT"});
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.bm90LXNpZ25lZA", part(&header), part(claims))
}

fn try_fixture(extra: &[&str]) -> Run {
    let config = fixture("try.json");
    let tokens = fixture("token-response.json");
    let responses = fixture("responses.json");
    let mut args = vec![
        "try",
        config.to_str().unwrap(),
        "--token-response",
        tokens.to_str().unwrap(),
        "--responses",
        responses.to_str().unwrap(),
        "--ip",
        "203.0.113.9",
        "--user-agent",
        "Mozilla/5.0",
    ];
    args.extend_from_slice(extra);
    rulegate(&args, &as_pairs(&try_env()))
}

/// The number of rules in envoy.yaml's plugin configuration.
fn envoy_yaml_rule_count() -> usize {
    let text = std::fs::read_to_string(repo_file("envoy.yaml")).unwrap();
    let envoy: Value = serde_norway::from_str(&text).unwrap();
    let filters = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let configuration = filters[0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    let config: Value = serde_json::from_str(configuration).unwrap();
    config["rules"].as_array().unwrap().len()
}

fn demo_environment() -> Vec<(&'static str, String)> {
    rulegate_tests::service_environment()
}

#[test]
fn check_accepts_the_shipped_envoy_yaml_with_its_signing_key() {
    let pem = ES256KeyPair::generate().to_pem().unwrap();
    let mut env = demo_environment();
    env.push(("RULEGATE_SIGNING_KEY", pem));
    let envoy = repo_file("envoy.yaml");
    let run = rulegate(&["check", envoy.to_str().unwrap()], &as_pairs(&env));

    assert_eq!(run.code, 0, "{run}");
    let expected = format!("ok: {} rules (plan, contact, ", envoy_yaml_rule_count());
    assert!(run.stdout.starts_with(&expected), "{run}");
    assert!(
        run.stdout
            .contains("signing key: ES256 key rulegate-demo-1 from RULEGATE_SIGNING_KEY"),
        "{run}"
    );
}

#[test]
fn check_without_the_signing_key_refuses_as_the_filter_does_unless_told_to_skip_it() {
    let env = demo_environment();
    let envoy = repo_file("envoy.yaml");
    let envoy = envoy.to_str().unwrap();

    let refused = rulegate(&["check", envoy], &as_pairs(&env));
    assert_eq!(refused.code, 1, "{refused}");
    assert_eq!(
        refused.stderr,
        "rulegate refused its configuration: signing key in environment variable \
         RULEGATE_SIGNING_KEY: is not set; list it in vm_config.environment_variables\n",
        "{refused}"
    );

    let skipped = rulegate(&["check", envoy, "--no-signing-key"], &as_pairs(&env));
    assert_eq!(skipped.code, 0, "{skipped}");
    let expected = format!("ok: {} rules (", envoy_yaml_rule_count());
    assert!(skipped.stdout.starts_with(&expected), "{skipped}");
    assert!(skipped.stdout.contains("--no-signing-key"), "{skipped}");
}

#[test]
fn check_names_the_field_of_each_refused_configuration() {
    let cases = [
        (
            "reserved claim",
            json!({"name": "x", "type": "set_claim", "claim": "sub", "value": "u"}),
            "rules[0].claim",
            "\"sub\" is a reserved claim",
        ),
        (
            "cel syntax error",
            json!({"name": "x", "type": "rule", "when": "user.email ==", "deny": "'no'"}),
            "rules[0].when",
            "is not valid CEL",
        ),
        (
            "unknown name in when",
            json!({"name": "x", "type": "rule", "when": "account.tier == 1", "deny": "'no'"}),
            "rules[0].when",
            "unknown name \"account\"",
        ),
    ];
    for (name, rule, field, reason) in cases {
        let config = json!({
            "issuer": "https://login.example.com",
            "provider": {"cluster": "idp"},
            "namespace": "https://example.com/claims/",
            "rules": [rule],
        });
        let file = Scratch::new("refused.json", &config.to_string());
        let run = rulegate(
            &["check", file.0.to_str().unwrap(), "--no-signing-key"],
            &[],
        );
        assert_eq!(run.code, 1, "case {name:?}: {run}");
        let prefix =
            format!("rulegate refused its configuration: invalid configuration: {field}: ");
        assert!(run.stderr.starts_with(&prefix), "case {name:?}: {run}");
        assert!(run.stderr.contains(reason), "case {name:?}: {run}");
        assert_eq!(run.stdout, "", "case {name:?}: {run}");
    }
}

#[test]
fn check_prints_the_refusal_line_the_readme_shows() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let config = json!({
        "issuer": "https://login.example.com",
        "provider": {"cluster": "idp"},
        "namespace": "https://example.com/claims/",
        "rules": [{"name": "x", "type": "set_claim", "claim": "sub", "value": "u"}],
    });
    let file = Scratch::new("readme-refusal.json", &config.to_string());
    let run = rulegate(
        &["check", file.0.to_str().unwrap(), "--no-signing-key"],
        &[],
    );
    let line = run.stderr.trim_end();
    assert!(readme.contains(line), "not in the README: {run}");
}

#[test]
fn check_on_a_missing_file_is_an_input_error() {
    let run = rulegate(&["check", "/nonexistent/rulegate.json"], &[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .starts_with("rulegate: /nonexistent/rulegate.json: "),
        "{run}"
    );
}

#[test]
fn check_without_arguments_is_a_usage_error() {
    let run = rulegate(&["check"], &[]);
    assert_eq!(run.code, 2, "{run}");
}

#[test]
fn check_names_each_wasm_filter_and_sees_only_the_variables_envoy_hands_it() {
    let envoy = fixture("two-filters.yaml");
    let envoy = envoy.to_str().unwrap();
    // Set in this process, but not listed in the bad filter's host_env_keys.
    let env = [("RG_TEST_SEGMENT_KEY", SEGMENT_KEY)];

    let run = rulegate(&["check", envoy, "--no-signing-key"], &env);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout.contains("filter good: ok: 1 rules (plan)"),
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "filter bad: rulegate refused its configuration: invalid configuration: \
             rules[0].write_key_env: environment variable RG_TEST_SEGMENT_KEY is not set"
        ),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("filter bad: hint: RG_TEST_SEGMENT_KEY is set here"),
        "{run}"
    );

    let one = rulegate(
        &["check", envoy, "--no-signing-key", "--filter", "good"],
        &env,
    );
    assert_eq!(one.code, 0, "{one}");
    assert_eq!(
        one.stdout.lines().next(),
        Some("ok: 1 rules (plan)"),
        "{one}"
    );
}

#[test]
fn check_accepts_every_rule_example_of_the_readme() {
    // The README shows rules, not whole configurations: each is checked
    // inside a minimal one, with placeholders for the secrets it names.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let mut rules = Vec::new();
    for block in readme.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for value in serde_json::Deserializer::from_str(block).into_iter::<Value>() {
            let value = value.unwrap();
            if value.get("type").is_some() && value.get("name").is_some() {
                rules.push(value);
            }
        }
    }
    assert!(
        rules.len() >= 8,
        "README rule examples not found: {rules:?}"
    );
    for rule in rules {
        // A webhook's origin must be mapped to a cluster.
        let origins: serde_json::Map<String, Value> = rule["webhook"]["url"]
            .as_str()
            .map(|url| url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/"))
            .map(|origin| (origin, json!("webhooks")))
            .into_iter()
            .collect();
        let config = json!({
            "issuer": "https://login.example.com",
            "provider": {"cluster": "idp"},
            "namespace": "https://example.com/claims/",
            "webhook_origins": origins,
            "rules": [rule],
        });
        let run = check_without_secrets(&config);
        assert_eq!(run.code, 0, "README rule {rule}: {run}");
    }
}

#[test]
fn check_accepts_every_configuration_example_of_the_readme() {
    // Whole configurations (for real providers) are checked as they are;
    // the `rules` they show are empty, and the rules are checked above.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let mut configs = Vec::new();
    for block in readme.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for value in serde_json::Deserializer::from_str(block).into_iter::<Value>() {
            let value = value.unwrap();
            if value.get("issuer").is_some() {
                configs.push(value);
            }
        }
    }
    assert!(
        configs.len() >= 2,
        "README configuration examples not found"
    );
    for config in configs {
        let file = Scratch::new("readme-config.json", &config.to_string());
        let run = rulegate(
            &["check", file.0.to_str().unwrap(), "--no-signing-key"],
            &[],
        );
        assert_eq!(run.code, 0, "README configuration {config}: {run}");
    }
}

#[test]
fn try_shows_claims_decision_and_the_segment_call_with_secrets_masked() {
    let run = try_fixture(&[]);
    assert_eq!(run.code, 0, "{run}");
    let out = &run.stdout;

    assert!(
        out.starts_with("dry run: the id_token's signature was NOT verified"),
        "{run}"
    );
    assert!(out.contains("decision: allow\n"), "{run}");
    // set_claim, the configured rule (both tokens), and the canned
    // enrichment answer.
    assert!(
        out.contains("  https://example.com/claims/plan: \"gold\"\n"),
        "{run}"
    );
    assert!(
        out.contains("  https://example.com/claims/role: \"staff\"\n"),
        "{run}"
    );
    assert!(
        out.contains("access_token claims added:\n  https://example.com/claims/tier: \"internal\""),
        "{run}"
    );
    assert!(
        out.contains("https://example.com/claims/fullcontact: {\"fullName\":\"Ada Lovelace\""),
        "{run}"
    );
    assert!(
        out.contains("answer: status 200, --responses entry \"enrich\""),
        "{run}"
    );

    let segment = out
        .split("rule track (segment): segment track\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no segment call: {run}"));
    let segment = segment.split("\n  3.").next().unwrap();
    assert!(segment.contains("POST /v1/track"), "{run}");
    assert!(segment.contains("cluster: segment"), "{run}");
    assert!(segment.contains(":authority: api.segment.io"), "{run}");
    assert!(segment.contains("authorization: ***"), "{run}");
    assert!(segment.contains("\"event\":\"Signed up\""), "{run}");
    assert!(segment.contains("\"app\":\"Example Shop\""), "{run}");

    // The Slack webhook's path is its credential.
    assert!(out.contains("slack webhook\n     POST ***\n"), "{run}");
    let basic = STANDARD.encode(format!("{SEGMENT_KEY}:"));
    for secret in [SEGMENT_KEY, FULLCONTACT_KEY, SLACK_PATH, basic.as_str()] {
        assert!(!out.contains(secret), "secret {secret:?} printed: {run}");
    }

    assert!(
        out.contains("app_metadata.first_client = \"shop-web\""),
        "{run}"
    );
    assert!(out.contains("  plan: ran\n"), "{run}");
    assert!(
        out.contains("  block: skipped: condition is false\n"),
        "{run}"
    );
    assert!(
        out.contains("  preview: shadow\n    would deny: would be closed\n"),
        "{run}"
    );
}

#[test]
fn try_with_a_deny_rule_prints_the_reason() {
    let claims = json!({
        "iss": "https://login.example.com",
        "sub": "user-blocked-1",
        "aud": "shop-web",
        "exp": 1_900_000_000,
        "iat": 1_760_000_000,
        "email": "mallory@blocked.example",
    });
    let tokens = json!({"token_type": "Bearer", "id_token": unsigned_token(&claims)});
    let file = Scratch::new("blocked.json", &tokens.to_string());
    let config = fixture("try.json");
    let run = rulegate(
        &[
            "try",
            config.to_str().unwrap(),
            "--token-response",
            file.0.to_str().unwrap(),
        ],
        &as_pairs(&try_env()),
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("decision: deny: sign-ups from blocked.example are closed\n"),
        "{run}"
    );
    // The enrichment has no canned answer here: it is reported, not sent.
    assert!(
        run.stdout
            .contains("answer: not sent: no canned answer for rule enrich"),
        "{run}"
    );
}

#[test]
fn try_json_is_one_document_with_every_part_of_the_report() {
    let run = try_fixture(&["--json"]);
    assert_eq!(run.code, 0, "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();

    assert_eq!(report["dry_run"], true);
    assert_eq!(report["decision"], "allow");
    assert_eq!(report["deny_reason"], Value::Null);
    assert_eq!(report["login"]["client_name"], "Example Shop");
    assert_eq!(report["login"]["logins_count"], 1);
    assert_eq!(report["login"]["first_login"], true);
    assert_eq!(
        report["id_token_claims"]["https://example.com/claims/plan"],
        "gold"
    );
    assert_eq!(
        report["access_token_claims"]["https://example.com/claims/tier"],
        "internal"
    );

    let calls = report["calls"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("awaited", "enrich"),
            ("background", "track"),
            ("background", "hello")
        ]
    );
    let segment = &calls[1]["requests"][0];
    assert_eq!(segment["path"], "/v1/track");
    assert_eq!(segment["headers"]["authorization"], "***");
    assert_eq!(segment["body"]["userId"], "user-7f3a");
    assert_eq!(calls[2]["requests"][0]["path"], "***");

    assert_eq!(
        report["record"]["user_metadata"]["fullcontact"]["title"],
        "Analyst"
    );
    let rules: Vec<(&str, &str)> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(rules[0], ("plan", "ran"));
    assert!(rules.contains(&("preview", "shadow")), "{rules:?}");
    assert_eq!(report["shadows"][0]["deny"], "would be closed");
    assert!(!run.stdout.contains(SEGMENT_KEY), "{run}");
}

#[test]
fn try_the_shipped_envoy_yaml_with_placeholder_secrets() {
    let envoy = repo_file("envoy.yaml");
    let tokens = fixture("token-response.json");
    let run = rulegate(
        &[
            "try",
            envoy.to_str().unwrap(),
            "--fake-secrets",
            "--token-response",
            tokens.to_str().unwrap(),
            "--client-id",
            "rulegate-spa",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("note: placeholder values for FULLCONTACT_API_KEY"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("rule lead (salesforce): salesforce token + lead"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("\"grant_type=client_credentials&client_id=***&client_secret=***\""),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("rule enrich (alert): slack alert webhook"),
        "{run}"
    );
    for variable in [
        "SEGMENT_WRITE_KEY",
        "SALESFORCE_CLIENT_SECRET",
        "ZAPIER_HOOK_URL",
    ] {
        let placeholder = format!("fake-{variable}");
        assert!(
            !run.stdout.contains(&placeholder),
            "{placeholder} printed: {run}"
        );
    }
}

#[test]
fn try_refuses_a_token_response_without_an_id_token() {
    let file = Scratch::new("no-id-token.json", r#"{"access_token": "x"}"#);
    let config = fixture("try.json");
    let run = rulegate(
        &[
            "try",
            config.to_str().unwrap(),
            "--token-response",
            file.0.to_str().unwrap(),
        ],
        &as_pairs(&try_env()),
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("has no id_token"), "{run}");
}

#[test]
fn check_reads_an_envoy_configuration_written_in_json() {
    let text = std::fs::read_to_string(repo_file("envoy.yaml")).unwrap();
    let envoy: Value = serde_norway::from_str(&text).unwrap();
    let file = Scratch::new("envoy.json", &envoy.to_string());
    let run = rulegate(
        &["check", file.0.to_str().unwrap(), "--no-signing-key"],
        &as_pairs(&demo_environment()),
    );
    assert_eq!(run.code, 0, "{run}");
    let expected = format!("ok: {} rules (", envoy_yaml_rule_count());
    assert!(run.stdout.starts_with(&expected), "{run}");
}

#[test]
fn try_with_a_stored_record_counts_this_login_on_top() {
    let record = json!({
        "logins_count": 4,
        "app_metadata": {"first_client": "shop-web"},
        "user_metadata": {"fullcontact": {"fullName": "Ada Lovelace"}},
    });
    let file = Scratch::new("record.json", &record.to_string());
    let run = try_fixture(&["--record", file.0.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();

    assert_eq!(report["login"]["logins_count"], 5);
    assert_eq!(report["login"]["first_login"], false);
    // The stored enrichment is used without a call; no sign-up message.
    let calls = report["calls"].as_array().unwrap();
    let rules: Vec<&str> = calls.iter().map(|c| c["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["track"], "{run}");
    assert_eq!(calls[0]["requests"][0]["body"]["event"], "Logged in");
    assert_eq!(
        report["id_token_claims"]["https://example.com/claims/fullcontact"]["fullName"],
        "Ada Lovelace"
    );
    // The canned answer was not needed, and the report says so.
    assert_eq!(
        report["notes"][0],
        "--responses entry \"enrich\" answered no call"
    );
}

#[test]
fn try_answers_each_awaited_call_by_the_rule_that_made_it() {
    // Two awaited webhooks with the same target and URL: only the rule name
    // tells their answers apart.
    let hook = |field: &str| {
        json!({"url": "https://hooks.example.com/tier", "body": {"field": format!("'{field}'")},
               "await": true})
    };
    let config = json!({
        "issuer": "https://login.example.com",
        "provider": {"cluster": "idp"},
        "namespace": "https://example.com/claims/",
        "webhook_origins": {"https://hooks.example.com": "webhooks"},
        "rules": [
            {"name": "ask-a", "type": "rule", "webhook": hook("a")},
            {"name": "ask-b", "type": "rule", "webhook": hook("b")},
            {"name": "tier", "type": "rule", "when": "context.webhooks['ask-b'].status == 200",
             "id_token": {"tier": "context.webhooks['ask-b'].body.tier"}},
        ],
    });
    let responses = json!({
        "ask-a": {"status": 503, "body": "busy"},
        "ask-b": {"status": 200, "body": {"tier": "gold"}},
    });
    let config = Scratch::new("awaited.json", &config.to_string());
    let responses = Scratch::new("awaited-responses.json", &responses.to_string());
    let tokens = fixture("token-response.json");
    let run = rulegate(
        &[
            "try",
            config.0.to_str().unwrap(),
            "--token-response",
            tokens.to_str().unwrap(),
            "--responses",
            responses.0.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();

    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls[0]["rule"], "ask-a", "{run}");
    assert_eq!(calls[0]["requests"][0]["body"]["field"], "a", "{run}");
    assert_eq!(calls[0]["answer"]["status"], 503, "{run}");
    assert_eq!(calls[1]["rule"], "ask-b", "{run}");
    assert_eq!(calls[1]["answer"]["status"], 200, "{run}");
    assert_eq!(
        report["id_token_claims"]["https://example.com/claims/tier"],
        "gold"
    );
    assert_eq!(report["rules"][0]["result"], "failed", "{run}");
}

/// `--fake-secrets` gives a URL to every variable a URL field names,
/// whatever the variable is called.
#[test]
fn fake_secrets_are_urls_where_the_field_needs_one() {
    let config = json!({
        "issuer": "https://login.example.com",
        "provider": {"cluster": "idp"},
        "namespace": "https://example.com/claims/",
        "rules": [
            {"name": "signup", "type": "slack_signup", "cluster": "slack", "webhook_url_env": "SLACK_HOOK"},
            {"name": "zap", "type": "zapier", "cluster": "zapier", "hook_url_env": "ZAP_HOOK"}
        ]
    });
    let run = check_without_secrets(&config);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("SLACK_HOOK, ZAP_HOOK"), "{run}");
}

/// `rulegate check` of `config` with placeholder secrets and no signing key.
fn check_without_secrets(config: &Value) -> Run {
    let file = Scratch::new("config.json", &config.to_string());
    rulegate(
        &[
            "check",
            file.0.to_str().unwrap(),
            "--no-signing-key",
            "--fake-secrets",
        ],
        &[],
    )
}
