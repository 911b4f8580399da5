//! Verification of the provider's tokens against its JWKS.
//!
//! Nothing from a token is believed until [`verify`] has checked, in this
//! order: the size, the header's algorithm against the allowlist, the key
//! (by `kid`, and of the token's algorithm), the signature, then `iss`,
//! `aud`, `exp`, `nbf` and `iat` against the time the caller passes in. The
//! caller passes "now" because wasm hosts do not all provide a clock that
//! crates can read on their own.
//!
//! Keys are parsed once, when a JWKS document is loaded ([`ProviderKeys`]),
//! never per token. Each JWK becomes one verifier per algorithm it may be
//! used with, so a key published without `alg` cannot be used with an
//! algorithm of another family, and an RSA key can never become an HMAC
//! secret.
//!
//! RSA signatures (RS256 and the rest of the family, which most providers
//! use) are checked by `rulegate_rsa`, about ten times faster inside
//! Envoy's wasm runtime than jwt-simple's general big-number code; the
//! header and the claims of those tokens are then checked here, with the
//! same rules jwt-simple applies to the elliptic-curve ones.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use rulegate_rsa::Hash;
use serde_json::{Map, Value};

use crate::claims::VerifiedClaims;
use crate::config::{Algorithm, VerifyPolicy};
use crate::error::{Error, Rejection};

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A public key ready to verify one algorithm.
enum KeyVerifier {
    Rsa {
        key: rulegate_rsa::PublicKey,
        hash: Hash,
        pss: bool,
    },
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
}

struct ProviderKey {
    kid: Option<String>,
    algorithm: Algorithm,
    verifier: KeyVerifier,
}

/// The provider's verification keys, parsed from its JWKS document.
pub struct ProviderKeys {
    keys: Vec<ProviderKey>,
    /// The provider's JWK objects as published, for the merged JWKS.
    published: Vec<Value>,
    /// The keys of the document that cannot be used, and why.
    left_out: Vec<String>,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl ProviderKeys {
    /// A key set that verifies nothing, before the first fetch.
    pub fn empty() -> Self {
        ProviderKeys {
            keys: Vec::new(),
            published: Vec::new(),
            left_out: Vec::new(),
        }
    }

    /// Parses a JWKS document, keeping the keys usable with `allowed`.
    ///
    /// Keys for encryption, of unknown types, or that do not parse are left
    /// out; a document that leaves no key at all is an error, so that the
    /// caller keeps its previous keys.
    pub fn from_jwks(document: &[u8], allowed: &[Algorithm]) -> Result<Self, Error> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(Error::Jwks(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let parsed: Value = serde_json::from_slice(document)
            .map_err(|err| Error::Jwks(format!("not JSON: {err}")))?;
        let Some(jwks) = parsed.get("keys").and_then(Value::as_array) else {
            return Err(Error::Jwks("no \"keys\" array".into()));
        };

        let mut keys = Vec::new();
        let mut published = Vec::new();
        let mut left_out = Vec::new();
        for jwk in jwks {
            let usable = usable_keys(jwk, allowed);
            if usable.is_empty() {
                left_out.push(why_left_out(jwk, allowed));
            } else {
                published.push(public_members(jwk));
            }
            keys.extend(usable);
        }
        if keys.is_empty() {
            return Err(Error::Jwks(format!(
                "no key usable with allowed_algorithms ({})",
                left_out.join("; ")
            )));
        }
        Ok(ProviderKeys {
            keys,
            published,
            left_out,
        })
    }

    /// Number of (key, algorithm) pairs that can verify.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key can verify.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The provider's usable JWKs, as it published them.
    pub fn published(&self) -> &[Value] {
        &self.published
    }

    /// The document's keys that cannot be used, each with the reason.
    pub fn left_out(&self) -> &[String] {
        &self.left_out
    }

    /// Whether a key with this `kid` is known.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

/// The algorithms a JWK may verify: the one its `alg` names, or every
/// allowed algorithm of its key type when it names none.
fn usable_keys(jwk: &Value, allowed: &[Algorithm]) -> Vec<ProviderKey> {
    if jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Vec::new();
    }
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
    let candidates: Vec<Algorithm> = match jwk.get("alg").and_then(Value::as_str) {
        Some(name) => Algorithm::from_name(name).into_iter().collect(),
        None => algorithms_for_key_type(jwk),
    };
    let text = jwk.to_string();
    // Prepared once for every algorithm the key may serve.
    let rsa = rsa_public_key(jwk);
    candidates
        .into_iter()
        .filter(|algorithm| allowed.contains(algorithm))
        .filter_map(|algorithm| {
            let verifier = parse_public_jwk(algorithm, &text, rsa.as_ref())?;
            Some(ProviderKey {
                kid: kid.clone(),
                algorithm,
                verifier,
            })
        })
        .collect()
}

/// Why a JWK yields no usable key, naming it by `kid` and type.
fn why_left_out(jwk: &Value, allowed: &[Algorithm]) -> String {
    let member = |name| jwk.get(name).and_then(Value::as_str).unwrap_or("none");
    let key = format!(
        "kid {:?} ({} {})",
        member("kid"),
        member("kty"),
        member("alg")
    );
    let candidates: Vec<Algorithm> = match jwk.get("alg").and_then(Value::as_str) {
        Some(name) => Algorithm::from_name(name).into_iter().collect(),
        None => algorithms_for_key_type(jwk),
    };
    let reason = if jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        "not for signatures"
    } else if !candidates
        .iter()
        .any(|algorithm| allowed.contains(algorithm))
    {
        "its algorithm is not in allowed_algorithms, or its type is unknown"
    } else if member("kty") == "RSA" {
        "not a usable RSA key (2048 to 8192 bits, exponent 65537 to 2^32)"
    } else {
        "malformed"
    };
    format!("{key}: {reason}")
}

fn algorithms_for_key_type(jwk: &Value) -> Vec<Algorithm> {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match (kty, crv) {
        (Some("RSA"), _) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        (Some("EC"), Some("P-256")) => vec![Algorithm::ES256],
        (Some("EC"), Some("P-384")) => vec![Algorithm::ES384],
        (Some("OKP"), Some("Ed25519")) => vec![Algorithm::EdDSA],
        _ => Vec::new(),
    }
}

fn parse_public_jwk(
    algorithm: Algorithm,
    jwk: &str,
    rsa: Option<&rulegate_rsa::PublicKey>,
) -> Option<KeyVerifier> {
    let rsa = |hash, pss| {
        rsa.map(|key| KeyVerifier::Rsa {
            key: key.clone(),
            hash,
            pss,
        })
    };
    let verifier = match algorithm {
        Algorithm::RS256 => rsa(Hash::Sha256, false)?,
        Algorithm::RS384 => rsa(Hash::Sha384, false)?,
        Algorithm::RS512 => rsa(Hash::Sha512, false)?,
        Algorithm::PS256 => rsa(Hash::Sha256, true)?,
        Algorithm::PS384 => rsa(Hash::Sha384, true)?,
        Algorithm::PS512 => rsa(Hash::Sha512, true)?,
        Algorithm::ES256 => KeyVerifier::Es256(ES256PublicKey::from_jwk(jwk).ok()?),
        Algorithm::ES384 => KeyVerifier::Es384(ES384PublicKey::from_jwk(jwk).ok()?),
        Algorithm::EdDSA => KeyVerifier::EdDsa(Ed25519PublicKey::from_jwk(jwk).ok()?),
    };
    Some(verifier)
}

/// Smallest RSA public exponent trusted, as FIPS 186-5 sets it (providers
/// use 65537).
const MIN_RSA_EXPONENT: u32 = (1 << 16) + 1;

/// The RSA public key of a JWK of type RSA, with its modulus and exponent
/// in unpadded base64url as RFC 7518 writes them; keys with an exponent
/// below 65537 are left out.
fn rsa_public_key(jwk: &Value) -> Option<rulegate_rsa::PublicKey> {
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
        return None;
    }
    let member = |name| {
        let text = jwk.get(name).and_then(Value::as_str)?;
        URL_SAFE_NO_PAD.decode(text).ok()
    };
    rulegate_rsa::PublicKey::from_be_bytes(&member("n")?, &member("e")?)
        .ok()
        .filter(|key| key.exponent() >= MIN_RSA_EXPONENT)
}

/// The public members of a JWK: a provider that mistakenly publishes a
/// private member must not have Rulegate republish it.
fn public_members(jwk: &Value) -> Value {
    const PUBLIC: [&str; 9] = ["kty", "kid", "use", "alg", "crv", "x", "y", "n", "e"];
    let Some(members) = jwk.as_object() else {
        return Value::Null;
    };
    let kept: Map<String, Value> = members
        .iter()
        .filter(|(name, _)| PUBLIC.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Value::Object(kept)
}

/// Verifies the id_token `token`, issued to `client_id`, at Unix time `now`.
///
/// The accepted audiences are `client_id` and the configured `audiences`.
pub fn verify(
    keys: &ProviderKeys,
    policy: &VerifyPolicy,
    token: &str,
    client_id: Option<&str>,
    now: u64,
) -> Result<VerifiedClaims, Rejection> {
    let options = verification_options(policy, client_id, now)?;
    let claims = verify_with(keys, policy, token, options)?;
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(Rejection::MissingClaim("sub"));
    }
    Ok(claims)
}

/// Verifies a JWT access token at Unix time `now`: issuer, signature and
/// lifetime as for the id_token. Its audience is the API it is for, which
/// only that API can judge, so any audience is accepted.
pub fn verify_access_token(
    keys: &ProviderKeys,
    policy: &VerifyPolicy,
    token: &str,
    now: u64,
) -> Result<VerifiedClaims, Rejection> {
    let mut options = verification_options(policy, Some("any"), now)?;
    options.allowed_audiences = None;
    verify_with(keys, policy, token, options)
}

fn verify_with(
    keys: &ProviderKeys,
    policy: &VerifyPolicy,
    token: &str,
    options: VerificationOptions,
) -> Result<VerifiedClaims, Rejection> {
    if token.len() > policy.max_token_bytes {
        return Err(Rejection::TooLong);
    }
    let header = decode_header(token)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Malformed)?;
    let algorithm = Algorithm::from_name(alg)
        .filter(|algorithm| policy.allowed_algorithms.contains(algorithm))
        .ok_or_else(|| Rejection::AlgorithmNotAllowed(alg.to_string()))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(Rejection::Malformed),
    };
    let candidates = candidate_keys(keys, algorithm, kid)?;

    let mut last = Rejection::BadSignature;
    for key in candidates {
        match check_signature_and_claims(&key.verifier, token, &header, options.clone()) {
            Ok(claims) => return Ok(claims),
            Err(rejection) => last = rejection,
        }
    }
    Err(last)
}

/// The token's header, decoded once for every check that reads it.
fn decode_header(token: &str) -> Result<Map<String, Value>, Rejection> {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}

fn candidate_keys<'k>(
    keys: &'k ProviderKeys,
    algorithm: Algorithm,
    kid: Option<&str>,
) -> Result<Vec<&'k ProviderKey>, Rejection> {
    let same_kid = |key: &&ProviderKey| kid.is_none() || key.kid.as_deref() == kid;
    let with_kid: Vec<&ProviderKey> = keys.keys.iter().filter(same_kid).collect();
    if with_kid.is_empty() {
        return Err(Rejection::UnknownKey(kid.map(str::to_string)));
    }
    let usable: Vec<&ProviderKey> = with_kid
        .into_iter()
        .filter(|key| key.algorithm == algorithm)
        .collect();
    match (usable.is_empty(), kid) {
        (false, _) => Ok(usable),
        // The kid is known but belongs to another algorithm: a refresh will
        // not help, the token is simply not signed by that key.
        (true, Some(_)) => Err(Rejection::BadSignature),
        (true, None) => Err(Rejection::UnknownKey(None)),
    }
}

fn verification_options(
    policy: &VerifyPolicy,
    client_id: Option<&str>,
    now: u64,
) -> Result<VerificationOptions, Rejection> {
    let mut audiences: HashSet<String> = policy.audiences.iter().cloned().collect();
    if let Some(client_id) = client_id {
        audiences.insert(client_id.to_string());
    }
    if audiences.is_empty() {
        return Err(Rejection::WrongAudience);
    }
    Ok(VerificationOptions {
        allowed_issuers: Some(HashSet::from([policy.issuer.clone()])),
        allowed_audiences: Some(audiences),
        time_tolerance: Some(Duration::from_secs(policy.clock_skew_s)),
        artificial_time: Some(Duration::from_secs(now)),
        max_token_length: Some(policy.max_token_bytes),
        ..VerificationOptions::default()
    })
}

/// Checks the signature with one key, then the claims; gives the claims
/// as the provider wrote them.
fn check_signature_and_claims(
    verifier: &KeyVerifier,
    token: &str,
    header: &Map<String, Value>,
    options: VerificationOptions,
) -> Result<VerifiedClaims, Rejection> {
    type Claims = JWTClaims<NoCustomClaims>;
    let options_checked_audience = options.allowed_audiences.is_some();
    let result: Result<Claims, jwt_simple::Error> = match verifier {
        KeyVerifier::Rsa { key, hash, pss } => {
            return check_rsa_token(key, *hash, *pss, token, header, &options);
        }
        KeyVerifier::Es256(key) => key.verify_token(token, Some(options)),
        KeyVerifier::Es384(key) => key.verify_token(token, Some(options)),
        KeyVerifier::EdDsa(key) => key.verify_token(token, Some(options)),
    };
    let claims = result.map_err(|err| rejection_of(&err))?;
    // OpenID Connect requires both; jwt-simple accepts tokens without them.
    if claims.expires_at.is_none() {
        return Err(Rejection::MissingClaim("exp"));
    }
    if claims.audiences.is_none() && options_checked_audience {
        return Err(Rejection::WrongAudience);
    }
    decode_claims(token)
}

/// Checks an RSA-signed token: its shape and header, its signature, then
/// its claims.
fn check_rsa_token(
    key: &rulegate_rsa::PublicKey,
    hash: Hash,
    pss: bool,
    token: &str,
    header: &Map<String, Value>,
    options: &VerificationOptions,
) -> Result<VerifiedClaims, Rejection> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Rejection::Malformed)?;
    if signing_input.split('.').count() != 2 {
        return Err(Rejection::Malformed);
    }
    check_header(header)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Rejection::Malformed)?;

    let verified = if pss {
        key.verify_pss(hash, signing_input.as_bytes(), &signature)
    } else {
        key.verify_pkcs1v15(hash, signing_input.as_bytes(), &signature)
    };
    verified.map_err(|_| Rejection::BadSignature)?;

    let claims = decode_claims(token)?;
    check_claims(&claims.0, options)?;
    Ok(claims)
}

/// The header rules jwt-simple applies: no critical extension Rulegate
/// would have to understand, and a `typ`, when present, naming a JWT.
fn check_header(header: &Map<String, Value>) -> Result<(), Rejection> {
    let critical = header.get("crit").and_then(Value::as_array);
    if critical.is_some_and(|names| !names.is_empty()) {
        return Err(Rejection::Malformed);
    }
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) => {
            let typ = typ.to_ascii_uppercase();
            if typ == "JWT" || typ.ends_with("+JWT") {
                Ok(())
            } else {
                Err(Rejection::Malformed)
            }
        }
        Some(_) => Err(Rejection::Malformed),
    }
}

/// The time and audience claims, checked as jwt-simple checks them for the
/// other algorithms, with `exp` and (when an audience is expected) `aud`
/// required as OpenID Connect requires them.
fn check_claims(
    claims: &Map<String, Value>,
    options: &VerificationOptions,
) -> Result<(), Rejection> {
    let now = options.artificial_time.unwrap_or_default().as_secs();
    let skew = options.time_tolerance.unwrap_or_default().as_secs();
    let time = |name| match claims.get(name) {
        None => Ok(None),
        Some(value) => numeric_date(value).map(Some).ok_or(Rejection::Malformed),
    };

    if time("iat")?.is_some_and(|issued| issued > now.saturating_add(skew)) {
        return Err(Rejection::NotYetValid);
    }
    if time("nbf")?.is_some_and(|start| start > now.saturating_add(skew)) {
        return Err(Rejection::NotYetValid);
    }
    let expires = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(Rejection::MissingClaim("exp"))?;
    if now < skew || now - skew > expires {
        return Err(Rejection::Expired);
    }

    let issuer = claims.get("iss").and_then(Value::as_str);
    let issuers = options.allowed_issuers.as_ref();
    if issuers.is_some_and(|issuers| !issuer.is_some_and(|iss| issuers.contains(iss))) {
        return Err(Rejection::WrongIssuer);
    }
    if let Some(audiences) = &options.allowed_audiences {
        let named = match claims.get("aud") {
            Some(Value::String(audience)) => audiences.contains(audience),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|audience| audiences.contains(audience)),
            _ => false,
        };
        if !named {
            return Err(Rejection::WrongAudience);
        }
    }
    Ok(())
}

/// A NumericDate (RFC 7519): seconds since the epoch, possibly with a
/// fraction, which is dropped.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| *seconds >= 0.0)
            .map(|seconds| seconds as u64)
    })
}

fn rejection_of(err: &jwt_simple::Error) -> Rejection {
    let Some(err) = err.downcast_ref::<JWTError>() else {
        return Rejection::Malformed;
    };
    match err {
        JWTError::InvalidSignature | JWTError::AlgorithmMismatch => Rejection::BadSignature,
        JWTError::TokenHasExpired => Rejection::Expired,
        JWTError::TokenNotValidYet | JWTError::ClockDrift => Rejection::NotYetValid,
        JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing => {
            Rejection::WrongIssuer
        }
        JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing => {
            Rejection::WrongAudience
        }
        JWTError::TokenTooLong => Rejection::TooLong,
        _ => Rejection::Malformed,
    }
}

/// The claims exactly as the provider wrote them, decoded once the
/// signature is known to be good.
fn decode_claims(token: &str) -> Result<VerifiedClaims, Rejection> {
    let payload = token.split('.').nth(1).ok_or(Rejection::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)?;
    Ok(VerifiedClaims(claims))
}
