//! The token exchange as Rulegate sees it: what the client asked for (the
//! form body of `POST /token`) and what the provider answered (the JSON
//! token response).
//!
//! Both are read without being changed: the request is forwarded exactly as
//! the client sent it, and a response is only rebuilt when a token in it was
//! replaced.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::Error;

/// What Rulegate needs to know about a token request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// `grant_type`; `None` when absent, repeated or not UTF-8.
    pub grant_type: Option<String>,
    /// The client: from HTTP Basic authentication when present, else from
    /// the `client_id` form field, else from the `sub` of a JWT client
    /// assertion (`private_key_jwt`, `client_secret_jwt`).
    pub client_id: Option<String>,
}

impl TokenRequest {
    /// Reads a token request from its form body and `Authorization` header.
    ///
    /// A parameter that appears twice is treated as absent, as RFC 6749
    /// requires servers to reject such requests: Rulegate must not guess
    /// which one the provider will honour.
    pub fn parse(form_body: &[u8], authorization: Option<&[u8]>) -> TokenRequest {
        let grant_type = single_parameter(form_body, "grant_type");
        let client_id = authorization
            .and_then(basic_auth_client_id)
            .or_else(|| single_parameter(form_body, "client_id"))
            .or_else(|| {
                single_parameter(form_body, "client_assertion").and_then(|a| assertion_subject(&a))
            });
        TokenRequest {
            grant_type,
            client_id,
        }
    }
}

fn single_parameter(form_body: &[u8], name: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(form_body)
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value);
    let first = values.next()?;
    if values.next().is_some() || first.contains('\u{fffd}') {
        return None;
    }
    Some(first.into_owned())
}

/// The client id of `Authorization: Basic base64(id:secret)`, where both
/// parts are form-urlencoded first (RFC 6749, section 2.3.1).
fn basic_auth_client_id(header: &[u8]) -> Option<String> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, credentials) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (id, _secret) = decoded.split_once(':')?;
    let id = id.replace('+', " ");
    let id = percent_encoding::percent_decode_str(&id)
        .decode_utf8()
        .ok()?;
    (!id.is_empty()).then(|| id.into_owned())
}

/// The `sub` of a JWT client assertion, which RFC 7523 makes the client
/// id. It is read, not verified: the provider verifies the assertion, and
/// Rulegate only uses the id as the audience its token must name.
fn assertion_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("sub")?
        .as_str()
        .filter(|sub| !sub.is_empty())
        .map(str::to_string)
}

/// Why [`TokenResponse::parse`] refused a response without an id_token.
pub const NO_ID_TOKEN: &str = "no id_token";

/// A successful token response, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenResponse {
    fields: Map<String, Value>,
}

impl TokenResponse {
    /// Parses a token response body. Anything without a string `id_token`
    /// is not a response Rulegate works on.
    pub fn parse(body: &[u8]) -> Result<TokenResponse, Error> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| Error::NotTokenResponse("body is not JSON"))?;
        let Value::Object(fields) = value else {
            return Err(Error::NotTokenResponse("body is not a JSON object"));
        };
        if fields.contains_key("error") {
            return Err(Error::NotTokenResponse("body is an OAuth error"));
        }
        if !fields.get("id_token").is_some_and(Value::is_string) {
            return Err(Error::NotTokenResponse(NO_ID_TOKEN));
        }
        Ok(TokenResponse { fields })
    }

    /// Parses a token response that carries no id_token but an access
    /// token: a client-credentials exchange, for the rules that opt in.
    pub fn parse_client_only(body: &[u8]) -> Result<TokenResponse, Error> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| Error::NotTokenResponse("body is not JSON"))?;
        let Value::Object(fields) = value else {
            return Err(Error::NotTokenResponse("body is not a JSON object"));
        };
        if fields.contains_key("error") || fields.contains_key("id_token") {
            return Err(Error::NotTokenResponse("not a client-credentials response"));
        }
        if !fields.get("access_token").is_some_and(Value::is_string) {
            return Err(Error::NotTokenResponse("no access_token"));
        }
        Ok(TokenResponse { fields })
    }

    /// Whether the response carries an id_token (else only an access token).
    pub fn has_id_token(&self) -> bool {
        self.fields.contains_key("id_token")
    }

    /// The id_token as issued ("" for a client-only response).
    pub fn id_token(&self) -> &str {
        self.fields
            .get("id_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The access token as issued, if there is one.
    pub fn access_token(&self) -> Option<&str> {
        self.fields.get("access_token").and_then(Value::as_str)
    }

    /// The response with the id_token replaced, every other field as it was.
    pub fn with_id_token(self, id_token: String) -> Vec<u8> {
        self.with_tokens(Some(id_token), None)
    }

    /// The response with either token replaced, every other field as it was.
    pub fn with_tokens(
        mut self,
        id_token: Option<String>,
        access_token: Option<String>,
    ) -> Vec<u8> {
        if let Some(token) = id_token {
            self.fields.insert("id_token".into(), Value::String(token));
        }
        if let Some(token) = access_token {
            self.fields
                .insert("access_token".into(), Value::String(token));
        }
        Value::Object(self.fields).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_gives_grant_type_and_client_id() {
        let request = TokenRequest::parse(
            b"grant_type=authorization_code&code=abc&client_id=my%20spa&code_verifier=x",
            None,
        );
        assert_eq!(request.grant_type.as_deref(), Some("authorization_code"));
        assert_eq!(request.client_id.as_deref(), Some("my spa"));
    }

    #[test]
    fn basic_auth_names_the_client_before_the_body() {
        let header = format!("Basic {}", STANDARD.encode("backend%3A1:s3cret"));
        let request = TokenRequest::parse(
            b"grant_type=refresh_token&client_id=other",
            Some(header.as_bytes()),
        );
        assert_eq!(request.client_id.as_deref(), Some("backend:1"));
    }

    #[test]
    fn a_jwt_client_assertion_names_the_client() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"iss":"jwt-client","sub":"jwt-client","aud":"https://idp/token"}"#);
        let body = format!(
            "grant_type=authorization_code&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A\
             client-assertion-type%3Ajwt-bearer&client_assertion=e30.{payload}.sig"
        );
        let request = TokenRequest::parse(body.as_bytes(), None);
        assert_eq!(request.client_id.as_deref(), Some("jwt-client"));
    }

    #[test]
    fn repeated_grant_type_is_treated_as_absent() {
        let request = TokenRequest::parse(b"grant_type=a&grant_type=b", None);
        assert_eq!(request.grant_type, None);
    }

    #[test]
    fn non_utf8_form_value_is_treated_as_absent() {
        let request = TokenRequest::parse(b"grant_type=%FF%FE&client_id=%C3%28", None);
        assert_eq!(request, TokenRequest::default());
    }

    #[test]
    fn malformed_basic_auth_falls_back_to_the_body() {
        let request = TokenRequest::parse(b"client_id=spa", Some(b"Basic !!!not-base64"));
        assert_eq!(request.client_id.as_deref(), Some("spa"));
    }

    #[test]
    fn token_response_keeps_other_fields_in_order() -> Result<(), Error> {
        let body =
            br#"{"access_token":"at","expires_in":3600,"id_token":"a.b.c","scope":"openid"}"#;
        let rebuilt = TokenResponse::parse(body)?.with_id_token("x.y.z".into());
        assert_eq!(
            String::from_utf8_lossy(&rebuilt),
            r#"{"access_token":"at","expires_in":3600,"id_token":"x.y.z","scope":"openid"}"#
        );
        Ok(())
    }

    #[test]
    fn responses_that_are_not_token_responses_are_named() {
        let cases: [(&str, &[u8]); 5] = [
            ("not json", b"<html>"),
            ("array", b"[1]"),
            (
                "oauth error",
                br#"{"error":"invalid_grant","id_token":"a"}"#,
            ),
            ("no id_token", br#"{"access_token":"x"}"#),
            ("id_token not a string", br#"{"id_token":5}"#),
        ];
        for (name, body) in cases {
            assert!(
                matches!(TokenResponse::parse(body), Err(Error::NotTokenResponse(_))),
                "case {name:?}"
            );
        }
    }
}
