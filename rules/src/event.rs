//! The login event: what a step knows about the user and the login.
//!
//! It is built once per token exchange from the verified id_token, the
//! user's record and the token request, and then only read. Its JSON shape
//! (`user`, `context`) is the one rules are written against, so it follows
//! the names teams know from hosted identity services.

use serde_json::{json, Map, Value};

use crate::claims::{VerifiedClaims, RESERVED_CLAIMS};
use crate::record::UserRecord;

/// How the token was obtained, from the request's `grant_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
    TokenExchange,
    /// A grant type Rulegate has no name for (or none was sent).
    Other(String),
}

impl Protocol {
    /// The protocol of a `grant_type`.
    pub fn from_grant_type(grant_type: Option<&str>) -> Protocol {
        match grant_type {
            Some("authorization_code") => Protocol::AuthorizationCode,
            Some("refresh_token") => Protocol::RefreshToken,
            Some("client_credentials") => Protocol::ClientCredentials,
            Some("password") => Protocol::Password,
            Some("urn:ietf:params:oauth:grant-type:token-exchange") => Protocol::TokenExchange,
            Some(other) => Protocol::Other(other.to_string()),
            None => Protocol::Other(String::new()),
        }
    }

    /// `context.protocol`.
    pub fn name(&self) -> &str {
        match self {
            Protocol::AuthorizationCode => "authorization_code",
            Protocol::RefreshToken => "refresh_token",
            Protocol::ClientCredentials => "client_credentials",
            Protocol::Password => "password",
            Protocol::TokenExchange => "token_exchange",
            Protocol::Other(name) => name,
        }
    }

    /// `context.protocol_alias`: the name hosted identity services show.
    pub fn alias(&self) -> &str {
        match self {
            Protocol::AuthorizationCode => "oidc-basic-profile",
            Protocol::RefreshToken => "oauth2-refresh-token",
            Protocol::ClientCredentials => "oauth2-client-credentials",
            Protocol::Password => "oauth2-password",
            Protocol::TokenExchange => "delegation",
            Protocol::Other(name) => name,
        }
    }

    /// Whether this exchange is a person logging in, which counts and
    /// triggers side effects. Refreshes and token exchanges issue tokens for
    /// an earlier login; client credentials have no person at all.
    pub fn is_interactive_login(&self) -> bool {
        matches!(self, Protocol::AuthorizationCode | Protocol::Password)
    }

    /// The label used in metric names.
    pub fn metric_label(&self) -> &str {
        match self {
            Protocol::Other(_) => "other",
            known => known.name(),
        }
    }
}

/// What the filter knows about the login besides the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    pub protocol: Protocol,
    pub client_id: Option<String>,
    /// The name the configuration gives the client, else its id.
    pub client_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Which upstream login the user used.
    pub connection: String,
}

/// The login as steps see it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginEvent {
    /// `{"user": {...}, "context": {...}}`.
    value: Value,
    pub protocol: Protocol,
    /// When a CRM lead for the user was queued, if one is on its way.
    pub lead_queued_at: Option<u64>,
    /// The id_token's `iat`: with the user and the login count it makes
    /// an id for this login that stays unique when the store is lost.
    pub issued_at: u64,
}

impl LoginEvent {
    pub fn new(claims: &VerifiedClaims, record: &UserRecord, info: &LoginInfo) -> LoginEvent {
        let mut user = Map::new();
        user.insert("user_id".into(), Value::from(claims.subject()));
        for (name, value) in claims.as_map() {
            // Protocol claims describe the token, not the user (`sub` is
            // there as `user_id`).
            if name == "sub" || !RESERVED_CLAIMS.contains(&name.as_str()) {
                user.insert(name.clone(), value.clone());
            }
        }
        user.insert(
            "app_metadata".into(),
            Value::Object(record.app_metadata.clone()),
        );
        user.insert(
            "user_metadata".into(),
            Value::Object(record.user_metadata.clone()),
        );

        let context = json!({
            "stats": {"logins_count": record.logins_count},
            "protocol": info.protocol.name(),
            "protocol_alias": info.protocol.alias(),
            "client_id": info.client_id,
            "client_name": info.client_name.as_ref().or(info.client_id.as_ref()),
            "request": {"ip": info.ip, "user_agent": info.user_agent},
            "connection": info.connection,
            "id_token": {},
            "access_token": {},
            "webhooks": {},
        });
        LoginEvent {
            value: json!({"user": user, "context": context}),
            protocol: info.protocol.clone(),
            lead_queued_at: record.lead_queued_at,
            issued_at: claims
                .get("iat")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
        }
    }

    /// The whole event, as rules see it.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// `user.<name>` as a string.
    pub fn user_str(&self, name: &str) -> Option<&str> {
        self.value["user"].get(name).and_then(Value::as_str)
    }

    /// `user.user_id`.
    pub fn user_id(&self) -> &str {
        self.user_str("user_id").unwrap_or_default()
    }

    /// `user`.
    pub fn user(&self) -> &Value {
        &self.value["user"]
    }

    /// `context.<name>` as a string.
    pub fn context_str(&self, name: &str) -> Option<&str> {
        self.value["context"].get(name).and_then(Value::as_str)
    }

    /// `context.request.<name>` as a string.
    pub fn request_str(&self, name: &str) -> Option<&str> {
        self.value["context"]["request"]
            .get(name)
            .and_then(Value::as_str)
    }

    /// `context.stats.logins_count`.
    pub fn logins_count(&self) -> u64 {
        self.value["context"]["stats"]["logins_count"]
            .as_u64()
            .unwrap_or_default()
    }

    /// A first login: interactive, and the first one counted for the user.
    pub fn is_first_login(&self) -> bool {
        self.protocol.is_interactive_login() && self.logins_count() == 1
    }

    /// `user.app_metadata.<name>`.
    pub fn app_metadata(&self, name: &str) -> Option<&Value> {
        self.value["user"]["app_metadata"].get(name)
    }

    /// `user.user_metadata.<name>`.
    pub fn user_metadata(&self, name: &str) -> Option<&Value> {
        self.value["user"]["user_metadata"].get(name)
    }

    /// Records a claim an earlier rule added to the access token.
    pub fn note_access_claim(&mut self, claim: &str, value: &Value) {
        if let Some(claims) = self.value["context"]["access_token"].as_object_mut() {
            claims.insert(claim.to_string(), value.clone());
        }
    }

    /// Records the answer of a rule's awaited webhook, as
    /// `context.webhooks.<rule>`.
    pub fn note_webhook_answer(&mut self, rule: &str, answer: Value) {
        if let Some(answers) = self.value["context"]["webhooks"].as_object_mut() {
            answers.insert(rule.to_string(), answer);
        }
    }

    /// Records a claim an earlier step added, for later steps to see.
    pub fn note_claim(&mut self, claim: &str, value: &Value) {
        if let Some(claims) = self.value["context"]["id_token"].as_object_mut() {
            claims.insert(claim.to_string(), value.clone());
        }
    }
}

/// The client's address: the downstream peer, or, behind trusted proxies,
/// the address `trusted_hops` entries from the right of the forwarding
/// header (each trusted proxy appends the address it saw).
pub fn client_ip(
    downstream: Option<&str>,
    forwarded_for: Option<&str>,
    trusted_hops: u32,
) -> Option<String> {
    if trusted_hops > 0 {
        let hops: Vec<&str> = forwarded_for
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        let index = hops.len().checked_sub(trusted_hops as usize)?;
        return hops.get(index).map(|hop| hop.to_string());
    }
    downstream.map(strip_port)
}

/// `1.2.3.4:5678` -> `1.2.3.4`, `[::1]:80` -> `::1`.
fn strip_port(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => {
            host.to_string()
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_have_their_familiar_names() {
        let cases = [
            (
                "authorization_code",
                "authorization_code",
                "oidc-basic-profile",
                true,
            ),
            (
                "refresh_token",
                "refresh_token",
                "oauth2-refresh-token",
                false,
            ),
            (
                "client_credentials",
                "client_credentials",
                "oauth2-client-credentials",
                false,
            ),
            ("password", "password", "oauth2-password", true),
            (
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "token_exchange",
                "delegation",
                false,
            ),
        ];
        for (grant, name, alias, interactive) in cases {
            let protocol = Protocol::from_grant_type(Some(grant));
            assert_eq!(protocol.name(), name, "{grant}");
            assert_eq!(protocol.alias(), alias, "{grant}");
            assert_eq!(protocol.is_interactive_login(), interactive, "{grant}");
        }
        assert_eq!(Protocol::from_grant_type(None).metric_label(), "other");
    }

    /// Name, downstream peer, forwarding header, trusted hops, expected.
    type IpCase<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u32,
        Option<&'a str>,
    );

    #[test]
    fn client_ip_table() {
        let cases: [IpCase; 7] = [
            (
                "downstream ipv4",
                Some("10.1.2.3:5555"),
                None,
                0,
                Some("10.1.2.3"),
            ),
            (
                "downstream ipv6",
                Some("[2001:db8::1]:443"),
                None,
                0,
                Some("2001:db8::1"),
            ),
            (
                "header ignored without trusted hops",
                Some("10.0.0.1:1"),
                Some("6.6.6.6"),
                0,
                Some("10.0.0.1"),
            ),
            (
                "one trusted hop",
                Some("10.0.0.1:1"),
                Some("6.6.6.6, 203.0.113.7"),
                1,
                Some("203.0.113.7"),
            ),
            (
                "two trusted hops",
                None,
                Some("203.0.113.7, 10.0.0.2"),
                2,
                Some("203.0.113.7"),
            ),
            (
                "fewer entries than hops",
                None,
                Some("203.0.113.7"),
                2,
                None,
            ),
            ("no header", None, None, 1, None),
        ];
        for (name, downstream, header, hops, expected) in cases {
            assert_eq!(
                client_ip(downstream, header, hops).as_deref(),
                expected,
                "case {name:?}"
            );
        }
    }
}
