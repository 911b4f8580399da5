//! Expressions in the Common Expression Language (CEL), the language of
//! Envoy's RBAC, Kubernetes and cloud IAM policies: conditions (`when`) and
//! computed values of configured rules.
//!
//! An expression is compiled once, when the configuration loads; a syntax
//! error or a name other than `user` and `context` is refused there, with
//! the rule named. Evaluation never panics: a missing field or a wrong type
//! is an error that the rule's error policy handles.

use std::sync::Arc;

use cel::{Context, Program};
use serde_json::Value;

use crate::error::Error;

/// The names an expression may start from.
pub const TOP_LEVEL_NAMES: [&str; 2] = ["user", "context"];

/// A compiled expression and its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expr {
    /// Compiles `source`; `field` names it in errors.
    pub fn compile(field: &str, source: &str) -> Result<Expr, Error> {
        if source.trim().is_empty() {
            return Err(Error::config(field, "must not be empty"));
        }
        let program = Program::compile(source).map_err(|err| {
            let first = err
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            Error::config(field, format!("is not valid CEL: {first}"))
        })?;
        let bound = comprehension_variables(source);
        let references = program.references();
        let mut unknown: Vec<&str> = references
            .variables()
            .into_iter()
            .filter(|name| !TOP_LEVEL_NAMES.contains(name) && !bound.iter().any(|b| b == name))
            .collect();
        unknown.sort_unstable();
        if let Some(name) = unknown.first() {
            return Err(Error::config(
                field,
                format!("unknown name {name:?}; expressions start from user or context"),
            ));
        }
        Ok(Expr {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `scope`, giving JSON.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        let value = self
            .program
            .execute(&scope.context)
            .map_err(|err| format!("{}: {err}", self.source))?;
        value
            .json()
            .map_err(|_| format!("{}: the value cannot be written as JSON", self.source))
    }

    /// Evaluates a condition: it must give a boolean.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval(scope)? {
            Value::Bool(value) => Ok(value),
            other => Err(format!("{}: gave {other}, not true or false", self.source)),
        }
    }
}

/// Identifiers bound by comprehension macros (`list.exists(x, ...)`), which
/// the parser reports as variables like any other.
fn comprehension_variables(source: &str) -> Vec<String> {
    const MACROS: [&str; 5] = ["all(", "exists(", "exists_one(", "map(", "filter("];
    let mut bound = Vec::new();
    for macro_call in MACROS {
        for (index, _) in source.match_indices(macro_call) {
            let rest = &source[index + macro_call.len()..];
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with(',') {
                bound.push(name);
            }
        }
    }
    bound
}

/// JSON as a CEL value. (The crate's serde route does the same through a
/// generic serializer, which costs the filter's binary far more.)
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => cel::Value::from(text.as_str()),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => {
            let map: std::collections::HashMap<String, cel::Value> =
                fields.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// The values an expression sees: `user` and `context` of the login event.
pub struct Scope {
    context: Context<'static, 'static>,
}

impl Scope {
    /// A scope over a login event (`{"user": ..., "context": ...}`).
    pub fn new(event: &Value) -> Scope {
        let mut context = Context::default();
        for name in TOP_LEVEL_NAMES {
            let value = event.get(name).map_or(cel::Value::Null, to_cel);
            context.add_variable_from_value(name, value);
        }
        Scope { context }
    }

    /// Takes a new `context` from the event; `user` does not change while
    /// the rules run, so only this part is converted again when a rule
    /// adds claims or a webhook answers.
    pub fn refresh_context(&mut self, event: &Value) {
        let value = event.get("context").map_or(cel::Value::Null, to_cel);
        self.context.add_variable_from_value("context", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "user": {"user_id": "u1", "email": "ada@example.com", "email_verified": false,
                     "roles": ["dev", "ops"], "app_metadata": {"plan": "gold"}},
            "context": {"stats": {"logins_count": 3}, "protocol": "authorization_code",
                        "client_id": "spa", "id_token": {}}
        })
    }

    /// Conditions and values with what they give, by name.
    #[test]
    fn expressions_table() {
        let scope = Scope::new(&event());
        let cases: Vec<(&str, &str, Value)> = vec![
            (
                "domain check",
                "user.email.endsWith('@example.com')",
                json!(true),
            ),
            ("unverified", "!user.email_verified", json!(true)),
            (
                "number compare",
                "context.stats.logins_count > 1",
                json!(true),
            ),
            (
                "string concat",
                "'role-' + user.app_metadata.plan",
                json!("role-gold"),
            ),
            (
                "ternary",
                "user.email.endsWith('@example.com') ? 'staff' : 'guest'",
                json!("staff"),
            ),
            ("list membership", "'ops' in user.roles", json!(true)),
            ("has macro", "has(user.app_metadata.plan)", json!(true)),
            (
                "has on a missing field",
                "has(user.app_metadata.tier)",
                json!(false),
            ),
            (
                "exists macro",
                "user.roles.exists(r, r == 'dev')",
                json!(true),
            ),
            (
                "map literal",
                "{'a': 1, 'b': [true]}",
                json!({"a": 1, "b": [true]}),
            ),
            ("list literal", "[1, 'two', 3.5]", json!([1, "two", 3.5])),
            ("size", "size(user.roles)", json!(2)),
        ];
        for (name, source, expected) in cases {
            let expr = Expr::compile("when", source).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(expr.eval(&scope), Ok(expected), "case {name:?}: {source}");
        }
    }

    #[test]
    fn load_errors_table() {
        let cases = [
            ("syntax error", "user.email ==", "is not valid CEL"),
            (
                "unknown top-level name",
                "request.ip == '1.2.3.4'",
                "unknown name \"request\"",
            ),
            ("empty", "  ", "must not be empty"),
        ];
        for (name, source, expected) in cases {
            match Expr::compile("rules[0].when", source) {
                Err(Error::Config { field, reason }) => {
                    assert_eq!(field, "rules[0].when", "case {name:?}");
                    assert!(reason.contains(expected), "case {name:?}: {reason}");
                }
                other => panic!("case {name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn runtime_errors_table() {
        let scope = Scope::new(&event());
        let cases = [
            ("missing field", "user.nickname == 'x'"),
            ("wrong type", "user.email > 3"),
            ("not a boolean", "user.email"),
            ("division by zero", "1 / 0 == 1"),
        ];
        for (name, source) in cases {
            let expr = Expr::compile("when", source).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(expr.eval_bool(&scope).is_err(), "case {name:?} evaluated");
        }
    }
}
