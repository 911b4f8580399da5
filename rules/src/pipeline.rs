//! The pipeline: the configured rules run in order against one login, as a
//! state machine that never performs I/O.
//!
//! The filter starts a [`Pipeline`] with the login event and asks
//! [`Pipeline::next`] what it needs. The answer is either a call to make
//! (the login waits for it; the filter sends it and hands the answer to
//! [`Pipeline::resume`]) or "done". [`Pipeline::finish`] then gives the
//! [`Outcome`]: claims to add or remove, a denial, background jobs, record
//! changes, what shadow rules would have done, and a report of every rule.
//!
//! For each rule, in order: is it enabled; does it apply to this client and
//! protocol; is its `when` true; then it runs, or, in shadow mode, runs on
//! a scratch copy whose effects are reported and dropped. A failing rule
//! (a service error, an expression that cannot be evaluated) is reported,
//! alerted and, by default, does not stop the others; `on_error: deny`
//! denies the login instead. Awaited calls share one time budget per login:
//! once it is used up, the remaining awaited calls are skipped and
//! reported, and the login completes.

use serde_json::{Map, Value};

use crate::actions::{Actions, Webhook};
use crate::claims::VerifiedClaims;
use crate::config::{ClaimValue, Config, Rule, Step};
use crate::delivery::Job;
use crate::event::LoginEvent;
use crate::expr::Scope;
use crate::http::{Answer, Request};
use crate::record::RecordChange;
use crate::steps::{Effects, OnError, Start};

/// What happened to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleResult {
    Ran,
    Skipped(String),
    Failed(String),
    /// A shadow rule ran; nothing it decided was applied.
    Shadowed,
}

/// One rule's line in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rule: String,
    pub result: RuleResult,
}

/// What a shadow rule would have done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowReport {
    pub rule: String,
    pub id_token_claims: Map<String, Value>,
    pub access_token_claims: Map<String, Value>,
    pub removed_claims: Vec<String>,
    pub deny: Option<String>,
    /// The calls it would have made (their targets, no secrets).
    pub calls: Vec<String>,
    pub record_changed: bool,
}

/// What the rules decided for one token exchange.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Claims to add to the id_token, by full name.
    pub id_token_claims: Map<String, Value>,
    /// Claims to add to the access token.
    pub access_token_claims: Map<String, Value>,
    /// Claims to remove from each token.
    pub remove_id_token: Vec<String>,
    pub remove_access_token: Vec<String>,
    /// The reason the login is denied, if it is.
    pub deny: Option<String>,
    /// Deliveries for the outbox (alerts included).
    pub jobs: Vec<Job>,
    /// Changes to the user's record.
    pub record: RecordChange,
    pub reports: Vec<Report>,
    pub shadows: Vec<ShadowReport>,
    /// Rules whose claims were skipped for the token size budget.
    pub over_budget: Vec<String>,
}

impl Outcome {
    /// Whether the id_token must be rewritten and re-signed.
    pub fn changes_id_token(&self) -> bool {
        !self.id_token_claims.is_empty() || !self.remove_id_token.is_empty()
    }

    /// Whether the access token must be rewritten and re-signed.
    pub fn changes_access_token(&self) -> bool {
        !self.access_token_claims.is_empty() || !self.remove_access_token.is_empty()
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

/// What a configured rule's actions produced.
#[derive(Default)]
struct RuleEffects {
    effects: Effects,
    access_token_claims: Map<String, Value>,
    remove_id_token: Vec<String>,
    remove_access_token: Vec<String>,
    deny: Option<String>,
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
    /// The expression scope, built on first use.
    scope: Option<Scope>,
    /// The event's context changed since the scope last took it; brought
    /// up to date before a rule that reads `context` runs, not before
    /// every rule.
    scope_stale: bool,
    out: RuleEffects,
    reports: Vec<Report>,
    shadows: Vec<ShadowReport>,
    over_budget: Vec<String>,
    /// Failures to alert: (rule, failure).
    alerts: Vec<(String, String)>,
    /// Size of the verified claims as JSON, for the budget.
    base_claims_bytes: usize,
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
        let base_claims_bytes = Value::Object(claims.as_map().clone()).to_string().len();
        Pipeline {
            event,
            claims,
            next_rule: 0,
            waiting: None,
            budget_ends_ms: now_ms + config.call_budget_ms,
            now_unix: now_ms / 1000,
            scope: None,
            scope_stale: false,
            out: RuleEffects::default(),
            reports: Vec::new(),
            shadows: Vec::new(),
            over_budget: Vec::new(),
            alerts: Vec::new(),
            base_claims_bytes,
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
        while self.out.deny.is_none() {
            let Some(rule) = config.rules.get(self.next_rule) else {
                break;
            };
            let index = self.next_rule;
            self.next_rule += 1;
            self.sync_scope(rule);
            match self.why_not(rule) {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    self.report(rule, RuleResult::Skipped(reason));
                    continue;
                }
                Err(failure) => {
                    self.fail(
                        config,
                        rule,
                        format!("condition could not be evaluated: {failure}"),
                    );
                    continue;
                }
            }
            if rule.shadow {
                self.shadow(config, rule);
                continue;
            }
            let before = self.claims_snapshot();
            match self.start(rule) {
                Ok(Start::Skip(reason)) => self.report(rule, RuleResult::Skipped(reason.into())),
                Ok(Start::Done) => self.finish_rule(config, rule, before),
                Ok(Start::Await(request)) => {
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
                Err(failure) => self.fail(config, rule, failure),
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
        let before = self.claims_snapshot();
        let result = match &rule.step {
            Step::Builtin(step) => step.on_answer(&self.event, answer, &mut self.out.effects),
            Step::Rule(_) => {
                self.event
                    .note_webhook_answer(&rule.name, Webhook::answer_value(answer));
                self.context_changed();
                if answer.is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", answer.summary()))
                }
            }
            Step::SetClaim { .. } => Ok(()),
        };
        match result {
            Ok(()) => self.finish_rule(config, rule, before),
            Err(failure) => self.fail(config, rule, failure),
        }
    }

    /// The outcome, with alerts for every failed rule.
    pub fn finish(self, config: &Config) -> Outcome {
        let mut jobs = self.out.effects.jobs;
        if let Some(alerts) = &config.alerts {
            jobs.extend(
                self.alerts
                    .iter()
                    .map(|(rule, failure)| alerts.job(rule, failure)),
            );
        }
        Outcome {
            id_token_claims: self.out.effects.id_token_claims,
            access_token_claims: self.out.access_token_claims,
            remove_id_token: self.out.remove_id_token,
            remove_access_token: self.out.remove_access_token,
            deny: self.out.deny,
            jobs,
            record: self.out.effects.record,
            reports: self.reports,
            shadows: self.shadows,
            over_budget: self.over_budget,
        }
    }

    /// Why `rule` does not run for this login, if it does not; an error
    /// when its condition cannot be evaluated (a rule failure).
    fn why_not(&mut self, rule: &Rule) -> Result<Option<String>, String> {
        if !rule.enabled {
            return Ok(Some("disabled".into()));
        }
        let client_id = self.event.context_str("client_id").map(str::to_string);
        if !rule.runs_for(&self.event.protocol, client_id.as_deref()) {
            return Ok(Some(format!(
                "does not run for this client or protocol ({})",
                self.event.protocol.name()
            )));
        }
        let Some(when) = rule.when.as_ref() else {
            return Ok(None);
        };
        match when.eval_bool(self.scope())? {
            true => Ok(None),
            false => Ok(Some("condition is false".into())),
        }
    }

    /// Notes that the event's context changed.
    fn context_changed(&mut self) {
        self.scope_stale = self.scope.is_some();
    }

    /// Brings the scope's context up to date if `rule` reads it.
    fn sync_scope(&mut self, rule: &Rule) {
        if !self.scope_stale || !rule.reads_context() {
            return;
        }
        if let Some(scope) = self.scope.as_mut() {
            scope.refresh_context(self.event.as_value());
        }
        self.scope_stale = false;
    }

    fn scope(&mut self) -> &Scope {
        self.scope
            .get_or_insert_with(|| Scope::new(self.event.as_value()))
    }

    /// Begins a rule, applying its effects to `self.out`.
    fn start(&mut self, rule: &Rule) -> Result<Start, String> {
        match &rule.step {
            Step::SetClaim { claim, value } => Ok(self.set_claim(claim, value)),
            Step::Builtin(step) => {
                let now = self.now_unix;
                Ok(step.start(&rule.name, &self.event, now, &mut self.out.effects))
            }
            Step::Rule(actions) => self.run_actions(&rule.name, actions),
        }
    }

    fn set_claim(&mut self, claim: &str, value: &ClaimValue) -> Start {
        let value = match value {
            ClaimValue::Fixed(value) => Some(value.clone()),
            ClaimValue::FromClaim(source) => self
                .out
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
        self.out
            .effects
            .id_token_claims
            .insert(claim.to_string(), value);
        Start::Done
    }

    /// Evaluates every expression of a configured rule first, so that an
    /// error leaves nothing half applied; then applies them.
    fn run_actions(&mut self, rule: &str, actions: &Actions) -> Result<Start, String> {
        let now = self.now_unix;
        let scope = self
            .scope
            .take()
            .unwrap_or_else(|| Scope::new(self.event.as_value()));
        let evaluated = evaluate_actions(rule, actions, &self.event, &scope, now);
        self.scope = Some(scope);
        let (id_claims, access_claims, deny, app, user, webhook) = evaluated?;

        self.out.effects.id_token_claims.extend(id_claims);
        self.out.access_token_claims.extend(access_claims);
        self.out
            .remove_id_token
            .extend(actions.remove_id_token.iter().cloned());
        self.out
            .remove_access_token
            .extend(actions.remove_access_token.iter().cloned());
        self.out.effects.record.app_metadata.extend(app);
        self.out.effects.record.user_metadata.extend(user);
        if deny.is_some() {
            self.out.deny = deny;
        }
        match (webhook, &actions.webhook) {
            (Some(request), Some(hook)) if hook.awaited => Ok(Start::Await(request)),
            (Some(request), Some(hook)) => {
                self.out
                    .effects
                    .jobs
                    .push(hook.job(rule, &self.event, request));
                Ok(Start::Done)
            }
            _ => Ok(Start::Done),
        }
    }

    /// Runs a shadow rule on a scratch copy and reports what it would have
    /// done.
    fn shadow(&mut self, config: &Config, rule: &Rule) {
        let saved = std::mem::take(&mut self.out);
        let mut calls = Vec::new();
        let result = match self.start(rule) {
            Ok(Start::Await(request)) => {
                calls.push(request.target.clone());
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(failure) => Err(failure),
        };
        let scratch = std::mem::replace(&mut self.out, saved);
        calls.extend(
            scratch
                .effects
                .jobs
                .iter()
                .map(|job| format!("{} ({})", job.service, job.step)),
        );
        let report = ShadowReport {
            rule: rule.name.clone(),
            id_token_claims: scratch.effects.id_token_claims,
            access_token_claims: scratch.access_token_claims,
            removed_claims: [scratch.remove_id_token, scratch.remove_access_token].concat(),
            deny: scratch.deny,
            calls,
            record_changed: !scratch.effects.record.is_empty(),
        };
        self.shadows.push(report);
        match result {
            Ok(()) => self.report(rule, RuleResult::Shadowed),
            Err(failure) => {
                let failure = mask_secrets(config, &failure);
                self.report(rule, RuleResult::Failed(format!("(shadow) {failure}")));
            }
        }
    }

    fn claims_snapshot(&self) -> (Map<String, Value>, Map<String, Value>) {
        (
            self.out.effects.id_token_claims.clone(),
            self.out.access_token_claims.clone(),
        )
    }

    /// A rule's work is done: hold its claims to the size budget, show them
    /// to later rules, report it.
    fn finish_rule(
        &mut self,
        config: &Config,
        rule: &Rule,
        before: (Map<String, Value>, Map<String, Value>),
    ) {
        let size = |added: &Map<String, Value>| -> usize {
            added
                .iter()
                .map(|(name, value)| name.len() + value.to_string().len() + 4)
                .sum::<usize>()
        };
        let id_size = self.base_claims_bytes + size(&self.out.effects.id_token_claims);
        let access_size = self.base_claims_bytes + size(&self.out.access_token_claims);
        if id_size > config.max_claims_bytes || access_size > config.max_claims_bytes {
            self.out.effects.id_token_claims = before.0;
            self.out.access_token_claims = before.1;
            self.over_budget.push(rule.name.clone());
            let reason = format!(
                "its claims would make the token {} bytes, over max_claims_bytes ({})",
                id_size.max(access_size),
                config.max_claims_bytes
            );
            self.report(rule, RuleResult::Skipped(reason));
            return;
        }
        let added: Vec<(String, Value)> = self
            .out
            .effects
            .id_token_claims
            .iter()
            .filter(|(name, value)| before.0.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let access: Vec<(String, Value)> = self
            .out
            .access_token_claims
            .iter()
            .filter(|(name, value)| before.1.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        for (name, value) in &added {
            self.event.note_claim(name, value);
        }
        for (name, value) in &access {
            self.event.note_access_claim(name, value);
        }
        if !added.is_empty() || !access.is_empty() {
            self.context_changed();
        }
        self.report(rule, RuleResult::Ran);
    }

    fn fail(&mut self, config: &Config, rule: &Rule, failure: String) {
        let failure = mask_secrets(config, &failure);
        if rule.on_error == OnError::Deny {
            self.out.deny = Some(format!("{} failed", rule.name));
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

/// The values of a configured rule's actions.
type Evaluated = (
    Map<String, Value>,
    Map<String, Value>,
    Option<String>,
    Map<String, Value>,
    Map<String, Value>,
    Option<Request>,
);

fn evaluate_actions(
    rule: &str,
    actions: &Actions,
    event: &LoginEvent,
    scope: &Scope,
    now_unix: u64,
) -> Result<Evaluated, String> {
    let eval_all = |pairs: &[(String, crate::expr::Expr)]| -> Result<Map<String, Value>, String> {
        pairs
            .iter()
            .map(|(name, expr)| Ok((name.clone(), expr.eval(scope)?)))
            .collect()
    };
    let id_claims = eval_all(&actions.id_token)?;
    let access_claims = eval_all(&actions.access_token)?;
    let deny = match &actions.deny {
        Some(expr) => match expr.eval(scope)? {
            Value::String(reason) => Some(reason),
            other => {
                return Err(format!(
                    "{}: gave {other}, not a reason string",
                    expr.source()
                ))
            }
        },
        None => None,
    };
    let app = eval_all(&actions.app_metadata)?;
    let user = eval_all(&actions.user_metadata)?;
    let webhook = match &actions.webhook {
        Some(hook) => Some(hook.request(rule, event, scope, now_unix)?),
        None => None,
    };
    Ok((id_claims, access_claims, deny, app, user, webhook))
}

/// `text` with every configured secret replaced by `***`: a service that
/// echoes a key in its error must not get it into an alert or a log.
pub fn mask_secrets(config: &Config, text: &str) -> String {
    mask(&config.secret_values(), text)
}

/// `text` with each of `secrets` replaced by `***`.
pub fn mask(secrets: &[String], text: &str) -> String {
    secrets.iter().fold(text.to_string(), |masked, secret| {
        masked.replace(secret.as_str(), "***")
    })
}
