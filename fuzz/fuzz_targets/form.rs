//! Token request bodies and Authorization headers from clients: read
//! without crashing, whatever they hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::exchange::TokenRequest;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (header, body) = data.split_at(split);
    let _ = TokenRequest::parse(body, Some(header));
    let _ = TokenRequest::parse(data, None);
});
