//! The stand-ins themselves, spoken to with a plain HTTP client: each
//! service takes a correct request with the real service's success answer,
//! refuses each documented bad request with the real service's error, and
//! the control API (records, scripts, outages, resets, token expiry) does
//! what the end-to-end tests will rely on.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rulegate_tests::standins::*;
use rulegate_tests::Reply;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// Sends `method url` with `headers` and `body`; Err when no answer came.
fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, ureq::Error> {
    let agent = agent();
    let response = match method {
        "GET" => {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call()
        }
        _ => {
            let mut request = agent.post(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body)
        }
    }?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.into_body().read_to_vec().unwrap_or_default();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn post(standins: &Standins, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    try_send("POST", &standins.url(path), headers, body)
        .unwrap_or_else(|err| panic!("POST {path}: {err}"))
}

fn post_json(standins: &Standins, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut headers = headers.to_vec();
    headers.push(JSON);
    post(standins, path, &headers, &body.to_string())
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn segment_auth() -> String {
    basic(SEGMENT_WRITE_KEY, "")
}

fn track_event() -> Value {
    json!({
        "userId": "user-1",
        "event": "Logged in",
        "messageId": "login-user-1-0001",
        "properties": {"app": "Rulegate demo"},
        "context": {"ip": "203.0.113.9", "userAgent": "test"},
        "timestamp": "2026-05-01T10:00:00.000Z",
    })
}

/// A bad request and the answer the real service gives it.
struct BadRequest {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: u16,
    /// A piece of the answer body.
    answer: &'static str,
}

/// Sends each case to fresh stand-ins; a failure names its case, and each
/// case must be recorded as invalid with a reason.
fn assert_refused(service: &str, cases: Vec<BadRequest>) {
    for case in cases {
        let standins = Standins::start();
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let reply = post(&standins, case.path, &headers, &case.body);
        assert_eq!(
            reply.status,
            case.status,
            "{}: {}",
            case.name,
            reply.summary()
        );
        assert!(
            reply.text().contains(case.answer),
            "{}: answer lacks {:?}: {}",
            case.name,
            case.answer,
            reply.summary()
        );
        let received = standins.received(service);
        assert_eq!(received.len(), 1, "{}: {received:?}", case.name);
        assert!(!received[0].valid, "{}: recorded as valid", case.name);
        assert!(
            !received[0].problems.is_empty(),
            "{}: no problem named",
            case.name
        );
        assert_eq!(received[0].status, case.status, "{}", case.name);
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![JSON]
        .into_iter()
        .map(|(n, v)| (n, v.to_owned()))
        .collect()
}

fn with_json(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut headers = json_headers();
    headers.extend(extra.iter().cloned());
    headers
}

// ---------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------

#[test]
fn slack_webhook_answers_ok_as_plain_text_and_records_the_message() {
    let standins = Standins::start();
    let message = json!({"text": "New User: Ada (ada@example.org)"});

    let reply = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &message);

    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(reply.text(), "ok");
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let received = standins.received("slack");
    assert_eq!(received.len(), 1);
    let record = &received[0];
    assert!(record.valid, "{record:?}");
    assert_eq!(record.json, Some(message));
    assert_eq!(record.method, "POST");
    assert_eq!(record.path, SLACK_SIGNUPS_PATH);
    assert_eq!(record.header("Content-Type"), Some("application/json"));
    assert_eq!(record.answered_by, "service");
}

#[test]
fn slack_alerts_channel_is_recorded_as_slack_alert() {
    let standins = Standins::start();

    let reply = post_json(
        &standins,
        SLACK_ALERTS_PATH,
        &[],
        &json!({"text": "keen failed: 503"}),
    );

    assert_eq!(reply.status, 200);
    assert_eq!(standins.received("slack_alert").len(), 1);
    assert!(standins.received("slack").is_empty());
}

#[test]
fn slack_takes_blocks_or_attachments_without_text() {
    let standins = Standins::start();
    let blocks = json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]});
    let attachments = json!({"attachments": [{"fallback": "hi", "color": "good", "title": "hi"}]});

    for message in [blocks, attachments] {
        let reply = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &message);
        assert_eq!(reply.status, 200, "{message}: {}", reply.summary());
    }
    assert!(standins.received("slack").iter().all(|record| record.valid));
}

#[test]
fn slack_refuses_bad_messages_with_its_error_words() {
    let case = |name, path, headers, body: &str, status, answer| BadRequest {
        name,
        path,
        headers,
        body: body.to_owned(),
        status,
        answer,
    };
    assert_refused(
        "slack",
        vec![
            case(
                "body not json",
                SLACK_SIGNUPS_PATH,
                json_headers(),
                "text=hi",
                400,
                "invalid_payload",
            ),
            case(
                "no content type",
                SLACK_SIGNUPS_PATH,
                vec![],
                r#"{"text":"hi"}"#,
                400,
                "invalid_payload",
            ),
            case(
                "empty object",
                SLACK_SIGNUPS_PATH,
                json_headers(),
                "{}",
                400,
                "no_text",
            ),
            case(
                "blank text",
                SLACK_SIGNUPS_PATH,
                json_headers(),
                r#"{"text":"  "}"#,
                400,
                "no_text",
            ),
            case(
                "blocks not a list",
                SLACK_SIGNUPS_PATH,
                json_headers(),
                r#"{"text":"a","blocks":{}}"#,
                400,
                "invalid_blocks",
            ),
            case(
                "block without type",
                SLACK_SIGNUPS_PATH,
                json_headers(),
                r#"{"blocks":[{"text":"a"}]}"#,
                400,
                "invalid_blocks",
            ),
            case(
                "unknown webhook",
                "/services/T-RULEGATE-DEMO/B-SIGNUPS/wrong",
                json_headers(),
                r#"{"text":"a"}"#,
                404,
                "no_service",
            ),
        ],
    );
}

#[test]
fn slack_accepts_but_flags_text_over_the_length_limit() {
    let standins = Standins::start();
    let long = "x".repeat(SLACK_TEXT_LIMIT + 1);

    let reply = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": long}));

    assert_eq!(reply.status, 200);
    let record = &standins.received("slack")[0];
    assert!(!record.valid);
    assert!(record.problems[0].contains("cuts"), "{:?}", record.problems);
}

// ---------------------------------------------------------------------------
// Segment
// ---------------------------------------------------------------------------

#[test]
fn segment_track_with_the_basic_write_key_answers_success() {
    let standins = Standins::start();
    let auth = segment_auth();

    let reply = post_json(
        &standins,
        SEGMENT_TRACK_PATH,
        &[("authorization", &auth)],
        &track_event(),
    );

    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(reply.json(), json!({"success": true}));
    let record = &standins.received("segment")[0];
    assert!(record.valid, "{:?}", record.problems);
    assert_eq!(record.json.as_ref().unwrap()["event"], "Logged in");
}

#[test]
fn segment_takes_the_write_key_in_the_body_and_identify_and_batch_calls() {
    let standins = Standins::start();
    let auth = segment_auth();
    let mut keyed = track_event();
    keyed["writeKey"] = json!(SEGMENT_WRITE_KEY);
    let identify = json!({
        "userId": "user-1",
        "messageId": "identify-1",
        "traits": {"email": "a@example.org"},
    });
    let mut batched = track_event();
    batched["type"] = json!("track");
    let anonymous = json!({"type": "identify", "anonymousId": "anon-1", "messageId": "identify-2"});
    let batch = json!({"batch": [batched, anonymous]});

    let replies = [
        post_json(&standins, "/v1/track", &[], &keyed),
        post_json(
            &standins,
            "/v1/identify",
            &[("authorization", &auth)],
            &identify,
        ),
        post_json(&standins, "/v1/batch", &[("authorization", &auth)], &batch),
    ];

    for reply in replies {
        assert_eq!(reply.status, 200, "{}", reply.summary());
        assert_eq!(reply.json(), json!({"success": true}));
    }
    let received = standins.received("segment");
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|record| record.valid), "{received:?}");
}

#[test]
fn segment_refuses_bad_json_bad_keys_and_anonymous_events() {
    let event = track_event().to_string();
    let auth = vec![("authorization", segment_auth())];
    let no_ids = json!({"event": "Logged in", "messageId": "m-1"}).to_string();
    let batch_no_ids =
        json!({"batch": [{"type": "track", "event": "x", "messageId": "m"}]}).to_string();
    let case = |name, path, headers, body: &str, status, answer| BadRequest {
        name,
        path,
        headers,
        body: body.to_owned(),
        status,
        answer,
    };
    assert_refused(
        "segment",
        vec![
            case(
                "invalid json",
                "/v1/track",
                with_json(&auth),
                "{\"userId\":",
                400,
                "Invalid JSON",
            ),
            case(
                "no content type",
                "/v1/track",
                auth.clone(),
                &event,
                400,
                "content-type",
            ),
            case(
                "wrong write key",
                "/v1/track",
                with_json(&[("authorization", basic("other-key", ""))]),
                &event,
                401,
                "Invalid Write Key",
            ),
            case(
                "basic without colon",
                "/v1/track",
                with_json(&[(
                    "authorization",
                    format!("Basic {}", STANDARD.encode(SEGMENT_WRITE_KEY)),
                )]),
                &event,
                401,
                "Invalid Write Key",
            ),
            case(
                "bearer instead of basic",
                "/v1/track",
                with_json(&[("authorization", format!("Bearer {SEGMENT_WRITE_KEY}"))]),
                &event,
                401,
                "Invalid Write Key",
            ),
            case(
                "no write key at all",
                "/v1/track",
                json_headers(),
                &event,
                401,
                "Invalid Write Key",
            ),
            case(
                "neither userId nor anonymousId",
                "/v1/track",
                with_json(&auth),
                &no_ids,
                400,
                "Request neither has anonymousId nor userId",
            ),
            case(
                "batch event without ids",
                "/v1/batch",
                with_json(&auth),
                &batch_no_ids,
                400,
                "Request neither has anonymousId nor userId",
            ),
            case(
                "oversized event",
                "/v1/track",
                with_json(&auth),
                &json!({"userId": "u", "event": "e", "properties": {"pad": "x".repeat(40_000)}})
                    .to_string(),
                413,
                "too large",
            ),
        ],
    );
}

#[test]
fn segment_answers_200_but_flags_what_it_would_drop_or_double_count() {
    let standins = Standins::start();
    let auth = segment_auth();
    let mut no_message_id = track_event();
    no_message_id.as_object_mut().unwrap().remove("messageId");
    let mut no_event = track_event();
    no_event.as_object_mut().unwrap().remove("event");
    let mut bad_timestamp = track_event();
    bad_timestamp["timestamp"] = json!("yesterday");

    for (label, event, problem) in [
        ("no messageId", no_message_id, "messageId"),
        ("no event", no_event, "no event"),
        ("bad timestamp", bad_timestamp, "timestamp"),
    ] {
        standins.clear();
        let reply = post_json(&standins, "/v1/track", &[("authorization", &auth)], &event);
        assert_eq!(reply.status, 200, "{label}");
        let record = &standins.received("segment")[0];
        assert!(!record.valid, "{label}");
        assert!(
            record.problems.iter().any(|p| p.contains(problem)),
            "{label}: {:?}",
            record.problems
        );
    }
}

// ---------------------------------------------------------------------------
// Keen.io
// ---------------------------------------------------------------------------

#[test]
fn keen_records_an_event_and_answers_created() {
    let standins = Standins::start();
    let path = format!("{KEEN_EVENTS_PATH}/signups");
    let event = json!({"user_id": "user-1", "name": "Ada", "ip": "203.0.113.9"});

    let reply = post_json(
        &standins,
        &path,
        &[("authorization", KEEN_WRITE_KEY)],
        &event,
    );

    assert_eq!(reply.status, 201, "{}", reply.summary());
    assert_eq!(reply.json(), json!({"created": true}));
    let record = &standins.received("keen")[0];
    assert!(record.valid, "{:?}", record.problems);
    assert_eq!(record.json, Some(event));
}

#[test]
fn keen_takes_the_key_as_a_query_parameter_and_batches() {
    let standins = Standins::start();
    let single = format!("{KEEN_EVENTS_PATH}/signups?api_key={KEEN_WRITE_KEY}");
    let batch = json!({"signups": [{"a": 1}, {"b": 2}], "logins": [{"c": 3}]});

    let one = post_json(&standins, &single, &[], &json!({"a": 1}));
    let many = post_json(
        &standins,
        KEEN_EVENTS_PATH,
        &[("authorization", KEEN_WRITE_KEY)],
        &batch,
    );

    assert_eq!(one.status, 201, "{}", one.summary());
    assert_eq!(many.status, 200, "{}", many.summary());
    assert_eq!(
        many.json(),
        json!({"signups": [{"success": true}, {"success": true}], "logins": [{"success": true}]})
    );
}

#[test]
fn keen_refuses_bad_keys_unknown_projects_and_bad_names() {
    let path: &'static str = "/3.0/projects/rulegate-project/events/signups";
    let key = vec![("authorization", KEEN_WRITE_KEY.to_owned())];
    let event = r#"{"a":1}"#;
    let case = |name, path, headers, body: &str, status, answer| BadRequest {
        name,
        path,
        headers,
        body: body.to_owned(),
        status,
        answer,
    };
    assert_refused(
        "keen",
        vec![
            case(
                "no key",
                path,
                json_headers(),
                event,
                401,
                "InvalidApiKeyError",
            ),
            case(
                "wrong key",
                path,
                with_json(&[("authorization", "other".to_owned())]),
                event,
                401,
                "InvalidApiKeyError",
            ),
            case(
                "key with a scheme word",
                path,
                with_json(&[("authorization", format!("Bearer {KEEN_WRITE_KEY}"))]),
                event,
                401,
                "InvalidApiKeyError",
            ),
            case(
                "unknown project",
                "/3.0/projects/other/events/signups",
                with_json(&key),
                event,
                404,
                "error_code",
            ),
            case("not json", path, with_json(&key), "a=1", 400, "error_code"),
            case(
                "dotted property name",
                path,
                with_json(&key),
                r#"{"a.b":1}"#,
                400,
                "InvalidPropertyNameError",
            ),
            case(
                "dollar collection name",
                "/3.0/projects/rulegate-project/events/$bad",
                with_json(&key),
                event,
                400,
                "InvalidCollectionNameError",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Zapier
// ---------------------------------------------------------------------------

fn is_uuid(value: &Value) -> bool {
    let text = value.as_str().unwrap_or("");
    text.len() == 36 && text.matches('-').count() == 4
}

#[test]
fn zapier_hook_answers_success_with_fresh_uuids() {
    let standins = Standins::start();
    let profile = json!({"email": "ada@example.org", "context": {"ip": "203.0.113.9"}});

    let first = post_json(&standins, ZAPIER_HOOK_PATH, &[], &profile).json();
    let second = post(
        &standins,
        ZAPIER_HOOK_PATH,
        &[FORM],
        "email=ada%40example.org",
    )
    .json();

    for answer in [&first, &second] {
        assert_eq!(answer["status"], "success");
        for field in ["attempt", "id", "request_id"] {
            assert!(is_uuid(&answer[field]), "{field}: {answer}");
        }
    }
    assert_ne!(first["id"], second["id"]);
    assert!(standins
        .received("zapier")
        .iter()
        .all(|record| record.valid));
}

#[test]
fn zapier_answers_404_for_an_unknown_hook() {
    let standins = Standins::start();

    let reply = post_json(&standins, "/hooks/catch/999/other/", &[], &json!({}));

    assert_eq!(reply.status, 404);
    assert!(!standins.received("zapier")[0].valid);
}

// ---------------------------------------------------------------------------
// Salesforce
// ---------------------------------------------------------------------------

fn client_credentials() -> String {
    format!(
        "grant_type=client_credentials&client_id={SALESFORCE_CLIENT_ID}\
         &client_secret={SALESFORCE_CLIENT_SECRET}"
    )
}

fn token(standins: &Standins) -> String {
    let reply = post(
        standins,
        SALESFORCE_TOKEN_PATH,
        &[FORM],
        &client_credentials(),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

fn create_lead(standins: &Standins, token: &str, lead: &Value) -> Reply {
    let bearer = format!("Bearer {token}");
    post_json(
        standins,
        SALESFORCE_LEAD_PATH,
        &[("authorization", &bearer)],
        lead,
    )
}

fn lead(email: &str) -> Value {
    json!({
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Company": "Rulegate",
        "Email": email,
        "LeadSource": "Web",
    })
}

#[test]
fn salesforce_client_credentials_token_answers_the_documented_fields() {
    let standins = Standins::start();

    let reply = post(
        &standins,
        SALESFORCE_TOKEN_PATH,
        &[FORM],
        &client_credentials(),
    );

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let answer = reply.json();
    assert_eq!(answer["instance_url"], standins.base_url());
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["issued_at"].as_str().unwrap().parse::<u64>().is_ok());
    for field in ["access_token", "id", "signature", "scope"] {
        assert!(
            answer[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {answer}"
        );
    }
    assert!(standins.received("salesforce_token")[0].valid);
}

#[test]
fn salesforce_issues_a_fresh_token_each_time_and_takes_the_password_grant() {
    let standins = Standins::start();
    let password = format!(
        "grant_type=password&client_id={SALESFORCE_CLIENT_ID}\
         &client_secret={SALESFORCE_CLIENT_SECRET}\
         &username={}&password={SALESFORCE_PASSWORD}",
        SALESFORCE_USERNAME.replace('@', "%40")
    );
    let basic = basic(SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET);

    let first = token(&standins);
    let second = post(&standins, SALESFORCE_TOKEN_PATH, &[FORM], &password);
    let third = post(
        &standins,
        SALESFORCE_TOKEN_PATH,
        &[FORM, ("authorization", &basic)],
        "grant_type=client_credentials",
    );

    assert_eq!(second.status, 200, "{}", second.summary());
    assert_eq!(third.status, 200, "{}", third.summary());
    let tokens = [
        first,
        second.json()["access_token"].as_str().unwrap().to_owned(),
        third.json()["access_token"].as_str().unwrap().to_owned(),
    ];
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
}

#[test]
fn salesforce_token_endpoint_refuses_bad_clients_and_grants() {
    let path = SALESFORCE_TOKEN_PATH;
    let form = vec![("content-type", FORM.1.to_owned())];
    let wrong_password = format!(
        "grant_type=password&client_id={SALESFORCE_CLIENT_ID}\
         &client_secret={SALESFORCE_CLIENT_SECRET}\
         &username=sf-user%40example.com&password=wrong"
    );
    let case = |name, headers, body: String, answer| BadRequest {
        name,
        path,
        headers,
        body,
        status: 400,
        answer,
    };
    assert_refused(
        "salesforce_token",
        vec![
            case(
                "unknown client id",
                form.clone(),
                client_credentials().replace(SALESFORCE_CLIENT_ID, "other"),
                "invalid_client_id",
            ),
            case(
                "wrong secret",
                form.clone(),
                client_credentials().replace(SALESFORCE_CLIENT_SECRET, "other"),
                "invalid_client",
            ),
            case(
                "wrong password",
                form.clone(),
                wrong_password,
                "invalid_grant",
            ),
            case(
                "unsupported grant",
                form.clone(),
                "grant_type=authorization_code".into(),
                "unsupported_grant_type",
            ),
            case(
                "json instead of a form",
                json_headers(),
                json!({"grant_type": "client_credentials"}).to_string(),
                "unsupported_grant_type",
            ),
        ],
    );
}

#[test]
fn salesforce_creates_a_lead_with_an_issued_token() {
    let standins = Standins::start();
    let token = token(&standins);

    let reply = create_lead(&standins, &token, &lead("ada@example.org"));

    assert_eq!(reply.status, 201, "{}", reply.summary());
    let answer = reply.json();
    let id = answer["id"].as_str().unwrap();
    assert!(id.starts_with("00Q") && id.len() == 18, "{id}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["errors"], json!([]));
    let received = standins.received("salesforce");
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].endpoint, "salesforce_lead");
    assert!(received[1].valid, "{:?}", received[1].problems);
}

#[test]
fn salesforce_lead_refuses_missing_or_unknown_tokens() {
    let standins = Standins::start();

    let missing = post_json(&standins, SALESFORCE_LEAD_PATH, &[], &lead("a@example.org"));
    let unknown = create_lead(&standins, "00Dnotissued!abc", &lead("a@example.org"));

    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()[0]["errorCode"], "INVALID_AUTH_HEADER");
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.json(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
}

#[test]
fn salesforce_lead_refuses_missing_required_fields_and_bad_bodies() {
    let standins = Standins::start();
    let token = token(&standins);
    let cases = [
        (
            "no last name",
            json!({"Company": "Rulegate"}),
            400,
            "REQUIRED_FIELD_MISSING",
            json!(["LastName"]),
        ),
        (
            "no company",
            json!({"LastName": "Lovelace"}),
            400,
            "REQUIRED_FIELD_MISSING",
            json!(["Company"]),
        ),
        (
            "blank both",
            json!({"LastName": " ", "Company": null}),
            400,
            "REQUIRED_FIELD_MISSING",
            json!(["LastName", "Company"]),
        ),
        (
            "unknown field",
            json!({"LastName": "L", "Company": "C", "Nickname": "x"}),
            400,
            "INVALID_FIELD",
            json!([]),
        ),
        (
            "bad email",
            json!({"LastName": "L", "Company": "C", "Email": "nope"}),
            400,
            "INVALID_EMAIL_ADDRESS",
            json!(["Email"]),
        ),
        (
            "nested value",
            json!({"LastName": {"a": 1}, "Company": "C"}),
            400,
            "JSON_PARSER_ERROR",
            json!([]),
        ),
    ];

    for (name, body, status, code, fields) in cases {
        let reply = create_lead(&standins, &token, &body);
        assert_eq!(reply.status, status, "{name}: {}", reply.summary());
        let error = &reply.json()[0];
        assert_eq!(error["errorCode"], code, "{name}");
        assert_eq!(error["fields"], fields, "{name}");
    }

    let bearer = format!("Bearer {token}");
    let form = post(
        &standins,
        SALESFORCE_LEAD_PATH,
        &[("authorization", &bearer), FORM],
        "LastName=L",
    );
    assert_eq!(form.status, 415, "{}", form.summary());
    assert_eq!(form.json()[0]["errorCode"], "UNSUPPORTED_MEDIA_TYPE");
    let leads = standins.received("salesforce_lead");
    assert_eq!(leads.len(), 7);
    assert!(leads.iter().all(|record| !record.valid));
}

#[test]
fn salesforce_detects_a_duplicate_lead_unless_told_to_save_anyway() {
    let standins = Standins::start();
    let token = token(&standins);
    let bearer = format!("Bearer {token}");

    let first = create_lead(&standins, &token, &lead("ada@example.org"));
    let again = create_lead(&standins, &token, &lead("ADA@example.org"));
    let forced = post_json(
        &standins,
        SALESFORCE_LEAD_PATH,
        &[
            ("authorization", &bearer),
            ("sforce-duplicate-rule-header", "allowSave=true"),
        ],
        &lead("ada@example.org"),
    );

    assert_eq!(first.status, 201);
    assert_eq!(again.status, 400, "{}", again.summary());
    assert_eq!(again.json()[0]["errorCode"], "DUPLICATES_DETECTED");
    assert_eq!(forced.status, 201, "{}", forced.summary());
}

#[test]
fn expired_salesforce_tokens_get_invalid_session_and_a_new_token_works() {
    let standins = Standins::start();
    let old = token(&standins);
    assert_eq!(
        create_lead(&standins, &old, &lead("one@example.org")).status,
        201
    );

    standins.expire_salesforce_tokens();
    let refused = create_lead(&standins, &old, &lead("two@example.org"));
    let new = token(&standins);
    let accepted = create_lead(&standins, &new, &lead("two@example.org"));

    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()[0]["errorCode"], "INVALID_SESSION_ID");
    assert_eq!(accepted.status, 201, "{}", accepted.summary());
}

// ---------------------------------------------------------------------------
// FullContact
// ---------------------------------------------------------------------------

const FULLCONTACT_AUTH: (&str, &str) = ("authorization", "Bearer fullcontact-api-key");

#[test]
fn fullcontact_enriches_any_email_with_a_person() {
    let standins = Standins::start();

    let reply = post_json(
        &standins,
        FULLCONTACT_ENRICH_PATH,
        &[FULLCONTACT_AUTH],
        &json!({"email": "ada.lovelace@example.org"}),
    );

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let person = reply.json();
    assert_eq!(person["fullName"], "Ada Lovelace");
    for field in [
        "location",
        "title",
        "organization",
        "twitter",
        "linkedin",
        "avatar",
    ] {
        assert!(
            person[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {person}"
        );
    }
    assert_eq!(person["details"]["name"]["family"], "Lovelace");
    assert!(standins.received("fullcontact")[0].valid);
}

#[test]
fn fullcontact_answers_404_for_unknown_people_as_a_valid_request() {
    let standins = Standins::start();

    let reply = post_json(
        &standins,
        FULLCONTACT_ENRICH_PATH,
        &[FULLCONTACT_AUTH],
        &json!({"email": "unknown.person@example.org"}),
    );

    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json(),
        json!({"status": 404, "message": "Profile not found"})
    );
    assert!(standins.received("fullcontact")[0].valid);
}

#[test]
fn fullcontact_refuses_bad_keys_and_bad_queries() {
    let path = FULLCONTACT_ENRICH_PATH;
    let auth = vec![("authorization", FULLCONTACT_AUTH.1.to_owned())];
    let query = r#"{"email":"ada@example.org"}"#;
    let case = |name, headers, body: &str, status, answer| BadRequest {
        name,
        path,
        headers,
        body: body.to_owned(),
        status,
        answer,
    };
    assert_refused(
        "fullcontact",
        vec![
            case("no key", json_headers(), query, 401, "\"status\":401"),
            case(
                "wrong key",
                with_json(&[("authorization", "Bearer other".to_owned())]),
                query,
                403,
                "\"status\":403",
            ),
            case(
                "invalid email",
                with_json(&auth),
                r#"{"email":"not-an-email"}"#,
                422,
                "\"status\":422",
            ),
            case(
                "no identifier",
                with_json(&auth),
                "{}",
                422,
                "\"status\":422",
            ),
            case(
                "not json",
                with_json(&auth),
                "email=a",
                400,
                "\"status\":400",
            ),
            case(
                "no content type",
                auth.clone(),
                query,
                400,
                "\"status\":400",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Recording and routing
// ---------------------------------------------------------------------------

#[test]
fn records_keep_arrival_order_and_filter_by_service_or_endpoint() {
    let standins = Standins::start();
    post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "1"}));
    token(&standins);
    post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "2"}));

    let all = standins.received_all();
    let slack: Vec<Value> = standins
        .received("slack")
        .into_iter()
        .map(|record| record.json.unwrap()["text"].clone())
        .collect();

    let endpoints: Vec<&str> = all.iter().map(|record| record.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["slack", "salesforce_token", "slack"]);
    assert_eq!(slack, [json!("1"), json!("2")]);
    assert_eq!(standins.received("salesforce").len(), 1);
    assert_eq!(standins.received("salesforce_token").len(), 1);
    assert!(standins.received("salesforce_lead").is_empty());
    assert!(all.windows(2).all(|pair| pair[0].at_ms <= pair[1].at_ms));
}

#[test]
fn routing_ignores_the_host_header() {
    let standins = Standins::start();
    let auth = segment_auth();

    let reply = post_json(
        &standins,
        SEGMENT_TRACK_PATH,
        &[("host", "api.segment.io"), ("authorization", &auth)],
        &track_event(),
    );

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let record = &standins.received("segment")[0];
    assert_eq!(record.header("host"), Some("api.segment.io"));
}

#[test]
fn an_unknown_path_is_answered_404_and_recorded() {
    let standins = Standins::start();

    let reply = post(&standins, "/nothing/here", &[], "x");

    assert_eq!(reply.status, 404);
    let record = &standins.received("unknown")[0];
    assert!(!record.valid);
    assert_eq!(record.body, "x");
    assert_eq!(record.json, None);
}

#[test]
fn a_wrong_method_gets_405_and_is_recorded() {
    let standins = Standins::start();

    let reply = try_send("GET", &standins.url(SLACK_SIGNUPS_PATH), &[], "").unwrap();

    assert_eq!(reply.status, 405);
    assert_eq!(standins.received("slack")[0].method, "GET");
}

#[test]
fn control_requests_are_not_recorded() {
    let standins = Standins::start();

    standins.received_all();
    standins.script("segment", []);
    standins.down("keen", 503);
    standins.up("keen");
    standins.expire_salesforce_tokens();

    assert!(standins.received_all().is_empty());
}

#[test]
fn control_refuses_unknown_services_and_impossible_answers() {
    let standins = Standins::start();
    let url = standins.url("/_control/script");
    let cases = [
        (
            "unknown service",
            json!({"service": "mailchimp", "answers": []}),
        ),
        (
            "status out of range",
            json!({"service": "keen", "answers": [{"status": 42}]}),
        ),
        (
            "reset with a status",
            json!({"service": "keen", "answers": [{"reset": true, "status": 500}]}),
        ),
        (
            "unknown field",
            json!({"service": "keen", "answers": [{"code": 500}]}),
        ),
    ];

    for (name, body) in cases {
        let reply = try_send("POST", &url, &[JSON], &body.to_string()).unwrap();
        assert_eq!(reply.status, 400, "{name}: {}", reply.summary());
        assert!(reply.json()["error"].is_string(), "{name}");
    }
    let unknown = try_send("POST", &standins.url("/_control/nothing"), &[], "").unwrap();
    assert_eq!(unknown.status, 404);
}

// ---------------------------------------------------------------------------
// Scripts, outages, resets
// ---------------------------------------------------------------------------

#[test]
fn scripted_answers_come_in_order_then_normal_behaviour_resumes() {
    let standins = Standins::start();
    let auth = segment_auth();
    standins.script(
        "segment",
        [
            ScriptedAnswer::status(429)
                .with_header("retry-after", "1")
                .with_body("slow down"),
            ScriptedAnswer::status(503),
        ],
    );

    let replies: Vec<Reply> = (0..3)
        .map(|_| {
            post_json(
                &standins,
                SEGMENT_TRACK_PATH,
                &[("authorization", &auth)],
                &track_event(),
            )
        })
        .collect();

    assert_eq!(replies[0].status, 429);
    assert_eq!(replies[0].header("retry-after"), Some("1"));
    assert_eq!(replies[0].text(), "slow down");
    assert_eq!(replies[1].status, 503);
    assert_eq!(replies[2].status, 200);
    let records = standins.received("segment");
    let statuses: Vec<u16> = records.iter().map(|record| record.status).collect();
    let sources: Vec<&str> = records
        .iter()
        .map(|record| record.answered_by.as_str())
        .collect();
    assert_eq!(statuses, [429, 503, 200]);
    assert_eq!(sources, ["script", "script", "service"]);
    assert!(
        records.iter().all(|record| record.valid),
        "scripted requests are still judged"
    );
}

#[test]
fn a_delayed_answer_holds_back_nobody_else() {
    let standins = Standins::start();
    standins.script("zapier", [ScriptedAnswer::late(1_500)]);
    let slow_url = standins.url(ZAPIER_HOOK_PATH);

    let started = Instant::now();
    let slow = thread::spawn(move || try_send("POST", &slow_url, &[JSON], "{}").unwrap());
    thread::sleep(Duration::from_millis(100));
    let quick = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "hi"}));
    let quick_elapsed = started.elapsed();
    let slow = slow.join().unwrap();

    assert_eq!(quick.status, 200);
    assert!(
        quick_elapsed < Duration::from_millis(1_000),
        "{quick_elapsed:?}"
    );
    assert_eq!(slow.status, 200, "the normal answer, late");
    assert_eq!(slow.json()["status"], "success");
    assert!(started.elapsed() >= Duration::from_millis(1_500));
}

#[test]
fn a_scripted_reset_closes_the_connection_without_an_answer() {
    let standins = Standins::start();
    standins.script("keen", [ScriptedAnswer::reset()]);
    let url = standins.url(&format!("{KEEN_EVENTS_PATH}/signups"));
    let headers = [JSON, ("authorization", KEEN_WRITE_KEY)];

    let reset = try_send("POST", &url, &headers, "{}");
    let after = try_send("POST", &url, &headers, "{}").unwrap();

    assert!(
        reset.is_err(),
        "answered: {:?}",
        reset.map(|reply| reply.summary())
    );
    assert_eq!(after.status, 201);
    let records = standins.received("keen");
    assert_eq!(records[0].status, 0);
    assert_eq!(records[0].answered_by, "script");
}

#[test]
fn salesforce_endpoints_can_be_scripted_separately() {
    let standins = Standins::start();
    standins.script("salesforce_lead", [ScriptedAnswer::status(500)]);

    let token = token(&standins);
    let lead_reply = create_lead(&standins, &token, &lead("a@example.org"));
    standins.script("salesforce", [ScriptedAnswer::status(503)]);
    let token_reply = post(
        &standins,
        SALESFORCE_TOKEN_PATH,
        &[FORM],
        &client_credentials(),
    );

    assert_eq!(lead_reply.status, 500);
    assert_eq!(token_reply.status, 503);
    let retried = create_lead(&standins, &token, &lead("a@example.org"));
    assert_eq!(
        retried.status,
        201,
        "a scripted failure creates no lead: {}",
        retried.summary()
    );
}

#[test]
fn a_service_that_is_down_answers_its_status_until_it_is_up() {
    let standins = Standins::start();
    let path = format!("{KEEN_EVENTS_PATH}/signups");
    let send = || {
        post_json(
            &standins,
            &path,
            &[("authorization", KEEN_WRITE_KEY)],
            &json!({"a": 1}),
        )
    };

    standins.down("keen", 503);
    let while_down = [send(), send()];
    standins.up("keen");
    let after = send();

    assert!(while_down.iter().all(|reply| reply.status == 503));
    assert_eq!(after.status, 201);
    let sources: Vec<String> = standins
        .received("keen")
        .into_iter()
        .map(|record| record.answered_by)
        .collect();
    assert_eq!(sources, ["down", "down", "service"]);
}

#[test]
fn clear_forgets_records_scripts_and_outages() {
    let standins = Standins::start();
    post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "hi"}));
    standins.script("slack", [ScriptedAnswer::status(500)]);
    standins.down("slack_alert", 503);

    standins.clear();
    let signups = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "hi"}));
    let alerts = post_json(&standins, SLACK_ALERTS_PATH, &[], &json!({"text": "hi"}));

    assert_eq!(signups.status, 200);
    assert_eq!(alerts.status, 200);
    assert_eq!(standins.received_all().len(), 2);
}

// ---------------------------------------------------------------------------
// The client and the binary
// ---------------------------------------------------------------------------

#[test]
fn wait_for_returns_once_enough_requests_arrived() {
    let standins = Standins::start();
    let url = standins.url(SLACK_SIGNUPS_PATH);
    let sender = thread::spawn(move || {
        for text in ["1", "2"] {
            thread::sleep(Duration::from_millis(150));
            try_send("POST", &url, &[JSON], &json!({"text": text}).to_string()).unwrap();
        }
    });

    let received = standins.wait_for("slack", 2, Duration::from_secs(5));

    assert_eq!(received.len(), 2);
    sender.join().unwrap();
}

#[test]
#[should_panic(expected = "slack received 0 of 1 requests")]
fn wait_for_panics_with_everything_received_after_the_timeout() {
    let standins = Standins::start();
    post_json(
        &standins,
        SLACK_ALERTS_PATH,
        &[],
        &json!({"text": "elsewhere"}),
    );

    standins.wait_for("slack", 1, Duration::from_millis(200));
}

#[test]
fn the_binary_announces_its_port_on_one_line_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_standins"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();

    let base = line
        .trim_end()
        .strip_prefix("standins listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let standins = Standins::connect(&base);
    let reply = post_json(&standins, SLACK_SIGNUPS_PATH, &[], &json!({"text": "hi"}));
    let received = standins.received("slack");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();

    assert!(
        base.starts_with("http://127.0.0.1:") && standins.port() > 0,
        "{base}"
    );
    assert_eq!(reply.status, 200);
    assert_eq!(received.len(), 1);
    assert_eq!(rest, "", "nothing after the ready line on stdout");
}
