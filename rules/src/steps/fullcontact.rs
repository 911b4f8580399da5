//! FullContact person enrichment: the login waits for it, because its
//! result goes into the id_token.
//!
//! Wire format (v3): `POST /v3/person.enrich`, `Authorization: Bearer
//! <key>`, `Content-Type: application/json`, body `{"email": "..."}`.
//! 200 is the person (`fullName`, `location`, `title`, `organization`,
//! ...); 202 means queued (no data yet), 404 no match, 401/403 a bad key or
//! quota, 422 a bad parameter, 429 and 5xx transient. Anything but 200 is a
//! failure: it is alerted and the login goes on without the claim.
//!
//! A user is enriched once: the result is stored in `user_metadata` and
//! every later token for the user (logins and refreshes) carries the stored
//! result without a call.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{endpoint, parse_fields, Common, Effects, Secret, Start, Target};
use crate::config::{check_claim_name, check_namespace};
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Answer, Endpoint, Request};

/// Where the result is kept in `user_metadata`.
pub const METADATA_FIELD: &str = "fullcontact";

/// The `app_metadata` field that records that FullContact has no person
/// for the user's email.
pub const NO_MATCH_FIELD: &str = "fullcontactNoMatch";

#[derive(Debug, Clone, PartialEq)]
pub struct FullContact {
    pub api_key: Secret,
    pub target: Target,
    pub endpoint: Endpoint,
    /// Full name of the id_token claim.
    pub claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    api_key_env: String,
    #[serde(default = "default_url")]
    url: String,
    #[serde(default = "default_claim")]
    claim: String,
}

fn default_url() -> String {
    "https://api.fullcontact.com/v3/person.enrich".into()
}

fn default_claim() -> String {
    "fullcontact".into()
}

impl FullContact {
    pub fn parse(
        at: &str,
        value: Value,
        namespace: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let raw: Raw = parse_fields(at, value)?;
        check_claim_name(&format!("{at}.claim"), &raw.claim)?;
        let namespace = check_namespace(namespace)?;
        let api_key = Secret::from_env(&format!("{at}.api_key_env"), &raw.api_key_env, env)?;
        let target = Target::parse(&format!("{at}.url"), &raw.url)?;
        let endpoint = endpoint(at, &raw.common, &target.authority, 2_000)?;
        Ok(FullContact {
            api_key,
            target,
            endpoint,
            claim: format!("{namespace}{}", raw.claim),
        })
    }

    /// The enrichment call for `email`.
    pub fn request(&self, email: &str) -> Request {
        Request::post_json(
            &self.endpoint,
            self.target.path.clone(),
            &json!({ "email": email }),
        )
        .with_header("authorization", format!("Bearer {}", self.api_key.expose()))
        .described("fullcontact person.enrich")
    }

    pub fn start(&self, event: &LoginEvent, effects: &mut Effects) -> Start {
        if let Some(stored) = event.user_metadata(METADATA_FIELD) {
            effects
                .id_token_claims
                .insert(self.claim.clone(), stored.clone());
            return Start::Done;
        }
        if event.app_metadata(NO_MATCH_FIELD) == Some(&Value::Bool(true)) {
            return Start::Skip("FullContact knows no person for this email");
        }
        if !event.protocol.is_interactive_login() {
            return Start::Skip("not enriched yet, and only logins call the service");
        }
        match event.user_str("email").filter(|email| !email.is_empty()) {
            Some(email) => Start::Await(self.request(email)),
            None => Start::Skip("the user has no email"),
        }
    }

    pub fn on_answer(
        &self,
        _event: &LoginEvent,
        answer: &Answer,
        effects: &mut Effects,
    ) -> Result<(), String> {
        if answer.code() == Some(404) {
            // No match is an answer, not a failure: remember it, so that the
            // service is not asked (and paid) again on every login.
            effects
                .record
                .app_metadata
                .insert(NO_MATCH_FIELD.into(), Value::Bool(true));
            return Ok(());
        }
        if answer.code() != Some(200) {
            return Err(answer.summary());
        }
        let person: Value = serde_json::from_slice(answer.body())
            .map_err(|_| format!("the answer is not JSON ({})", answer.summary()))?;
        if !person.is_object() {
            return Err(format!(
                "the answer is not a JSON object ({})",
                answer.summary()
            ));
        }
        effects
            .id_token_claims
            .insert(self.claim.clone(), person.clone());
        effects
            .record
            .user_metadata
            .insert(METADATA_FIELD.into(), person);
        Ok(())
    }
}
