//! Claims: which ones belong to the protocol and may never be touched, and
//! the verified claim set that rules read.

use serde_json::{Map, Value};

/// Claims that carry the token's meaning for the protocol. A rule that sets
/// one of these is refused when the configuration loads: changing `sub` or
/// `aud` would make the token say something the provider never said.
pub const RESERVED_CLAIMS: [&str; 15] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "auth_time",
    "acr",
    "amr",
    "sid",
];

/// The claims of a token whose signature and registered claims have been
/// verified, in the order the provider wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims(pub(crate) Map<String, Value>);

impl VerifiedClaims {
    /// Claims taken as verified without a signature check. Only for dry
    /// runs over recorded tokens (`rulegate try`), never for a live token.
    pub fn assume_verified_for_dry_run(claims: Map<String, Value>) -> VerifiedClaims {
        VerifiedClaims(claims)
    }

    /// One claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All claims, as the provider wrote them.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// `sub`, which verification guarantees is a string.
    pub fn subject(&self) -> &str {
        self.0
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}
