//! The dry run's report: one JSON document (`--json`), or the same read
//! as plain text.
//!
//! The report is built once as JSON and every string in it is masked before
//! either form is printed, so the two cannot differ in what they reveal.
//! Masking is in layers, because no single one catches everything:
//! credential headers (`authorization`, `webhook-signature`) are replaced
//! whole, as they carry secrets in encoded form; the path of a webhook whose
//! URL is the credential (Slack, Zapier) is replaced whole; and every string
//! goes through [`mask_secrets`], plus the URL-encoded form of each secret
//! (form bodies) and the alert channel's URL, which that function does not
//! know about.

use std::fmt::Write as _;

use rules::config::{Config, Step};
use rules::delivery::{Job, Work};
use rules::event::LoginEvent;
use rules::http::{Answer, Request};
use rules::pipeline::{mask_secrets, Report, RuleResult, ShadowReport};
use rules::steps::salesforce::SalesforceToken;
use serde_json::{json, Map, Value};

use crate::dry_run::{Awaited, Run};

/// The first line of every report.
pub const DRY_RUN: &str =
    "dry run: the id_token's signature was NOT verified; nothing was sent or stored";

/// Headers whose whole value is a credential.
const SECRET_HEADERS: [&str; 2] = ["authorization", "webhook-signature"];

/// Targets of calls whose URL path is itself the credential.
const SECRET_PATH_TARGETS: [&str; 3] = ["slack webhook", "zapier hook", "slack alert webhook"];

/// Stands in for the instance a Salesforce token answer names.
const SALESFORCE_INSTANCE: &str = "(instance_url of the token answer)";

/// The login as the rules see it, in short.
pub fn login(event: &LoginEvent, counted: bool) -> Value {
    json!({
        "user_id": event.user_id(),
        "protocol": event.protocol.name(),
        "protocol_alias": event.protocol.alias(),
        "interactive": event.protocol.is_interactive_login(),
        "client_id": event.context_str("client_id"),
        "client_name": event.context_str("client_name"),
        "connection": event.context_str("connection"),
        "ip": event.request_str("ip"),
        "user_agent": event.request_str("user_agent"),
        "logins_count": event.logins_count(),
        "login_counted": counted,
        "first_login": event.is_first_login(),
    })
}

/// The whole report, masked.
pub fn build(config: &Config, login: Value, run: &Run, notes: Vec<String>) -> Value {
    let outcome = &run.outcome;
    let calls: Vec<Value> = run
        .awaited
        .iter()
        .map(awaited_value)
        .chain(outcome.jobs.iter().map(job_value))
        .collect();
    let record = &outcome.record;
    let lead_marker = match record.lead_queued_at {
        None => Value::Null,
        Some(Some(at)) => json!({"action": "set", "queued_at": at}),
        Some(None) => json!({"action": "clear"}),
    };
    let mut report = json!({
        "dry_run": true,
        "note": DRY_RUN,
        "notes": notes,
        "login": login,
        "decision": if outcome.deny.is_some() { "deny" } else { "allow" },
        "deny_reason": outcome.deny,
        "id_token_claims": outcome.id_token_claims,
        "access_token_claims": outcome.access_token_claims,
        "removed_claims": {
            "id_token": outcome.remove_id_token,
            "access_token": outcome.remove_access_token,
        },
        "calls": calls,
        "record": {
            "count_login": record.count_login,
            "app_metadata": record.app_metadata,
            "user_metadata": record.user_metadata,
            "lead_marker": lead_marker,
        },
        "rules": outcome.reports.iter().map(rule_value).collect::<Vec<_>>(),
        "shadows": outcome.shadows.iter().map(shadow_value).collect::<Vec<_>>(),
    });
    let secrets = extra_secrets(config);
    mask_strings(&mut report, &|text| {
        let mut masked = mask_secrets(config, text);
        for secret in &secrets {
            masked = masked.replace(secret.as_str(), "***");
        }
        masked
    });
    report
}

fn awaited_value(call: &Awaited) -> Value {
    let answer = match (&call.answer, &call.answered_by) {
        (Answer::NotSent(reason), _) => json!({"not_sent": reason}),
        (answer, by) => json!({"status": answer.code(), "from": by}),
    };
    json!({
        "kind": "awaited",
        "rule": call.rule,
        "service": call.service,
        "what": call.request.target,
        "requests": [request_value(&call.request)],
        "answer": answer,
    })
}

fn job_value(job: &Job) -> Value {
    let (what, requests) = match &job.work {
        Work::Send(request) => (request.target.clone(), vec![request_value(request)]),
        Work::Lead(lead) => {
            // The lead goes out with the token the first call brings back.
            let mut lead = lead.clone();
            let token_request = lead.request(None);
            let placeholder = SalesforceToken {
                access_token: "***".into(),
                authority: SALESFORCE_INSTANCE.into(),
                path_prefix: String::new(),
                expires_ms: 0,
            };
            let lead_request = lead.request(Some(&placeholder));
            let requests = vec![request_value(&token_request), request_value(&lead_request)];
            ("salesforce token + lead".to_string(), requests)
        }
    };
    json!({
        "kind": "background",
        "rule": job.step,
        "service": job.service,
        "what": what,
        "requests": requests,
        "alert_on_failure": job.alert_on_failure,
    })
}

fn request_value(request: &Request) -> Value {
    let path = if SECRET_PATH_TARGETS.contains(&request.target.as_str()) {
        "***"
    } else {
        request.path.as_str()
    };
    let headers: Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let secret = SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
            let shown = if secret { "***" } else { value.as_str() };
            (name.clone(), Value::from(shown))
        })
        .collect();
    let body = match serde_json::from_slice::<Value>(&request.body) {
        Ok(json) => json,
        Err(_) if request.body.is_empty() => Value::Null,
        Err(_) => Value::from(String::from_utf8_lossy(&request.body).into_owned()),
    };
    json!({
        "target": request.target,
        "method": request.method,
        "cluster": request.cluster,
        "authority": request.authority,
        "path": path,
        "headers": headers,
        "body": body,
        "timeout_ms": request.timeout_ms,
    })
}

fn rule_value(report: &Report) -> Value {
    let (result, reason) = match &report.result {
        RuleResult::Ran => ("ran", None),
        RuleResult::Skipped(reason) => ("skipped", Some(reason)),
        RuleResult::Failed(reason) => ("failed", Some(reason)),
        RuleResult::Shadowed => ("shadow", None),
    };
    json!({"rule": report.rule, "result": result, "reason": reason})
}

fn shadow_value(shadow: &ShadowReport) -> Value {
    json!({
        "rule": shadow.rule,
        "id_token_claims": shadow.id_token_claims,
        "access_token_claims": shadow.access_token_claims,
        "removed_claims": shadow.removed_claims,
        "deny": shadow.deny,
        "calls": shadow.calls,
        "record_changed": shadow.record_changed,
    })
}

/// Secret forms [`mask_secrets`] does not cover: the alert channel's URL,
/// and every secret as it reads inside a form body.
fn extra_secrets(config: &Config) -> Vec<String> {
    let mut plain: Vec<&str> = Vec::new();
    for rule in &config.rules {
        match &rule.step {
            Step::Builtin(step) => plain.extend(step.secrets().iter().map(|s| s.expose())),
            Step::Rule(actions) => plain.extend(
                actions
                    .webhook
                    .iter()
                    .filter_map(|hook| hook.signing_key.as_ref())
                    .map(|(secret, _)| secret.expose()),
            ),
            Step::SetClaim { .. } => {}
        }
    }
    if let Some(alerts) = &config.alerts {
        plain.push(alerts.webhook.secret.expose());
    }
    let mut forms = Vec::new();
    for secret in plain.into_iter().filter(|secret| secret.len() >= 4) {
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        forms.push(secret.to_string());
        if encoded != secret {
            forms.push(encoded);
        }
    }
    // Longest first, so that no secret is left half masked by a shorter one.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms
}

fn mask_strings(value: &mut Value, mask: &dyn Fn(&str) -> String) {
    match value {
        Value::String(text) => *text = mask(text),
        Value::Array(items) => items.iter_mut().for_each(|item| mask_strings(item, mask)),
        Value::Object(fields) => fields.values_mut().for_each(|v| mask_strings(v, mask)),
        _ => {}
    }
}

/// The report as plain text.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    line(&mut out, text(&report["note"]));
    for note in items(&report["notes"]) {
        line(&mut out, &format!("note: {}", text(note)));
    }
    render_login(&mut out, &report["login"]);
    match report["deny_reason"].as_str() {
        Some(reason) => line(&mut out, &format!("decision: deny: {reason}")),
        None => line(&mut out, "decision: allow"),
    }
    line(&mut out, "");
    render_claims(
        &mut out,
        "id_token claims added",
        &report["id_token_claims"],
    );
    render_claims(
        &mut out,
        "access_token claims added",
        &report["access_token_claims"],
    );
    render_removed(&mut out, &report["removed_claims"]);
    line(&mut out, "");
    render_calls(&mut out, items(&report["calls"]));
    line(&mut out, "");
    render_record(&mut out, &report["record"], &report["login"]);
    line(&mut out, "");
    render_rules(&mut out, report);
    out
}

fn render_login(out: &mut String, login: &Value) {
    line(out, "login:");
    line(out, &format!("  user: {}", text(&login["user_id"])));
    let kind = match login["interactive"].as_bool() {
        Some(true) => "an interactive login",
        _ => "not an interactive login",
    };
    line(
        out,
        &format!(
            "  protocol: {} ({}), {kind}",
            text(&login["protocol"]),
            text(&login["protocol_alias"])
        ),
    );
    let client = match (login["client_id"].as_str(), login["client_name"].as_str()) {
        (Some(id), Some(name)) if id != name => format!("{id} ({name})"),
        (Some(id), _) => id.to_string(),
        (None, _) => "(none)".to_string(),
    };
    line(out, &format!("  client: {client}"));
    line(
        out,
        &format!("  connection: {}", text(&login["connection"])),
    );
    let mut count = format!("  logins_count: {}", login["logins_count"]);
    if login["login_counted"].as_bool() == Some(true) {
        count.push_str(", this login included");
    }
    if login["first_login"].as_bool() == Some(true) {
        count.push_str("; a first login");
    }
    line(out, &count);
    line(out, &format!("  ip: {}", or_none(&login["ip"])));
    line(
        out,
        &format!("  user agent: {}", or_none(&login["user_agent"])),
    );
}

fn render_claims(out: &mut String, title: &str, claims: &Value) {
    let Some(claims) = claims.as_object().filter(|claims| !claims.is_empty()) else {
        line(out, &format!("{title}: none"));
        return;
    };
    line(out, &format!("{title}:"));
    for (name, value) in claims {
        line(out, &format!("  {name}: {value}"));
    }
}

fn render_removed(out: &mut String, removed: &Value) {
    let id_token = names(&removed["id_token"]);
    let access_token = names(&removed["access_token"]);
    if id_token.is_empty() && access_token.is_empty() {
        line(out, "claims removed: none");
        return;
    }
    line(out, "claims removed:");
    for (token, names) in [("id_token", id_token), ("access_token", access_token)] {
        if !names.is_empty() {
            line(out, &format!("  {token}: {}", names.join(", ")));
        }
    }
}

fn render_calls(out: &mut String, calls: &[Value]) {
    if calls.is_empty() {
        line(out, "calls: none");
        return;
    }
    line(out, "calls:");
    for (number, call) in calls.iter().enumerate() {
        line(
            out,
            &format!(
                "  {}. {}, rule {} ({}): {}",
                number + 1,
                text(&call["kind"]),
                text(&call["rule"]),
                text(&call["service"]),
                text(&call["what"])
            ),
        );
        let answer = &call["answer"];
        if let Some(reason) = answer["not_sent"].as_str() {
            line(out, &format!("     answer: not sent: {reason}"));
        } else if !answer.is_null() {
            let from = answer["from"].as_str().unwrap_or("?");
            let status = &answer["status"];
            line(
                out,
                &format!("     answer: status {status}, --responses entry {from:?}"),
            );
        }
        let requests = items(&call["requests"]);
        for (index, request) in requests.iter().enumerate() {
            render_request(out, request, index > 0, requests.len() > 1);
        }
    }
}

fn render_request(out: &mut String, request: &Value, then: bool, named: bool) {
    let mut head = format!(
        "     {}{} {}",
        if then { "then " } else { "" },
        text(&request["method"]),
        text(&request["path"])
    );
    if named {
        let _ = write!(head, " ({})", text(&request["target"]));
    }
    line(out, &head);
    line(
        out,
        &format!("       cluster: {}", text(&request["cluster"])),
    );
    line(
        out,
        &format!("       :authority: {}", text(&request["authority"])),
    );
    if let Some(headers) = request["headers"].as_object() {
        for (name, value) in headers {
            line(out, &format!("       {name}: {}", text(value)));
        }
    }
    if !request["body"].is_null() {
        line(out, &format!("       body: {}", request["body"]));
    }
}

fn render_record(out: &mut String, record: &Value, login: &Value) {
    let mut changes = Vec::new();
    if login["login_counted"].as_bool() == Some(true) {
        changes.push(format!(
            "login counted before the rules ran (logins_count now {})",
            login["logins_count"]
        ));
    }
    if record["count_login"].as_bool() == Some(true) {
        changes.push("count one more login".to_string());
    }
    for kind in ["app_metadata", "user_metadata"] {
        for (name, value) in record[kind].as_object().into_iter().flatten() {
            match value {
                Value::Null => changes.push(format!("{kind}.{name} removed")),
                value => changes.push(format!("{kind}.{name} = {value}")),
            }
        }
    }
    let marker = &record["lead_marker"];
    match marker["action"].as_str() {
        Some("set") => changes.push(format!(
            "lead marker set (a lead queued at {})",
            marker["queued_at"]
        )),
        Some(_) => changes.push("lead marker cleared".to_string()),
        None => {}
    }
    if changes.is_empty() {
        line(out, "record changes: none");
        return;
    }
    line(out, "record changes:");
    for change in changes {
        line(out, &format!("  {change}"));
    }
}

fn render_rules(out: &mut String, report: &Value) {
    line(out, "rules:");
    let shadows = items(&report["shadows"]);
    for rule in items(&report["rules"]) {
        let name = text(&rule["rule"]);
        match rule["reason"].as_str() {
            Some(reason) => line(
                out,
                &format!("  {name}: {}: {reason}", text(&rule["result"])),
            ),
            None => line(out, &format!("  {name}: {}", text(&rule["result"]))),
        }
        if let Some(shadow) = shadows.iter().find(|s| s["rule"].as_str() == Some(name)) {
            render_shadow(out, shadow);
        }
    }
}

fn render_shadow(out: &mut String, shadow: &Value) {
    let mut would = Vec::new();
    for (title, field) in [
        ("add to the id_token", "id_token_claims"),
        ("add to the access token", "access_token_claims"),
    ] {
        for (name, value) in shadow[field].as_object().into_iter().flatten() {
            would.push(format!("{title}: {name}: {value}"));
        }
    }
    let removed = names(&shadow["removed_claims"]);
    if !removed.is_empty() {
        would.push(format!("remove claims: {}", removed.join(", ")));
    }
    if let Some(reason) = shadow["deny"].as_str() {
        would.push(format!("deny: {reason}"));
    }
    for call in items(&shadow["calls"]) {
        would.push(format!("call: {}", text(call)));
    }
    if shadow["record_changed"].as_bool() == Some(true) {
        would.push("change the user's record".to_string());
    }
    if would.is_empty() {
        would.push("do nothing".to_string());
    }
    for thing in would {
        line(out, &format!("    would {thing}"));
    }
}

fn line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn or_none(value: &Value) -> &str {
    value.as_str().unwrap_or("(none)")
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn names(value: &Value) -> Vec<&str> {
    items(value).iter().filter_map(Value::as_str).collect()
}
