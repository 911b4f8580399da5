//! Background delivery: the calls a login does not wait for, kept until
//! they are delivered, retried with backoff, or given up on loudly.
//!
//! The [`Outbox`] is pure bookkeeping: the filter asks it which requests are
//! due, sends them, and hands back each answer with the time. The outbox
//! answers with [`Event`]s (delivered, will retry, dropped, a record change,
//! an alert) that the filter counts and logs. Nothing is ever dropped
//! without an event saying so.
//!
//! Retries follow [`crate::http::classify`]: network errors, timeouts, 429
//! and 5xx are retried with exponential backoff (honouring `Retry-After`),
//! bounded by a number of attempts and an age; other 4xx are final. A
//! retried request is sent byte for byte again, so the dedup keys services
//! honour (Segment's `messageId`) stay the same.

use std::collections::BTreeMap;

use crate::http::{classify, Answer, Request, Verdict};
use crate::record::RecordChange;
use crate::steps::salesforce::{LeadProgress, LeadWork, SalesforceToken};
use crate::steps::slack::SlackAlert;

/// A delivery the login handed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Metric label of the service (`slack`, `segment`, ...).
    pub service: &'static str,
    /// The step that made it, for logs and alerts.
    pub step: String,
    pub user_id: String,
    pub work: Work,
    /// Alert the team channel when the delivery fails for good.
    pub alert_on_failure: bool,
}

impl Job {
    /// A job that sends one request until it is delivered.
    pub fn send(
        service: &'static str,
        step: &str,
        user_id: &str,
        request: Request,
        alert_on_failure: bool,
    ) -> Job {
        Job {
            service,
            step: step.to_string(),
            user_id: user_id.to_string(),
            work: Work::Send(request),
            alert_on_failure,
        }
    }
}

/// What a job sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// One request, sent until delivered.
    Send(Request),
    /// A CRM lead: an access token first (cached), then the lead.
    Lead(LeadWork),
}

/// Bounds of the retry policy and of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// A job older than this is given up.
    pub max_age_ms: u64,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Jobs held at most; a job pushed beyond it is dropped and reported.
    pub capacity: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 10,
            max_age_ms: 300_000,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            capacity: 10_000,
        }
    }
}

/// What happened to a job, for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Delivered {
        service: &'static str,
        step: String,
    },
    /// An attempt failed and another is scheduled.
    WillRetry {
        service: &'static str,
        step: String,
        in_ms: u64,
        reason: String,
    },
    /// Given up: out of attempts or too old. Counted as a drop.
    Dropped {
        service: &'static str,
        step: String,
        reason: String,
    },
    /// Refused by the service (a 4xx): another attempt would fail the same.
    Failed {
        service: &'static str,
        step: String,
        reason: String,
    },
    /// A change to a user's record that the delivery calls for.
    Record {
        user_id: String,
        change: RecordChange,
    },
}

struct Entry {
    job: Job,
    attempts: u32,
    created_ms: u64,
    due_ms: u64,
    in_flight: bool,
}

/// A request that is due, and the entry it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub entry: u64,
    pub service: &'static str,
    pub request: Request,
}

/// The jobs of one worker.
pub struct Outbox {
    policy: Policy,
    alerts: Option<SlackAlert>,
    /// Secrets to mask in every reason the outbox reports or alerts.
    secrets: Vec<String>,
    entries: BTreeMap<u64, Entry>,
    next_entry: u64,
    salesforce_token: Option<SalesforceToken>,
}

impl Outbox {
    pub fn new(policy: Policy, alerts: Option<SlackAlert>) -> Outbox {
        Outbox {
            policy,
            alerts,
            secrets: Vec::new(),
            entries: BTreeMap::new(),
            next_entry: 1,
            salesforce_token: None,
        }
    }

    /// Takes a new configuration's policy and alert channel; jobs already
    /// held keep going under it.
    pub fn reconfigure(&mut self, policy: Policy, alerts: Option<SlackAlert>) {
        self.policy = policy;
        self.alerts = alerts;
    }

    /// Secrets (see [`crate::config::Config::secret_values`]) that must
    /// never appear in a reported reason or an alert.
    pub fn mask_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = secrets;
    }

    /// Jobs held, in flight or waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes a job; when the outbox is full, the job comes back as an
    /// `Event::Dropped` for the caller to report.
    pub fn push(&mut self, job: Job, now_ms: u64) -> Option<Event> {
        if self.entries.len() >= self.policy.capacity {
            return Some(Event::Dropped {
                service: job.service,
                step: job.step,
                reason: format!("outbox full ({} jobs)", self.policy.capacity),
            });
        }
        let entry = Entry {
            job,
            attempts: 0,
            created_ms: now_ms,
            due_ms: now_ms,
            in_flight: false,
        };
        self.entries.insert(self.next_entry, entry);
        self.next_entry += 1;
        None
    }

    /// The requests due now; each is counted as an attempt and marked in
    /// flight until its answer comes back.
    pub fn due(&mut self, now_ms: u64) -> Vec<Dispatch> {
        let token = self
            .salesforce_token
            .clone()
            .filter(|t| t.expires_ms > now_ms);
        self.entries
            .iter_mut()
            .filter(|(_, entry)| !entry.in_flight && entry.due_ms <= now_ms)
            .map(|(id, entry)| {
                entry.in_flight = true;
                entry.attempts += 1;
                let request = match &mut entry.job.work {
                    Work::Send(request) => request.clone(),
                    Work::Lead(lead) => lead.request(token.as_ref()),
                };
                Dispatch {
                    entry: *id,
                    service: entry.job.service,
                    request,
                }
            })
            .collect()
    }

    /// When the next waiting job is due, if any is waiting.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.entries
            .values()
            .filter(|entry| !entry.in_flight)
            .map(|entry| entry.due_ms)
            .min()
    }

    /// Handles the answer to a dispatched request.
    pub fn on_answer(&mut self, id: u64, answer: &Answer, now_ms: u64) -> Vec<Event> {
        let Some(mut entry) = self.entries.remove(&id) else {
            return Vec::new();
        };
        entry.in_flight = false;
        let mut events = Vec::new();

        if let Work::Lead(lead) = &mut entry.job.work {
            match lead.on_answer(answer, now_ms) {
                LeadProgress::Token(token) => {
                    self.salesforce_token = Some(token);
                    // A token is progress, not an attempt at the lead.
                    entry.attempts = entry.attempts.saturating_sub(1);
                    entry.due_ms = now_ms;
                    self.entries.insert(id, entry);
                    return events;
                }
                LeadProgress::Reauthenticate => {
                    self.salesforce_token = None;
                    entry.due_ms = now_ms;
                    self.entries.insert(id, entry);
                    return events;
                }
                LeadProgress::Created(change) => {
                    events.push(Event::Record {
                        user_id: entry.job.user_id.clone(),
                        change,
                    });
                    events.push(Event::Delivered {
                        service: entry.job.service,
                        step: entry.job.step.clone(),
                    });
                    return events;
                }
                LeadProgress::Failed => {}
            }
        }

        match classify(answer, now_ms / 1000) {
            Verdict::Success => events.push(Event::Delivered {
                service: entry.job.service,
                step: entry.job.step.clone(),
            }),
            Verdict::Retry { after_s } => {
                self.retry_or_drop(id, entry, answer, after_s, now_ms, &mut events)
            }
            Verdict::Fail => {
                let reason = crate::pipeline::mask(&self.secrets, &answer.summary());
                self.give_up(entry, reason, false, now_ms, &mut events)
            }
        }
        events
    }

    fn retry_or_drop(
        &mut self,
        id: u64,
        mut entry: Entry,
        answer: &Answer,
        after_s: Option<u64>,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        let reason = crate::pipeline::mask(&self.secrets, &answer.summary());
        let delay = self
            .backoff_ms(entry.attempts)
            .max(after_s.unwrap_or(0).saturating_mul(1000));
        let too_old = now_ms + delay > entry.created_ms + self.policy.max_age_ms;
        if entry.attempts >= self.policy.max_attempts || too_old {
            let why = if too_old {
                "retry window over"
            } else {
                "out of attempts"
            };
            let reason = format!("{why} after {} attempts; last: {reason}", entry.attempts);
            self.give_up(entry, reason, true, now_ms, events);
            return;
        }
        events.push(Event::WillRetry {
            service: entry.job.service,
            step: entry.job.step.clone(),
            in_ms: delay,
            reason,
        });
        entry.due_ms = now_ms + delay;
        self.entries.insert(id, entry);
    }

    fn give_up(
        &mut self,
        entry: Entry,
        reason: String,
        dropped: bool,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        let Entry { job, .. } = entry;
        if let Work::Lead(lead) = &job.work {
            events.push(Event::Record {
                user_id: job.user_id.clone(),
                change: lead.release(),
            });
        }
        if job.alert_on_failure {
            if let Some(alerts) = &self.alerts {
                let alert = alerts.job(&job.step, &reason);
                if let Some(full) = self.push(alert, now_ms) {
                    events.push(full);
                }
            }
        }
        let (service, step) = (job.service, job.step);
        events.push(if dropped {
            Event::Dropped {
                service,
                step,
                reason,
            }
        } else {
            Event::Failed {
                service,
                step,
                reason,
            }
        });
    }

    /// Exponential backoff: the initial delay, doubled per attempt, capped.
    fn backoff_ms(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(20);
        self.policy
            .initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.policy.max_backoff_ms)
    }
}
