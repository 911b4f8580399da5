//! The rule engine: runs the configured rules, in order, against a verified
//! token and says what should change.
//!
//! The engine performs no I/O and reads no clock: everything it needs is in
//! its arguments, and everything it decides is in its [`Outcome`]. The filter
//! applies the outcome; tests check it directly.

use serde_json::{Map, Value};

use crate::claims::VerifiedClaims;
use crate::config::{Action, ClaimValue, Rule};

/// What the rules decided for one token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Claims to add to the id_token, by full (namespaced) name.
    pub id_token_claims: Map<String, Value>,
    /// Names of the rules that changed something, in order.
    pub applied: Vec<String>,
}

impl Outcome {
    /// Whether the token must be rewritten and re-signed.
    pub fn changes_token(&self) -> bool {
        !self.id_token_claims.is_empty()
    }
}

/// Runs `rules` in order against `claims`.
///
/// A later rule sees the claims that earlier rules set, so a `from_claim`
/// can copy a custom claim as well as one from the provider.
pub fn evaluate(rules: &[Rule], claims: &VerifiedClaims) -> Outcome {
    let mut outcome = Outcome::default();
    for rule in rules {
        match &rule.action {
            Action::SetClaim { claim, value } => {
                let value = match value {
                    ClaimValue::Fixed(value) => Some(value.clone()),
                    ClaimValue::FromClaim(source) => outcome
                        .id_token_claims
                        .get(source)
                        .or_else(|| claims.get(source))
                        .cloned(),
                };
                let Some(value) = value else { continue };
                if claims.get(claim) == Some(&value) {
                    continue;
                }
                outcome.id_token_claims.insert(claim.clone(), value);
                outcome.applied.push(rule.name.clone());
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(name: &str, claim: &str, value: ClaimValue) -> Rule {
        Rule {
            name: name.into(),
            action: Action::SetClaim {
                claim: claim.into(),
                value,
            },
        }
    }

    fn claims(value: Value) -> VerifiedClaims {
        VerifiedClaims(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn fixed_and_copied_values_are_added_in_order() {
        let rules = [
            rule("plan", "https://x/plan", ClaimValue::Fixed(json!("gold"))),
            rule(
                "mail",
                "https://x/mail",
                ClaimValue::FromClaim("email".into()),
            ),
            rule(
                "again",
                "https://x/plan2",
                ClaimValue::FromClaim("https://x/plan".into()),
            ),
        ];
        let outcome = evaluate(&rules, &claims(json!({"sub": "u1", "email": "a@b.c"})));
        assert_eq!(
            Value::Object(outcome.id_token_claims),
            json!({"https://x/plan": "gold", "https://x/mail": "a@b.c", "https://x/plan2": "gold"})
        );
        assert_eq!(outcome.applied, ["plan", "mail", "again"]);
    }

    #[test]
    fn copying_an_absent_claim_adds_nothing() {
        let rules = [rule(
            "mail",
            "https://x/mail",
            ClaimValue::FromClaim("email".into()),
        )];
        let outcome = evaluate(&rules, &claims(json!({"sub": "u1"})));
        assert!(!outcome.changes_token());
    }

    #[test]
    fn a_claim_the_token_already_has_with_the_same_value_is_no_change() {
        let rules = [rule(
            "plan",
            "https://x/plan",
            ClaimValue::Fixed(json!("gold")),
        )];
        let outcome = evaluate(
            &rules,
            &claims(json!({"sub": "u1", "https://x/plan": "gold"})),
        );
        assert!(!outcome.changes_token());
    }
}
