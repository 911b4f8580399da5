//! Rulegate's RSA verification agrees with two independent ones on every
//! token of `rsa_cases.py`: valid signatures, and copies spoiled every way
//! a verifier must notice (changed payload, flipped bits, another key,
//! truncated, over-long, zero-prefixed, zero, one, n - 1, n, s + n, empty),
//! for RS256/384/512 and PS256/384/512 with 2048, 3072 and 4096-bit keys.
//! The tokens are signed by Python's `cryptography`
//! (OpenSSL), which also gives its own verdict; jwt-simple gives the third.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use jwt_simple::prelude::*;
use rules::config::{Algorithm, VerifyPolicy};
use rules::verify::{verify, ProviderKeys};
use serde_json::{json, Value};

const ISSUER: &str = "https://login.example.com";
const CLIENT: &str = "spa";
const NOW: u64 = 1_800_000_000;
const EXPIRES: u64 = NOW + 300;

fn cases() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("rules/tests/rsa_cases.py");
    // The project's Python, where `make python-deps` installs cryptography.
    let python = root.join(".venv/bin/python");
    let output = Command::new(&python)
        .arg(&script)
        .args([ISSUER, CLIENT, &EXPIRES.to_string()])
        .output()
        .unwrap_or_else(|err| panic!("{python:?} does not run ({err}): run `make python-deps`"));
    assert!(
        output.status.success(),
        "{script:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn policy() -> VerifyPolicy {
    VerifyPolicy {
        issuer: ISSUER.into(),
        audiences: Vec::new(),
        allowed_algorithms: Algorithm::ALL.to_vec(),
        clock_skew_s: 60,
        max_token_bytes: 16 * 1024,
    }
}

fn jwt_simple_accepts(alg: &str, jwk: &Value, token: &str) -> bool {
    let jwk = jwk.to_string();
    let options = Some(VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
        allowed_audiences: Some(HashSet::from([CLIENT.to_string()])),
        artificial_time: Some(Duration::from_secs(NOW)),
        ..VerificationOptions::default()
    });
    type Claims = JWTClaims<NoCustomClaims>;
    let result: Result<Claims, jwt_simple::Error> = match alg {
        "RS256" => RS256PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        "RS384" => RS384PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        "RS512" => RS512PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        "PS256" => PS256PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        "PS384" => PS384PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        "PS512" => PS512PublicKey::from_jwk(&jwk).and_then(|k| k.verify_token(token, options)),
        other => panic!("unexpected algorithm {other}"),
    };
    result.is_ok()
}

#[test]
fn rsa_verification_agrees_with_openssl_and_jwt_simple() {
    let cases = cases();
    let jwks = json!({ "keys": cases["jwks"] }).to_string();
    let keys = ProviderKeys::from_jwks(jwks.as_bytes(), &Algorithm::ALL).unwrap();
    let jwk_of = |kid: &str| {
        cases["jwks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|jwk| jwk["kid"] == kid)
            .unwrap()
            .clone()
    };

    let mut disagreements = Vec::new();
    let mut count = 0;
    for case in cases["cases"].as_array().unwrap() {
        count += 1;
        let name = case["name"].as_str().unwrap();
        let alg = case["alg"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let expected = case["valid"].as_bool().unwrap();

        let ours = verify(&keys, &policy(), token, Some(CLIENT), NOW).is_ok();
        let openssl = case["cryptography"].as_bool().unwrap();
        let jwt_simple = jwt_simple_accepts(alg, &jwk_of(case["kid"].as_str().unwrap()), token);
        if (ours, openssl, jwt_simple) != (expected, expected, expected) {
            disagreements.push(format!(
                "{name}: expected {expected}, Rulegate {ours}, cryptography {openssl}, \
                 jwt-simple {jwt_simple}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {count} cases:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(count >= 220, "only {count} cases ran");
}
