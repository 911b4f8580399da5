//! Token responses and tokens from a provider: parsing the response and
//! verifying its id_token must refuse garbage, never crash.
#![no_main]

use std::sync::OnceLock;

use jwt_simple::prelude::*;
use libfuzzer_sys::fuzz_target;
use rules::config::{Algorithm, VerifyPolicy};
use rules::exchange::TokenResponse;
use rules::verify::{verify, verify_access_token, ProviderKeys};

fn keys() -> &'static ProviderKeys {
    static KEYS: OnceLock<ProviderKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = ES256KeyPair::generate().with_key_id("k1");
        let jwks = format!("{{\"keys\": [{}]}}", key.public_key().to_jwk());
        ProviderKeys::from_jwks(jwks.as_bytes(), &Algorithm::ALL).unwrap_or_else(|_| ProviderKeys::empty())
    })
}

fuzz_target!(|data: &[u8]| {
    let policy = VerifyPolicy {
        issuer: "https://idp.example".into(),
        audiences: vec!["client".into()],
        allowed_algorithms: Algorithm::ALL.to_vec(),
        clock_skew_s: 60,
        max_token_bytes: 16 * 1024,
    };
    if let Ok(response) = TokenResponse::parse(data) {
        let _ = verify(keys(), &policy, response.id_token(), Some("client"), 1_800_000_000);
    }
    let _ = TokenResponse::parse_client_only(data);
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = verify(keys(), &policy, token, None, 1_800_000_000);
        let _ = verify_access_token(keys(), &policy, token, 1_800_000_000);
    }
    let _ = ProviderKeys::from_jwks(data, &Algorithm::ALL);
});
