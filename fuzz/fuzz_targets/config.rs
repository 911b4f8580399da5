//! The plugin configuration: any bytes must load or be refused with a
//! field named, never crash (CEL expressions included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::config::Config;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| match name {
        n if n.ends_with("_URL") => Some("https://hooks.example.com/x".to_string()),
        n if n.contains("WEBHOOK") || n.contains("SIGNING") => Some("whsec_c2VjcmV0".to_string()),
        _ => Some("secret-value".to_string()),
    };
    if let Ok(config) = Config::from_json(data, &env) {
        let _ = config.secret_values();
    }
});
