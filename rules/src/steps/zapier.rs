//! A Zapier catch hook: the new user's profile, on a first login, so that
//! a team can start any workflow from a sign-up.
//!
//! Wire format: `POST` to the hook URL (the URL is the only credential:
//! it comes from the environment and is never logged), JSON body. Zapier
//! answers `200 {"attempt", "id", "request_id", "status": "success"}`, 429
//! over 30 requests a second.

use serde::Deserialize;
use serde_json::Value;

use super::{endpoint, parse_fields, Common, Effects, SecretUrl, Start};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Endpoint, Request};

#[derive(Debug, Clone, PartialEq)]
pub struct Zapier {
    pub hook: SecretUrl,
    pub endpoint: Endpoint,
    /// `strategy` sent with the profile: the kind of upstream login.
    pub strategy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    hook_url_env: String,
    #[serde(default = "default_strategy")]
    strategy: String,
}

fn default_strategy() -> String {
    "oidc".into()
}

impl Zapier {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let raw: Raw = parse_fields(at, value)?;
        let hook = SecretUrl::from_env(&format!("{at}.hook_url_env"), &raw.hook_url_env, env)?;
        let endpoint = endpoint(at, &raw.common, &hook.target.authority, 5_000)?;
        Ok(Zapier {
            hook,
            endpoint,
            strategy: raw.strategy,
        })
    }

    /// The user's profile merged with the login's context.
    pub fn request(&self, event: &LoginEvent) -> Request {
        let mut body = event.user().clone();
        if let Some(fields) = body.as_object_mut() {
            let context = [
                ("appName", event.context_str("client_name")),
                ("userAgent", event.request_str("user_agent")),
                ("ip", event.request_str("ip")),
                ("connection", event.context_str("connection")),
                ("strategy", Some(self.strategy.as_str())),
            ];
            for (name, value) in context {
                fields.insert(name.into(), value.map_or(Value::Null, Value::from));
            }
        }
        Request::post_json(&self.endpoint, self.hook.target.path.clone(), &body)
            .described("zapier hook")
    }

    pub fn start(&self, step: &str, event: &LoginEvent, effects: &mut Effects) -> Start {
        if !event.is_first_login() {
            return Start::Skip("not a first login");
        }
        let request = self.request(event);
        let job = Job::send("zapier", step, event.user_id(), request, false);
        effects.jobs.push(job);
        Start::Done
    }
}
