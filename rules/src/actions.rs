//! Configured rules: what a team writes in the configuration instead of
//! code. A rule sets or removes claims in the id_token and the access
//! token, denies the login, records metadata, or calls a webhook; values are
//! CEL expressions over the login event (see [`crate::expr`]).
//!
//! Everything is checked when the configuration loads: expressions compile,
//! claim names are allowed, a webhook's URL belongs to an origin the
//! configuration maps to an Envoy cluster, and its signing secret exists.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::claims::RESERVED_CLAIMS;
use crate::config::{check_claim_name, check_namespace, parse_value_at, split_origin};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::LoginEvent;
use crate::expr::{Expr, Scope};
use crate::http::{Answer, Endpoint, Request};
use crate::steps::{login_id, Secret};

/// How claim names are written in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimNaming<'a> {
    pub namespace: Option<&'a str>,
    /// Names are used as written, without the namespace.
    pub allow_plain: bool,
}

impl ClaimNaming<'_> {
    /// The full name of a claim a rule sets.
    pub fn full_name(&self, field: &str, claim: &str) -> Result<String, Error> {
        check_claim_name(field, claim)?;
        if self.allow_plain {
            return Ok(claim.to_string());
        }
        let namespace = check_namespace(self.namespace)?;
        Ok(format!("{namespace}{claim}"))
    }
}

/// A configured rule's actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// Claims to set in the id_token: full name, value.
    pub id_token: Vec<(String, Expr)>,
    /// Claims to set in the access token.
    pub access_token: Vec<(String, Expr)>,
    pub remove_id_token: Vec<String>,
    pub remove_access_token: Vec<String>,
    /// Deny the login with this reason.
    pub deny: Option<Expr>,
    pub app_metadata: Vec<(String, Expr)>,
    pub user_metadata: Vec<(String, Expr)>,
    pub webhook: Option<Webhook>,
}

/// A call to a team's own endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub endpoint: Endpoint,
    pub path: String,
    /// Body fields and their values.
    pub body: Vec<(String, Expr)>,
    /// The login waits for the answer, which later rules then see as
    /// `context.webhooks.<rule>`.
    pub awaited: bool,
    /// Standard Webhooks signing key.
    pub signing_key: Option<(Secret, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    #[serde(default)]
    id_token: BTreeMap<String, String>,
    #[serde(default)]
    access_token: BTreeMap<String, String>,
    #[serde(default)]
    remove: RawRemove,
    deny: Option<String>,
    #[serde(default)]
    app_metadata: BTreeMap<String, String>,
    #[serde(default)]
    user_metadata: BTreeMap<String, String>,
    webhook: Option<RawWebhook>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRemove {
    #[serde(default)]
    id_token: Vec<String>,
    #[serde(default)]
    access_token: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    body: BTreeMap<String, String>,
    #[serde(default, rename = "await")]
    awaited: bool,
    signing_secret_env: Option<String>,
    timeout_ms: Option<u64>,
}

/// Where webhooks may go: origin (`https://hooks.example.com`) -> cluster.
pub type WebhookOrigins = BTreeMap<String, String>;

impl Actions {
    /// Every expression of the actions.
    pub fn expressions(&self) -> impl Iterator<Item = &Expr> {
        let hook = self.webhook.iter().flat_map(|hook| hook.body.iter());
        self.id_token
            .iter()
            .chain(&self.access_token)
            .chain(&self.app_metadata)
            .chain(&self.user_metadata)
            .chain(hook)
            .map(|(_, expr)| expr)
            .chain(&self.deny)
    }

    /// Parses a `rule`'s actions; `value` holds only the action fields.
    pub fn parse(
        at: &str,
        value: Value,
        naming: ClaimNaming,
        origins: &WebhookOrigins,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Actions, Error> {
        let raw: RawActions = parse_value_at(at, value)?;
        let claims =
            |token: &str, map: BTreeMap<String, String>| -> Result<Vec<(String, Expr)>, Error> {
                map.into_iter()
                    .map(|(claim, source)| {
                        let field = format!("{at}.{token}.{claim}");
                        Ok((
                            naming.full_name(&field, &claim)?,
                            Expr::compile(&field, &source)?,
                        ))
                    })
                    .collect()
            };
        let removals = |token: &str, names: Vec<String>| -> Result<Vec<String>, Error> {
            for (index, name) in names.iter().enumerate() {
                if name.is_empty() || RESERVED_CLAIMS.contains(&name.as_str()) {
                    return Err(Error::config(
                        format!("{at}.remove.{token}[{index}]"),
                        format!("{name:?} is a reserved claim and cannot be removed"),
                    ));
                }
            }
            Ok(names)
        };
        let fields =
            |kind: &str, map: BTreeMap<String, String>| -> Result<Vec<(String, Expr)>, Error> {
                map.into_iter()
                    .map(|(name, source)| {
                        let field = format!("{at}.{kind}.{name}");
                        Ok((name, Expr::compile(&field, &source)?))
                    })
                    .collect()
            };
        let actions = Actions {
            id_token: claims("id_token", raw.id_token)?,
            access_token: claims("access_token", raw.access_token)?,
            remove_id_token: removals("id_token", raw.remove.id_token)?,
            remove_access_token: removals("access_token", raw.remove.access_token)?,
            deny: match raw.deny {
                Some(source) => Some(Expr::compile(&format!("{at}.deny"), &source)?),
                None => None,
            },
            app_metadata: fields("app_metadata", raw.app_metadata)?,
            user_metadata: fields("user_metadata", raw.user_metadata)?,
            webhook: match raw.webhook {
                Some(webhook) => Some(Webhook::parse(
                    &format!("{at}.webhook"),
                    webhook,
                    origins,
                    env,
                )?),
                None => None,
            },
        };
        if actions.is_empty() {
            return Err(Error::config(
                at,
                "does nothing: give id_token, access_token, remove, deny, app_metadata, \
                 user_metadata or webhook",
            ));
        }
        Ok(actions)
    }

    fn is_empty(&self) -> bool {
        self.id_token.is_empty()
            && self.access_token.is_empty()
            && self.remove_id_token.is_empty()
            && self.remove_access_token.is_empty()
            && self.deny.is_none()
            && self.app_metadata.is_empty()
            && self.user_metadata.is_empty()
            && self.webhook.is_none()
    }

    /// Whether the rule changes anything beyond the tokens: such rules run
    /// on interactive logins only, unless their `protocols` say otherwise.
    pub fn has_side_effects(&self) -> bool {
        self.webhook.is_some() || !self.app_metadata.is_empty() || !self.user_metadata.is_empty()
    }
}

impl Webhook {
    fn parse(
        at: &str,
        raw: RawWebhook,
        origins: &WebhookOrigins,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Webhook, Error> {
        let url_field = format!("{at}.url");
        let (origin, authority) = split_origin(&raw.url)
            .ok_or_else(|| Error::config(&url_field, "must be an absolute http(s) URL"))?;
        let Some(cluster) = origins.get(origin) else {
            return Err(Error::config(
                url_field,
                format!(
                    "origin {origin} is not in webhook_origins (map it to an Envoy cluster there)"
                ),
            ));
        };
        let path = match &raw.url[origin.len()..] {
            "" => "/".to_string(),
            path => path.to_string(),
        };
        let mut body = Vec::with_capacity(raw.body.len());
        for (name, source) in raw.body {
            let expr = Expr::compile(&format!("{at}.body.{name}"), &source)?;
            body.push((name, expr));
        }
        let signing_key = match raw.signing_secret_env {
            Some(variable) => {
                let field = format!("{at}.signing_secret_env");
                let secret = Secret::from_env(&field, &variable, env)?;
                let encoded = secret
                    .expose()
                    .strip_prefix("whsec_")
                    .unwrap_or(secret.expose());
                let key = STANDARD.decode(encoded).map_err(|_| {
                    Error::config(
                        &field,
                        format!("{variable} must hold a secret like whsec_<base64>"),
                    )
                })?;
                Some((secret, key))
            }
            None => None,
        };
        let timeout_ms = raw
            .timeout_ms
            .unwrap_or(if raw.awaited { 2_000 } else { 5_000 });
        if timeout_ms == 0 || timeout_ms > 60_000 {
            return Err(Error::config(
                format!("{at}.timeout_ms"),
                "must be between 1 and 60000",
            ));
        }
        Ok(Webhook {
            endpoint: Endpoint {
                cluster: cluster.clone(),
                authority: authority.to_string(),
                timeout_ms,
            },
            path,
            body,
            awaited: raw.awaited,
            signing_key,
        })
    }

    /// The request for this login: a JSON body from the expressions, signed
    /// per Standard Webhooks when a secret is configured. The id and
    /// timestamp are fixed here, so retries carry the same signature.
    pub fn request(
        &self,
        rule: &str,
        event: &LoginEvent,
        scope: &Scope,
        now_unix: u64,
    ) -> Result<Request, String> {
        let mut body = Map::new();
        for (name, expr) in &self.body {
            body.insert(name.clone(), expr.eval(scope)?);
        }
        let body = Value::Object(body);
        let mut request =
            Request::post_json(&self.endpoint, self.path.clone(), &body).described("webhook");
        if let Some((_, key)) = &self.signing_key {
            let id = format!("msg_{}", login_id(event, rule));
            let timestamp = now_unix.to_string();
            let signature = sign(key, &id, &timestamp, &request.body);
            request = request
                .with_header("webhook-id", id)
                .with_header("webhook-timestamp", timestamp)
                .with_header("webhook-signature", format!("v1,{signature}"));
        }
        Ok(request)
    }

    /// A background delivery of `request`.
    pub fn job(&self, rule: &str, event: &LoginEvent, request: Request) -> Job {
        Job::send("webhook", rule, event.user_id(), request, true)
    }

    /// What an awaited call's answer becomes for later rules.
    pub fn answer_value(answer: &Answer) -> Value {
        let body = serde_json::from_slice::<Value>(answer.body())
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(answer.body()).into_owned()));
        serde_json::json!({"status": answer.code(), "body": body})
    }
}

/// The Standard Webhooks signature: base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature_matches_the_specification_example() {
        // The example of the Standard Webhooks specification's reference
        // implementations: secret, id, timestamp, payload and signature.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
