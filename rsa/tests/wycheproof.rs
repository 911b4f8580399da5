//! Project Wycheproof's RSA signature vectors (copies and licence in
//! `tests/fixtures/wycheproof/`): every "valid" signature verifies, every
//! "invalid" one is refused, and each "acceptable" one is judged as this
//! crate's documented policy says, flag by flag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use rulegate_rsa::{Hash, PublicKey};
use serde_json::Value;

/// What the crate does with signatures Wycheproof calls "acceptable":
/// whether it accepts them, by flag.
fn accepts_acceptable(flag: &str) -> bool {
    match flag {
        // A DigestInfo without the NULL parameter: RFC 8017 writes the NULL
        // and the encoding is rebuilt and compared whole, so such a
        // signature is refused, as most current implementations do.
        "MissingNull" => false,
        other => panic!("no policy for acceptable vectors flagged {other}: decide and document"),
    }
}

#[derive(Clone, Copy)]
enum Scheme {
    Pkcs1v15,
    Pss,
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/wycheproof")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    serde_json::from_str(&text).unwrap()
}

fn hash_named(name: &str) -> Hash {
    match name {
        "SHA-256" => Hash::Sha256,
        "SHA-384" => Hash::Sha384,
        "SHA-512" => Hash::Sha512,
        other => panic!("unexpected hash {other}"),
    }
}

/// Runs every vector of a file; returns how many there were, and the
/// failures as one line each.
fn run(file: &str, scheme: Scheme) -> (usize, Vec<String>) {
    let vectors = fixture(file);
    let mut count = 0;
    let mut failures = Vec::new();
    for group in vectors["testGroups"].as_array().unwrap() {
        let hash = hash_named(group["sha"].as_str().unwrap());
        if let Some(mgf_sha) = group.get("mgfSha") {
            assert_eq!(mgf_sha, &group["sha"], "{file}: MGF1 hash differs");
            assert_eq!(group["sLen"].as_u64(), Some(32), "{file}: salt length");
        }
        let modulus = hex::decode(group["publicKey"]["modulus"].as_str().unwrap()).unwrap();
        let exponent = hex::decode(group["publicKey"]["publicExponent"].as_str().unwrap()).unwrap();
        let key = PublicKey::from_be_bytes(&modulus, &exponent)
            .unwrap_or_else(|err| panic!("{file}: key refused: {err}"));

        for test in group["tests"].as_array().unwrap() {
            count += 1;
            let id = &test["tcId"];
            let message = hex::decode(test["msg"].as_str().unwrap()).unwrap();
            let signature = hex::decode(test["sig"].as_str().unwrap()).unwrap();
            let verified = match scheme {
                Scheme::Pkcs1v15 => key.verify_pkcs1v15(hash, &message, &signature),
                Scheme::Pss => key.verify_pss(hash, &message, &signature),
            };
            let flags: Vec<&str> = test["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|flag| flag.as_str().unwrap())
                .collect();
            let expected = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                "acceptable" => flags.iter().all(|flag| accepts_acceptable(flag)),
                other => panic!("{file} #{id}: unknown result {other}"),
            };
            if verified.is_ok() != expected {
                failures.push(format!(
                    "{file} #{id} ({}; flags {flags:?}): expected {}, got {verified:?}",
                    test["comment"],
                    if expected { "accepted" } else { "refused" },
                ));
            }
        }
    }
    (count, failures)
}

fn assert_all_pass(file: &str, scheme: Scheme, at_least: usize) {
    let (count, failures) = run(file, scheme);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= at_least, "{file}: only {count} vectors ran");
}

#[test]
fn pkcs1v15_sha256_2048() {
    assert_all_pass("rsa_signature_2048_sha256_test.json", Scheme::Pkcs1v15, 259);
}

#[test]
fn pkcs1v15_sha384_2048() {
    assert_all_pass("rsa_signature_2048_sha384_test.json", Scheme::Pkcs1v15, 258);
}

#[test]
fn pkcs1v15_sha512_2048() {
    assert_all_pass("rsa_signature_2048_sha512_test.json", Scheme::Pkcs1v15, 259);
}

#[test]
fn pkcs1v15_sha256_3072() {
    assert_all_pass("rsa_signature_3072_sha256_test.json", Scheme::Pkcs1v15, 259);
}

#[test]
fn pkcs1v15_sha256_4096() {
    assert_all_pass("rsa_signature_4096_sha256_test.json", Scheme::Pkcs1v15, 258);
}

#[test]
fn pss_sha256_mgf1_salt32_2048() {
    assert_all_pass("rsa_pss_2048_sha256_mgf1_32_test.json", Scheme::Pss, 108);
}
