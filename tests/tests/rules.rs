//! Configured rules end to end: CEL conditions and values, a denial, claims
//! in both tokens, shadow mode and a signed background webhook, through
//! real Envoy running the built filter.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rulegate_tests::standins::WEBHOOK_SECRET;
use rulegate_tests::*;
use serde_json::{json, Value};
use sha2::Sha256;

const ROLE: &str = "https://rulegate.dev/claims/role";
const WAIT: Duration = Duration::from_secs(10);

fn stack_with_rules(rules: Value) -> Stack {
    let mut config = shipped_plugin_config();
    config["rules"] = rules;
    Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    })
}

fn exchange(stack: &Stack, email: &str, password: &str) -> Reply {
    let authorization = Browser::new(stack).authorize(Client::Spa, email, password);
    exchange_code(stack, &authorization)
}

#[test]
fn a_rule_denying_unverified_emails_returns_the_oauth_error_and_no_token() {
    let stack = stack_with_rules(json!([
        {"name": "verified-only", "type": "rule", "when": "!user.email_verified",
         "deny": "'please verify your email address first'"}
    ]));
    // bob@example.com is the demo provider's unverified user.
    let reply = exchange(&stack, "bob@example.com", "bob-password");
    assert_eq!(reply.status, 403, "{}", reply.summary());
    assert_eq!(
        reply.json(),
        json!({"error": "access_denied", "error_description": "please verify your email address first"})
    );
    assert_eq!(stack.counter("token_response.denied"), 1);

    // A verified user passes the same rule.
    let reply = exchange(&stack, &new_email("verified"), DEMO_PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(stack.counter("rule.verified-only.skipped"), 1);
}

#[test]
fn a_role_computed_from_the_email_domain_lands_in_both_tokens() {
    // The shipped configuration's "role" rule.
    let stack = Stack::start();
    let staff = exchange(&stack, "alice@example.com", "alice-password").json();
    let customer = exchange(&stack, &new_email("customer"), DEMO_PASSWORD).json();

    for (tokens, role) in [(&staff, "staff"), (&customer, "customer")] {
        let (_, id_claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
        assert_eq!(id_claims[ROLE], role);
        let access_token = tokens["access_token"].as_str().unwrap();
        let (header, access_claims) = decode_jwt(access_token);
        assert_eq!(access_claims[ROLE], role, "access token: {access_claims:#}");
        assert_eq!(
            header["kid"], "rulegate-demo-1",
            "the access token is re-signed"
        );
        assert_eq!(
            access_claims["client_id"],
            Client::Spa.id(),
            "the provider's claims stay"
        );

        // It verifies against the merged JWKS an API would fetch.
        stack.verify_published(access_token, None);
    }
}

#[test]
fn shadow_mode_changes_nothing_and_counts_what_it_would_have_done() {
    let stack = stack_with_rules(json!([
        {"name": "would-deny", "type": "rule", "mode": "shadow",
         "when": "user.email.endsWith('@example.org')",
         "id_token": {"tier": "'gold'"}, "deny": "'blocked domain'",
         "webhook": {"url": "https://hooks.example.com/webhooks/shadow", "body": {"u": "user.user_id"}}}
    ]));
    let reply = exchange(&stack, &new_email("shadowed"), DEMO_PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let tokens = reply.json();
    let (header, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_ne!(
        header["kid"], "rulegate-demo-1",
        "the provider's token, untouched"
    );
    assert!(claims.get("https://rulegate.dev/claims/tier").is_none());
    let (access_header, _) = decode_jwt(tokens["access_token"].as_str().unwrap());
    assert_ne!(access_header["kid"], "rulegate-demo-1");

    assert_eq!(stack.counter("rule.would-deny.shadow"), 1);
    assert_eq!(stack.counter("token_response.unchanged"), 1);
    assert_eq!(stack.counter("token_response.denied"), 0);
    let log = stack.envoy_log();
    let line = log
        .lines()
        .find(|line| line.contains("shadow rule would-deny"))
        .unwrap_or_else(|| panic!("no shadow line in the log"));
    assert!(
        line.contains("blocked domain") && line.contains("tier"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        stack.services.received("webhook").is_empty(),
        "shadow rules call nothing"
    );
}

#[test]
fn a_background_webhook_arrives_signed_and_the_signature_verifies() {
    // The shipped configuration's "audit" rule, on a first login.
    let stack = Stack::start();
    let email = new_email("audited");
    let reply = exchange(&stack, &email, DEMO_PASSWORD);
    assert_eq!(reply.status, 200);

    let received = stack.services.wait_for("webhook", 1, WAIT);
    let hook = &received[0];
    assert!(hook.valid, "{:?}", hook.problems);
    assert_eq!(hook.path, "/webhooks/signups");
    let body = hook.json.clone().unwrap();
    assert_eq!(body["email"], email.as_str());
    assert_eq!(body["app"], "Rulegate Demo");

    // Check the Standard Webhooks signature independently.
    let id = hook.header("webhook-id").unwrap();
    let timestamp = hook.header("webhook-timestamp").unwrap();
    let key = STANDARD
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", hook.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(hook.header("webhook-signature"), Some(expected.as_str()));
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .abs_diff(timestamp.parse().unwrap());
    assert!(age < 60, "timestamp is now");

    // A second login is not a first: no second webhook.
    exchange(&stack, &email, DEMO_PASSWORD);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(stack.services.received("webhook").len(), 1);
}

#[test]
fn an_awaited_webhook_answer_is_seen_by_later_rules() {
    let stack = stack_with_rules(json!([
        {"name": "ask", "type": "rule",
         "webhook": {"url": "https://hooks.example.com/webhooks/tier", "body": {"u": "user.user_id"}, "await": true}},
        {"name": "tier", "type": "rule", "when": "context.webhooks.ask.status == 200",
         "id_token": {"tier": "context.webhooks.ask.body.tier"}}
    ]));
    let reply = exchange(&stack, &new_email("tiered"), DEMO_PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let (_, claims) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["https://rulegate.dev/claims/tier"], "gold");
}

#[test]
fn an_expression_that_fails_at_run_time_is_a_rule_failure_not_a_broken_login() {
    let stack = stack_with_rules(json!([
        {"name": "broken", "type": "rule", "id_token": {"nick": "user.nickname + '!'"}},
        {"name": "strict", "type": "rule", "on_error": "deny", "id_token": {"x": "user.no_such_field"}}
    ]));
    let reply = exchange(&stack, &new_email("broken"), DEMO_PASSWORD);
    assert_eq!(reply.status, 403, "{}", reply.summary());
    assert_eq!(reply.json()["error_description"], "strict failed");
    assert_eq!(stack.counter("rule.broken.failed"), 1);
    assert_eq!(stack.counter("rule.strict.failed"), 1);
    // The VM never trapped: Envoy created no replacement (the stat exists
    // once the plugin has loaded, at 0).
    assert!(stack.envoy_log().contains("wasm log"), "the plugin logged");
    assert_eq!(stack.stat("wasm.rulegate.vm_reload_success"), 0);
    assert!(!stack.envoy_log().contains("panicked"));
}

#[test]
fn a_rule_whose_claims_pass_the_size_budget_is_skipped_loudly() {
    let mut config = shipped_plugin_config();
    config["max_claims_bytes"] = json!(1024);
    let huge = format!("'{}'", "x".repeat(2000));
    config["rules"] = json!([
        {"name": "small", "type": "rule", "id_token": {"small": "'ok'"}},
        {"name": "huge", "type": "rule", "id_token": {"huge": huge}}
    ]);
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let reply = exchange(&stack, &new_email("budget"), DEMO_PASSWORD);
    assert_eq!(reply.status, 200);
    let (_, claims) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["https://rulegate.dev/claims/small"], "ok");
    assert!(claims.get("https://rulegate.dev/claims/huge").is_none());
    assert_eq!(stack.counter("rule.huge.over_budget"), 1);
    assert!(stack.envoy_log().contains("rule huge: claims skipped"));
}

#[test]
fn client_credentials_run_only_the_rules_that_opt_in() {
    let stack = stack_with_rules(json!([
        {"name": "machines", "type": "rule", "protocols": ["client_credentials"],
         "access_token": {"caller": "'machine:' + user.user_id"}},
        {"name": "people", "type": "rule", "access_token": {"person": "true"}}
    ]));
    let reply = stack.token_request(
        &[("grant_type", "client_credentials")],
        Some((Client::Backend.id(), Client::Backend.secret().unwrap())),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let tokens = reply.json();
    assert!(tokens.get("id_token").is_none());
    let access_token = tokens["access_token"].as_str().unwrap();
    let (header, claims) = decode_jwt(access_token);
    assert_eq!(header["kid"], "rulegate-demo-1");
    assert_eq!(
        claims["https://rulegate.dev/claims/caller"],
        "machine:rulegate-backend"
    );
    assert!(claims.get("https://rulegate.dev/claims/person").is_none());
    stack.verify_published(access_token, None);
    assert_eq!(stack.counter("logins.protocol.client_credentials"), 1);
    assert_eq!(
        stack.counter("logins.first"),
        0,
        "no user, no login counted"
    );
}
