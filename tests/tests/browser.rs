//! The demo page in a real browser: headless Chromium (Debian's) opens the
//! page at `/` through Envoy, logs in as a new user with the authorization
//! code flow and PKCE, then logs in again as the same user.
//!
//! `tests/browser/page-login.mjs` drives the browser with playwright-core
//! and reports what the page showed; this test starts the stack, runs it,
//! and checks the report against what the rules must have done and what
//! the stand-ins really received.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Command;

use rulegate_tests::*;
use serde_json::Value;

const NAMESPACE: &str = "https://rulegate.dev/claims/";
/// The stack is new for each run, so a fixed address is a new user, and
/// the screenshot shows a readable name.
const EMAIL: &str = "jane.doe@example.org";
const NAME: &str = "Jane Doe";

#[test]
fn a_new_user_logs_in_through_the_page_then_returns() {
    let stack = Stack::start();
    let report = drive_page(&stack, EMAIL, 2);
    let logins = report["logins"].as_array().unwrap();
    assert_eq!(logins.len(), 2, "{report:#}");
    let (first, second) = (&logins[0], &logins[1]);

    assert_eq!(first["error"], Value::Null, "{report:#}");
    assert_eq!(first["outcome"], "Signed up", "{report:#}");
    assert_eq!(first["who"], format!("{NAME} ({EMAIL})"));
    assert!(
        text(&first["id_token"]["header"]).contains("kid rulegate-demo-1"),
        "the page shows a token Rulegate did not re-sign: {report:#}"
    );

    let added = added_claims(&first["id_token"]);
    assert_eq!(added.get("plan").map(String::as_str), Some("free"));
    assert_eq!(added.get("contact_email").map(String::as_str), Some(EMAIL));
    assert_eq!(added.get("role").map(String::as_str), Some("customer"));
    let enrichment = added.get("fullcontact").expect("the enrichment claim");
    assert!(enrichment.contains(NAME), "{enrichment}");
    assert_eq!(
        added_claims(&first["access_token"])
            .get("role")
            .map(String::as_str),
        Some("customer")
    );
    for claim in ["sub", "email", "name", "iss", "aud"] {
        assert!(
            shown_plain(&first["id_token"], claim),
            "the provider's {claim} is missing or highlighted: {report:#}"
        );
    }

    let slack = panel(first, "slack");
    assert_eq!(
        slack,
        [(format!("New User: {NAME} ({EMAIL})"), true)],
        "{report:#}"
    );
    assert_eq!(first["user_slack"], 1, "{report:#}");
    assert_eq!(first["user_leads"], 1, "{report:#}");
    let lead = &panel(first, "salesforce_lead");
    assert!(
        lead.iter()
            .any(|(entry, mine)| *mine && entry.starts_with("Lead Jane Doe <jane.doe@example.org>")),
        "{report:#}"
    );

    assert_eq!(second["error"], Value::Null, "{report:#}");
    assert_eq!(second["outcome"], "Logged in", "{report:#}");
    assert_eq!(
        second["user_slack"], 1,
        "a second sign-up message: {report:#}"
    );
    assert_eq!(second["user_leads"], 1, "a second lead: {report:#}");
    assert_eq!(
        added_claims(&second["id_token"])
            .get("plan")
            .map(String::as_str),
        Some("free")
    );

    // What the services really received, whatever the page made of it.
    let sub = stack_sub(second);
    let events: Vec<String> = stack
        .services
        .received("segment")
        .iter()
        .filter_map(|r| r.json.clone())
        .filter(|body| body["userId"] == sub.as_str())
        .map(|body| text(&body["event"]))
        .collect();
    assert_eq!(events, ["Signed up", "Logged in"]);
    let leads = stack.services.received("salesforce_lead");
    assert_eq!(leads.len(), 1, "{leads:#?}");
    assert_eq!(leads[0].status, 201);
    assert_eq!(stack.services.received("slack").len(), 1);

    for list in ["external_requests", "page_errors", "console_errors"] {
        assert_eq!(report[list], Value::Array(Vec::new()), "{list}: {report:#}");
    }
}

/// Runs the browser script for `logins` logins of `email`; its report.
fn drive_page(stack: &Stack, email: &str, logins: u32) -> Value {
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{} has no playwright-core: run `make node-deps`",
        dir.display()
    );
    let output = Command::new("node")
        .arg(dir.join("page-login.mjs"))
        .args(["--base", &stack.base, "--email", email])
        .args(["--password", DEMO_PASSWORD, "--logins", &logins.to_string()])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser could not log in through the page ({}):\n{stderr}\n{stdout}",
        output.status
    );
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

/// The highlighted claims of a token the page showed, by their name
/// without the namespace. Every highlighted claim must be namespaced, and
/// every namespaced one highlighted.
fn added_claims(token: &Value) -> BTreeMap<String, String> {
    let mut added = BTreeMap::new();
    for claim in token["claims"].as_array().unwrap() {
        let name = text(&claim["name"]);
        let namespaced = name.strip_prefix(NAMESPACE);
        assert_eq!(
            claim["added"] == true,
            namespaced.is_some(),
            "claim {name} is highlighted wrongly: {token:#}"
        );
        if let Some(short) = namespaced {
            added.insert(short.to_owned(), text(&claim["value"]));
        }
    }
    added
}

fn shown_plain(token: &Value, name: &str) -> bool {
    token["claims"]
        .as_array()
        .unwrap()
        .iter()
        .any(|claim| claim["name"] == name && claim["added"] == false)
}

/// The entries of one panel section: text, and whether it is about the
/// user who logged in.
fn panel(login: &Value, service: &str) -> Vec<(String, bool)> {
    login["panel"][service]
        .as_array()
        .unwrap_or_else(|| panic!("no {service} section in the panel: {login:#}"))
        .iter()
        .map(|entry| (text(&entry["text"]), entry["mine"] == true))
        .collect()
}

/// The `sub` the page showed for the user.
fn stack_sub(login: &Value) -> String {
    login["id_token"]["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|claim| claim["name"] == "sub")
        .map(|claim| text(&claim["value"]))
        .expect("a sub claim")
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}
