//! A real login through Envoy: the built filter verifies the provider's
//! id_token, adds the configured claims and re-signs it, and a standard
//! OpenID client accepts the result.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rulegate_tests::*;
use serde_json::{json, Value};

const PLAN: &str = "https://rulegate.dev/claims/plan";
const CONTACT: &str = "https://rulegate.dev/claims/contact_email";

/// Logs a new user in through Envoy and exchanges the code.
fn login(stack: &Stack, client: Client, email: &str) -> (Authorization, Value) {
    let authorization = Browser::new(stack).authorize(client, email, DEMO_PASSWORD);
    let reply = exchange_code(stack, &authorization);
    assert_eq!(
        reply.status,
        200,
        "token exchange failed: {}",
        reply.summary()
    );
    (authorization, reply.json())
}

/// Verifies `token` against the JWKS that discovery, fetched through Envoy,
/// points at.
fn verify_with_published_keys(stack: &Stack, token: &str, client: Client) -> Value {
    stack.verify_published(token, Some(client))
}

#[test]
fn login_returns_an_id_token_with_custom_and_original_claims() {
    let stack = Stack::start();
    let email = new_email("first.login");
    let (authorization, tokens) = login(&stack, Client::Spa, &email);

    let id_token = tokens["id_token"].as_str().unwrap();
    let (header, claims) = decode_jwt(id_token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], "rulegate-demo-1");
    assert_eq!(claims[PLAN], "free");
    assert_eq!(claims[CONTACT], email.as_str());
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(claims["email_verified"], true);
    assert!(claims["name"].as_str().unwrap().starts_with("First Login"));
    assert_eq!(claims["aud"], Client::Spa.id());
    assert_eq!(claims["nonce"], authorization.nonce.as_str());
    assert_eq!(claims["iss"], stack.base.as_str());

    let verified = verify_with_published_keys(&stack, id_token, Client::Spa);
    assert_eq!(verified[PLAN], "free");
    for field in [
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "scope",
    ] {
        assert!(tokens.get(field).is_some(), "{field} missing from {tokens}");
    }
    assert_eq!(stack.counter("token_response.rewritten"), 1);
}

#[test]
fn standard_openid_client_accepts_the_rewritten_tokens_on_login_and_refresh() {
    let stack = Stack::start();
    let email = new_email("library.user");
    let authorization = Browser::new(&stack).authorize(Client::Spa, &email, DEMO_PASSWORD);

    let issuer = stack.base.as_str();
    let answer = openid_client(&[
        "code",
        "--issuer",
        issuer,
        "--client-id",
        Client::Spa.id(),
        "--callback-url",
        &authorization.callback_url,
        "--code-verifier",
        &authorization.verifier,
        "--state",
        &authorization.state,
        "--nonce",
        &authorization.nonce,
    ])
    .unwrap_or_else(|err| panic!("openid-client refused the code exchange: {err}"));
    assert_eq!(answer["claims"][PLAN], "free");
    assert_eq!(answer["claims"][CONTACT], email.as_str());
    assert_eq!(
        decode_jwt(answer["id_token"].as_str().unwrap()).0["kid"],
        "rulegate-demo-1"
    );

    let refresh_token = answer["refresh_token"].as_str().unwrap();
    let refreshed = openid_client(&[
        "refresh",
        "--issuer",
        issuer,
        "--client-id",
        Client::Spa.id(),
        "--refresh-token",
        refresh_token,
    ])
    .unwrap_or_else(|err| panic!("openid-client refused the refresh: {err}"));
    assert_eq!(refreshed["claims"][PLAN], "free");
    assert_eq!(refreshed["claims"]["sub"], answer["claims"]["sub"]);
    assert_eq!(stack.counter("token_response.rewritten"), 2);
}

#[test]
fn refresh_token_exchange_returns_an_id_token_with_the_custom_claims() {
    let stack = Stack::start();
    let email = new_email("refresher");
    let (_, tokens) = login(&stack, Client::Spa, &email);
    let (_, first) = decode_jwt(tokens["id_token"].as_str().unwrap());

    let reply = refresh(
        &stack,
        Client::Spa,
        tokens["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let refreshed = reply.json();
    let id_token = refreshed["id_token"].as_str().unwrap();
    let claims = verify_with_published_keys(&stack, id_token, Client::Spa);
    assert_eq!(claims["sub"], first["sub"]);
    assert_eq!(claims[PLAN], "free");
    assert_eq!(claims[CONTACT], email.as_str());
    assert_ne!(
        refreshed["refresh_token"], tokens["refresh_token"],
        "spa refresh tokens rotate"
    );
}

#[test]
fn confidential_client_is_identified_by_basic_auth_and_gets_a_rewritten_token() {
    let stack = Stack::start();
    let email = new_email("backend.user");
    let (_, tokens) = login(&stack, Client::Backend, &email);
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = verify_with_published_keys(&stack, id_token, Client::Backend);
    assert_eq!(claims["aud"], Client::Backend.id());
    assert_eq!(claims[PLAN], "free");
}

#[test]
fn route_other_than_the_token_endpoint_passes_through_untouched() {
    let stack = Stack::start();
    let direct = stack.get(&format!("{}/jwks", stack.provider_base));
    let through_envoy = stack.get(&format!("{}/jwks", stack.base));
    assert_eq!(through_envoy.status, 200);
    assert_eq!(through_envoy.body, direct.body);
    assert_eq!(
        through_envoy.header("content-type"),
        direct.header("content-type")
    );

    let userinfo = stack.get(&format!("{}/me", stack.base));
    let userinfo_direct = stack.get(&format!("{}/me", stack.provider_base));
    assert_eq!(userinfo.status, userinfo_direct.status);
    assert_eq!(userinfo.body, userinfo_direct.body);
    assert_eq!(stack.counter("token_response.passed_through"), 0);
    assert_eq!(stack.counter("jwks.served"), 0);
}

#[test]
fn provider_error_reaches_the_client_unchanged() {
    let stack = Stack::start();
    let (authorization, _) = login(&stack, Client::Spa, &new_email("reuser"));

    // The code is spent: the provider answers invalid_grant.
    let through_envoy = exchange_code(&stack, &authorization);
    assert_eq!(through_envoy.status, 400, "{}", through_envoy.summary());
    assert_eq!(through_envoy.json()["error"], "invalid_grant");

    let redirect_uri = format!("{}/callback", stack.base);
    let direct = stack.token_request_to(
        &stack.provider_base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &authorization.code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &authorization.verifier),
            ("client_id", Client::Spa.id()),
        ],
        None,
    );
    assert_eq!(direct.status, through_envoy.status);
    assert_eq!(direct.body, through_envoy.body);
    assert_eq!(
        direct.header("content-type"),
        through_envoy.header("content-type")
    );
    assert_eq!(stack.counter("token_response.passed_through"), 1);
}

#[test]
fn token_that_gains_no_claim_is_returned_as_the_provider_signed_it() {
    let mut config = shipped_plugin_config();
    config["rules"] = json!([
        {"name": "nickname", "type": "set_claim", "claim": "nickname", "from_claim": "nickname"}
    ]);
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let (_, tokens) = login(&stack, Client::Spa, &new_email("plain"));
    let id_token = tokens["id_token"].as_str().unwrap();
    let (header, claims) = decode_jwt(id_token);
    assert_eq!(
        header["alg"], "RS256",
        "the provider's own signature is kept"
    );
    assert_ne!(header["kid"], "rulegate-demo-1");
    assert!(claims.get("https://rulegate.dev/claims/nickname").is_none());
    verify_with_published_keys(&stack, id_token, Client::Spa);
    assert_eq!(stack.counter("token_response.unchanged"), 1);
    assert_eq!(stack.counter("token_response.rewritten"), 0);
}

#[test]
fn token_outside_the_algorithm_allowlist_is_refused_with_an_oauth_error() {
    let mut config = shipped_plugin_config();
    config["allowed_algorithms"] = json!(["ES256"]);
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let authorization =
        Browser::new(&stack).authorize(Client::Spa, &new_email("rs"), DEMO_PASSWORD);
    let reply = exchange_code(&stack, &authorization);
    assert_eq!(reply.status, 502, "{}", reply.summary());
    let body = reply.json();
    assert_eq!(body["error"], "server_error");
    assert!(body.get("id_token").is_none() && body.get("access_token").is_none());
    assert_eq!(stack.counter("token_response.rejected"), 1);
    assert!(
        stack
            .envoy_log()
            .contains("algorithm \\\"RS256\\\" is not in allowed_algorithms")
            || stack
                .envoy_log()
                .contains("algorithm \"RS256\" is not in allowed_algorithms")
    );
}

#[test]
fn pass_policy_forwards_an_unverifiable_token_untouched() {
    let mut config = shipped_plugin_config();
    config["allowed_algorithms"] = json!(["ES256"]);
    config["on_invalid_token"] = json!("pass");
    let stack = Stack::start_with(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let (_, tokens) = login(&stack, Client::Spa, &new_email("passer"));
    let (header, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert!(
        claims.get(PLAN).is_none(),
        "no rule ran on an unverified token"
    );
    assert_eq!(stack.counter("token.invalid"), 1);
}

#[test]
fn provider_key_rotation_is_picked_up_on_the_unknown_kid() {
    let dir = std::env::temp_dir().join(random_token("keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = shipped_plugin_config();
    config["jwks_refresh_interval_s"] = json!(0);
    let mut stack = Stack::start_with(Options {
        plugin_config: Some(config),
        provider_keys_file: Some(dir.join("first.json")),
        ..Options::default()
    });
    login(&stack, Client::Spa, &new_email("before.rotation"));
    assert_eq!(stack.counter("jwks.loaded"), 1);

    stack.restart_provider(Some(dir.join("second.json")));
    let (_, tokens) = login(&stack, Client::Spa, &new_email("after.rotation"));
    let (_, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims[PLAN], "free");
    assert_eq!(stack.counter("jwks.loaded"), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_configuration_is_refused_at_load_with_the_field_named() {
    let mut config = shipped_plugin_config();
    config["rules"][0]["claim"] = json!("sub");
    let log = Stack::expect_refused(Options {
        plugin_config: Some(config),
        ..Options::default()
    });
    let line = log
        .lines()
        .find(|line| line.contains("rulegate refused its configuration"))
        .unwrap_or_else(|| panic!("no refusal line in envoy's log:\n{log}"));
    assert!(line.contains("rules[0].claim"), "{line}");
    assert!(line.contains("reserved"), "{line}");
}

#[test]
fn missing_signing_key_is_refused_at_load_naming_the_variable() {
    let log = Stack::expect_refused(Options {
        without_signing_key: true,
        ..Options::default()
    });
    let line = log
        .lines()
        .find(|line| line.contains("rulegate refused its configuration"))
        .unwrap_or_else(|| panic!("no refusal line in envoy's log:\n{log}"));
    assert!(line.contains("RULEGATE_SIGNING_KEY"), "{line}");
    assert!(!line.contains("BEGIN"), "no key material in logs: {line}");
}

/// The code exchange of `authorization`, posted to `path` with `headers`.
fn exchange_at(
    stack: &Stack,
    authorization: &Authorization,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let redirect_uri = format!("{}/callback", stack.base);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", authorization.code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", authorization.verifier.as_str()),
        ("client_id", Client::Spa.id()),
    ];
    stack.post_form(&format!("{}{path}", stack.base), &form, None, headers)
}

#[test]
fn token_endpoint_spelled_another_way_still_goes_through_the_filter() {
    let stack = Stack::start();
    for path in ["/Token/", "/TOKEN", "//token", "/x/../token"] {
        let authorization =
            Browser::new(&stack).authorize(Client::Spa, &new_email("spelling"), DEMO_PASSWORD);
        let reply = exchange_at(&stack, &authorization, path, &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.summary());
        let (header, claims) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
        assert_eq!(
            header["kid"], "rulegate-demo-1",
            "{path} skipped the filter"
        );
        assert_eq!(claims[PLAN], "free", "{path}");
    }
}

#[test]
fn client_asking_for_compression_still_gets_a_verified_rewritten_token() {
    let stack = Stack::start();
    let authorization =
        Browser::new(&stack).authorize(Client::Spa, &new_email("gzip"), DEMO_PASSWORD);
    let reply = exchange_at(
        &stack,
        &authorization,
        "/token",
        &[("accept-encoding", "gzip, br")],
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(reply.header("content-encoding"), None);
    let (header, _) = decode_jwt(reply.json()["id_token"].as_str().unwrap());
    assert_eq!(header["kid"], "rulegate-demo-1");
}

#[test]
fn merged_jwks_can_be_fetched_by_browser_apps() {
    let stack = Stack::start();
    let jwks = stack.get(&format!("{}/.well-known/rulegate/jwks.json", stack.base));
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("access-control-allow-origin"), Some("*"));
    let keys = jwks.json()["keys"].as_array().unwrap().clone();
    assert!(keys.iter().any(|k| k["kid"] == "rulegate-demo-1"));
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "no private members"
    );
}
