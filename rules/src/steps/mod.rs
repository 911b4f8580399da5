//! The built-in steps: what each one does on a login, and the exact HTTP
//! requests it sends.
//!
//! A step is started with the login event and answers what it needs:
//! nothing, an awaited call (the login waits for its answer), or background
//! deliveries handed to the outbox. Steps never perform I/O; the pipeline
//! and the filter do. Each step module documents the service's wire format
//! it follows.

pub mod fullcontact;
pub mod keen;
pub mod salesforce;
pub mod segment;
pub mod slack;
pub mod zapier;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{parse_value_at, split_origin};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Answer, Endpoint, Request};
use crate::record::RecordChange;

/// A secret from the environment. Its value is never printed: `Debug`
/// shows the variable's name only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    variable: String,
    value: String,
}

impl Secret {
    /// Reads `variable` through `env`; `field` names the configuration field
    /// in the error.
    pub fn from_env(
        field: &str,
        variable: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, Error> {
        if variable.is_empty() {
            return Err(Error::config(field, "must name an environment variable"));
        }
        match env(variable) {
            Some(value) if !value.trim().is_empty() => Ok(Secret {
                variable: variable.to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(Error::config(
                field,
                format!(
                    "environment variable {variable} is not set; set it for Envoy and list it in \
                     vm_config.environment_variables.host_env_keys"
                ),
            )),
        }
    }

    /// The secret itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// A secret for tests.
    pub fn for_tests(value: &str) -> Secret {
        Secret {
            variable: "TEST".into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(${})", self.variable)
    }
}

/// A URL split into where Envoy sends it (`authority`) and what it asks
/// for (`path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Splits an absolute http(s) URL.
    pub fn parse(field: &str, url: &str) -> Result<Target, Error> {
        let (origin, authority) = split_origin(url)
            .ok_or_else(|| Error::config(field, "must be an absolute http(s) URL"))?;
        let path = &url[origin.len()..];
        Ok(Target {
            authority: authority.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
        })
    }
}

/// What every step has in its configuration besides its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Report the failure and go on with the login (the default, except
    /// for rules that can deny).
    Continue,
    /// Report the failure and deny the login.
    Deny,
}

/// How a step begins.
#[derive(Debug)]
pub enum Start {
    /// The step does not apply to this login; the reason is reported.
    Skip(&'static str),
    /// The step did its work (claims, background jobs, record changes).
    Done,
    /// The step needs this call's answer before the login can go on.
    Await(Request),
}

/// What steps add to the login's outcome.
#[derive(Debug, Default)]
pub struct Effects {
    /// Claims to add to the id_token, by full name.
    pub id_token_claims: Map<String, Value>,
    /// Background deliveries.
    pub jobs: Vec<Job>,
    /// Changes to the user's record.
    pub record: RecordChange,
}

/// A step's settings that depend on the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Builtin {
    FullContact(fullcontact::FullContact),
    SlackSignup(slack::SlackSignup),
    Segment(segment::Segment),
    Keen(keen::Keen),
    Zapier(zapier::Zapier),
    Salesforce(salesforce::Salesforce),
}

impl Builtin {
    /// The step types this module knows, as written in `type`.
    pub const TYPES: [&'static str; 6] = [
        "fullcontact",
        "slack_signup",
        "segment",
        "keen",
        "zapier",
        "salesforce",
    ];

    /// Parses the settings of a built-in step of type `kind`.
    pub fn parse(
        kind: &str,
        at: &str,
        value: Value,
        namespace: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Builtin, Error> {
        Ok(match kind {
            "fullcontact" => {
                Builtin::FullContact(fullcontact::FullContact::parse(at, value, namespace, env)?)
            }
            "slack_signup" => Builtin::SlackSignup(slack::SlackSignup::parse(at, value, env)?),
            "segment" => Builtin::Segment(segment::Segment::parse(at, value, env)?),
            "keen" => Builtin::Keen(keen::Keen::parse(at, value, env)?),
            "zapier" => Builtin::Zapier(zapier::Zapier::parse(at, value, env)?),
            "salesforce" => Builtin::Salesforce(salesforce::Salesforce::parse(at, value, env)?),
            other => {
                return Err(Error::config(
                    format!("{at}.type"),
                    format!("unknown step type {other:?}"),
                ))
            }
        })
    }

    /// The service label used in metrics.
    pub fn service(&self) -> &'static str {
        match self {
            Builtin::FullContact(_) => "fullcontact",
            Builtin::SlackSignup(_) => "slack",
            Builtin::Segment(_) => "segment",
            Builtin::Keen(_) => "keen",
            Builtin::Zapier(_) => "zapier",
            Builtin::Salesforce(_) => "salesforce",
        }
    }

    /// Every secret of the step, so that answers echoing one can be masked.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Builtin::FullContact(step) => vec![&step.api_key],
            Builtin::SlackSignup(step) => vec![&step.webhook.secret],
            Builtin::Segment(step) => vec![&step.write_key],
            Builtin::Keen(step) => vec![&step.write_key],
            Builtin::Zapier(step) => vec![&step.hook.secret],
            Builtin::Salesforce(step) => step.secrets(),
        }
    }

    /// Begins the step for `event`.
    pub fn start(
        &self,
        step: &str,
        event: &LoginEvent,
        now_unix: u64,
        effects: &mut Effects,
    ) -> Start {
        match self {
            Builtin::FullContact(s) => s.start(event, effects),
            Builtin::SlackSignup(s) => s.start(step, event, effects),
            Builtin::Segment(s) => s.start(step, event, now_unix, effects),
            Builtin::Keen(s) => s.start(step, event, now_unix, effects),
            Builtin::Zapier(s) => s.start(step, event, effects),
            Builtin::Salesforce(s) => s.start(step, event, now_unix, effects),
        }
    }

    /// Handles the answer to the awaited call the step asked for. An error
    /// is the step's failure, reported with the answer's summary.
    pub fn on_answer(
        &self,
        event: &LoginEvent,
        answer: &Answer,
        effects: &mut Effects,
    ) -> Result<(), String> {
        match self {
            Builtin::FullContact(s) => s.on_answer(event, answer, effects),
            _ => Err("this step makes no awaited call".into()),
        }
    }
}

/// A webhook whose whole URL is the secret (Slack, Zapier).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretUrl {
    pub secret: Secret,
    pub target: Target,
}

impl SecretUrl {
    fn from_env(
        field: &str,
        variable: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SecretUrl, Error> {
        let secret = Secret::from_env(field, variable, env)?;
        let target = Target::parse(field, secret.expose()).map_err(|_| {
            Error::config(
                field,
                format!("{variable} must hold an absolute http(s) URL"),
            )
        })?;
        Ok(SecretUrl { secret, target })
    }
}

/// Settings every service step shares.
#[derive(Debug, Clone, Deserialize)]
struct Common {
    cluster: String,
    timeout_ms: Option<u64>,
}

fn endpoint(
    at: &str,
    common: &Common,
    authority: &str,
    default_timeout_ms: u64,
) -> Result<Endpoint, Error> {
    if common.cluster.is_empty() {
        return Err(Error::config(
            format!("{at}.cluster"),
            "must name an Envoy cluster",
        ));
    }
    let timeout_ms = common.timeout_ms.unwrap_or(default_timeout_ms);
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(Error::config(
            format!("{at}.timeout_ms"),
            "must be between 1 and 60000",
        ));
    }
    Ok(Endpoint {
        cluster: common.cluster.clone(),
        authority: authority.to_string(),
        timeout_ms,
    })
}

/// Parses the step-specific fields, with the common ones (`name`, `type`,
/// `enabled`, `on_error`) removed first.
fn parse_fields<T: serde::de::DeserializeOwned>(at: &str, value: Value) -> Result<T, Error> {
    parse_value_at(at, crate::config::without_common(value))
}

/// The user's display name: `name`, else the email, else the user id.
pub(crate) fn display_name(event: &LoginEvent) -> String {
    event
        .user_str("name")
        .filter(|name| !name.trim().is_empty())
        .or_else(|| event.user_str("email"))
        .unwrap_or_else(|| event.user_id())
        .to_string()
}

/// RFC 3339 time of `unix` seconds.
pub(crate) fn iso8601(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A stable id for one login of one user, for services that deduplicate.
pub fn login_id(event: &LoginEvent, purpose: &str) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{purpose}\n{}\n{}\n{}",
        event.user_id(),
        event.logins_count(),
        event.issued_at
    );
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("rulegate-{hex}")
}
