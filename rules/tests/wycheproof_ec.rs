//! Project Wycheproof's ES256 (ECDSA P-256, SHA-256, IEEE P1363 encoding as
//! in JWS) and Ed25519 vectors against the verifiers the filter uses for
//! those algorithms: jwt-simple's keys, built from each vector group's JWK
//! as the filter builds them from a JWKS (from the raw point for the few
//! groups that have no JWK), and the curve crates they wrap.
//! Copies and licence in `tests/fixtures/wycheproof/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use jwt_simple::prelude::*;
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/wycheproof")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    serde_json::from_str(&text).unwrap()
}

/// Runs `verify(jwk, message, signature)` over every vector of `file`;
/// panics listing every disagreement. These files hold no "acceptable"
/// vectors; one appearing would need a decision, so it fails too.
fn check_all(file: &str, verify: impl Fn(&Value, &[u8], &[u8]) -> bool, at_least: usize) {
    let vectors = fixture(file);
    let mut count = 0;
    let mut failures = Vec::new();
    for group in vectors["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            count += 1;
            let message = hex::decode(test["msg"].as_str().unwrap()).unwrap();
            let signature = hex::decode(test["sig"].as_str().unwrap()).unwrap();
            let expected = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("{file} #{}: no policy for {other} vectors", test["tcId"]),
            };
            if verify(group, &message, &signature) != expected {
                failures.push(format!(
                    "#{} ({}; flags {}): expected {}",
                    test["tcId"],
                    test["comment"],
                    test["flags"],
                    if expected { "accepted" } else { "refused" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    assert!(count >= at_least, "{file}: only {count} vectors ran");
}

#[test]
fn es256_p1363() {
    check_all(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        |group, message, signature| {
            let key = match group.get("publicKeyJwk") {
                Some(jwk) => ES256PublicKey::from_jwk(&jwk.to_string()),
                None => {
                    let point = group["publicKey"]["uncompressed"].as_str().unwrap();
                    ES256PublicKey::from_bytes(&hex::decode(point).unwrap())
                }
            }
            .expect("group key");
            let Ok(signature) = p256::ecdsa::Signature::try_from(signature) else {
                return false;
            };
            key.public_key()
                .as_ref()
                .verify(message, &signature)
                .is_ok()
        },
        262,
    );
}

#[test]
fn ed25519() {
    check_all(
        "ed25519_test.json",
        |group, message, signature| {
            let key =
                Ed25519PublicKey::from_jwk(&group["publicKeyJwk"].to_string()).expect("group key");
            let Ok(signature) = ed25519_compact::Signature::from_slice(signature) else {
                return false;
            };
            key.public_key()
                .as_ref()
                .verify(message, &signature)
                .is_ok()
        },
        151,
    );
}
