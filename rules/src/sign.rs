//! Rulegate's own signing key: re-signs tokens that gained claims and
//! publishes its public half.
//!
//! A token whose claims changed can no longer carry the provider's
//! signature, so Rulegate signs it with its own key and publishes that key
//! beside the provider's (see [`crate::discovery`]). The private key comes
//! from the environment, never from the configuration file, and never
//! appears in an error or a log line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Map, Value};

use crate::claims::VerifiedClaims;
use crate::config::{Algorithm, Signing};
use crate::error::Error;

enum KeyPair {
    Es256(ES256KeyPair),
    Rs256(Box<RS256KeyPair>),
    EdDsa(Ed25519KeyPair),
}

/// Rulegate's signing key, loaded and checked once.
pub struct Signer {
    key: KeyPair,
    public_jwk: Value,
    /// The encoded JWS header, the same for every token.
    header: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_jwk", &self.public_jwk)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the PEM private key `pem` (PKCS#8; PKCS#1 too for RSA) for the
    /// configured algorithm and key id.
    pub fn from_pem(signing: &Signing, pem: &str) -> Result<Self, Error> {
        let key_error = |reason: &str| Error::SigningKey {
            variable: signing.private_key_env.clone(),
            reason: reason.to_string(),
        };
        let expected = match signing.algorithm {
            Algorithm::ES256 => "a PEM P-256 private key",
            Algorithm::RS256 => "a PEM RSA private key of at least 2048 bits",
            _ => "a PEM Ed25519 private key",
        };
        let kid = signing.key_id.as_str();
        let (key, public_jwk) = match signing.algorithm {
            Algorithm::ES256 => {
                let pair = ES256KeyPair::from_pem(pem).map_err(|_| key_error(expected))?;
                let jwk = pair.public_key().with_key_id(kid).to_jwk();
                (KeyPair::Es256(pair.with_key_id(kid)), jwk)
            }
            Algorithm::RS256 => {
                let pair = RS256KeyPair::from_pem(pem).map_err(|_| key_error(expected))?;
                let jwk = pair.public_key().with_key_id(kid).to_jwk();
                (KeyPair::Rs256(Box::new(pair.with_key_id(kid))), jwk)
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pem(pem).map_err(|_| key_error(expected))?;
                let jwk = pair.public_key().with_key_id(kid).to_jwk();
                (KeyPair::EdDsa(pair.with_key_id(kid)), jwk)
            }
            other => {
                return Err(key_error(&format!("{} cannot sign", other.name())));
            }
        };
        let mut public_jwk: Value = serde_json::from_str(&public_jwk)
            .map_err(|_| key_error("public key could not be exported"))?;
        if let Some(members) = public_jwk.as_object_mut() {
            members.insert("use".into(), Value::from("sig"));
        }
        let header = json!({"alg": signing.algorithm.name(), "typ": "JWT", "kid": kid});
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Signer {
            key,
            public_jwk,
            header,
        })
    }

    /// The public key as a JWK, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// Signs `claims` without `removed` and with `added` as a new token.
    ///
    /// Every claim of the original token is kept as it was; `added` never
    /// holds a reserved claim (the configuration refuses those).
    pub fn resign(
        &self,
        claims: &VerifiedClaims,
        added: &Map<String, Value>,
        removed: &[String],
    ) -> Result<String, Error> {
        let mut all = claims.as_map().clone();
        for name in removed {
            all.shift_remove(name);
        }
        for (name, value) in added {
            all.insert(name.clone(), value.clone());
        }
        // ES256 and EdDSA: the claims are written as they are, in their
        // order, and signed deterministically (RFC 6979 for ECDSA), with no
        // detour through jwt-simple's claim types and no random numbers to
        // ask the host for. RS256 keeps jwt-simple's signing.
        let signing_input = |all: &Map<String, Value>| -> Result<String, Error> {
            let payload = serde_json::to_vec(all)
                .map_err(|err| Error::Signing(format!("claims do not serialize: {err}")))?;
            Ok(format!(
                "{}.{}",
                self.header,
                URL_SAFE_NO_PAD.encode(payload)
            ))
        };
        let (input, signature) = match &self.key {
            KeyPair::Es256(pair) => {
                let input = signing_input(&all)?;
                let key: &p256::ecdsa::SigningKey = pair.key_pair().as_ref();
                let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
                (input, signature.to_bytes().to_vec())
            }
            KeyPair::EdDsa(pair) => {
                let input = signing_input(&all)?;
                let key: &ed25519_compact::KeyPair = pair.key_pair().as_ref();
                let signature = key.sk.sign(input.as_bytes(), None).to_vec();
                (input, signature)
            }
            KeyPair::Rs256(pair) => {
                let claims: JWTClaims<Map<String, Value>> =
                    serde_json::from_value(Value::Object(all)).map_err(|err| {
                        Error::Signing(format!("claims do not form a token: {err}"))
                    })?;
                return pair
                    .sign(claims)
                    .map_err(|err| Error::Signing(err.to_string()));
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VerifyPolicy;
    use crate::verify::{verify, ProviderKeys};

    const ISSUER: &str = "https://login.example.com";
    const NOW: u64 = 1_800_000_000;

    fn pem(algorithm: Algorithm) -> String {
        match algorithm {
            Algorithm::ES256 => ES256KeyPair::generate().to_pem().unwrap(),
            Algorithm::EdDSA => Ed25519KeyPair::generate().to_pem(),
            _ => RS256KeyPair::generate(2048).unwrap().to_pem().unwrap(),
        }
    }

    fn original() -> VerifiedClaims {
        let claims = json!({
            "iss": ISSUER, "sub": "user-1", "aud": "spa", "iat": NOW, "exp": NOW + 300,
            "email": "ada@example.com", "picture": "https://example.com/ada.png", "nonce": "n"
        });
        VerifiedClaims::assume_verified_for_dry_run(serde_json::from_value(claims).unwrap())
    }

    /// Every algorithm's re-signed token verifies with the published key,
    /// by Rulegate's verification and by jwt-simple's, and carries the
    /// original claims with the additions and without the removals.
    #[test]
    fn resigned_tokens_verify_with_the_published_key() {
        for algorithm in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let signing = Signing {
                algorithm,
                key_id: "rulegate-test".into(),
                private_key_env: "KEY".into(),
            };
            let signer = Signer::from_pem(&signing, &pem(algorithm)).unwrap();
            let added = Map::from_iter([(
                "https://example.com/claims/role".to_string(),
                json!({"name": "staff", "level": 2}),
            )]);
            let token = signer
                .resign(&original(), &added, &["picture".to_string()])
                .unwrap();

            let jwks = json!({ "keys": [signer.public_jwk()] }).to_string();
            let keys = ProviderKeys::from_jwks(jwks.as_bytes(), &[algorithm]).unwrap();
            let policy = VerifyPolicy {
                issuer: ISSUER.into(),
                audiences: Vec::new(),
                allowed_algorithms: vec![algorithm],
                clock_skew_s: 60,
                max_token_bytes: 16 * 1024,
            };
            let claims = verify(&keys, &policy, &token, Some("spa"), NOW)
                .unwrap_or_else(|err| panic!("{}: {err}", algorithm.name()));
            assert_eq!(claims.get("email"), Some(&json!("ada@example.com")));
            assert_eq!(claims.get("nonce"), Some(&json!("n")));
            assert_eq!(claims.get("picture"), None, "{}", algorithm.name());
            assert_eq!(
                claims.get("https://example.com/claims/role"),
                Some(&json!({"name": "staff", "level": 2}))
            );

            let jwk = signer.public_jwk().to_string();
            let options = Some(VerificationOptions {
                artificial_time: Some(Duration::from_secs(NOW)),
                ..VerificationOptions::default()
            });
            let by_jwt_simple = match algorithm {
                Algorithm::ES256 => ES256PublicKey::from_jwk(&jwk)
                    .and_then(|key| key.verify_token::<NoCustomClaims>(&token, options)),
                Algorithm::EdDSA => Ed25519PublicKey::from_jwk(&jwk)
                    .and_then(|key| key.verify_token::<NoCustomClaims>(&token, options)),
                _ => RS256PublicKey::from_jwk(&jwk)
                    .and_then(|key| key.verify_token::<NoCustomClaims>(&token, options)),
            };
            assert!(
                by_jwt_simple.is_ok(),
                "{}: {by_jwt_simple:?}",
                algorithm.name()
            );

            let header = token.split('.').next().unwrap();
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            assert_eq!(header["alg"], json!(algorithm.name()));
            assert_eq!(header["kid"], json!("rulegate-test"));
            assert_eq!(header["typ"], json!("JWT"));
        }
    }
}
