//! Publication of Rulegate's key: the merged JWKS, and the discovery
//! document rewritten to point at it.
//!
//! Apps verify tokens with the keys that discovery's `jwks_uri` names. By
//! serving the provider's keys and its own at one address, and pointing
//! `jwks_uri` there, Rulegate lets a standard OpenID client accept both the
//! tokens it re-signed and those it passed through, with no change to the
//! app.

use serde_json::{json, Value};

use crate::error::Error;
use crate::verify::ProviderKeys;

/// The JWKS document Rulegate serves: the provider's keys, then its own.
pub fn merged_jwks(provider: &ProviderKeys, own: &Value) -> Vec<u8> {
    let mut keys: Vec<Value> = provider.published().to_vec();
    keys.push(own.clone());
    json!({ "keys": keys }).to_string().into_bytes()
}

/// The discovery document with `jwks_uri` replaced by `jwks_uri`.
///
/// A document that is not a JSON object is an error: the filter then passes
/// it through untouched.
pub fn rewrite_discovery(document: &[u8], jwks_uri: &str) -> Result<Vec<u8>, Error> {
    let value: Value = serde_json::from_slice(document)
        .map_err(|_| Error::NotTokenResponse("discovery document is not JSON"))?;
    let Value::Object(mut fields): Value = value else {
        return Err(Error::NotTokenResponse(
            "discovery document is not a JSON object",
        ));
    };
    fields.insert("jwks_uri".into(), Value::String(jwks_uri.to_string()));
    Ok(Value::Object(fields).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_keeps_every_field_but_jwks_uri() -> Result<(), Error> {
        let document = |jwks_uri: &str| {
            format!(
                r#"{{"issuer":"https://i","jwks_uri":"{jwks_uri}","token_endpoint":"https://i/t"}}"#
            )
        };
        let rewritten =
            rewrite_discovery(document("https://i/jwks").as_bytes(), "https://i/rg/jwks")?;
        assert_eq!(
            String::from_utf8_lossy(&rewritten),
            document("https://i/rg/jwks")
        );
        Ok(())
    }

    #[test]
    fn discovery_that_is_not_an_object_is_refused() {
        assert!(rewrite_discovery(b"[]", "https://i/j").is_err());
        assert!(rewrite_discovery(b"nope", "https://i/j").is_err());
    }
}
