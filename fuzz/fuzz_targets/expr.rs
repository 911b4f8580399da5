//! CEL expressions: any text must compile or be refused with the field
//! named, and whatever compiles must evaluate to a value or an error against
//! a login's scope, never crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::expr::{Expr, Scope};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = Expr::compile("rules[0].when", source) else {
        return;
    };
    let event = json!({
        "user": {"user_id": "u1", "email": "ada@example.com", "email_verified": true,
                 "roles": ["dev", "ops"], "app_metadata": {"plan": "gold"}, "user_metadata": {}},
        "context": {"stats": {"logins_count": 3}, "protocol": "authorization_code",
                    "client_id": "spa", "id_token": {}, "webhooks": {}}
    });
    let _ = expr.eval(&Scope::new(&event));
});
