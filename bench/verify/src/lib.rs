//! Times token verification and signing inside Envoy's wasm runtime.
//!
//! The plugin configuration (written by bench.py) lists cases, each a JWK
//! and a token it signed, and signing keys. `GET /verify/CASE/IMPL/COUNT`
//! verifies case CASE's token COUNT times with IMPL (`jwt-simple`: the
//! crate's own verification, as Rulegate did before it had its own RSA
//! code; `rulegate`: `rules::verify` as the filter runs it);
//! `GET /sign/KEY/rulegate/COUNT` re-signs the first case's claims, plus
//! one custom claim, COUNT times with signing key KEY, as the filter does.
//! Both answer `{"ok": N, "per_op_us": T}` with the host clock's mean per
//! operation.

use std::collections::HashSet;
use std::time::Duration;

use jwt_simple::prelude::*;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use rules::claims::VerifiedClaims;
use rules::config::{Algorithm, Signing, VerifyPolicy};
use rules::sign::Signer;
use rules::verify::{verify, ProviderKeys};
use serde_json::{json, Value};

const ISSUER: &str = "https://bench.example.com";
const AUDIENCE: &str = "bench";
const NOW: u64 = 1_800_000_000;

#[derive(Clone, Default)]
struct Cases {
    tokens: Vec<Value>,
    signers: Vec<Value>,
}

struct Root {
    cases: Cases,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&config).unwrap_or_default();
        let list = |name: &str| parsed[name].as_array().cloned().unwrap_or_default();
        self.cases = Cases {
            tokens: list("cases"),
            signers: list("signers"),
        };
        true
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            cases: self.cases.clone(),
        }))
    }
}

struct Stream {
    cases: Cases,
}

impl Context for Stream {}
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer = match parts.as_slice() {
            ["verify", case, implementation, count] => {
                let case = case
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.cases.tokens.get(i));
                let count = count.parse::<u32>().unwrap_or(1).max(1);
                match case {
                    Some(case) => self.time(case, implementation, count),
                    None => json!({"error": "no such case"}),
                }
            }
            ["sign", key, "rulegate", count] => {
                let key = key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.cases.signers.get(i));
                let count = count.parse::<u32>().unwrap_or(1).max(1);
                match key {
                    Some(key) => self.time_signing(key, count),
                    None => json!({"error": "no such key"}),
                }
            }
            _ => json!({"error": "GET /verify/CASE/IMPLEMENTATION/COUNT"}),
        };
        self.send_http_response(200, vec![], Some(answer.to_string().as_bytes()));
        Action::Pause
    }
}

impl Stream {
    fn time(&self, case: &Value, implementation: &str, count: u32) -> Value {
        let jwk = &case["jwk"];
        let token = case["token"].as_str().unwrap_or_default();
        let alg = case["alg"].as_str().unwrap_or_default();
        let keys = ProviderKeys::from_jwks(
            json!({ "keys": [jwk] }).to_string().as_bytes(),
            &Algorithm::ALL,
        )
        .unwrap_or_else(|_| ProviderKeys::empty());
        let policy = VerifyPolicy {
            issuer: ISSUER.into(),
            audiences: Vec::new(),
            allowed_algorithms: Algorithm::ALL.to_vec(),
            clock_skew_s: 60,
            max_token_bytes: 16 * 1024,
        };
        let old = JwtSimple::new(alg, &jwk.to_string());

        let start = self.get_current_time();
        let mut ok = 0;
        for _ in 0..count {
            let verified = match implementation {
                "rulegate" => verify(&keys, &policy, token, Some(AUDIENCE), NOW).is_ok(),
                _ => old.as_ref().is_some_and(|old| old.verify(token)),
            };
            ok += u32::from(verified);
        }
        let elapsed = self
            .get_current_time()
            .duration_since(start)
            .unwrap_or_default();
        json!({"ok": ok, "per_op_us": elapsed.as_secs_f64() * 1e6 / f64::from(count)})
    }
}

impl Stream {
    fn time_signing(&self, key: &Value, count: u32) -> Value {
        let algorithm = Algorithm::from_name(key["alg"].as_str().unwrap_or_default());
        let signing = algorithm.map(|algorithm| Signing {
            algorithm,
            key_id: "bench".into(),
            private_key_env: "BENCH".into(),
        });
        let pem = key["pem"].as_str().unwrap_or_default();
        let Some(signer) = signing.and_then(|signing| Signer::from_pem(&signing, pem).ok()) else {
            return json!({"error": "signing key refused"});
        };
        let payload = self.cases.tokens.first().and_then(|case| {
            let token = case["token"].as_str()?;
            let payload = token.split('.').nth(1)?;
            let bytes = base64_url(payload)?;
            serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok()
        });
        let claims = VerifiedClaims::assume_verified_for_dry_run(payload.unwrap_or_default());
        let added = serde_json::Map::from_iter([(
            "https://example.com/claims/role".to_string(),
            json!("staff"),
        )]);

        let start = self.get_current_time();
        let mut ok = 0;
        for _ in 0..count {
            ok += u32::from(signer.resign(&claims, &added, &[]).is_ok());
        }
        let elapsed = self
            .get_current_time()
            .duration_since(start)
            .unwrap_or_default();
        json!({"ok": ok, "per_op_us": elapsed.as_secs_f64() * 1e6 / f64::from(count)})
    }
}

/// Unpadded base64url, as in a JWT.
fn base64_url(text: &str) -> Option<Vec<u8>> {
    use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    Base64UrlSafeNoPadding::decode_to_vec(text, None).ok()
}

/// jwt-simple's own verification of one algorithm.
enum JwtSimple {
    Rs256(RS256PublicKey),
    Ps256(PS256PublicKey),
    Es256(ES256PublicKey),
    EdDsa(Ed25519PublicKey),
}

impl JwtSimple {
    fn new(alg: &str, jwk: &str) -> Option<Self> {
        Some(match alg {
            "RS256" => JwtSimple::Rs256(RS256PublicKey::from_jwk(jwk).ok()?),
            "PS256" => JwtSimple::Ps256(PS256PublicKey::from_jwk(jwk).ok()?),
            "ES256" => JwtSimple::Es256(ES256PublicKey::from_jwk(jwk).ok()?),
            "EdDSA" => JwtSimple::EdDsa(Ed25519PublicKey::from_jwk(jwk).ok()?),
            _ => return None,
        })
    }

    fn verify(&self, token: &str) -> bool {
        let options = Some(VerificationOptions {
            allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
            allowed_audiences: Some(HashSet::from([AUDIENCE.to_string()])),
            artificial_time: Some(Duration::from_secs(NOW).into()),
            ..VerificationOptions::default()
        });
        type Claims = JWTClaims<NoCustomClaims>;
        let result: Result<Claims, jwt_simple::Error> = match self {
            JwtSimple::Rs256(key) => key.verify_token(token, options),
            JwtSimple::Ps256(key) => key.verify_token(token, options),
            JwtSimple::Es256(key) => key.verify_token(token, options),
            JwtSimple::EdDsa(key) => key.verify_token(token, options),
        };
        result.is_ok()
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root { cases: Cases::default() }));
}}
