//! The bad-input catalogue: hostile or broken token responses, tokens and
//! key sets, fed to the built filter in real Envoy by a fake identity
//! provider (a stand-in that answers what each case scripts). Every case
//! gets its documented outcome, is counted, and none traps the VM.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use rulegate_tests::standins::ScriptedAnswer;
use rulegate_tests::*;
use serde_json::{json, Map, Value};

const CLIENT: &str = "rulegate-spa";

/// What the client must get.
#[derive(Debug)]
enum Expect {
    /// The provider's response, byte for byte.
    Untouched,
    /// Refused: 502 server_error, no token.
    Refused,
    /// Accepted and rewritten with the configured claim.
    Rewritten,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Idp {
    key: ES256KeyPair,
    issuer: String,
}

impl Idp {
    fn jwks(&self) -> String {
        let jwk: Value = serde_json::from_str(&self.key.public_key().to_jwk()).unwrap();
        json!({ "keys": [jwk] }).to_string()
    }

    fn token(&self, changes: Value) -> String {
        let mut claims = json!({
            "iss": self.issuer, "sub": "user-fake-1", "aud": CLIENT,
            "iat": now(), "exp": now() + 300, "email": "fake@example.com",
            "email_verified": true, "name": "Fake User"
        });
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        let claims: JWTClaims<Map<String, Value>> = serde_json::from_value(claims).unwrap();
        self.key.sign(claims).unwrap()
    }
}

fn token_response(id_token: &str) -> String {
    json!({"access_token": "opaque-at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})
        .to_string()
}

fn json_answer(body: &str) -> ScriptedAnswer {
    ScriptedAnswer::status(200)
        .with_header("content-type", "application/json")
        .with_body(body)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn fake_stack() -> Stack {
    let mut config = shipped_plugin_config();
    config["provider"] =
        json!({"cluster": "fake_idp", "jwks_path": "/fake-idp/jwks", "timeout_ms": 500});
    config["rules"] =
        json!([{"name": "plan", "type": "set_claim", "claim": "plan", "value": "free"}]);
    config["alerts"] = Value::Null;
    config.as_object_mut().unwrap().remove("alerts");
    config["access_tokens"] = json!("opaque");
    config["jwks_refresh_interval_s"] = json!(0);
    Stack::start_with(Options {
        plugin_config: Some(config),
        fake_provider: true,
        workers: Some(1),
        ..Options::default()
    })
}

fn exchange(stack: &Stack) -> Reply {
    stack.token_request(
        &[
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("client_id", CLIENT),
        ],
        None,
    )
}

#[test]
fn the_bad_input_catalogue() {
    let stack = fake_stack();
    let idp = Idp {
        key: ES256KeyPair::generate().with_key_id("fake-1"),
        issuer: stack.base.clone(),
    };
    let other = ES256KeyPair::generate().with_key_id("rotated-9");
    let public_pem = idp.key.public_key().to_pem().unwrap();
    let hmac = HS256Key::from_bytes(public_pem.as_bytes()).with_key_id("fake-1");
    let hmac_token = hmac
        .authenticate(
            serde_json::from_value::<JWTClaims<Map<String, Value>>>(json!({
                "iss": idp.issuer, "sub": "u", "aud": CLIENT, "iat": now(), "exp": now() + 300
            }))
            .unwrap(),
        )
        .unwrap();
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "fake-1"})),
        b64(&json!({"iss": idp.issuer, "sub": "u", "aud": CLIENT, "exp": now() + 300}))
    );
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let big = json!({"id_token": idp.token(json!({})), "padding": "x".repeat(100_000)}).to_string();
    let other_key_token = {
        let claims =
            json!({"iss": idp.issuer, "sub": "u", "aud": CLIENT, "iat": now(), "exp": now() + 300});
        other
            .sign(serde_json::from_value::<JWTClaims<Map<String, Value>>>(claims).unwrap())
            .unwrap()
    };

    // (name, token endpoint answer, JWKS answers needed, expected outcome)
    let cases: Vec<(&str, ScriptedAnswer, Vec<ScriptedAnswer>, Expect)> = vec![
        (
            "a good token (the fake provider works)",
            json_answer(&token_response(&idp.token(json!({})))),
            vec![json_answer(&idp.jwks())],
            Expect::Rewritten,
        ),
        (
            "a chunked response (no content-length)",
            json_answer(&token_response(&idp.token(json!({}))))
                .with_header("transfer-encoding", "chunked"),
            vec![],
            Expect::Rewritten,
        ),
        (
            "a response that is not JSON",
            ScriptedAnswer::status(200)
                .with_header("content-type", "text/html")
                .with_body("<html>hi</html>"),
            vec![],
            Expect::Untouched,
        ),
        (
            "JSON that says it is JSON but is not",
            json_answer("{not json"),
            vec![],
            Expect::Untouched,
        ),
        (
            "JSON without id_token",
            json_answer(r#"{"access_token":"x","token_type":"Bearer"}"#),
            vec![],
            Expect::Untouched,
        ),
        (
            "status 200 with an error body",
            json_answer(r#"{"error":"invalid_grant"}"#),
            vec![],
            Expect::Untouched,
        ),
        (
            "an OAuth error status",
            ScriptedAnswer::status(400)
                .with_header("content-type", "application/json")
                .with_body(r#"{"error":"invalid_grant"}"#),
            vec![],
            Expect::Untouched,
        ),
        (
            "deeply nested JSON",
            json_answer(&nested),
            vec![],
            Expect::Untouched,
        ),
        (
            "an id_token that is not a JWT",
            json_answer(&token_response("not-a-jwt")),
            vec![],
            Expect::Refused,
        ),
        (
            "a response larger than max_response_bytes",
            json_answer(&big),
            vec![],
            Expect::Refused,
        ),
        (
            "a compressed response",
            json_answer(&token_response(&idp.token(json!({}))))
                .with_header("content-encoding", "gzip"),
            vec![],
            Expect::Refused,
        ),
        (
            "alg none",
            json_answer(&token_response(&none_token)),
            vec![],
            Expect::Refused,
        ),
        (
            "HMAC keyed with the provider's public key",
            json_answer(&token_response(&hmac_token)),
            vec![],
            Expect::Refused,
        ),
        (
            "an expired token",
            json_answer(&token_response(&idp.token(json!({"exp": now() - 3600})))),
            vec![],
            Expect::Refused,
        ),
        (
            "the wrong audience",
            json_answer(&token_response(&idp.token(json!({"aud": "someone-else"})))),
            vec![],
            Expect::Refused,
        ),
        (
            "a very long claim value",
            json_answer(&token_response(
                &idp.token(json!({"name": "n".repeat(20_000)})),
            )),
            vec![],
            Expect::Refused,
        ),
        (
            "an unknown kid while the JWKS endpoint is down",
            json_answer(&token_response(&other_key_token)),
            vec![ScriptedAnswer::status(503)],
            Expect::Refused,
        ),
        (
            "an unknown kid while the JWKS endpoint returns garbage",
            json_answer(&token_response(&other_key_token)),
            vec![json_answer("garbage")],
            Expect::Refused,
        ),
        (
            "an unknown kid while the JWKS endpoint is slow",
            json_answer(&token_response(&other_key_token)),
            vec![json_answer(&idp.jwks()).with_delay_ms(1_500)],
            Expect::Refused,
        ),
        (
            "a good token after all that",
            json_answer(&token_response(&idp.token(json!({})))),
            vec![],
            Expect::Rewritten,
        ),
    ];

    for (name, answer, jwks, expected) in cases {
        let script_body = answer.body.clone().unwrap_or_default();
        stack.services.script("idp_token", [answer]);
        if !jwks.is_empty() {
            stack.services.script("idp_jwks", jwks);
        }
        let reply = exchange(&stack);
        match expected {
            Expect::Untouched => {
                assert_eq!(
                    reply.text(),
                    script_body,
                    "case {name:?}: the body must pass untouched"
                );
            }
            Expect::Refused => {
                assert_eq!(reply.status, 502, "case {name:?}: {}", reply.summary());
                assert_eq!(reply.json()["error"], "server_error", "case {name:?}");
                assert!(
                    !reply.text().contains("id_token"),
                    "case {name:?}: no token leaks"
                );
            }
            Expect::Rewritten => {
                assert_eq!(reply.status, 200, "case {name:?}: {}", reply.summary());
                let (header, claims) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
                assert_eq!(header["kid"], "rulegate-demo-1", "case {name:?}");
                assert_eq!(
                    claims["https://rulegate.dev/claims/plan"], "free",
                    "case {name:?}"
                );
            }
        }
    }

    assert!(
        stack.counter("token.invalid") >= 10,
        "each refusal is counted"
    );
    assert!(
        stack.counter("token_response.passed_through") >= 6,
        "each pass-through is counted"
    );
    assert_eq!(
        stack.stat("wasm.rulegate.vm_reload_success"),
        0,
        "no case trapped the VM"
    );
    assert!(!stack.envoy_log().contains("panicked"));
}

#[test]
fn hostile_token_requests_reach_the_provider_and_its_answer_is_handled() {
    let stack = fake_stack();
    let idp = Idp {
        key: ES256KeyPair::generate().with_key_id("fake-1"),
        issuer: stack.base.clone(),
    };
    stack
        .services
        .script("idp_jwks", [json_answer(&idp.jwks())]);
    let bodies: [(&str, &[u8]); 4] = [
        (
            "percent-encoded",
            b"grant_type=authorization%5Fcode&client%5Fid=rulegate%2Dspa&code=c",
        ),
        (
            "repeated grant_type",
            b"grant_type=authorization_code&grant_type=password&client_id=rulegate-spa",
        ),
        (
            "not UTF-8",
            b"grant_type=\xff\xfe&client_id=rulegate-spa&code=\xc3\x28",
        ),
        ("empty", b""),
    ];
    for (name, body) in bodies {
        stack.services.script(
            "idp_token",
            [json_answer(&token_response(&idp.token(json!({}))))],
        );
        let reply = ureq_post(&stack, body, &[]);
        // The client id decides the audience: without a readable one the
        // token cannot be checked, and is refused rather than trusted.
        assert!(
            reply == 200 || reply == 502,
            "case {name:?}: status {reply}"
        );
    }
    assert_eq!(stack.stat("wasm.rulegate.vm_reload_success"), 0);
    let received = stack.services.received("idp_token");
    assert_eq!(
        received.len(),
        4,
        "every request reached the provider unchanged"
    );
    assert_eq!(
        received[1].body,
        "grant_type=authorization_code&grant_type=password&client_id=rulegate-spa"
    );
}

/// POSTs raw bytes to the token endpoint; returns the status.
fn ureq_post(stack: &Stack, body: &[u8], headers: &[(&str, &str)]) -> u16 {
    let mut request = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&format!("{}/token", stack.base))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send(body).map(|r| r.status().as_u16()).unwrap_or(0)
}

#[test]
fn header_values_that_are_not_utf8_are_read_without_trust_or_harm() {
    use std::io::{Read, Write};

    let stack = fake_stack();
    let idp = Idp {
        key: ES256KeyPair::generate().with_key_id("fake-1"),
        issuer: stack.base.clone(),
    };
    stack
        .services
        .script("idp_jwks", [json_answer(&idp.jwks())]);
    stack.services.script(
        "idp_token",
        [json_answer(&token_response(&idp.token(json!({}))))],
    );

    // HTTP clients refuse to send such headers, so write the request by hand.
    let body = format!("grant_type=authorization_code&code=c&client_id={CLIENT}");
    let mut request = Vec::new();
    request.extend_from_slice(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    request.extend_from_slice(b"User-Agent: agent-\xff\xfe\r\n");
    request.extend_from_slice(b"X-Forwarded-For: \xc3\x28, 203.0.113.9\r\n");
    request.extend_from_slice(b"Authorization: Basic \xff\xff\r\n");
    request.extend_from_slice(
        b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n",
    );
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let address = stack.base.trim_start_matches("http://").to_string();
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    socket.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);

    // The client id comes from the body (the Authorization header is
    // unreadable), the token verifies, and the rules run.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let tokens: Value = serde_json::from_str(body).unwrap();
    let (_, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["https://rulegate.dev/claims/plan"], "free");
    assert_eq!(stack.stat("wasm.rulegate.vm_reload_success"), 0);
    assert!(!stack.envoy_log().contains("panicked"));
}
