//! Keen.io: a sign-up event in a collection, on a user's first login.
//!
//! Wire format: `POST /3.0/projects/{PROJECT_ID}/events/{COLLECTION}`,
//! `Authorization: <write key>` (the raw key, no scheme), a JSON object
//! body. Keen answers `201 {"created": true}`; 401 for a bad key, 413 for
//! a body too large, 402 when the account is blocked. Failures alert.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    display_name, endpoint, iso8601, parse_fields, Common, Effects, Secret, Start, Target,
};
use crate::delivery::Job;
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Endpoint, Request};

#[derive(Debug, Clone, PartialEq)]
pub struct Keen {
    pub write_key: Secret,
    pub path: String,
    pub endpoint: Endpoint,
    /// Fixed fields added to every event.
    pub extra_fields: Map<String, Value>,
    /// Event fields copied from user fields: event field -> user field.
    pub user_fields: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    project_id: String,
    write_key_env: String,
    #[serde(default = "default_collection")]
    collection: String,
    #[serde(default = "default_url")]
    url: String,
    #[serde(default)]
    extra_fields: Map<String, Value>,
    #[serde(default)]
    user_fields: Map<String, Value>,
}

fn default_collection() -> String {
    "signups".into()
}

fn default_url() -> String {
    "https://api.keen.io".into()
}

fn is_path_segment(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Keen {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let raw: Raw = parse_fields(at, value)?;
        if !is_path_segment(&raw.project_id) {
            return Err(Error::config(
                format!("{at}.project_id"),
                "must be letters, digits, '-', '_' or '.'",
            ));
        }
        if !is_path_segment(&raw.collection) {
            return Err(Error::config(
                format!("{at}.collection"),
                "must be letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some((field, _)) = raw
            .user_fields
            .iter()
            .find(|(_, source)| !source.is_string())
        {
            return Err(Error::config(
                format!("{at}.user_fields.{field}"),
                "must name a user field",
            ));
        }
        let write_key = Secret::from_env(&format!("{at}.write_key_env"), &raw.write_key_env, env)?;
        let base = Target::parse(&format!("{at}.url"), &raw.url)?;
        let prefix = base.path.trim_end_matches('/');
        let path = format!(
            "{prefix}/3.0/projects/{}/events/{}",
            raw.project_id, raw.collection
        );
        let endpoint = endpoint(at, &raw.common, &base.authority, 5_000)?;
        Ok(Keen {
            write_key,
            path,
            endpoint,
            extra_fields: raw.extra_fields,
            user_fields: raw.user_fields,
        })
    }

    /// The sign-up event for this login.
    pub fn request(&self, event: &LoginEvent, now_unix: u64) -> Request {
        let mut body = json!({
            "userId": event.user_id(),
            "name": display_name(event),
            "ip": event.request_str("ip"),
            "keen": {"timestamp": iso8601(now_unix)},
        });
        if let Some(fields) = body.as_object_mut() {
            for (field, source) in &self.user_fields {
                let value = source
                    .as_str()
                    .and_then(|name| event.user().get(name))
                    .cloned();
                fields.insert(field.clone(), value.unwrap_or(Value::Null));
            }
            fields.extend(self.extra_fields.clone());
        }
        Request::post_json(&self.endpoint, self.path.clone(), &body)
            .with_header("authorization", self.write_key.expose().to_string())
            .described("keen event")
    }

    pub fn start(
        &self,
        step: &str,
        event: &LoginEvent,
        now_unix: u64,
        effects: &mut Effects,
    ) -> Start {
        if !event.is_first_login() {
            return Start::Skip("not a first login");
        }
        let request = self.request(event, now_unix);
        let job = Job::send("keen", step, event.user_id(), request, true);
        effects.jobs.push(job);
        Start::Done
    }
}
