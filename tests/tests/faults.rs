//! The fault matrix: every integration, failing every way a service fails
//! (500, 429 with Retry-After, slower than its timeout, a reset
//! connection), and a cluster that does not exist. In each case the login
//! completes within its time budget, and the event is retried and
//! delivered, or refused for good with a count and a log line.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rulegate_tests::standins::ScriptedAnswer;
use rulegate_tests::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// The shipped configuration with short timeouts and backoff, so that the
/// matrix runs in seconds.
fn quick_config() -> Value {
    let mut config = shipped_plugin_config();
    for rule in config["rules"].as_array_mut().unwrap() {
        if rule.get("cluster").is_some() {
            rule["timeout_ms"] = json!(400);
        }
        if rule.get("webhook").is_some() {
            rule["webhook"]["timeout_ms"] = json!(400);
        }
    }
    config["delivery"] = json!({"initial_backoff_ms": 100, "max_backoff_ms": 300});
    config
}

fn faults() -> Vec<(&'static str, ScriptedAnswer)> {
    vec![
        (
            "500",
            ScriptedAnswer::status(500).with_body("internal error"),
        ),
        (
            "429 with Retry-After",
            ScriptedAnswer::status(429).with_header("retry-after", "1"),
        ),
        ("slower than the timeout", ScriptedAnswer::late(1_500)),
        ("reset", ScriptedAnswer::reset()),
    ]
}

fn wait_for_counter(stack: &Stack, name: &str, at_least: u64) {
    let deadline = Instant::now() + WAIT;
    while stack.counter(name) < at_least {
        assert!(
            Instant::now() < deadline,
            "counter {name} stayed below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn timed_login(stack: &Stack, email: &str) -> (Reply, Duration) {
    let authorization = Browser::new(stack).authorize(Client::Spa, email, DEMO_PASSWORD);
    let started = Instant::now();
    let reply = exchange_code(stack, &authorization);
    (reply, started.elapsed())
}

#[test]
fn background_integrations_retry_every_fault_and_deliver_once() {
    let stack = Stack::start_with(Options {
        plugin_config: Some(quick_config()),
        workers: Some(1),
        ..Options::default()
    });
    // (stand-in service, metric label)
    let services = [
        ("slack", "slack"),
        ("segment", "segment"),
        ("keen", "keen"),
        ("zapier", "zapier"),
        ("salesforce_lead", "salesforce"),
        ("webhook", "webhook"),
    ];
    let mut delivered = std::collections::HashMap::new();
    for (fault, answer) in faults() {
        for (service, _) in services {
            stack.services.script(service, [answer.clone()]);
        }
        let (reply, took) = timed_login(&stack, &new_email("faulty"));
        assert_eq!(reply.status, 200, "fault {fault}: {}", reply.summary());
        assert!(
            took < Duration::from_secs(3),
            "fault {fault}: the login took {took:?}"
        );
        for (_, label) in services {
            let count = delivered.entry(label).or_insert(0u64);
            *count += 1;
            wait_for_counter(&stack, &format!("call.{label}.success"), *count);
        }
    }
    for (_, label) in services {
        assert!(
            stack.counter(&format!("call.{label}.retry")) >= 4,
            "{label} retried each fault"
        );
        assert_eq!(
            stack.counter(&format!("call.{label}.dropped")),
            0,
            "{label} lost nothing"
        );
    }
}

#[test]
fn the_awaited_enrichment_fails_within_the_time_budget_and_alerts() {
    let stack = Stack::start_with(Options {
        plugin_config: Some(quick_config()),
        workers: Some(1),
        ..Options::default()
    });
    for (fault, answer) in faults() {
        stack.services.script("fullcontact", [answer]);
        let (reply, took) = timed_login(&stack, &new_email("unenriched"));
        assert_eq!(reply.status, 200, "fault {fault}: {}", reply.summary());
        assert!(
            took < Duration::from_secs(3),
            "fault {fault}: the login took {took:?}"
        );
        let (_, claims) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
        assert!(
            claims
                .get("https://rulegate.dev/claims/fullcontact")
                .is_none(),
            "fault {fault}"
        );
    }
    assert_eq!(stack.counter("rule.enrich.failed"), 4);
    stack.services.wait_for("slack_alert", 4, WAIT);
}

#[test]
fn a_cluster_that_does_not_exist_fails_the_call_for_good_and_the_login_goes_on() {
    let mut config = quick_config();
    for rule in config["rules"].as_array_mut().unwrap() {
        if rule["type"] == "segment" {
            rule["cluster"] = json!("segmnet");
        }
    }
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let (reply, _) = timed_login(&stack, &new_email("misrouted"));
    assert_eq!(reply.status, 200, "{}", reply.summary());
    wait_for_counter(&stack, "call.segment.failed", 1);
    assert_eq!(
        stack.counter("call.segment.retry"),
        0,
        "a refused call is not retried"
    );
    let log = stack.envoy_log();
    assert!(
        log.contains("is cluster segmnet defined?"),
        "the log names the cluster"
    );
    // The other integrations are unaffected.
    stack.services.wait_for("keen", 1, WAIT);
}
