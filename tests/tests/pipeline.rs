//! The login pipeline end to end: real logins through Envoy running the
//! built filter with all seven integrations of the shipped envoy.yaml,
//! pointed at stand-ins that check each service's wire format.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rulegate_tests::standins::{Received, ScriptedAnswer, SEGMENT_WRITE_KEY};
use rulegate_tests::*;
use serde_json::{json, Value};

const ENRICHMENT: &str = "https://rulegate.dev/claims/fullcontact";
const PLAN: &str = "https://rulegate.dev/claims/plan";
const WAIT: Duration = Duration::from_secs(10);

/// Logs `email` in through Envoy; returns the token response.
fn login(stack: &Stack, email: &str) -> Value {
    let authorization = Browser::new(stack).authorize(Client::Spa, email, DEMO_PASSWORD);
    let reply = exchange_code(stack, &authorization);
    assert_eq!(
        reply.status,
        200,
        "token exchange failed: {}",
        reply.summary()
    );
    reply.json()
}

fn id_claims(tokens: &Value) -> Value {
    decode_jwt(tokens["id_token"].as_str().unwrap()).1
}

/// Every record is valid per the service's wire format.
fn assert_valid(records: &[Received]) {
    for record in records {
        assert!(
            record.valid,
            "{} refused the request: {:?}\n{record:#?}",
            record.service, record.problems
        );
    }
}

fn json_of(record: &Received) -> &Value {
    record
        .json
        .as_ref()
        .unwrap_or_else(|| panic!("not JSON: {record:#?}"))
}

/// A short wait for anything that should not arrive.
fn settle() {
    std::thread::sleep(Duration::from_millis(700));
}

#[test]
fn first_login_reaches_all_seven_services_and_enriches_the_token() {
    let stack = Stack::start();
    let email = new_email("ada.first");
    let tokens = login(&stack, &email);
    let claims = id_claims(&tokens);
    assert_eq!(
        claims[ENRICHMENT]["fullName"]
            .as_str()
            .map(|n| !n.is_empty()),
        Some(true),
        "{claims:#}"
    );
    assert_eq!(claims[PLAN], "free");

    let services = &stack.services;
    let fullcontact = services.wait_for("fullcontact", 1, WAIT);
    let slack = services.wait_for("slack", 1, WAIT);
    let segment = services.wait_for("segment", 1, WAIT);
    let keen = services.wait_for("keen", 1, WAIT);
    let zapier = services.wait_for("zapier", 1, WAIT);
    let leads = services.wait_for("salesforce_lead", 1, WAIT);
    let tokens_taken = services.received("salesforce_token");
    for records in [
        &fullcontact,
        &slack,
        &segment,
        &keen,
        &zapier,
        &leads,
        &tokens_taken,
    ] {
        assert_valid(records);
    }
    assert_eq!(tokens_taken.len(), 1);

    assert_eq!(json_of(&fullcontact[0])["email"], email.as_str());
    let name = claims["name"].as_str().unwrap();
    assert_eq!(
        json_of(&slack[0])["text"],
        format!("New User: {name} ({email})")
    );
    let track = json_of(&segment[0]);
    assert_eq!(track["event"], "Signed up");
    assert_eq!(track["userId"], claims["sub"]);
    assert_eq!(track["properties"]["app"], "Rulegate Demo");
    assert_eq!(track["context"]["ip"], "127.0.0.1");
    assert_eq!(
        segment[0].header("authorization"),
        Some(format!("Basic {}", STANDARD.encode(format!("{SEGMENT_WRITE_KEY}:"))).as_str())
    );
    assert_eq!(json_of(&keen[0])["userId"], claims["sub"]);
    assert_eq!(json_of(&zapier[0])["email"], email.as_str());
    assert_eq!(json_of(&zapier[0])["appName"], "Rulegate Demo");
    assert_eq!(json_of(&leads[0])["Email"], email.as_str());
    assert_eq!(json_of(&leads[0])["Company"], "Rulegate Demo Inc.");
    assert!(
        services.received("slack_alert").is_empty(),
        "no failure, no alert"
    );

    assert_eq!(stack.counter("logins.first"), 1);
    assert_eq!(stack.counter("logins.protocol.authorization_code"), 1);
    for service in ["slack", "segment", "keen", "zapier", "salesforce"] {
        wait_for_counter(&stack, &format!("call.{service}.success"), 1);
    }
}

fn wait_for_counter(stack: &Stack, name: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    while stack.counter(name) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "counter {name} stayed below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn second_login_sends_only_logged_in_and_keeps_the_stored_enrichment() {
    let stack = Stack::start();
    let email = new_email("returning");
    login(&stack, &email);
    stack.services.wait_for("salesforce_lead", 1, WAIT);
    wait_for_counter(&stack, "call.salesforce.success", 1);
    stack.services.clear();

    let tokens = login(&stack, &email);
    assert!(
        id_claims(&tokens)[ENRICHMENT].is_object(),
        "the stored enrichment is in the token"
    );
    let segment = stack.services.wait_for("segment", 1, WAIT);
    settle();
    assert_eq!(json_of(&segment[0])["event"], "Logged in");
    let all = stack.services.received_all();
    let services: Vec<&str> = all.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        services,
        ["segment"],
        "only segment on a second login: {all:#?}"
    );
    assert_eq!(stack.counter("logins.first"), 1);
}

#[test]
fn refresh_sends_nothing_and_counts_nothing_but_keeps_the_claims() {
    let stack = Stack::start();
    let tokens = login(&stack, &new_email("refresher"));
    stack.services.wait_for("salesforce_lead", 1, WAIT);
    wait_for_counter(&stack, "call.salesforce.success", 1);
    stack.services.clear();

    let reply = refresh(
        &stack,
        Client::Spa,
        tokens["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let claims = id_claims(&reply.json());
    assert!(claims[ENRICHMENT].is_object(), "{claims:#}");
    assert_eq!(claims[PLAN], "free");
    settle();
    assert!(
        stack.services.received_all().is_empty(),
        "{:#?}",
        stack.services.received_all()
    );
    assert_eq!(stack.counter("logins.protocol.refresh_token"), 1);
    assert_eq!(stack.counter("logins.first"), 1);

    // The refresh did not count as a login: the next one is the second.
    stack.services.clear();
    let email = claims["email"].as_str().unwrap().to_string();
    login(&stack, &email);
    let segment = stack.services.wait_for("segment", 1, WAIT);
    assert_eq!(json_of(&segment[0])["event"], "Logged in");
}

#[test]
fn fullcontact_failure_alerts_and_the_login_succeeds_without_the_claim() {
    let stack = Stack::start();
    stack.services.script(
        "fullcontact",
        [ScriptedAnswer::status(503).with_body("maintenance")],
    );
    let tokens = login(&stack, &new_email("unenriched"));
    let claims = id_claims(&tokens);
    assert!(claims.get(ENRICHMENT).is_none(), "{claims:#}");
    assert_eq!(claims[PLAN], "free");

    let alerts = stack.services.wait_for("slack_alert", 1, WAIT);
    assert_valid(&alerts);
    let text = json_of(&alerts[0])["text"].as_str().unwrap().to_string();
    assert!(text.contains("enrich") && text.contains("503"), "{text}");
    assert!(
        !text.contains("fullcontact-api-key"),
        "no secret in alerts: {text}"
    );
    assert_eq!(stack.counter("rule.enrich.failed"), 1);
    // The rest of the pipeline still ran.
    stack.services.wait_for("segment", 1, WAIT);
}

#[test]
fn segment_answering_503_twice_is_delivered_once_with_one_message_id() {
    let mut config = shipped_plugin_config();
    config["delivery"] = json!({"initial_backoff_ms": 100, "max_backoff_ms": 400});
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    stack.services.script(
        "segment",
        [ScriptedAnswer::status(503), ScriptedAnswer::status(503)],
    );
    login(&stack, &new_email("retried"));

    stack.services.wait_for("segment", 3, WAIT);
    settle();
    let segment = stack.services.received("segment");
    let statuses: Vec<u16> = segment.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let ids: Vec<&Value> = segment.iter().map(|r| &json_of(r)["messageId"]).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.is_string()),
        "{ids:?}"
    );
    assert_eq!(
        segment[0].body, segment[2].body,
        "a retry sends the same bytes"
    );
    assert_eq!(stack.counter("call.segment.retry"), 2);
    wait_for_counter(&stack, "call.segment.success", 1);
}

#[test]
fn salesforce_invalid_session_reauthenticates_once_and_creates_the_lead() {
    // Each worker caches its own token: one worker, so the second lead
    // meets the token the first one cached.
    let stack = Stack::start_with(Options {
        workers: Some(1),
        ..Options::default()
    });
    login(&stack, &new_email("first.lead"));
    stack.services.wait_for("salesforce_lead", 1, WAIT);
    wait_for_counter(&stack, "call.salesforce.success", 1);

    // The cached token expires; the next lead meets INVALID_SESSION_ID.
    stack.services.expire_salesforce_tokens();
    stack.services.clear();
    let email = new_email("second.lead");
    login(&stack, &email);
    let leads = stack.services.wait_for("salesforce_lead", 2, WAIT);
    wait_for_counter(&stack, "call.salesforce.success", 2);
    let tokens = stack.services.received("salesforce_token");
    let statuses: Vec<u16> = leads.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 201]);
    assert!(leads[0].body.contains(&email));
    assert_eq!(tokens.len(), 1, "exactly one new token");
    assert_ne!(
        leads[0].header("authorization"),
        leads[1].header("authorization")
    );
    assert!(stack.services.received("slack_alert").is_empty());

    // Recorded: logging in again creates no second lead.
    stack.services.clear();
    login(&stack, &email);
    stack.services.wait_for("segment", 1, WAIT);
    settle();
    assert!(stack.services.received("salesforce").is_empty());
}

#[test]
fn keen_outage_beyond_the_retry_bound_ends_in_a_counted_drop_and_a_log_line() {
    let mut config = shipped_plugin_config();
    config["delivery"] =
        json!({"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 200});
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    stack.services.down("keen", 503);
    login(&stack, &new_email("keenless"));

    stack.services.wait_for("keen", 3, WAIT);
    wait_for_counter(&stack, "call.keen.dropped", 1);
    assert_eq!(stack.counter("delivery.drops"), 1);
    let log = stack.envoy_log();
    let line = log
        .lines()
        .find(|line| line.contains("dropped keen call of rule signups"))
        .unwrap_or_else(|| panic!("no drop line in the log"));
    assert!(line.contains("out of attempts after 3 attempts"), "{line}");
    let alerts = stack.services.wait_for("slack_alert", 1, WAIT);
    assert!(json_of(&alerts[0])["text"]
        .as_str()
        .unwrap()
        .contains("signups"));
    settle();
    assert_eq!(
        stack.services.received("keen").len(),
        3,
        "no attempt past the bound"
    );
}
