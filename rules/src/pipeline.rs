//! The pipeline: the configured rules run in order against one login, as a
//! state machine that never performs I/O.
//!
//! The filter starts a [`Pipeline`] with the login event and asks
//! [`Pipeline::next`] what it needs. The answer is either a call to make
//! (the login waits for it; the filter sends it and hands the answer to
//! [`Pipeline::resume`]) or "done". [`Pipeline::finish`] then gives the
//! [`Outcome`]: claims to add, a denial, background jobs, record changes,
//! and a report of every rule.
//!
//! A failing rule is reported, alerted and, by default, does not stop the
//! others; a rule configured with `on_error: deny` denies the login instead.
//! Awaited calls share one time budget per login: once it is used up, the
//! remaining awaited calls are skipped and reported, and the login
//! completes.

use serde_json::{Map, Value};

use crate::claims::VerifiedClaims;
use crate::config::{ClaimValue, Config, Rule, Step};
use crate::delivery::Job;
use crate::event::LoginEvent;
use crate::http::{Answer, Request};
use crate::record::RecordChange;
use crate::steps::{Effects, OnError, Start};

/// What happened to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleResult {
    Ran,
    Skipped(String),
    Failed(String),
}

/// One rule's line in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rule: String,
    pub result: RuleResult,
}

/// What the rules decided for one token exchange.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Claims to add to the id_token, by full (namespaced) name.
    pub id_token_claims: Map<String, Value>,
    /// The reason the login is denied, if it is.
    pub deny: Option<String>,
    /// Deliveries for the outbox (alerts included).
    pub jobs: Vec<Job>,
    /// Changes to the user's record.
    pub record: RecordChange,
    pub reports: Vec<Report>,
}

impl Outcome {
    /// Whether the token must be rewritten and re-signed.
    pub fn changes_token(&self) -> bool {
        !self.id_token_claims.is_empty()
    }
}

/// What the pipeline needs next.
#[derive(Debug)]
pub enum Next {
    /// Send this and resume with the answer.
    Call(Request),
    /// Every rule has run.
    Done,
}

/// The rules running against one login.
pub struct Pipeline {
    event: LoginEvent,
    claims: VerifiedClaims,
    next_rule: usize,
    /// The rule whose call is in flight.
    waiting: Option<usize>,
    budget_ends_ms: u64,
    now_unix: u64,
    effects: Effects,
    deny: Option<String>,
    reports: Vec<Report>,
    /// Failures to alert: (rule, failure).
    alerts: Vec<(String, String)>,
}

impl Pipeline {
    /// A pipeline for `event`, whose awaited calls may take `call_budget_ms`
    /// from `now_ms` together.
    pub fn new(
        config: &Config,
        event: LoginEvent,
        claims: VerifiedClaims,
        now_ms: u64,
    ) -> Pipeline {
        Pipeline {
            event,
            claims,
            next_rule: 0,
            waiting: None,
            budget_ends_ms: now_ms + config.call_budget_ms,
            now_unix: now_ms / 1000,
            effects: Effects::default(),
            deny: None,
            reports: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// The login event as the rules see it.
    pub fn event(&self) -> &LoginEvent {
        &self.event
    }

    /// The verified claims the rules run against.
    pub fn claims(&self) -> &VerifiedClaims {
        &self.claims
    }

    /// Runs rules until one needs a call, or all have run.
    pub fn next(&mut self, config: &Config, now_ms: u64) -> Next {
        if self.waiting.is_some() {
            return Next::Done;
        }
        while self.deny.is_none() {
            let Some(rule) = config.rules.get(self.next_rule) else {
                break;
            };
            let index = self.next_rule;
            self.next_rule += 1;
            if !rule.enabled {
                self.report(rule, RuleResult::Skipped("disabled".into()));
                continue;
            }
            match self.start(rule) {
                Start::Skip(reason) => self.report(rule, RuleResult::Skipped(reason.into())),
                Start::Done => self.report(rule, RuleResult::Ran),
                Start::Await(request) => {
                    let left = self.budget_ends_ms.saturating_sub(now_ms);
                    if left == 0 {
                        let reason = "the time budget for awaited calls is used up";
                        self.report(rule, RuleResult::Skipped(reason.into()));
                        continue;
                    }
                    self.waiting = Some(index);
                    let timeout_ms = request.timeout_ms.min(left);
                    return Next::Call(Request {
                        timeout_ms,
                        ..request
                    });
                }
            }
        }
        Next::Done
    }

    /// Hands the answer of the awaited call to the rule that asked for it.
    pub fn resume(&mut self, config: &Config, answer: &Answer) {
        let Some(index) = self.waiting.take() else {
            return;
        };
        let Some(rule) = config.rules.get(index) else {
            return;
        };
        let before = self.effects.id_token_claims.len();
        let result = match &rule.step {
            Step::Builtin(step) => step.on_answer(&self.event, answer, &mut self.effects),
            Step::SetClaim { .. } => Ok(()),
        };
        match result {
            Ok(()) => {
                self.note_new_claims(before);
                self.report(rule, RuleResult::Ran);
            }
            Err(failure) => self.fail(config, rule, failure),
        }
    }

    /// The outcome, with alerts for every failed rule.
    pub fn finish(self, config: &Config) -> Outcome {
        let mut jobs = self.effects.jobs;
        if let Some(alerts) = &config.alerts {
            jobs.extend(
                self.alerts
                    .iter()
                    .map(|(rule, failure)| alerts.job(rule, failure)),
            );
        }
        Outcome {
            id_token_claims: self.effects.id_token_claims,
            deny: self.deny,
            jobs,
            record: self.effects.record,
            reports: self.reports,
        }
    }

    fn start(&mut self, rule: &Rule) -> Start {
        match &rule.step {
            Step::SetClaim { claim, value } => {
                let value = match value {
                    ClaimValue::Fixed(value) => Some(value.clone()),
                    ClaimValue::FromClaim(source) => self
                        .effects
                        .id_token_claims
                        .get(source)
                        .or_else(|| self.claims.get(source))
                        .cloned(),
                };
                let Some(value) = value else {
                    return Start::Skip("the source claim is absent");
                };
                if self.claims.get(claim) == Some(&value) {
                    return Start::Skip("the token already has this claim");
                }
                self.event.note_claim(claim, &value);
                self.effects.id_token_claims.insert(claim.clone(), value);
                Start::Done
            }
            Step::Builtin(step) => {
                let before = self.effects.id_token_claims.len();
                let start = step.start(&rule.name, &self.event, self.now_unix, &mut self.effects);
                self.note_new_claims(before);
                start
            }
        }
    }

    /// Lets later rules see the claims that the last rule added.
    fn note_new_claims(&mut self, before: usize) {
        let added: Vec<(String, Value)> = self
            .effects
            .id_token_claims
            .iter()
            .skip(before)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        for (name, value) in added {
            self.event.note_claim(&name, &value);
        }
    }

    fn fail(&mut self, config: &Config, rule: &Rule, failure: String) {
        let failure = mask_secrets(config, &failure);
        if rule.on_error == OnError::Deny {
            self.deny = Some(format!("{} failed", rule.name));
        }
        self.alerts.push((rule.name.clone(), failure.clone()));
        self.report(rule, RuleResult::Failed(failure));
    }

    fn report(&mut self, rule: &Rule, result: RuleResult) {
        self.reports.push(Report {
            rule: rule.name.clone(),
            result,
        });
    }
}

/// `text` with every configured secret replaced by `***`: a service that
/// echoes a key in its error must not get it into an alert or a log.
pub fn mask_secrets(config: &Config, text: &str) -> String {
    let mut masked = text.to_string();
    for rule in &config.rules {
        if let Step::Builtin(step) = &rule.step {
            for secret in step.secrets() {
                if secret.expose().len() >= 4 {
                    masked = masked.replace(secret.expose(), "***");
                }
            }
        }
    }
    masked
}
