//! Token verification, one test per way a token can be good or bad.
//!
//! Keys are generated per run; tokens are minted here with jwt-simple so
//! that each test changes exactly one thing about an otherwise valid token.

// Test fixtures fail loudly: a key that cannot be made is a broken test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use rules::config::{Algorithm, VerifyPolicy};
use rules::verify::{verify, ProviderKeys};
use rules::Rejection;
use serde_json::{json, Map, Value};

const ISSUER: &str = "https://login.example.com";
const CLIENT: &str = "spa";
const NOW: u64 = 1_800_000_000;

struct Provider {
    rsa: RS256KeyPair,
    ec: ES256KeyPair,
    keys: ProviderKeys,
}

fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let rsa = RS256KeyPair::generate(2048)
            .expect("rsa key")
            .with_key_id("rsa-1");
        let ec = ES256KeyPair::generate().with_key_id("ec-1");
        let jwks = jwks(&[&rsa.public_key().to_jwk(), &ec.public_key().to_jwk()]);
        let keys = ProviderKeys::from_jwks(jwks.as_bytes(), &Algorithm::ALL).expect("keys");
        Provider { rsa, ec, keys }
    })
}

fn jwks(keys: &[&str]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(k).expect("jwk"))
        .collect();
    json!({ "keys": keys }).to_string()
}

fn policy() -> VerifyPolicy {
    VerifyPolicy {
        issuer: ISSUER.into(),
        audiences: Vec::new(),
        allowed_algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        clock_skew_s: 60,
        max_token_bytes: 16 * 1024,
    }
}

/// Claims of a valid id_token at `NOW`, with `changes` applied.
fn claims(changes: Value) -> JWTClaims<Map<String, Value>> {
    let mut claims = json!({
        "iss": ISSUER, "sub": "user-1", "aud": CLIENT,
        "iat": NOW - 10, "exp": NOW + 300,
        "email": "alice@example.com", "email_verified": true, "name": "Alice"
    });
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    serde_json::from_value(claims).expect("claims")
}

fn rs256(changes: Value) -> String {
    provider().rsa.sign(claims(changes)).expect("sign")
}

fn check(token: &str) -> Result<String, Rejection> {
    verify(&provider().keys, &policy(), token, Some(CLIENT), NOW).map(|c| c.subject().to_string())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn good_rs256_token_verifies_and_keeps_every_claim() {
    let token = rs256(json!({}));
    let claims = verify(&provider().keys, &policy(), &token, Some(CLIENT), NOW).expect("valid");
    assert_eq!(claims.subject(), "user-1");
    assert_eq!(claims.get("email"), Some(&json!("alice@example.com")));
    assert_eq!(claims.get("email_verified"), Some(&json!(true)));
}

#[test]
fn good_es256_token_verifies() {
    let token = provider().ec.sign(claims(json!({}))).expect("sign");
    assert_eq!(check(&token), Ok("user-1".into()));
}

#[test]
fn audience_list_containing_the_client_verifies() {
    assert_eq!(
        check(&rs256(json!({"aud": ["other", CLIENT]}))),
        Ok("user-1".into())
    );
}

#[test]
fn expired_token_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"exp": NOW - 61}))),
        Err(Rejection::Expired)
    );
}

#[test]
fn token_expired_within_the_clock_skew_is_accepted() {
    assert_eq!(check(&rs256(json!({"exp": NOW - 30}))), Ok("user-1".into()));
}

#[test]
fn token_not_yet_valid_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"nbf": NOW + 120}))),
        Err(Rejection::NotYetValid)
    );
}

#[test]
fn token_issued_in_the_future_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"iat": NOW + 120}))),
        Err(Rejection::NotYetValid)
    );
}

#[test]
fn wrong_audience_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"aud": "another-app"}))),
        Err(Rejection::WrongAudience)
    );
}

#[test]
fn missing_audience_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"aud": null}))),
        Err(Rejection::WrongAudience)
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    let token = rs256(json!({"iss": "https://evil.example.com"}));
    assert_eq!(check(&token), Err(Rejection::WrongIssuer));
}

#[test]
fn missing_exp_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"exp": null}))),
        Err(Rejection::MissingClaim("exp"))
    );
}

#[test]
fn missing_sub_is_rejected() {
    assert_eq!(
        check(&rs256(json!({"sub": null}))),
        Err(Rejection::MissingClaim("sub"))
    );
}

#[test]
fn bad_signature_is_rejected() {
    let token = rs256(json!({}));
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("signature");
    bytes[10] ^= 1;
    let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));
    assert_eq!(check(&tampered), Err(Rejection::BadSignature));
}

#[test]
fn changed_payload_under_the_original_signature_is_rejected() {
    let token = rs256(json!({}));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&serde_json::to_value(claims(json!({"sub": "admin"}))).expect("claims"));
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(check(&tampered), Err(Rejection::BadSignature));
}

#[test]
fn token_signed_by_another_key_with_a_known_kid_is_rejected() {
    let impostor = RS256KeyPair::generate(2048)
        .expect("rsa")
        .with_key_id("rsa-1");
    let token = impostor.sign(claims(json!({}))).expect("sign");
    assert_eq!(check(&token), Err(Rejection::BadSignature));
}

#[test]
fn unknown_kid_asks_for_a_refresh() {
    let stranger = ES256KeyPair::generate().with_key_id("rotated-2");
    let token = stranger.sign(claims(json!({}))).expect("sign");
    assert_eq!(
        check(&token),
        Err(Rejection::UnknownKey(Some("rotated-2".into())))
    );
}

#[test]
fn known_kid_used_with_another_algorithm_is_rejected() {
    let ec_with_rsa_kid = ES256KeyPair::generate().with_key_id("rsa-1");
    let token = ec_with_rsa_kid.sign(claims(json!({}))).expect("sign");
    assert_eq!(check(&token), Err(Rejection::BadSignature));
}

#[test]
fn alg_none_is_rejected() {
    let header = b64(&json!({"alg": "none", "kid": "rsa-1"}));
    let payload = b64(&serde_json::to_value(claims(json!({}))).expect("claims"));
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let result = check(&token);
        assert!(
            matches!(
                result,
                Err(Rejection::AlgorithmNotAllowed(_)) | Err(Rejection::Malformed)
            ),
            "{token}: {result:?}"
        );
    }
}

#[test]
fn hmac_token_keyed_with_the_providers_public_key_is_rejected() {
    let public_pem = provider().rsa.public_key().to_pem().expect("pem");
    let forged_key = HS256Key::from_bytes(public_pem.as_bytes()).with_key_id("rsa-1");
    let token = forged_key.authenticate(claims(json!({}))).expect("hmac");
    assert_eq!(
        check(&token),
        Err(Rejection::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn algorithm_outside_the_allowlist_is_rejected_even_with_a_good_signature() {
    let ps = PS256KeyPair::generate(2048)
        .expect("rsa")
        .with_key_id("ps-1");
    let keys = ProviderKeys::from_jwks(
        jwks(&[&ps.public_key().to_jwk()]).as_bytes(),
        &Algorithm::ALL,
    )
    .expect("keys");
    let token = ps.sign(claims(json!({}))).expect("sign");
    let result = verify(&keys, &policy(), &token, Some(CLIENT), NOW);
    assert_eq!(
        result.err(),
        Some(Rejection::AlgorithmNotAllowed("PS256".into()))
    );
}

#[test]
fn malformed_tokens_are_rejected() {
    let good = rs256(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{good}.x")),
        (
            "bad base64 header",
            format!("!!!.{}.{}", parts[1], parts[2]),
        ),
        (
            "bad base64 payload",
            format!("{}.%%%.{}", parts[0], parts[2]),
        ),
        (
            "header not json",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("nope"),
                parts[1],
                parts[2]
            ),
        ),
        (
            "payload not json",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode("[1,"),
                parts[2]
            ),
        ),
        ("empty", String::new()),
    ];
    for (name, token) in cases {
        let result = check(&token);
        assert!(
            matches!(
                result,
                Err(Rejection::Malformed) | Err(Rejection::BadSignature)
            ),
            "case {name:?}: {result:?}"
        );
    }
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let token = rs256(json!({"padding": "x".repeat(20_000)}));
    assert_eq!(check(&token), Err(Rejection::TooLong));
}

#[test]
fn jwks_without_usable_keys_is_an_error() {
    let cases: [(&str, &str); 4] = [
        ("not json", "nope"),
        ("no keys array", r#"{"key": []}"#),
        (
            "only an encryption key",
            r#"{"keys": [{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
        ),
        (
            "only an hmac key",
            r#"{"keys": [{"kty":"oct","k":"c2VjcmV0"}]}"#,
        ),
    ];
    for (name, document) in cases {
        assert!(
            ProviderKeys::from_jwks(document.as_bytes(), &Algorithm::ALL).is_err(),
            "case {name:?}"
        );
    }
}

#[test]
fn jwks_key_carrying_private_members_is_refused() {
    let pair = ES256KeyPair::generate().with_key_id("leaky");
    let private: Value = serde_json::from_str(&pair.to_jwk()).expect("jwk");
    let mut public: Value = serde_json::from_str(&pair.public_key().to_jwk()).expect("jwk");
    public["d"] = private["d"].clone();
    let document = json!({"keys": [public]}).to_string();
    assert!(ProviderKeys::from_jwks(document.as_bytes(), &Algorithm::ALL).is_err());
}

/// RSA tokens have their claims checked by Rulegate, the others by
/// jwt-simple: both must judge every claim alike.
#[test]
fn claims_are_judged_alike_whatever_the_algorithm() {
    let cases = [
        ("valid", json!({}), Ok("user-1".to_string())),
        (
            "audience list",
            json!({"aud": ["other", CLIENT]}),
            Ok("user-1".into()),
        ),
        ("expired", json!({"exp": NOW - 61}), Err(Rejection::Expired)),
        (
            "expired within skew",
            json!({"exp": NOW - 30}),
            Ok("user-1".into()),
        ),
        (
            "nbf ahead",
            json!({"nbf": NOW + 120}),
            Err(Rejection::NotYetValid),
        ),
        (
            "nbf within skew",
            json!({"nbf": NOW + 30}),
            Ok("user-1".into()),
        ),
        (
            "iat ahead",
            json!({"iat": NOW + 120}),
            Err(Rejection::NotYetValid),
        ),
        (
            "wrong aud",
            json!({"aud": "another-app"}),
            Err(Rejection::WrongAudience),
        ),
        (
            "aud list without client",
            json!({"aud": ["a", "b"]}),
            Err(Rejection::WrongAudience),
        ),
        (
            "no aud",
            json!({"aud": null}),
            Err(Rejection::WrongAudience),
        ),
        (
            "wrong iss",
            json!({"iss": "https://evil.example.com"}),
            Err(Rejection::WrongIssuer),
        ),
        ("no iss", json!({"iss": null}), Err(Rejection::WrongIssuer)),
        (
            "no exp",
            json!({"exp": null}),
            Err(Rejection::MissingClaim("exp")),
        ),
        (
            "no sub",
            json!({"sub": null}),
            Err(Rejection::MissingClaim("sub")),
        ),
    ];
    for (name, changes, expected) in cases {
        let rsa = rs256(changes.clone());
        let ec = provider().ec.sign(claims(changes)).expect("sign");
        assert_eq!(check(&rsa), expected, "RS256: {name}");
        assert_eq!(check(&ec), expected, "ES256: {name}");
    }
}

/// A token whose header says it is something other than a JWT is refused
/// even with a good RSA signature.
#[test]
fn rsa_token_of_a_foreign_type_is_rejected() {
    for (typ, expected) in [
        ("JWT", Ok("user-1".to_string())),
        ("at+jwt", Ok("user-1".into())),
        ("JOSE", Err(Rejection::Malformed)),
    ] {
        let options = HeaderOptions {
            signature_type: Some(typ.into()),
            ..HeaderOptions::default()
        };
        let token = provider()
            .rsa
            .sign_with_options(claims(json!({})), &options)
            .expect("sign");
        assert_eq!(check(&token), expected, "typ {typ}");
    }
}

/// RSA keys with an exponent below 65537 (FIPS 186-5) are not trusted.
#[test]
fn rsa_key_with_a_small_exponent_is_left_out() {
    let mut jwk: Value = serde_json::from_str(&provider().rsa.public_key().to_jwk()).unwrap();
    jwk["e"] = json!("Aw");
    let document = json!({ "keys": [jwk.clone()] }).to_string();
    let err = ProviderKeys::from_jwks(document.as_bytes(), &Algorithm::ALL).unwrap_err();
    assert!(err.to_string().contains("kid \"rsa-1\" (RSA"), "{err}");
    assert!(err.to_string().contains("exponent 65537"), "{err}");

    // Beside a good key, it is left out and the reason kept for the log.
    let good: Value = serde_json::from_str(&provider().ec.public_key().to_jwk()).unwrap();
    let document = json!({ "keys": [jwk, good] }).to_string();
    let keys = ProviderKeys::from_jwks(document.as_bytes(), &Algorithm::ALL).unwrap();
    assert_eq!(keys.left_out().len(), 1, "{:?}", keys.left_out());
    assert!(!keys.has_kid("rsa-1"));
}
