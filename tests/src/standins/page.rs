//! The demo page, and the read-only view of what the stand-ins received
//! that it shows, served under `/demo/` on the stand-ins' port.
//!
//! The page is what a newcomer looks at: it logs in through Envoy and
//! shows the tokens and what each service heard. Envoy routes `/` and
//! `/demo/` here (see `envoy.yaml`), so the page and the token endpoint
//! share one origin and the browser needs no CORS. The files are compiled
//! into the binary, so the demo and the containers need nothing beside it.
//!
//! The view is public through Envoy, so it shows less than the control
//! API: no headers (they carry the services' credentials), no path where
//! the path is the credential (Slack and Zapier webhook URLs), no query
//! strings, and no body of a Salesforce token request (the client secret).
//! It changes nothing; the control API stays reachable only on the
//! stand-ins' own port.

use serde_json::{json, Value};

use super::{Answer, Inbound, Received, Shared};

/// Everything under this prefix is the page's.
pub(super) const PREFIX: &str = "/demo/";

const INDEX_HTML: &str = include_str!("../../../demo/index.html");
const APP_JS: &str = include_str!("../../../demo/app.js");
const STYLE_CSS: &str = include_str!("../../../demo/style.css");

/// The page may load nothing from anywhere else, and be framed by no one.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Endpoints whose path is a secret (the webhook URL is the credential),
/// or unknown, and so never shown.
const HIDDEN_PATHS: [&str; 5] = ["slack", "slack_alert", "zapier", "unknown", "idp_token"];

/// Endpoints whose body is never shown.
const HIDDEN_BODIES: [&str; 4] = ["salesforce_token", "unknown", "idp_token", "idp_jwks"];

/// Answers a request under [`PREFIX`].
pub(super) fn answer(shared: &Shared, inbound: &Inbound) -> Answer {
    if inbound.method != "GET" && inbound.method != "HEAD" {
        return Answer::text(405, "method not allowed").with_header("allow", "GET, HEAD");
    }
    let file = |content_type: &str, body: &str| {
        Answer::text(200, body)
            .with_content_type(content_type)
            .with_header("cache-control", "no-store")
            .with_header("x-content-type-options", "nosniff")
    };
    match inbound.path.strip_prefix(PREFIX).unwrap_or_default() {
        "" | "index.html" => file("text/html; charset=utf-8", INDEX_HTML)
            .with_header("content-security-policy", CONTENT_SECURITY_POLICY)
            // The page's address carries the authorization code on return.
            .with_header("referrer-policy", "no-referrer"),
        "app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "style.css" => file("text/css; charset=utf-8", STYLE_CSS),
        "received" => {
            let records: Vec<Value> = shared.lock().records.iter().map(public_view).collect();
            Answer::json(200, &json!({ "received": records }))
                .with_header("cache-control", "no-store")
        }
        _ => Answer::text(404, "not found"),
    }
}

/// What the page may show of one record.
fn public_view(record: &Received) -> Value {
    let endpoint = record.endpoint.as_str();
    let path = (!HIDDEN_PATHS.contains(&endpoint))
        .then(|| record.path.split('?').next().unwrap_or_default().to_owned());
    let body = if HIDDEN_BODIES.contains(&endpoint) {
        None
    } else {
        record.json.clone().map(|mut body| {
            // Segment also takes its write key in the body.
            if let Some(fields) = body.as_object_mut() {
                fields.remove("writeKey");
            }
            body
        })
    };
    json!({
        "service": record.service,
        "endpoint": endpoint,
        "method": record.method,
        "path": path,
        "status": record.status,
        "valid": record.valid,
        "problems": record.problems,
        "at_ms": record.at_ms,
        "body": body,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(endpoint: &str, path: &str, body: Value) -> Received {
        let mut headers = BTreeMap::new();
        headers.insert("authorization".to_owned(), "Bearer secret-key".to_owned());
        Received {
            service: endpoint.to_owned(),
            endpoint: endpoint.to_owned(),
            method: "POST".into(),
            path: path.into(),
            headers,
            body: body.to_string(),
            json: Some(body),
            status: 200,
            answered_by: "service".into(),
            valid: true,
            problems: Vec::new(),
            at_ms: 1,
        }
    }

    #[test]
    fn the_view_hides_headers_secret_paths_and_token_requests() {
        let slack = public_view(&record(
            "slack",
            "/services/T/B/secret",
            json!({"text": "New User"}),
        ));
        assert_eq!(slack["path"], Value::Null);
        assert_eq!(slack["body"]["text"], "New User");
        assert!(slack.get("headers").is_none());
        assert!(!slack.to_string().contains("secret"));

        let token = public_view(&record(
            "salesforce_token",
            "/services/oauth2/token",
            json!({"client_secret": "sf-secret"}),
        ));
        assert_eq!(token["body"], Value::Null);
        assert!(!token.to_string().contains("sf-secret"));
    }

    #[test]
    fn the_view_drops_query_strings_and_segment_write_keys() {
        let keen = public_view(&record(
            "keen",
            "/3.0/projects/p/events/signups?api_key=keen-key",
            json!({"userId": "u"}),
        ));
        assert_eq!(keen["path"], "/3.0/projects/p/events/signups");

        let segment = public_view(&record(
            "segment",
            "/v1/track",
            json!({"event": "Signed up", "writeKey": "segment-key"}),
        ));
        assert_eq!(segment["body"]["event"], "Signed up");
        assert!(!segment.to_string().contains("segment-key"));
    }
}
