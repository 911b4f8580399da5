//! The host calls Rulegate makes, each returning what it got instead of
//! panicking.
//!
//! The SDK's context methods unwrap the host's status; a surprise there
//! would trap the VM for every request on the worker. These wrappers go to
//! `proxy_wasm::hostcalls` directly and turn every failure into `None` or
//! `false`, which the callers treat as "pass through untouched".
//!
//! `hostcalls` itself still panics on a status outside the set the ABI
//! documents for a call, which Envoy returns when a map does not exist in
//! the current callback (request headers read while handling a call's
//! answer). Read each map only in the callbacks where Envoy has it: request
//! headers with the request, response headers with the response.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes, MapType};

/// A request header, as bytes: clients may send anything.
pub fn request_header(name: &str) -> Option<Bytes> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok()?
}

/// A request header that must be UTF-8 to be of use (`:path`, `:method`).
pub fn request_header_str(name: &str) -> Option<String> {
    String::from_utf8(request_header(name)?).ok()
}

/// Removes a request header; true when it is gone.
pub fn remove_request_header(name: &str) -> bool {
    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok()
}

/// A response header, as UTF-8 when it is.
pub fn response_header(name: &str) -> Option<String> {
    let value = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name).ok()??;
    String::from_utf8(value).ok()
}

/// A request header as UTF-8, for values only logged or forwarded to
/// rules (`user-agent`): invalid bytes are replaced, never trusted.
pub fn request_header_lossy(name: &str) -> Option<String> {
    request_header(name).map(|value| String::from_utf8_lossy(&value).into_owned())
}

/// Sets a response header; true when the host took it.
pub fn set_response_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).is_ok()
}

/// A header of the answer to an outbound call.
pub fn call_response_header(name: &str) -> Option<String> {
    let value = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).ok()??;
    String::from_utf8(value).ok()
}

/// The whole buffered body of `buffer`, when it fits in `limit` bytes.
pub fn body(buffer: BufferType, size: usize, limit: usize) -> Option<Bytes> {
    if size > limit {
        return None;
    }
    if size == 0 {
        return Some(Vec::new());
    }
    hostcalls::get_buffer(buffer, 0, size).ok()?
}

/// Replaces the buffered response body of `old_size` bytes with `body`.
pub fn replace_response_body(old_size: usize, body: &[u8]) -> bool {
    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, old_size, body).is_ok()
}

/// Lets a held response continue.
pub fn resume_response() {
    if hostcalls::resume_http_response().is_err() {
        log::warn!("failed to resume a held response");
    }
}

/// Answers the client directly; the upstream response, if any, is dropped.
pub fn send_response(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
    if hostcalls::send_http_response(status, headers, Some(body)).is_err() {
        log::error!("failed to send a local reply with status {status}");
    }
}

/// Sends a request the rules described; `None` when Envoy refuses it.
pub fn dispatch_request(request: &rules::http::Request) -> Option<u32> {
    let mut headers = vec![
        (":method", request.method),
        (":path", request.path.as_str()),
        (":authority", request.authority.as_str()),
    ];
    headers.extend(
        request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let timeout = Duration::from_millis(request.timeout_ms);
    dispatch(&request.cluster, headers, Some(&request.body), timeout)
}

/// Sends an HTTP request through an Envoy cluster; `None` when Envoy
/// refuses it at once (unknown cluster, missing pseudo-header).
pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Option<u32> {
    hostcalls::dispatch_http_call(cluster, headers, body, Vec::new(), timeout).ok()
}

/// The answer to an outbound call, read whole. Envoy reports a reset or a
/// refused connection as an answer without headers.
pub fn call_answer(body_size: usize) -> rules::http::Answer {
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(|value| value.parse::<u16>().ok());
    let Some(status) = status else {
        return rules::http::Answer::Reset;
    };
    let headers = headers
        .into_iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let body = body(BufferType::HttpCallResponseBody, body_size, MAX_CALL_BODY).unwrap_or_default();
    rules::http::Answer::Response {
        status,
        headers,
        body,
    }
}

/// Largest answer body read from a service; a larger one is read as empty
/// (a hostile service must not make the VM grow), so a caller that needs
/// the body checks the size it was told first, as the JWKS fetch does.
const MAX_CALL_BODY: usize = 256 * 1024;

/// The host's wall clock, in Unix milliseconds (0 if the host will not say).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The host's wall clock, in nanoseconds, for measuring the filter's own
/// processing time.
pub fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// A property of the stream (`source.address`), as UTF-8.
pub fn property(path: &[&str]) -> Option<String> {
    let value = hostcalls::get_property(path.to_vec()).ok()??;
    String::from_utf8(value).ok()
}

/// The host's wall clock, in Unix seconds; 0 if the host will not say,
/// which makes every token look expired rather than eternally valid.
pub fn now_unix() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A value shared by every VM of this plugin in the Envoy process, with its
/// compare-and-swap version.
pub fn shared_data(key: &str) -> (Option<Bytes>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Stores a shared value; false on a CAS mismatch or host failure.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}
