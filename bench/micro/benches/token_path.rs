//! The token path's pieces, natively: RS256 (by key size, against
//! jwt-simple's own verification) and ES256 verification of an id_token,
//! ES256 / EdDSA / RS256 re-signing, CEL rule evaluation, and the whole path
//! (parse the response, verify, run five claim rules, re-sign).
//! Inside Envoy the same code runs several times slower (see
//! BENCHMARKS.md); these figures show where the time goes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jwt_simple::prelude::*;
use rules::claims::VerifiedClaims;
use rules::config::{Algorithm, Config, Signing, VerifyPolicy};
use rules::event::{LoginEvent, LoginInfo, Protocol};
use rules::exchange::TokenResponse;
use rules::pipeline::{Next, Pipeline};
use rules::record::UserRecord;
use rules::sign::Signer;
use rules::verify::{verify, ProviderKeys};
use serde_json::{json, Map, Value};

const ISSUER: &str = "https://login.example.com";
const NOW: u64 = 1_800_000_000;

fn claims() -> JWTClaims<Map<String, Value>> {
    serde_json::from_value(json!({
        "iss": ISSUER, "sub": "user-1", "aud": "spa", "iat": NOW, "exp": NOW + 300,
        "email": "ada@example.com", "email_verified": true, "name": "Ada Lovelace", "nonce": "n"
    }))
    .expect("claims")
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

fn keys_for(jwk: &str) -> ProviderKeys {
    let jwk: Value = serde_json::from_str(jwk).unwrap_or_default();
    let jwks = json!({ "keys": [jwk] }).to_string();
    ProviderKeys::from_jwks(jwks.as_bytes(), &Algorithm::ALL).unwrap_or_else(|_| ProviderKeys::empty())
}

fn signer(algorithm: Algorithm, pem: String) -> Option<Signer> {
    let signing = Signing {
        algorithm,
        key_id: "bench".into(),
        private_key_env: "UNUSED".into(),
    };
    Signer::from_pem(&signing, &pem).ok()
}

fn config() -> Option<Config> {
    let rules: Vec<Value> = (0..5)
        .map(|i| json!({"name": format!("r{i}"), "type": "rule",
                        "when": "user.email_verified",
                        "id_token": {format!("c{i}"): "user.email.endsWith('@example.com') ? 'staff' : 'customer'"}}))
        .collect();
    let config = json!({"issuer": ISSUER, "provider": {"cluster": "idp"},
                        "namespace": "https://example.com/claims/", "rules": rules});
    Config::from_json(config.to_string().as_bytes(), &|_| None).ok()
}

fn event(claims: &VerifiedClaims) -> LoginEvent {
    let info = LoginInfo {
        protocol: Protocol::AuthorizationCode,
        client_id: Some("spa".into()),
        client_name: None,
        ip: Some("203.0.113.1".into()),
        user_agent: Some("bench".into()),
        connection: "oidc".into(),
    };
    let record = UserRecord {
        logins_count: 2,
        ..UserRecord::default()
    };
    LoginEvent::new(claims, &record, &info)
}

fn token_path(c: &mut Criterion) {
    let rsa = RS256KeyPair::generate(2048).map(|k| k.with_key_id("rsa"));
    let Ok(rsa) = rsa else { return };
    let ec = ES256KeyPair::generate().with_key_id("ec");
    let rs_token = rsa.sign(claims()).unwrap_or_default();
    let es_token = ec.sign(claims()).unwrap_or_default();
    let rs_keys = keys_for(&rsa.public_key().to_jwk());
    let es_keys = keys_for(&ec.public_key().to_jwk());
    let policy = policy();

    c.bench_function("verify RS256 (RSA-2048)", |b| {
        b.iter(|| verify(&rs_keys, &policy, black_box(&rs_token), Some("spa"), NOW))
    });
    c.bench_function("verify ES256", |b| {
        b.iter(|| verify(&es_keys, &policy, black_box(&es_token), Some("spa"), NOW))
    });

    let Ok(verified) = verify(&rs_keys, &policy, &rs_token, Some("spa"), NOW) else { return };
    let added = Map::from_iter([("https://example.com/claims/role".to_string(), json!("staff"))]);
    let signers = [
        ("sign ES256", signer(Algorithm::ES256, ES256KeyPair::generate().to_pem().unwrap_or_default())),
        ("sign EdDSA", signer(Algorithm::EdDSA, Ed25519KeyPair::generate().to_pem())),
        ("sign RS256", signer(Algorithm::RS256, rsa.to_pem().unwrap_or_default())),
    ];
    for (name, signer) in &signers {
        let Some(signer) = signer else { continue };
        c.bench_function(name, |b| b.iter(|| signer.resign(&verified, black_box(&added), &[])));
    }

    let Some(config) = config() else { return };
    c.bench_function("five CEL rules", |b| {
        b.iter(|| {
            let mut pipeline = Pipeline::new(&config, event(&verified), verified.clone(), NOW * 1000);
            while let Next::Call(_) = pipeline.next(&config, NOW * 1000) {}
            pipeline.finish(&config)
        })
    });

    let body = json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                      "id_token": rs_token, "scope": "openid email profile"})
    .to_string();
    let Some(es_signer) = &signers[0].1 else { return };
    c.bench_function("whole token path (parse, verify RS256, five rules, sign ES256)", |b| {
        b.iter(|| {
            let Ok(response) = TokenResponse::parse(black_box(body.as_bytes())) else { return Vec::new() };
            let Ok(claims) = verify(&rs_keys, &policy, response.id_token(), Some("spa"), NOW) else {
                return Vec::new();
            };
            let mut pipeline = Pipeline::new(&config, event(&claims), claims.clone(), NOW * 1000);
            while let Next::Call(_) = pipeline.next(&config, NOW * 1000) {}
            let outcome = pipeline.finish(&config);
            let token = es_signer.resign(&claims, &outcome.id_token_claims, &[]).unwrap_or_default();
            response.with_id_token(token)
        })
    });
}

/// RS256 verification by key size: Rulegate's (`rules::verify`, on
/// `rulegate-rsa`) against jwt-simple's own, which Rulegate used before.
fn rsa_sizes(c: &mut Criterion) {
    let policy = policy();
    for bits in [2048, 3072, 4096] {
        let Ok(pair) = RS256KeyPair::generate(bits).map(|k| k.with_key_id("rsa")) else { return };
        let token = pair.sign(claims()).unwrap_or_default();
        let keys = keys_for(&pair.public_key().to_jwk());
        c.bench_function(&format!("RS256 RSA-{bits}, Rulegate"), |b| {
            b.iter(|| verify(&keys, &policy, black_box(&token), Some("spa"), NOW))
        });
        let public = pair.public_key();
        let options = VerificationOptions {
            artificial_time: Some(Duration::from_secs(NOW)),
            ..VerificationOptions::default()
        };
        c.bench_function(&format!("RS256 RSA-{bits}, jwt-simple"), |b| {
            b.iter(|| public.verify_token::<NoCustomClaims>(black_box(&token), Some(options.clone())))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = token_path, rsa_sizes
}
criterion_main!(benches);
