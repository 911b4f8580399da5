//! Expressions in the Common Expression Language (CEL), the language of
//! Envoy's RBAC, Kubernetes and cloud IAM policies: conditions (`when`) and
//! computed values of configured rules.
//!
//! An expression is compiled once, when the configuration loads; a syntax
//! error or a name other than `user` and `context` is refused there, with
//! the rule named. Evaluation never panics: a missing field or a wrong type
//! is an error that the rule's error policy handles.
//!
//! Expressions are parsed with the `cel` crate's Pratt parser rather than
//! its default ANTLR-generated one: the ANTLR runtime alone is a fifth of
//! the filter's module, and the two parsers build the same syntax tree (the
//! tests compare them on a corpus). Nesting and size are bounded, so that
//! neither parsing nor the recursive evaluation can exhaust the wasm stack,
//! and list macros cannot be nested, so that the work of an expression
//! grows with the data it reads, not with a power of it.

use std::sync::Arc;

use cel::parser::{Expression, PrattParser};
use cel::{Context, Env};
use serde_json::Value;

use crate::error::Error;

/// The names an expression may start from.
pub const TOP_LEVEL_NAMES: [&str; 2] = ["user", "context"];

/// Deepest nesting of parentheses, calls and the like an expression may
/// have.
const MAX_NESTING: u16 = 32;

/// Most syntax-tree nodes macros may expand an expression to.
const MAX_NODES: usize = 400;

/// Longest expression accepted, in bytes: far beyond any rule's condition.
pub const MAX_SOURCE_BYTES: usize = 4096;

/// Deepest syntax tree accepted. Evaluation recurses once per level, and a
/// chain like `a + b + c + ...` is as deep as it is long, which the parser's
/// nesting limit does not see.
const MAX_TREE_DEPTH: usize = 64;

/// A compiled expression and its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Expression>,
    /// Whether the expression reads `context`, which changes while the
    /// rules run (claims they add, webhook answers).
    reads_context: bool,
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
        if source.len() > MAX_SOURCE_BYTES {
            return Err(Error::config(
                field,
                format!("is longer than {MAX_SOURCE_BYTES} bytes; split it over several rules"),
            ));
        }
        let parser = PrattParser::new()
            .max_recursion_depth(MAX_NESTING)
            .max_expression_node_count(MAX_NODES);
        let program = parser.parse(source).map_err(|err| {
            let first = err
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            Error::config(field, format!("is not valid CEL: {first}"))
        })?;
        let shape = shape(&program);
        if shape.depth > MAX_TREE_DEPTH {
            return Err(Error::config(
                field,
                format!(
                    "is nested deeper than {MAX_TREE_DEPTH} levels; split it over several rules"
                ),
            ));
        }
        if shape.nested_loops {
            return Err(Error::config(
                field,
                "runs a list macro (all, exists, exists_one, map, filter) inside another's \
                 condition or body; each level multiplies the work of every login, so only \
                 one level is allowed (chaining them, as in `l.filter(...).exists(...)`, is \
                 fine)",
            ));
        }
        let bound = &shape.bound;
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
        let reads_context = references.has_variable("context");
        Ok(Expr {
            source: source.to_string(),
            program: Arc::new(program),
            reads_context,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `context`.
    pub fn reads_context(&self) -> bool {
        self.reads_context
    }

    /// Evaluates against `scope`, giving JSON.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        let value = cel::Value::resolve(&self.program, &scope.context)
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

/// What load-time checks need to know of a syntax tree.
struct Shape {
    depth: usize,
    /// A list macro (`all`, `exists`, `exists_one`, `map`, `filter`)
    /// inside the condition or body of another, where it runs once per
    /// element: the work multiplies with each level.
    nested_loops: bool,
    /// The names list macros bind (`r` in `roles.exists(r, ...)`), which
    /// the parser reports as variables like any other.
    bound: Vec<String>,
}

/// The shape of an expression's syntax tree, walked without recursion.
fn shape(root: &Expression) -> Shape {
    use cel::common::ast::{EntryExpr, Expr as Node};

    let mut shape = Shape {
        depth: 0,
        nested_loops: false,
        bound: Vec::new(),
    };
    // (node, depth, whether it runs once per element of a list macro)
    let mut pending = vec![(root, 1, false)];
    while let Some((node, depth, in_loop)) = pending.pop() {
        shape.depth = shape.depth.max(depth);
        let below = depth + 1;
        match &node.expr {
            Node::Call(call) => {
                let target = call.target.iter().map(|target| target.as_ref());
                pending.extend(target.chain(&call.args).map(|n| (n, below, in_loop)));
            }
            Node::Comprehension(loop_) => {
                shape.nested_loops |= in_loop;
                let names = [
                    Some(&loop_.iter_var),
                    loop_.iter_var2.as_ref(),
                    Some(&loop_.accu_var),
                ];
                shape.bound.extend(names.into_iter().flatten().cloned());
                let once = [&loop_.iter_range, &loop_.accu_init, &loop_.result];
                pending.extend(once.map(|part| (part, below, in_loop)));
                let per_element = [&loop_.loop_cond, &loop_.loop_step];
                pending.extend(per_element.map(|part| (part, below, true)));
            }
            Node::List(list) => {
                pending.extend(list.elements.iter().map(|item| (item, below, in_loop)));
            }
            Node::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        pending
                            .extend([(&entry.key, below, in_loop), (&entry.value, below, in_loop)]);
                    }
                }
            }
            Node::Struct(fields) => {
                for entry in &fields.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        pending.push((&field.value, below, in_loop));
                    }
                }
            }
            Node::Select(select) => pending.push((&select.operand, below, in_loop)),
            Node::Unspecified | Node::Ident(_) | Node::Literal(_) => {}
        }
    }
    shape
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

thread_local! {
    /// CEL's standard functions and macros, built once per thread (a wasm
    /// VM has one): building them for every login cost more than all the
    /// rules' evaluation.
    static STANDARD_LIBRARY: Arc<Env> = Arc::new(Env::stdlib());
}

/// The values an expression sees: `user` and `context` of the login event.
pub struct Scope {
    context: Context<'static, 'static>,
}

impl Scope {
    /// A scope over a login event (`{"user": ..., "context": ...}`).
    pub fn new(event: &Value) -> Scope {
        let mut context = Context::with_env(STANDARD_LIBRARY.with(Arc::clone));
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

    /// The Pratt parser the filter uses and the crate's reference ANTLR
    /// parser accept and refuse the same expressions, and what both accept
    /// evaluates the same.
    #[test]
    fn pratt_parser_agrees_with_the_antlr_parser() {
        let scope = Scope::new(&event());
        let corpus = [
            "user.email.endsWith('@example.com')",
            "!user.email_verified || context.stats.logins_count > 3",
            "user.app_metadata.plan == 'gold' ? 'vip' : 'regular'",
            "'ops' in user.roles && size(user.roles) >= 2",
            "user.roles.all(r, r.size() > 1)",
            "user.roles.exists_one(r, r == 'ops')",
            "user.roles.map(r, r + '!')",
            "user.roles.filter(r, r.startsWith('d'))",
            "has(user.app_metadata.plan) && !has(user.nickname)",
            "{'plan': user.app_metadata.plan, 'n': [1, 2u, 3.5, -4, true, null]}",
            "user.email.matches('^[a-z]+@example[.]com$')",
            "int('12') + uint(3) == 15 || double(1) / 2.0 == 0.5",
            "'a\\tb\\u00e9\\x41' + \"\"\"tri\"\"\" + r'raw\\n'",
            "b'bytes' == bytes('bytes')",
            "[1, 2, 3][1] == 2 && {'k': 'v'}['k'] == 'v'",
            "1 + 2 * 3 - 4 / 2 % 3 == 5",
            "-(-(1)) == 1 && !!true",
            "user.email.contains('@') && user.email.size() < 100",
            "context.stats.logins_count in [1, 2, 3]",
            "(((((1)))))",
            "user.roles[0]",
            "1.0e3 == 1000.0 && 0x10 == 16",
            "user.email ==",
            "user.email = 'x'",
            "user..email",
            "(user.email",
            "user.email)",
            "'unterminated",
            "1 +",
            "? : ",
            "[1, 2",
            "{'a': }",
            "user.roles.exists(r)",
            "has(user)",
            "user.email.endsWith('x',)",
            "1 2",
            "@",
            "user.é",
            "in",
            "null.x",
            "true && || false",
            "",
        ];
        for source in corpus {
            let pratt = PrattParser::new().parse(source);
            let antlr = cel::Program::compile(source);
            assert_eq!(
                pratt.is_ok(),
                antlr.is_ok(),
                "parsers disagree on {source:?}"
            );
            if let (Ok(pratt), Ok(antlr)) = (pratt, antlr) {
                let from_pratt = cel::Value::resolve(&pratt, &scope.context);
                let from_antlr = antlr.execute(&scope.context);
                assert_eq!(from_pratt, from_antlr, "results differ for {source:?}");
            }
        }
    }

    /// Expressions nested or long enough to strain the stack are refused at
    /// load, with the field named, rather than crashing a worker later.
    /// Parentheses and repeated negations, which the parser folds, add no
    /// depth to the tree and are harmless.
    #[test]
    fn deep_or_huge_expressions_are_refused() {
        let cases = [
            (
                "nested lists",
                format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            ),
            (
                "nested calls",
                format!("{}1{}", "int(".repeat(100), ")".repeat(100)),
            ),
            ("long sum", format!("{}1", "1 + ".repeat(200))),
        ];
        for (name, source) in cases {
            match Expr::compile("rules[2].when", &source) {
                Err(Error::Config { field, reason }) => {
                    assert_eq!(field, "rules[2].when", "{name}");
                    let expected = [
                        "is not valid CEL",
                        "is nested deeper than 64 levels",
                        "is longer",
                    ];
                    assert!(
                        expected.iter().any(|e| reason.contains(e)),
                        "{name}: {reason}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let scope = Scope::new(&event());
        // The deepest tree the limit lets through evaluates on a small
        // stack.
        let sum = format!("{}1", "1 + ".repeat(MAX_TREE_DEPTH - 1));
        let sum = Expr::compile("when", &sum).expect("63 additions");
        let evaluated = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || sum.eval(&Scope::new(&event())))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(evaluated, Ok(json!(64)));
        let too_long = "'x' + ".repeat(MAX_SOURCE_BYTES / 6 + 1) + "'x'";
        let refused = Expr::compile("when", &too_long);
        assert!(matches!(refused, Err(Error::Config { reason, .. }) if reason.contains("longer")));
        let parens = format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000));
        let parens = Expr::compile("when", &parens).expect("parentheses");
        assert_eq!(parens.eval(&scope), Ok(json!(1)));
        let negations = Expr::compile("when", &format!("{}true", "!".repeat(1_000)));
        assert_eq!(negations.expect("negations").eval(&scope), Ok(json!(true)));
    }

    /// A list macro inside another's condition or body multiplies the work
    /// (five levels over 30 elements took ten seconds a login); it is
    /// refused at load. Chained macros only add up, and stay allowed.
    #[test]
    fn nested_list_macros_are_refused_and_chained_ones_allowed() {
        let nested = [
            "[1, 2, 3].all(a, [1, 2, 3].all(b, a < 10))",
            "user.roles.exists(r, user.roles.exists(s, r == s))",
            "user.roles.map(r, user.roles.map(s, r + s))",
            "user.roles.filter(r, user.roles.exists_one(s, s == r)).size() > 0",
        ];
        for source in nested {
            match Expr::compile("rules[1].when", source) {
                Err(Error::Config { field, reason }) => {
                    assert_eq!(field, "rules[1].when");
                    assert!(reason.contains("list macro"), "{source}: {reason}");
                }
                other => panic!("{source}: {other:?}"),
            }
        }
        let scope = Scope::new(&event());
        let chained = Expr::compile(
            "when",
            "user.roles.filter(r, r != 'ops').exists(r, r == 'dev')",
        )
        .expect("chained macros");
        assert_eq!(chained.eval(&scope), Ok(json!(true)));
        let in_range = Expr::compile("when", "user.roles.map(r, r + '!').all(r, r.endsWith('!'))")
            .expect("a macro as another's list");
        assert_eq!(in_range.eval(&scope), Ok(json!(true)));
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
