//! Times token verification inside Envoy's wasm runtime.
//!
//! The plugin configuration (written by bench.py) lists cases, each a JWK
//! and a token it signed. `GET /verify/CASE/IMPLEMENTATION/COUNT` verifies
//! case CASE's token COUNT times with IMPLEMENTATION (`jwt-simple`: the
//! crate's own verification, as Rulegate did before it had its own RSA
//! code; `rulegate`: `rules::verify` as the filter runs it) and answers
//! `{"ok": N, "per_op_us": T}` with the host clock's mean per verification.

use std::collections::HashSet;
use std::time::Duration;

use jwt_simple::prelude::*;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use rules::config::{Algorithm, VerifyPolicy};
use rules::verify::{verify, ProviderKeys};
use serde_json::{json, Value};

const ISSUER: &str = "https://bench.example.com";
const AUDIENCE: &str = "bench";
const NOW: u64 = 1_800_000_000;

#[derive(Clone, Default)]
struct Cases(Vec<Value>);

struct Root {
    cases: Cases,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&config).unwrap_or_default();
        let cases = parsed["cases"].as_array().cloned().unwrap_or_default();
        self.cases = Cases(cases);
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
                let case = case.parse::<usize>().ok().and_then(|i| self.cases.0.get(i));
                let count = count.parse::<u32>().unwrap_or(1).max(1);
                match case {
                    Some(case) => self.time(case, implementation, count),
                    None => json!({"error": "no such case"}),
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
        let elapsed = self.get_current_time().duration_since(start).unwrap_or_default();
        json!({"ok": ok, "per_op_us": elapsed.as_secs_f64() * 1e6 / f64::from(count)})
    }
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
