//! Segment's HTTP Tracking API: "Signed up" on a first login, "Logged in"
//! on later ones.
//!
//! Wire format: `POST /v1/track`, `Authorization: Basic
//! base64("<writeKey>:")`, `Content-Type: application/json`, body with
//! `userId`, `event`, `properties`, `context` (`ip`, `userAgent`),
//! `timestamp` (ISO-8601) and `messageId`. The `messageId` is derived from
//! the user and the login, so a retried delivery is recognised by Segment
//! as the same event. Segment answers 200 to nearly everything; 400 for
//! invalid JSON, 429 with `Retry-After`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{endpoint, iso8601, login_id, parse_fields, Common, Effects, Secret, Start, Target};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::{LoginEvent, Protocol};
use crate::http::{Endpoint, Request};

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub write_key: Secret,
    pub target: Target,
    pub endpoint: Endpoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    write_key_env: String,
    #[serde(default = "default_url")]
    url: String,
}

fn default_url() -> String {
    "https://api.segment.io/v1/track".into()
}

impl Segment {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let raw: Raw = parse_fields(at, value)?;
        let write_key = Secret::from_env(&format!("{at}.write_key_env"), &raw.write_key_env, env)?;
        let target = Target::parse(&format!("{at}.url"), &raw.url)?;
        let endpoint = endpoint(at, &raw.common, &target.authority, 5_000)?;
        Ok(Segment {
            write_key,
            target,
            endpoint,
        })
    }

    /// The `track` call for this login.
    pub fn request(&self, event: &LoginEvent, now_unix: u64) -> Request {
        let name = if event.logins_count() <= 1 {
            "Signed up"
        } else {
            "Logged in"
        };
        let body = json!({
            "type": "track",
            "userId": event.user_id(),
            "event": name,
            "properties": {"app": event.context_str("client_name")},
            "context": {
                "ip": event.request_str("ip"),
                "userAgent": event.request_str("user_agent"),
            },
            "timestamp": iso8601(now_unix),
            "messageId": login_id(event, "segment"),
        });
        let credentials = STANDARD.encode(format!("{}:", self.write_key.expose()));
        Request::post_json(&self.endpoint, self.target.path.clone(), &body)
            .with_header("authorization", format!("Basic {credentials}"))
            .described("segment track")
    }

    pub fn start(
        &self,
        step: &str,
        event: &LoginEvent,
        now_unix: u64,
        effects: &mut Effects,
    ) -> Start {
        if matches!(
            event.protocol,
            Protocol::RefreshToken | Protocol::TokenExchange
        ) {
            return Start::Skip("refresh and token exchange are not logins");
        }
        if !event.protocol.is_interactive_login() {
            return Start::Skip("not an interactive login");
        }
        let request = self.request(event, now_unix);
        let job = Job::send("segment", step, event.user_id(), request, false);
        effects.jobs.push(job);
        Start::Done
    }
}
