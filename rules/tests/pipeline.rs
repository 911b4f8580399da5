//! The pipeline and the built-in steps, natively: for every step, the exact
//! request it builds from a given login, and what it does with each answer
//! the service can give; the outbox's retry policy.

// Fixtures fail loudly: a configuration that does not load is a broken test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rules::claims::VerifiedClaims;
use rules::config::Config;
use rules::delivery::{Event, Job, Outbox, Policy, Work};
use rules::event::{LoginEvent, LoginInfo, Protocol};
use rules::http::{Answer, Request};
use rules::pipeline::{Next, Outcome, Pipeline, RuleResult};
use rules::record::UserRecord;
use rules::Error;
use serde_json::{json, Value};

const NS: &str = "https://rulegate.dev/claims/";
const NOW_MS: u64 = 1_800_000_000_000;

fn env(name: &str) -> Option<String> {
    let value = match name {
        "FULLCONTACT_API_KEY" => "fc-key",
        "SLACK_SIGNUP_URL" => "https://hooks.slack.com/services/T1/B1/signupsecret",
        "SLACK_ALERT_URL" => "https://hooks.slack.com/services/T1/B2/alertsecret",
        "SEGMENT_WRITE_KEY" => "seg-key",
        "KEEN_WRITE_KEY" => "keen-key",
        "ZAPIER_HOOK_URL" => "https://hooks.zapier.com/hooks/catch/123/abc/",
        "SF_CLIENT_ID" => "sf-id",
        "SF_CLIENT_SECRET" => "sf-secret",
        _ => return None,
    };
    Some(value.to_string())
}

/// All seven integrations, in the order a team would chain them.
fn config_json() -> Value {
    json!({
        "issuer": "https://login.example.com",
        "provider": {"cluster": "idp"},
        "namespace": NS,
        "clients": {"spa": "Example App"},
        "alerts": {"type": "slack_alert", "cluster": "slack", "webhook_url_env": "SLACK_ALERT_URL"},
        "rules": [
            {"name": "enrich", "type": "fullcontact", "cluster": "fullcontact", "api_key_env": "FULLCONTACT_API_KEY"},
            {"name": "signup_message", "type": "slack_signup", "cluster": "slack", "webhook_url_env": "SLACK_SIGNUP_URL"},
            {"name": "track", "type": "segment", "cluster": "segment", "write_key_env": "SEGMENT_WRITE_KEY"},
            {"name": "signups", "type": "keen", "cluster": "keen", "project_id": "proj1",
             "write_key_env": "KEEN_WRITE_KEY", "collection": "signups", "extra_fields": {"source": "rulegate"}},
            {"name": "zap", "type": "zapier", "cluster": "zapier", "hook_url_env": "ZAPIER_HOOK_URL"},
            {"name": "lead", "type": "salesforce", "cluster": "salesforce_login", "api_cluster": "salesforce_api",
             "client_id_env": "SF_CLIENT_ID", "client_secret_env": "SF_CLIENT_SECRET", "company": "Example Corp"}
        ]
    })
}

fn config() -> Config {
    Config::from_json(config_json().to_string().as_bytes(), &env).expect("config")
}

fn claims() -> VerifiedClaims {
    let token_claims = json!({
        "iss": "https://login.example.com", "sub": "user-1", "aud": "spa",
        "exp": NOW_MS / 1000 + 300, "iat": NOW_MS / 1000,
        "email": "ada@example.com", "email_verified": true, "name": "Ada Lovelace", "nonce": "n"
    });
    // VerifiedClaims can only come from verification; go through a test
    // token signed with a throwaway key.
    rules_test_claims(token_claims)
}

fn rules_test_claims(claims: Value) -> VerifiedClaims {
    use jwt_simple::prelude::*;
    use rules::config::{Algorithm, VerifyPolicy};
    use rules::verify::{verify, ProviderKeys};
    let key = ES256KeyPair::generate().with_key_id("k");
    let jwks =
        json!({"keys": [serde_json::from_str::<Value>(&key.public_key().to_jwk()).expect("jwk")]});
    let keys =
        ProviderKeys::from_jwks(jwks.to_string().as_bytes(), &[Algorithm::ES256]).expect("keys");
    let claims: JWTClaims<serde_json::Map<String, Value>> =
        serde_json::from_value(claims).expect("claims");
    let token = key.sign(claims).expect("sign");
    let policy = VerifyPolicy {
        issuer: "https://login.example.com".into(),
        audiences: vec![],
        allowed_algorithms: vec![Algorithm::ES256],
        clock_skew_s: 60,
        max_token_bytes: 16_384,
    };
    verify(&keys, &policy, &token, Some("spa"), NOW_MS / 1000).expect("verify")
}

fn event(protocol: Protocol, record: &UserRecord) -> LoginEvent {
    let info = LoginInfo {
        protocol,
        client_id: Some("spa".into()),
        client_name: Some("Example App".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 Test".into()),
        connection: "oidc".into(),
    };
    LoginEvent::new(&claims(), record, &info)
}

fn first_login() -> UserRecord {
    UserRecord {
        logins_count: 1,
        ..UserRecord::default()
    }
}

/// Runs the pipeline, answering awaited calls with `answer`.
fn run(
    config: &Config,
    event: LoginEvent,
    answer: impl Fn(&Request) -> Answer,
) -> (Outcome, Vec<Request>) {
    let mut pipeline = Pipeline::new(config, event, claims(), NOW_MS);
    let mut awaited = Vec::new();
    while let Next::Call(request) = pipeline.next(config, NOW_MS) {
        let reply = answer(&request);
        awaited.push(request);
        pipeline.resume(config, &reply);
    }
    (pipeline.finish(config), awaited)
}

fn person() -> Answer {
    Answer::status(
        200,
        r#"{"fullName":"Ada Lovelace","title":"Analyst","organization":"Engines"}"#,
    )
}

fn job<'o>(outcome: &'o Outcome, service: &str) -> &'o Job {
    outcome
        .jobs
        .iter()
        .find(|job| job.service == service)
        .unwrap_or_else(|| panic!("no {service} job in {:?}", outcome.jobs))
}

fn request_of(job: &Job) -> &Request {
    match &job.work {
        Work::Send(request) => request,
        Work::Lead(_) => panic!("not a plain request"),
    }
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("json body")
}

fn result_of(outcome: &Outcome, rule: &str) -> RuleResult {
    outcome
        .reports
        .iter()
        .find(|report| report.rule == rule)
        .map(|report| report.result.clone())
        .unwrap_or_else(|| panic!("no report for {rule}"))
}

#[test]
fn first_login_runs_all_seven_and_enriches_the_token() {
    let config = config();
    let (outcome, awaited) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );

    assert_eq!(awaited.len(), 1, "only the enrichment is awaited");
    assert_eq!(
        outcome.id_token_claims[&format!("{NS}fullcontact")]["fullName"],
        "Ada Lovelace"
    );
    assert_eq!(
        outcome.record.user_metadata["fullcontact"]["title"],
        "Analyst"
    );
    let services: Vec<&str> = outcome.jobs.iter().map(|job| job.service).collect();
    assert_eq!(
        services,
        ["slack", "segment", "keen", "zapier", "salesforce"]
    );
    assert!(
        outcome.reports.iter().all(|r| r.result == RuleResult::Ran),
        "{:?}",
        outcome.reports
    );
    assert_eq!(outcome.deny, None);
}

#[test]
fn fullcontact_request_is_the_v3_enrich_call() {
    let config = config();
    let (_, awaited) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let request = &awaited[0];
    assert_eq!(request.cluster, "fullcontact");
    assert_eq!(request.method, "POST");
    assert_eq!(request.authority, "api.fullcontact.com");
    assert_eq!(request.path, "/v3/person.enrich");
    assert_eq!(request.header("authorization"), Some("Bearer fc-key"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(body(request), json!({"email": "ada@example.com"}));
    assert_eq!(request.timeout_ms, 2_000);
}

#[test]
fn fullcontact_failures_alert_and_the_login_goes_on_unchanged() {
    let config = config();
    let failures = [
        ("queued", Answer::status(202, r#"{"status":202}"#)),
        ("bad key", Answer::status(403, "forbidden")),
        ("rate limited", Answer::status(429, "")),
        ("server error", Answer::status(503, "")),
        ("timeout", Answer::status(504, "upstream request timeout")),
        ("reset", Answer::Reset),
        ("not json", Answer::status(200, "<html>")),
    ];
    for (name, failure) in failures {
        let (outcome, _) = run(
            &config,
            event(Protocol::AuthorizationCode, &first_login()),
            |_| failure.clone(),
        );
        assert!(outcome.id_token_claims.is_empty(), "case {name}");
        assert!(outcome.record.user_metadata.is_empty(), "case {name}");
        assert!(
            matches!(result_of(&outcome, "enrich"), RuleResult::Failed(_)),
            "case {name}"
        );
        assert_eq!(outcome.deny, None, "case {name}");
        let alert = job(&outcome, "alert");
        let text = body(request_of(alert))["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            text.starts_with("Rulegate step enrich failed: "),
            "case {name}: {text}"
        );
        assert_eq!(request_of(alert).path, "/services/T1/B2/alertsecret");
        // The other steps still ran.
        assert_eq!(result_of(&outcome, "track"), RuleResult::Ran, "case {name}");
    }
}

#[test]
fn fullcontact_failure_with_on_error_deny_denies_the_login() {
    let mut json = config_json();
    json["rules"][0]["on_error"] = json!("deny");
    let config = Config::from_json(json.to_string().as_bytes(), &env).expect("config");
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| Answer::Reset,
    );
    assert_eq!(outcome.deny.as_deref(), Some("enrich failed"));
    // Denial stops the rules that come after.
    assert!(
        outcome.reports.iter().all(|r| r.rule == "enrich"),
        "{:?}",
        outcome.reports
    );
}

#[test]
fn an_enriched_user_gets_the_stored_result_without_a_call_on_login_and_refresh() {
    let config = config();
    let mut record = first_login();
    record.logins_count = 4;
    record
        .user_metadata
        .insert("fullcontact".into(), json!({"fullName": "Stored"}));
    for protocol in [Protocol::AuthorizationCode, Protocol::RefreshToken] {
        let (outcome, awaited) = run(&config, event(protocol.clone(), &record), |_| {
            panic!("no call expected")
        });
        assert!(awaited.is_empty());
        assert_eq!(
            outcome.id_token_claims[&format!("{NS}fullcontact")]["fullName"],
            "Stored",
            "{protocol:?}"
        );
    }
}

#[test]
fn user_without_email_is_not_enriched() {
    let config = config();
    let claims = rules_test_claims(json!({
        "iss": "https://login.example.com", "sub": "user-2", "aud": "spa",
        "exp": NOW_MS / 1000 + 300, "iat": NOW_MS / 1000, "name": "No Mail"
    }));
    let info = LoginInfo {
        protocol: Protocol::AuthorizationCode,
        client_id: Some("spa".into()),
        client_name: None,
        ip: None,
        user_agent: None,
        connection: "oidc".into(),
    };
    let event = LoginEvent::new(&claims, &first_login(), &info);
    let (outcome, awaited) = run(&config, event, |_| person());
    assert!(awaited.is_empty());
    assert_eq!(
        result_of(&outcome, "enrich"),
        RuleResult::Skipped("the user has no email".into())
    );
}

#[test]
fn slack_signup_message_names_the_new_user() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let request = request_of(job(&outcome, "slack"));
    assert_eq!(request.cluster, "slack");
    assert_eq!(request.authority, "hooks.slack.com");
    assert_eq!(request.path, "/services/T1/B1/signupsecret");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        body(request),
        json!({"text": "New User: Ada Lovelace (ada@example.com)"})
    );
    assert!(
        !request.target.contains("secret"),
        "the target is what gets logged"
    );
}

#[test]
fn segment_track_call_is_exact() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let request = request_of(job(&outcome, "segment"));
    assert_eq!(request.authority, "api.segment.io");
    assert_eq!(request.path, "/v1/track");
    let basic = format!("Basic {}", STANDARD.encode("seg-key:"));
    assert_eq!(request.header("authorization"), Some(basic.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let sent = body(request);
    assert_eq!(sent["userId"], "user-1");
    assert_eq!(sent["event"], "Signed up");
    assert_eq!(sent["properties"], json!({"app": "Example App"}));
    assert_eq!(
        sent["context"],
        json!({"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 Test"})
    );
    assert_eq!(sent["timestamp"], "2027-01-15T08:00:00Z");
    let message_id = sent["messageId"].as_str().expect("messageId");
    assert!(message_id.len() < 100);
}

#[test]
fn segment_says_logged_in_after_the_first_login_with_a_new_message_id() {
    let config = config();
    let (first, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let mut record = first_login();
    record.logins_count = 2;
    let (second, _) = run(&config, event(Protocol::AuthorizationCode, &record), |_| {
        person()
    });
    let (a, b) = (
        body(request_of(job(&first, "segment"))),
        body(request_of(job(&second, "segment"))),
    );
    assert_eq!(b["event"], "Logged in");
    assert_ne!(a["messageId"], b["messageId"]);
    // The same login always gets the same id, so a retry is not counted twice.
    let (again, _) = run(&config, event(Protocol::AuthorizationCode, &record), |_| {
        person()
    });
    assert_eq!(
        body(request_of(job(&again, "segment")))["messageId"],
        b["messageId"]
    );
}

#[test]
fn refresh_and_token_exchange_send_nothing() {
    let config = config();
    let mut record = first_login();
    record.logins_count = 3;
    for protocol in [
        Protocol::RefreshToken,
        Protocol::TokenExchange,
        Protocol::ClientCredentials,
    ] {
        let (outcome, awaited) = run(&config, event(protocol.clone(), &record), |_| person());
        assert!(awaited.is_empty(), "{protocol:?}");
        assert!(outcome.jobs.is_empty(), "{protocol:?}: {:?}", outcome.jobs);
        assert!(outcome.record.is_empty(), "{protocol:?}");
    }
}

#[test]
fn second_login_sends_only_segment() {
    let config = config();
    let mut record = first_login();
    record.logins_count = 2;
    record
        .user_metadata
        .insert("fullcontact".into(), json!({"fullName": "Ada"}));
    record
        .app_metadata
        .insert("recordedAsLead".into(), json!(true));
    let (outcome, awaited) = run(&config, event(Protocol::AuthorizationCode, &record), |_| {
        person()
    });
    assert!(awaited.is_empty());
    let services: Vec<&str> = outcome.jobs.iter().map(|job| job.service).collect();
    assert_eq!(services, ["segment"]);
}

#[test]
fn keen_event_has_the_user_and_configured_fields() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let keen = job(&outcome, "keen");
    assert!(keen.alert_on_failure);
    let request = request_of(keen);
    assert_eq!(request.authority, "api.keen.io");
    assert_eq!(request.path, "/3.0/projects/proj1/events/signups");
    assert_eq!(request.header("authorization"), Some("keen-key"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let sent = body(request);
    assert_eq!(sent["userId"], "user-1");
    assert_eq!(sent["name"], "Ada Lovelace");
    assert_eq!(sent["ip"], "203.0.113.9");
    assert_eq!(sent["source"], "rulegate");
}

#[test]
fn zapier_gets_the_profile_with_the_login_context() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let request = request_of(job(&outcome, "zapier"));
    assert_eq!(request.authority, "hooks.zapier.com");
    assert_eq!(request.path, "/hooks/catch/123/abc/");
    let sent = body(request);
    assert_eq!(sent["user_id"], "user-1");
    assert_eq!(sent["email"], "ada@example.com");
    assert_eq!(sent["appName"], "Example App");
    assert_eq!(sent["userAgent"], "Mozilla/5.0 Test");
    assert_eq!(sent["ip"], "203.0.113.9");
    assert_eq!(sent["connection"], "oidc");
    assert_eq!(sent["strategy"], "oidc");
    assert!(
        sent.get("nonce").is_none() && sent.get("aud").is_none(),
        "token claims stay out"
    );
}

#[test]
fn salesforce_is_skipped_once_recorded_or_while_queued() {
    let config = config();
    let mut recorded = first_login();
    recorded
        .app_metadata
        .insert("recordedAsLead".into(), json!(true));
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &recorded),
        |_| person(),
    );
    assert_eq!(
        result_of(&outcome, "lead"),
        RuleResult::Skipped("already recorded as a lead".into())
    );

    let mut queued = first_login();
    queued.lead_queued_at = Some(NOW_MS / 1000 - 60);
    let (outcome, _) = run(&config, event(Protocol::AuthorizationCode, &queued), |_| {
        person()
    });
    assert!(matches!(
        result_of(&outcome, "lead"),
        RuleResult::Skipped(_)
    ));

    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    assert_eq!(outcome.record.lead_queued_at, Some(Some(NOW_MS / 1000)));
}

fn outbox_with(job: Job) -> Outbox {
    let mut outbox = Outbox::new(Policy::default(), config().alerts.clone());
    assert_eq!(outbox.push(job, NOW_MS), None);
    outbox
}

fn lead_job() -> Job {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    job(&outcome, "salesforce").clone()
}

fn token_answer(token: &str) -> Answer {
    Answer::status(
        200,
        &json!({"access_token": token, "instance_url": "https://example.my.salesforce.com",
                "id": "x", "token_type": "Bearer", "issued_at": "1", "signature": "s"})
        .to_string(),
    )
}

#[test]
fn salesforce_gets_a_token_then_creates_the_lead_and_records_it() {
    let mut outbox = outbox_with(lead_job());
    let due = outbox.due(NOW_MS);
    let token_request = &due[0].request;
    assert_eq!(token_request.cluster, "salesforce_login");
    assert_eq!(token_request.authority, "login.salesforce.com");
    assert_eq!(token_request.path, "/services/oauth2/token");
    assert_eq!(
        token_request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&token_request.body),
        "grant_type=client_credentials&client_id=sf-id&client_secret=sf-secret"
    );
    assert!(outbox
        .on_answer(due[0].entry, &token_answer("t1"), NOW_MS)
        .is_empty());

    let due = outbox.due(NOW_MS);
    let lead = &due[0].request;
    assert_eq!(lead.cluster, "salesforce_api");
    assert_eq!(lead.authority, "example.my.salesforce.com");
    assert_eq!(lead.path, "/services/data/v67.0/sobjects/Lead/");
    assert_eq!(lead.header("authorization"), Some("Bearer t1"));
    assert_eq!(
        body(lead),
        json!({"FirstName": "Ada", "LastName": "Lovelace", "Company": "Example Corp",
               "Email": "ada@example.com", "LeadSource": "Rulegate"})
    );
    let created = Answer::status(201, r#"{"id":"00Q1","success":true,"errors":[]}"#);
    let events = outbox.on_answer(due[0].entry, &created, NOW_MS);
    let Some(Event::Record { user_id, change }) = events.first() else {
        panic!("no record change: {events:?}");
    };
    assert_eq!(user_id, "user-1");
    assert_eq!(change.app_metadata["recordedAsLead"], json!(true));
    assert_eq!(change.lead_queued_at, Some(None));
    assert!(matches!(
        events.last(),
        Some(Event::Delivered {
            service: "salesforce",
            ..
        })
    ));
    assert!(outbox.is_empty());
}

#[test]
fn salesforce_invalid_session_reauthenticates_once_and_retries_once() {
    let mut outbox = outbox_with(lead_job());
    let due = outbox.due(NOW_MS);
    outbox.on_answer(due[0].entry, &token_answer("old"), NOW_MS);
    let due = outbox.due(NOW_MS);
    let expired = Answer::status(
        401,
        r#"[{"errorCode":"INVALID_SESSION_ID","message":"Session expired"}]"#,
    );
    assert!(outbox.on_answer(due[0].entry, &expired, NOW_MS).is_empty());

    let due = outbox.due(NOW_MS);
    assert_eq!(
        due[0].request.path, "/services/oauth2/token",
        "a new token first"
    );
    outbox.on_answer(due[0].entry, &token_answer("new"), NOW_MS);
    let due = outbox.due(NOW_MS);
    assert_eq!(due[0].request.header("authorization"), Some("Bearer new"));

    // A second INVALID_SESSION_ID is final: alert, release the marker.
    let events = outbox.on_answer(due[0].entry, &expired, NOW_MS);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Failed {
                service: "salesforce",
                ..
            }
        )),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Record { change, .. } if change.lead_queued_at == Some(None))));
    let alert = outbox.due(NOW_MS);
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0].service, "alert");
    assert!(
        !String::from_utf8_lossy(&alert[0].request.body).contains("old"),
        "no token in alerts"
    );
}

#[test]
fn salesforce_duplicate_after_a_timed_out_attempt_counts_as_the_lead() {
    let mut outbox = outbox_with(lead_job());
    let due = outbox.due(NOW_MS);
    outbox.on_answer(due[0].entry, &token_answer("t1"), NOW_MS);
    let due = outbox.due(NOW_MS);
    // The first attempt timed out after Salesforce had created the lead.
    outbox.on_answer(
        due[0].entry,
        &Answer::status(504, "upstream request timeout"),
        NOW_MS,
    );
    let due = outbox.due(NOW_MS + 60_000);
    let duplicate = Answer::status(
        400,
        r#"[{"errorCode":"DUPLICATES_DETECTED","message":"duplicate"}]"#,
    );
    let events = outbox.on_answer(due[0].entry, &duplicate, NOW_MS + 60_000);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Record { change, .. }
            if change.app_metadata.get("recordedAsLead") == Some(&json!(true)))),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(Event::Delivered { .. })));
    assert!(outbox.is_empty(), "no alert, nothing left");
}

#[test]
fn salesforce_token_is_cached_across_leads() {
    let mut outbox = outbox_with(lead_job());
    let due = outbox.due(NOW_MS);
    outbox.on_answer(due[0].entry, &token_answer("t1"), NOW_MS);
    let due = outbox.due(NOW_MS);
    outbox.on_answer(due[0].entry, &Answer::status(201, "{}"), NOW_MS);

    assert_eq!(outbox.push(lead_job(), NOW_MS + 1000), None);
    let due = outbox.due(NOW_MS + 1000);
    assert_eq!(
        due[0].request.header("authorization"),
        Some("Bearer t1"),
        "no second token call"
    );
}

#[test]
fn retries_keep_the_same_bytes_and_honour_retry_after() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let mut outbox = outbox_with(job(&outcome, "segment").clone());
    let first = outbox.due(NOW_MS);
    let throttled = Answer::Response {
        status: 429,
        headers: vec![("retry-after".into(), "7".into())],
        body: Vec::new(),
    };
    let events = outbox.on_answer(first[0].entry, &throttled, NOW_MS);
    assert!(
        matches!(events[0], Event::WillRetry { in_ms: 7_000, .. }),
        "{events:?}"
    );
    assert!(outbox.due(NOW_MS + 6_999).is_empty());
    let second = outbox.due(NOW_MS + 7_000);
    assert_eq!(second[0].request, first[0].request);

    let events = outbox.on_answer(
        second[0].entry,
        &Answer::status(200, r#"{"success":true}"#),
        NOW_MS + 7_000,
    );
    assert_eq!(
        events,
        vec![Event::Delivered {
            service: "segment",
            step: "track".into()
        }]
    );
}

#[test]
fn backoff_doubles_and_a_long_outage_ends_in_a_counted_drop_with_an_alert() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let policy = Policy {
        max_attempts: 4,
        max_age_ms: 60_000,
        initial_backoff_ms: 100,
        max_backoff_ms: 1_000,
        capacity: 10,
    };
    let mut outbox = Outbox::new(policy, config.alerts.clone());
    outbox.push(job(&outcome, "keen").clone(), NOW_MS);
    let mut now = NOW_MS;
    let mut delays = Vec::new();
    let mut last = Vec::new();
    for _ in 0..4 {
        let due = outbox.due(now);
        assert_eq!(due.len(), 1);
        last = outbox.on_answer(due[0].entry, &Answer::status(503, "down"), now);
        if let Some(Event::WillRetry { in_ms, .. }) = last.first() {
            delays.push(*in_ms);
            now += in_ms;
        }
    }
    assert_eq!(delays, [100, 200, 400]);
    assert!(
        last.iter().any(|e| matches!(e, Event::Dropped { service: "keen", reason, .. } if reason.contains("out of attempts"))),
        "{last:?}"
    );
    let alert = outbox.due(now);
    assert_eq!(alert[0].service, "alert");
    let text = body(&alert[0].request)["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("signups") && text.contains("503"), "{text}");
}

#[test]
fn fullcontact_no_match_is_remembered_without_an_alert() {
    let config = config();
    let not_found = Answer::status(404, r#"{"status":404,"message":"Profile not found"}"#);
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| not_found.clone(),
    );
    assert_eq!(result_of(&outcome, "enrich"), RuleResult::Ran);
    assert!(outcome.id_token_claims.is_empty());
    assert_eq!(
        outcome.record.app_metadata["fullcontactNoMatch"],
        json!(true)
    );
    assert!(outcome.jobs.iter().all(|job| job.service != "alert"));

    let mut record = first_login();
    record.logins_count = 2;
    record
        .app_metadata
        .insert("fullcontactNoMatch".into(), json!(true));
    let (_, awaited) = run(&config, event(Protocol::AuthorizationCode, &record), |_| {
        person()
    });
    assert!(awaited.is_empty(), "not asked again");
}

#[test]
fn secrets_echoed_by_a_background_service_are_masked_in_reasons_and_alerts() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let mut outbox = Outbox::new(Policy::default(), config.alerts.clone());
    outbox.mask_secrets(config.secret_values());
    outbox.push(job(&outcome, "keen").clone(), NOW_MS);
    let due = outbox.due(NOW_MS);
    let echo = Answer::status(
        400,
        "bad key keen-key for seg-key and /services/T1/B1/signupsecret",
    );
    let events = outbox.on_answer(due[0].entry, &echo, NOW_MS);
    let text = format!("{events:?}");
    assert!(
        !text.contains("keen-key") && !text.contains("signupsecret"),
        "{text}"
    );
    let alert = outbox.due(NOW_MS);
    let alert_text = String::from_utf8_lossy(&alert[0].request.body).to_string();
    assert!(
        alert_text.contains("***") && !alert_text.contains("keen-key"),
        "{alert_text}"
    );
}

#[test]
fn a_condition_that_cannot_be_evaluated_is_a_rule_failure() {
    let mut json = config_json();
    json["rules"] = json!([
        {"name": "strict", "type": "rule", "when": "user.no_such_field == 1",
         "on_error": "deny", "id_token": {"x": "1"}}
    ]);
    let config = Config::from_json(json.to_string().as_bytes(), &env).expect("config");
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    assert!(matches!(
        result_of(&outcome, "strict"),
        RuleResult::Failed(_)
    ));
    assert_eq!(outcome.deny.as_deref(), Some("strict failed"));
}

#[test]
fn client_errors_are_not_retried() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let mut outbox = outbox_with(job(&outcome, "slack").clone());
    let due = outbox.due(NOW_MS);
    let events = outbox.on_answer(
        due[0].entry,
        &Answer::status(404, "channel_not_found"),
        NOW_MS,
    );
    assert!(
        matches!(&events[0], Event::Failed { service: "slack", reason, .. } if reason.contains("channel_not_found"))
    );
    assert!(
        outbox.is_empty(),
        "slack failures do not alert (alerts go to slack)"
    );
}

#[test]
fn a_full_outbox_reports_the_drop() {
    let config = config();
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| person(),
    );
    let policy = Policy {
        capacity: 1,
        ..Policy::default()
    };
    let mut outbox = Outbox::new(policy, None);
    assert_eq!(outbox.push(job(&outcome, "slack").clone(), NOW_MS), None);
    let dropped = outbox.push(job(&outcome, "segment").clone(), NOW_MS);
    assert!(
        matches!(
            dropped,
            Some(Event::Dropped {
                service: "segment",
                ..
            })
        ),
        "{dropped:?}"
    );
}

#[test]
fn the_call_budget_skips_awaited_calls_once_used_up() {
    let mut json = config_json();
    json["call_budget_ms"] = json!(500);
    let config = Config::from_json(json.to_string().as_bytes(), &env).expect("config");
    let mut pipeline = Pipeline::new(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        claims(),
        NOW_MS,
    );
    // The budget is over before the enrichment starts.
    assert!(matches!(pipeline.next(&config, NOW_MS + 600), Next::Done));
    let outcome = pipeline.finish(&config);
    assert!(
        matches!(result_of(&outcome, "enrich"), RuleResult::Skipped(reason) if reason.contains("budget"))
    );
    assert_eq!(result_of(&outcome, "track"), RuleResult::Ran);

    // With time left, the call's timeout is cut to what remains.
    let mut pipeline = Pipeline::new(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        claims(),
        NOW_MS,
    );
    let Next::Call(request) = pipeline.next(&config, NOW_MS + 300) else {
        panic!("expected the enrichment call");
    };
    assert_eq!(request.timeout_ms, 200);
}

#[test]
fn secrets_in_a_service_answer_are_masked_in_alerts() {
    let config = config();
    let echo = Answer::status(403, "bad key fc-key for this account");
    let (outcome, _) = run(
        &config,
        event(Protocol::AuthorizationCode, &first_login()),
        |_| echo.clone(),
    );
    let alert = body(request_of(job(&outcome, "alert")))["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        alert.contains("***") && !alert.contains("fc-key"),
        "{alert}"
    );
}

#[test]
fn a_missing_secret_is_refused_at_load_naming_the_field_and_variable() {
    let err = Config::from_json(config_json().to_string().as_bytes(), &|_| None).err();
    let Some(Error::Config { field, reason }) = err else {
        panic!("accepted without secrets");
    };
    assert_eq!(field, "rules[0].api_key_env");
    assert!(reason.contains("FULLCONTACT_API_KEY"), "{reason}");
}

#[test]
fn step_configuration_errors_name_the_field() {
    let cases: Vec<(&str, usize, &str, Value, &str)> = vec![
        (
            "keen without project",
            3,
            "project_id",
            Value::Null,
            "rules[3]",
        ),
        (
            "salesforce without company",
            5,
            "company",
            json!(""),
            "rules[5].company",
        ),
        (
            "salesforce password flow without user",
            5,
            "flow",
            json!("password"),
            "rules[5].username_env",
        ),
        // serde names the unknown field in the message, not in the path.
        ("unknown step field", 2, "writekey", json!("x"), "rules[2]"),
        (
            "timeout out of range",
            0,
            "timeout_ms",
            json!(0),
            "rules[0].timeout_ms",
        ),
        (
            "on_error typo",
            1,
            "on_error",
            json!("ignore"),
            "rules[1].on_error",
        ),
        (
            "fullcontact claim reserved",
            0,
            "claim",
            json!("sub"),
            "rules[0].claim",
        ),
    ];
    for (name, index, field, value, expected) in cases {
        let mut json = config_json();
        if value.is_null() {
            json["rules"][index]
                .as_object_mut()
                .map(|rule| rule.remove(field));
        } else {
            json["rules"][index][field] = value;
        }
        match Config::from_json(json.to_string().as_bytes(), &env) {
            Err(Error::Config { field: at, reason }) => {
                assert_eq!(at, expected, "case {name}");
                assert!(
                    reason.contains(field) || at.ends_with(field),
                    "case {name}: {reason}"
                );
            }
            other => panic!("case {name}: {other:?}"),
        }
    }
}

/// A rule sees the claims earlier rules added, through `context.id_token`,
/// even when a rule in between reads nothing of the context.
#[test]
fn later_rules_see_claims_earlier_rules_added() {
    let config = json!({
        "issuer": "https://login.example.com",
        "provider": {"cluster": "idp"},
        "namespace": NS,
        "rules": [
            {"name": "tier", "type": "rule", "id_token": {"tier": "'gold'"}},
            {"name": "user-only", "type": "rule", "when": "user.email_verified",
             "id_token": {"domain": "user.email.endsWith('@example.com') ? 'example.com' : 'other'"}},
            {"name": "reads-both", "type": "rule",
             "when": format!("context.id_token['{NS}tier'] == 'gold'"),
             "id_token": {"seen": format!("context.id_token['{NS}domain']")}},
        ]
    });
    let config = Config::from_json(config.to_string().as_bytes(), &env).expect("config");
    let (outcome, _) = run(
        &config,
        event(Protocol::RefreshToken, &first_login()),
        |_| Answer::status(500, ""),
    );
    assert_eq!(outcome.id_token_claims[&format!("{NS}tier")], json!("gold"));
    assert_eq!(
        outcome.id_token_claims[&format!("{NS}seen")],
        json!("example.com")
    );
}

/// A deny rule whose condition cannot be evaluated (the claim it reads is
/// missing, as when the user asked for fewer scopes) denies the login
/// unless its `on_error` says otherwise: it fails closed.
#[test]
fn deny_rule_fails_closed_when_its_condition_cannot_be_evaluated() {
    let rules = |on_error: Option<&str>| {
        let mut rule = json!({"name": "staff-only", "type": "rule",
                              "when": "!user.nickname.endsWith('@example.com')",
                              "deny": "'staff only'"});
        if let Some(on_error) = on_error {
            rule["on_error"] = json!(on_error);
        }
        json!({"issuer": "https://login.example.com", "provider": {"cluster": "idp"},
               "namespace": NS, "rules": [rule]})
    };
    let outcome = |config: Value| {
        let config = Config::from_json(config.to_string().as_bytes(), &env).expect("config");
        run(
            &config,
            event(Protocol::AuthorizationCode, &first_login()),
            |_| Answer::status(500, ""),
        )
        .0
    };
    let denied = outcome(rules(None));
    assert!(
        denied
            .deny
            .as_deref()
            .is_some_and(|reason| reason.contains("staff-only")),
        "{:?}",
        denied.deny
    );
    assert!(outcome(rules(Some("deny"))).deny.is_some());
    assert_eq!(outcome(rules(Some("continue"))).deny, None);
}
