//! Salesforce: a Lead for each new user, once, recorded in `app_metadata`.
//!
//! Wire format:
//! - Token: `POST /services/oauth2/token` on the login host, form body
//!   `grant_type=client_credentials&client_id=..&client_secret=..` (or the
//!   password flow with `username` and `password`). The answer carries
//!   `access_token` and `instance_url`; it has no lifetime, so the token is
//!   cached for `token_ttl_s` or until Salesforce says it is invalid.
//! - Lead: `POST {instance_url}/services/data/v67.0/sobjects/Lead/`,
//!   `Authorization: Bearer <token>`, JSON with `LastName` and `Company`
//!   (required) and `FirstName`, `Email`, `LeadSource`. `201 {"id", "success":
//!   true}` on success; errors are a JSON array of `{errorCode, message}`.
//!   `401 INVALID_SESSION_ID` means the token expired: a new token is taken
//!   once and the lead retried once.
//!
//! On success `app_metadata.recordedAsLead` becomes `true` and the lead is
//! never created again for the user.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{display_name, endpoint, parse_fields, Common, Effects, Secret, Start, Target};
use crate::delivery::{Job, Work};
use crate::error::Error;
use crate::event::LoginEvent;
use crate::http::{Answer, Endpoint, Request};
use crate::record::{RecordChange, LEAD_HOLD_S};

/// The `app_metadata` field that says the lead exists.
pub const RECORDED_AS_LEAD: &str = "recordedAsLead";

const LEAD_PATH: &str = "/services/data/v67.0/sobjects/Lead/";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    ClientCredentials,
    Password,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Salesforce {
    pub client_id: Secret,
    pub client_secret: Secret,
    /// User name and password, for the password flow.
    pub user: Option<(Secret, Secret)>,
    pub login: Endpoint,
    pub token_path: String,
    /// The cluster that reaches the instance named by `instance_url`.
    pub api_cluster: String,
    pub company: String,
    pub lead_source: String,
    pub token_ttl_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(flatten)]
    common: Common,
    api_cluster: String,
    client_id_env: String,
    client_secret_env: String,
    #[serde(default = "default_flow")]
    flow: Flow,
    username_env: Option<String>,
    password_env: Option<String>,
    #[serde(default = "default_login_url")]
    login_url: String,
    company: String,
    #[serde(default = "default_lead_source")]
    lead_source: String,
    #[serde(default = "default_token_ttl_s")]
    token_ttl_s: u64,
}

fn default_flow() -> Flow {
    Flow::ClientCredentials
}
fn default_login_url() -> String {
    "https://login.salesforce.com".into()
}
fn default_lead_source() -> String {
    "Rulegate".into()
}
fn default_token_ttl_s() -> u64 {
    3_600
}

impl Salesforce {
    pub fn parse(
        at: &str,
        value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let raw: Raw = parse_fields(at, value)?;
        if raw.company.trim().is_empty() {
            return Err(Error::config(
                format!("{at}.company"),
                "must not be empty (Lead.Company is required)",
            ));
        }
        if raw.api_cluster.is_empty() {
            return Err(Error::config(
                format!("{at}.api_cluster"),
                "must name the cluster of your instance",
            ));
        }
        let client_id = Secret::from_env(&format!("{at}.client_id_env"), &raw.client_id_env, env)?;
        let client_secret = Secret::from_env(
            &format!("{at}.client_secret_env"),
            &raw.client_secret_env,
            env,
        )?;
        let user = match raw.flow {
            Flow::ClientCredentials => None,
            Flow::Password => {
                let (Some(username_env), Some(password_env)) =
                    (&raw.username_env, &raw.password_env)
                else {
                    return Err(Error::config(
                        format!("{at}.username_env"),
                        "the password flow needs username_env and password_env",
                    ));
                };
                Some((
                    Secret::from_env(&format!("{at}.username_env"), username_env, env)?,
                    Secret::from_env(&format!("{at}.password_env"), password_env, env)?,
                ))
            }
        };
        let login_url = Target::parse(&format!("{at}.login_url"), &raw.login_url)?;
        let login = endpoint(at, &raw.common, &login_url.authority, 5_000)?;
        let token_path = format!(
            "{}/services/oauth2/token",
            login_url.path.trim_end_matches('/')
        );
        Ok(Salesforce {
            client_id,
            client_secret,
            user,
            login,
            token_path,
            api_cluster: raw.api_cluster,
            company: raw.company,
            lead_source: raw.lead_source,
            token_ttl_s: raw.token_ttl_s.max(60),
        })
    }

    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        let mut secrets = vec![&self.client_id, &self.client_secret];
        if let Some((user, password)) = &self.user {
            secrets.extend([user, password]);
        }
        secrets
    }

    /// The token request of the configured flow.
    pub fn token_request(&self) -> Request {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match &self.user {
            None => form.append_pair("grant_type", "client_credentials"),
            Some((user, password)) => form
                .append_pair("grant_type", "password")
                .append_pair("username", user.expose())
                .append_pair("password", password.expose()),
        };
        form.append_pair("client_id", self.client_id.expose());
        form.append_pair("client_secret", self.client_secret.expose());
        Request {
            cluster: self.login.cluster.clone(),
            method: "POST",
            authority: self.login.authority.clone(),
            path: self.token_path.clone(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: form.finish().into_bytes(),
            timeout_ms: self.login.timeout_ms,
            target: "salesforce token".into(),
        }
    }

    /// The Lead fields for this user: the last word of the name is the
    /// last name (Salesforce requires one), the rest the first name.
    pub fn lead(&self, event: &LoginEvent) -> Value {
        let name = display_name(event);
        let name = name
            .split('@')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let (first, last) = match name.rsplit_once(' ') {
            Some((first, last)) => (Some(first.trim().to_string()), last.to_string()),
            None => (None, name),
        };
        json!({
            "FirstName": first,
            "LastName": if last.is_empty() { event.user_id().to_string() } else { last },
            "Company": self.company,
            "Email": event.user_str("email"),
            "LeadSource": self.lead_source,
        })
    }

    pub fn start(
        &self,
        step: &str,
        event: &LoginEvent,
        now_unix: u64,
        effects: &mut Effects,
    ) -> Start {
        if !event.protocol.is_interactive_login() {
            return Start::Skip("not an interactive login");
        }
        if event.app_metadata(RECORDED_AS_LEAD) == Some(&Value::Bool(true)) {
            return Start::Skip("already recorded as a lead");
        }
        if event
            .lead_queued_at
            .is_some_and(|at| now_unix < at + LEAD_HOLD_S)
        {
            return Start::Skip("a lead for this user is on its way");
        }
        effects.record.lead_queued_at = Some(Some(now_unix));
        effects.record.lead_queued_by = Some(event.logins_count());
        effects.jobs.push(Job {
            service: "salesforce",
            step: step.to_string(),
            user_id: event.user_id().to_string(),
            work: Work::Lead(LeadWork {
                token_request: self.token_request(),
                api_cluster: self.api_cluster.clone(),
                lead: self.lead(event),
                timeout_ms: self.login.timeout_ms,
                token_ttl_ms: self.token_ttl_s * 1000,
                phase: Phase::Token,
                reauthenticated: false,
                queued_by: event.logins_count(),
            }),
            alert_on_failure: true,
        });
        Start::Done
    }
}

/// An access token and the instance it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceToken {
    pub access_token: String,
    /// `https://host` of the instance.
    pub authority: String,
    pub path_prefix: String,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Token,
    Lead,
}

/// The lead delivery: token (unless cached), then lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadWork {
    token_request: Request,
    api_cluster: String,
    lead: Value,
    timeout_ms: u64,
    token_ttl_ms: u64,
    phase: Phase,
    reauthenticated: bool,
    /// The login that queued it; see [`crate::record::UserRecord::lead_queued_by`].
    queued_by: u64,
}

/// What an answer means for the lead.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadProgress {
    /// A token came back: cache it and send the lead.
    Token(SalesforceToken),
    /// The token was refused: forget it, take a new one, retry once.
    Reauthenticate,
    /// The lead exists: record it.
    Created(RecordChange),
    /// Not done: the retry policy decides from the answer.
    Failed,
}

impl LeadWork {
    /// The login that queued this lead.
    pub fn queued_by(&self) -> u64 {
        self.queued_by
    }

    /// The next request: the lead with a usable token, else a token.
    pub fn request(&mut self, token: Option<&SalesforceToken>) -> Request {
        let Some(token) = token else {
            self.phase = Phase::Token;
            return self.token_request.clone();
        };
        self.phase = Phase::Lead;
        Request {
            cluster: self.api_cluster.clone(),
            method: "POST",
            authority: token.authority.clone(),
            path: format!("{}{LEAD_PATH}", token.path_prefix),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "authorization".into(),
                    format!("Bearer {}", token.access_token),
                ),
            ],
            body: self.lead.to_string().into_bytes(),
            timeout_ms: self.timeout_ms,
            target: "salesforce lead".into(),
        }
    }

    pub fn on_answer(&mut self, answer: &Answer, now_ms: u64) -> LeadProgress {
        match self.phase {
            Phase::Token => match parse_token(answer, now_ms + self.token_ttl_ms) {
                Some(token) => {
                    self.phase = Phase::Lead;
                    LeadProgress::Token(token)
                }
                None => LeadProgress::Failed,
            },
            // A duplicate is a lead that exists already: the usual cause is
            // an attempt that timed out after Salesforce had created it.
            Phase::Lead if answer.code() == Some(201) || is_duplicate(answer) => {
                let mut change = RecordChange {
                    lead_queued_at: Some(None),
                    ..RecordChange::default()
                };
                change
                    .app_metadata
                    .insert(RECORDED_AS_LEAD.into(), Value::Bool(true));
                LeadProgress::Created(change)
            }
            Phase::Lead if is_invalid_session(answer) && !self.reauthenticated => {
                self.reauthenticated = true;
                self.phase = Phase::Token;
                LeadProgress::Reauthenticate
            }
            Phase::Lead => LeadProgress::Failed,
        }
    }

    /// The record change when the lead is given up: a later login may try
    /// again.
    pub fn release(&self) -> RecordChange {
        RecordChange {
            lead_queued_at: Some(None),
            ..RecordChange::default()
        }
    }
}

fn is_invalid_session(answer: &Answer) -> bool {
    answer.code() == Some(401) && has_error_code(answer, "INVALID_SESSION_ID")
}

fn is_duplicate(answer: &Answer) -> bool {
    answer.code() == Some(400) && has_error_code(answer, "DUPLICATES_DETECTED")
}

/// Whether a Salesforce error answer (a JSON array of errors) has `code`.
fn has_error_code(answer: &Answer, code: &str) -> bool {
    let errors: Value = serde_json::from_slice(answer.body()).unwrap_or(Value::Null);
    errors
        .as_array()
        .into_iter()
        .flatten()
        .any(|error| error["errorCode"] == code)
}

fn parse_token(answer: &Answer, expires_ms: u64) -> Option<SalesforceToken> {
    if answer.code() != Some(200) {
        return None;
    }
    let body: Value = serde_json::from_slice(answer.body()).ok()?;
    let access_token = body["access_token"].as_str()?.to_string();
    let instance = Target::parse("instance_url", body["instance_url"].as_str()?).ok()?;
    Some(SalesforceToken {
        access_token,
        authority: instance.authority,
        path_prefix: instance.path.trim_end_matches('/').to_string(),
        expires_ms,
    })
}
