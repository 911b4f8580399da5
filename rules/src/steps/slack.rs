//! Slack incoming webhooks: the sign-up message and the alert channel.
//!
//! Wire format: `POST` to the webhook URL (the URL is the credential, so it
//! comes from the environment and is never logged), `Content-Type:
//! application/json`, body `{"text": "..."}`. Slack answers `200 ok` as
//! plain text; errors are plain text too (`invalid_payload`, `no_text`,
//! `channel_not_found`, ...), with 429 and `Retry-After` over its rate.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{display_name, endpoint, parse_fields, Common, Effects, SecretUrl, Start};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Endpoint, Request};

/// Posts "New User: NAME (EMAIL)" on a user's first login.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackSignup {
    pub webhook: SecretUrl,
    pub endpoint: Endpoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    webhook_url_env: String,
}

/// Parses `{cluster, webhook_url_env, timeout_ms}`, shared by both uses.
fn parse_webhook(
    at: &str,
    value: Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SecretUrl, Endpoint), Error> {
    let raw: Raw = parse_fields(at, value)?;
    let webhook = SecretUrl::from_env(&format!("{at}.webhook_url_env"), &raw.webhook_url_env, env)?;
    let endpoint = endpoint(at, &raw.common, &webhook.target.authority, 5_000)?;
    Ok((webhook, endpoint))
}

fn post_text(webhook: &SecretUrl, endpoint: &Endpoint, text: &str, target: &str) -> Request {
    Request::post_json(
        endpoint,
        webhook.target.path.clone(),
        &json!({ "text": text }),
    )
    .described(target)
}

impl SlackSignup {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let (webhook, endpoint) = parse_webhook(at, value, env)?;
        Ok(SlackSignup { webhook, endpoint })
    }

    /// The message for a new user.
    pub fn message(event: &LoginEvent) -> String {
        let email = event.user_str("email").unwrap_or_default();
        format!("New User: {} ({email})", display_name(event))
    }

    pub fn start(&self, step: &str, event: &LoginEvent, effects: &mut Effects) -> Start {
        if !event.is_first_login() {
            return Start::Skip("not a first login");
        }
        let request = post_text(
            &self.webhook,
            &self.endpoint,
            &Self::message(event),
            "slack webhook",
        );
        let job = Job::send("slack", step, event.user_id(), request, false);
        effects.jobs.push(job);
        Start::Done
    }
}

/// Where step failures are reported: a Slack channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackAlert {
    pub webhook: SecretUrl,
    pub endpoint: Endpoint,
}

impl SlackAlert {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let (webhook, endpoint) = parse_webhook(at, value, env)?;
        Ok(SlackAlert { webhook, endpoint })
    }

    /// The alert for a failed step. `failure` must already be free of
    /// secrets (see [`crate::pipeline`]'s masking).
    pub fn job(&self, step: &str, failure: &str) -> Job {
        let text = format!("Rulegate step {step} failed: {failure}");
        let request = post_text(&self.webhook, &self.endpoint, &text, "slack alert webhook");
        Job::send("alert", step, "", request, false)
    }
}
