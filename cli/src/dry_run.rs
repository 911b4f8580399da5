//! `rulegate try`: the rules run on a recorded login, with nothing sent.
//!
//! The id_token of a recorded token response is decoded but NOT verified
//! (its claims are taken as they are, through
//! [`VerifiedClaims::assume_verified_for_dry_run`]), so a team can replay a
//! login they captured, or one they wrote by hand, against a configuration.
//! The login is set up as the filter sets it up: the record counts an
//! interactive login before any rule runs, the client's name and the
//! connection come from the configuration. Awaited calls are answered from
//! a file of canned answers; background jobs are listed, not delivered.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rules::claims::VerifiedClaims;
use rules::config::{Config, Step};
use rules::event::{LoginEvent, LoginInfo, Protocol};
use rules::http::{Answer, Request};
use rules::pipeline::{Next, Outcome, Pipeline};
use rules::record::{RecordChange, UserRecord};
use serde_json::{Map, Value};

use crate::error::CliError;
use crate::report;
use crate::source;
use crate::TryArgs;

/// An awaited call made during the run, and the answer it got.
pub struct Awaited {
    pub rule: String,
    pub service: &'static str,
    pub request: Request,
    pub answer: Answer,
    /// Where the answer came from (the `--responses` key), if anywhere.
    pub answered_by: Option<String>,
}

/// Everything the run produced.
pub struct Run {
    pub outcome: Outcome,
    pub awaited: Vec<Awaited>,
}

pub fn run(args: &TryArgs) -> Result<(), CliError> {
    let paths = &args.config;
    let plugin = source::load_one(&paths.config, paths.filter.as_deref(), paths.fake_secrets)?;
    let config = Config::from_json(plugin.text.as_bytes(), &|name| plugin.env.get(name))
        .map_err(|err| CliError::Refused(format!("rulegate refused its configuration: {err}")))?;
    let claims = read_claims(&args.token_response)?;
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let foreign_issuer = (issuer != config.verify.issuer).then(|| {
        format!(
            "the id_token's iss is {issuer:?}, not the configured issuer {:?}: \
             the filter would refuse this token",
            config.verify.issuer
        )
    });
    let mut responses = match &args.responses {
        Some(path) => Responses::read(path)?,
        None => Responses::default(),
    };
    let mut record = match &args.record {
        Some(path) => read_record(path)?,
        None => UserRecord::default(),
    };

    // The filter counts an interactive login before the rules run.
    let protocol = Protocol::from_grant_type(Some(&args.grant_type));
    let counted = protocol.is_interactive_login();
    record.apply(&RecordChange {
        count_login: counted,
        ..RecordChange::default()
    });
    let info = login_info(&config, protocol, args, &claims);
    let event = LoginEvent::new(&claims, &record, &info);
    let login = report::login(&event, counted);

    let run = drive(&config, event, claims, &mut responses, now_ms());

    let mut notes: Vec<String> = foreign_issuer.into_iter().collect();
    let faked = plugin.env.faked();
    if !faked.is_empty() {
        notes.push(format!(
            "placeholder values for {} (--fake-secrets)",
            faked.join(", ")
        ));
    }
    for key in responses.unused() {
        notes.push(format!("--responses entry {key:?} answered no call"));
    }
    if config.access_tokens == rules::config::AccessTokens::Opaque
        && run.outcome.changes_access_token()
    {
        notes.push("access_tokens is \"opaque\": access-token changes would be skipped".into());
    }
    let document = report::build(&config, login, &run, notes);
    if args.json {
        let text = serde_json::to_string_pretty(&document)
            .map_err(|err| CliError::Input(format!("rulegate: cannot print the report: {err}")))?;
        println!("{text}");
    } else {
        print!("{}", report::render(&document));
    }
    Ok(())
}

/// Runs every rule, answering awaited calls from `responses`.
///
/// The pipeline does not say which rule an awaited call belongs to, and
/// canned answers may be keyed by rule. It reads the rules from the
/// configuration handed to each `next`, resuming where it stopped, so it
/// is driven over a configuration that grows by one rule at a time: a call
/// that comes out while rule N is the last one belongs to rule N.
fn drive(
    config: &Config,
    event: LoginEvent,
    claims: VerifiedClaims,
    responses: &mut Responses,
    now_ms: u64,
) -> Run {
    let mut pipeline = Pipeline::new(config, event, claims, now_ms);
    let mut upto = Config {
        rules: Vec::with_capacity(config.rules.len()),
        ..config.clone()
    };
    let mut awaited = Vec::new();
    for rule in &config.rules {
        upto.rules.push(rule.clone());
        while let Next::Call(request) = pipeline.next(&upto, now_ms) {
            let (answer, answered_by) = responses.answer(&rule.name, &request);
            pipeline.resume(&upto, &answer);
            let service = match &rule.step {
                Step::Builtin(step) => step.service(),
                _ => "webhook",
            };
            awaited.push(Awaited {
                rule: rule.name.clone(),
                service,
                request,
                answer,
                answered_by,
            });
        }
    }
    Run {
        outcome: pipeline.finish(config),
        awaited,
    }
}

/// The login's context as the filter builds it, from the flags where the
/// filter would read the request.
fn login_info(
    config: &Config,
    protocol: Protocol,
    args: &TryArgs,
    claims: &VerifiedClaims,
) -> LoginInfo {
    let client_id = args.client_id.clone().or_else(|| {
        let authorized = claims.get("azp").and_then(Value::as_str);
        let audience = match claims.get("aud") {
            Some(Value::Array(audiences)) => audiences.first().and_then(Value::as_str),
            Some(audience) => audience.as_str(),
            None => None,
        };
        authorized.or(audience).map(String::from)
    });
    let connection = config
        .connection
        .claim
        .as_deref()
        .and_then(|claim| claims.get(claim))
        .and_then(Value::as_str)
        .unwrap_or(&config.connection.default)
        .to_string();
    LoginInfo {
        protocol,
        client_name: client_id
            .as_ref()
            .and_then(|id| config.clients.get(id))
            .cloned(),
        client_id,
        ip: args.ip.clone(),
        user_agent: args.user_agent.clone(),
        connection,
    }
}

/// The claims of the id_token in a token response (or a bare token),
/// decoded without any check of the signature.
fn read_claims(path: &Path) -> Result<VerifiedClaims, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| CliError::input(path, err))?;
    let token = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(response)) => match response.get("id_token").and_then(Value::as_str) {
            Some(token) => token.to_string(),
            None => return Err(CliError::input(path, "the token response has no id_token")),
        },
        Ok(Value::String(token)) => token,
        _ => text.trim().to_string(),
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return Err(CliError::input(
            path,
            "the id_token is not a JWT (header.payload.signature)",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| CliError::input(path, "the id_token's payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| CliError::input(path, "the id_token's payload is not a JSON object"))?;
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(CliError::input(
            path,
            "the id_token has no sub, which verification would refuse",
        ));
    }
    Ok(VerifiedClaims::assume_verified_for_dry_run(claims))
}

/// Fields of a stored user record.
const RECORD_FIELDS: [&str; 4] = [
    "logins_count",
    "app_metadata",
    "user_metadata",
    "lead_queued_at",
];

fn read_record(path: &Path) -> Result<UserRecord, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| CliError::input(path, err))?;
    let value: Value = serde_json::from_str(&text).map_err(|err| CliError::input(path, err))?;
    let fields = value
        .as_object()
        .ok_or_else(|| CliError::input(path, "a user record must be a JSON object"))?;
    if let Some(unknown) = fields
        .keys()
        .find(|name| !RECORD_FIELDS.contains(&name.as_str()))
    {
        return Err(CliError::input(
            path,
            format!(
                "unknown record field {unknown:?}; known: {}",
                RECORD_FIELDS.join(", ")
            ),
        ));
    }
    serde_json::from_value(value).map_err(|err| CliError::input(path, err))
}

/// Canned answers to awaited calls, keyed by rule name or call target.
#[derive(Default)]
struct Responses {
    answers: Vec<(String, Answer)>,
    used: Vec<String>,
}

impl Responses {
    fn read(path: &Path) -> Result<Responses, CliError> {
        let text = std::fs::read_to_string(path).map_err(|err| CliError::input(path, err))?;
        let value: Value = serde_json::from_str(&text).map_err(|err| CliError::input(path, err))?;
        let Value::Object(entries) = value else {
            return Err(CliError::input(
                path,
                "canned answers must be a JSON object keyed by rule name or call target",
            ));
        };
        let answers = entries
            .into_iter()
            .map(|(key, entry)| match canned_answer(&entry) {
                Ok(answer) => Ok((key, answer)),
                Err(reason) => Err(CliError::input(path, format!("{key}: {reason}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Responses {
            answers,
            used: Vec::new(),
        })
    }

    /// The answer for `rule`'s call: by rule name first, then by target.
    fn answer(&mut self, rule: &str, request: &Request) -> (Answer, Option<String>) {
        let found = [rule, request.target.as_str()]
            .into_iter()
            .find_map(|key| self.answers.iter().find(|(name, _)| name == key));
        match found {
            Some((key, answer)) => {
                let (key, answer) = (key.clone(), answer.clone());
                self.used.push(key.clone());
                (answer, Some(key))
            }
            None => {
                let reason = format!(
                    "no canned answer for rule {rule} ({}) in --responses",
                    request.target
                );
                (Answer::NotSent(reason), None)
            }
        }
    }

    /// Keys that answered no call: most likely a typo.
    fn unused(&self) -> Vec<String> {
        self.answers
            .iter()
            .map(|(key, _)| key.clone())
            .filter(|key| !self.used.contains(key))
            .collect()
    }
}

/// `{"status": 200, "headers": {...}, "body": <JSON or string>}`.
fn canned_answer(entry: &Value) -> Result<Answer, String> {
    let Value::Object(fields) = entry else {
        return Err("must be an object with status, headers and body".into());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|name| !["status", "headers", "body"].contains(&name.as_str()))
    {
        return Err(format!(
            "unknown field {unknown:?}; known: status, headers, body"
        ));
    }
    let status = fields
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|status| u16::try_from(status).ok())
        .filter(|status| (100..=599).contains(status))
        .ok_or("status must be an HTTP status code")?;
    let headers = match fields.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(headers)) => headers
            .iter()
            .map(|(name, value)| match value.as_str() {
                Some(value) => Ok((name.to_ascii_lowercase(), value.to_string())),
                None => Err(format!("header {name} must be a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("headers must be an object of strings".into()),
    };
    let body = match fields.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(json) => json.to_string().into_bytes(),
    };
    Ok(Answer::Response {
        status,
        headers,
        body,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}
