//! The one error type of the `rules` crate.
//!
//! Every variant says which input was wrong and, where there is one, how to
//! fix it. Messages are lowercase and never carry a token, a key or a secret:
//! they end up in Envoy's log.

use std::fmt;

/// Everything that can go wrong in Rulegate's pure logic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The plugin configuration is unusable. `field` is the JSON path of the
    /// offending value (`signing.algorithm`, `rules[2].claim`); Envoy refuses
    /// the configuration and keeps the previous one.
    Config { field: String, reason: String },

    /// The signing key named by the configuration could not be loaded: the
    /// environment variable is missing (not listed in the VM's
    /// `environment_variables`?) or does not hold a PEM key of the
    /// configured algorithm.
    SigningKey { variable: String, reason: String },

    /// The provider's JWKS document could not be used: not JSON, no `keys`
    /// array, or not one key Rulegate can verify with.
    Jwks(String),

    /// The response is not a successful token response Rulegate can work on
    /// (not JSON, no `id_token`, ...). The filter passes it through untouched.
    NotTokenResponse(&'static str),

    /// A token failed verification; see [`Rejection`] for why. Nothing from
    /// such a token reaches a rule.
    InvalidToken(Rejection),

    /// The user store could not read or write a record (the store failed,
    /// or other logins kept winning the race for the same record).
    Store(String),

    /// Signing a rewritten token failed. With a key that loaded this points at
    /// claims that cannot be serialised.
    Signing(String),
}

/// Why a token was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a compact JWS: not three parts, bad base64url or bad JSON.
    Malformed,
    /// Longer than the configured limit; not even parsed.
    TooLong,
    /// The header names an algorithm outside the allowlist (`none` and HMAC
    /// are never on it).
    AlgorithmNotAllowed(String),
    /// No key of the provider has this `kid` (or, without a `kid`, no key of
    /// the token's algorithm). The caller may refresh the JWKS and retry.
    UnknownKey(Option<String>),
    /// The signature does not verify with the key the token names.
    BadSignature,
    /// `exp` is in the past, beyond the allowed clock skew.
    Expired,
    /// `nbf` or `iat` is in the future, beyond the allowed clock skew.
    NotYetValid,
    /// `iss` is missing or is not the configured issuer.
    WrongIssuer,
    /// `aud` is missing or names none of the expected audiences.
    WrongAudience,
    /// A claim OpenID Connect requires (`sub`, `exp`) is missing or mistyped.
    MissingClaim(&'static str),
}

impl Error {
    /// A configuration error for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { field, reason } => {
                write!(f, "invalid configuration: {field}: {reason}")
            }
            Error::SigningKey { variable, reason } => {
                write!(
                    f,
                    "signing key in environment variable {variable}: {reason}"
                )
            }
            Error::Jwks(reason) => write!(f, "unusable jwks document: {reason}"),
            Error::NotTokenResponse(reason) => write!(f, "not a token response: {reason}"),
            Error::InvalidToken(rejection) => write!(f, "token rejected: {rejection}"),
            Error::Store(reason) => write!(f, "user store: {reason}"),
            Error::Signing(reason) => write!(f, "failed to sign token: {reason}"),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed => f.write_str("not a well-formed jws compact token"),
            Rejection::TooLong => f.write_str("token longer than the limit"),
            Rejection::AlgorithmNotAllowed(alg) => {
                write!(f, "algorithm {alg:?} is not in allowed_algorithms")
            }
            Rejection::UnknownKey(Some(kid)) => write!(f, "no provider key with kid {kid:?}"),
            Rejection::UnknownKey(None) => f.write_str("no provider key for the token's algorithm"),
            Rejection::BadSignature => f.write_str("signature does not verify"),
            Rejection::Expired => f.write_str("token has expired"),
            Rejection::NotYetValid => f.write_str("token is not valid yet"),
            Rejection::WrongIssuer => f.write_str("issuer is not the configured issuer"),
            Rejection::WrongAudience => f.write_str("audience does not name the client"),
            Rejection::MissingClaim(claim) => write!(f, "required claim {claim:?} is missing"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        Error::InvalidToken(rejection)
    }
}
