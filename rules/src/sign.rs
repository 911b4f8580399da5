//! Rulegate's own signing key: re-signs tokens that gained claims and
//! publishes its public half.
//!
//! A token whose claims changed can no longer carry the provider's
//! signature, so Rulegate signs it with its own key and publishes that key
//! beside the provider's (see [`crate::discovery`]). The private key comes
//! from the environment, never from the configuration file, and never
//! appears in an error or a log line.

use jwt_simple::prelude::*;
use serde_json::{Map, Value};

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
        Ok(Signer { key, public_jwk })
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
        let claims: JWTClaims<Map<String, Value>> = serde_json::from_value(Value::Object(all))
            .map_err(|err| Error::Signing(format!("claims do not form a token: {err}")))?;
        let signed = match &self.key {
            KeyPair::Es256(pair) => pair.sign(claims),
            KeyPair::Rs256(pair) => pair.sign(claims),
            KeyPair::EdDsa(pair) => pair.sign(claims),
        };
        signed.map_err(|err| Error::Signing(err.to_string()))
    }
}
