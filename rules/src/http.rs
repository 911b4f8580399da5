//! Outbound HTTP calls as plain data: what to send, what came back, and
//! whether a failure is worth another attempt.
//!
//! Steps describe the calls they need as [`Request`]s; the filter sends
//! them through an Envoy cluster and hands the [`Answer`] back. Nothing in
//! here performs I/O, so every step's wire format and every retry decision
//! is tested natively.

/// An HTTP request to send through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The Envoy cluster that reaches the service.
    pub cluster: String,
    pub method: &'static str,
    /// `:authority`, the service's host name.
    pub authority: String,
    /// Path and query. For webhooks the path is the secret: never log it,
    /// log [`Request::target`] instead.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
    /// What the request is, for logs and alerts, with no secret in it
    /// (`"slack webhook"`, `"segment track"`).
    pub target: String,
}

impl Request {
    /// A JSON `POST`.
    pub fn post_json(endpoint: &Endpoint, path: String, body: &serde_json::Value) -> Request {
        Request {
            cluster: endpoint.cluster.clone(),
            method: "POST",
            authority: endpoint.authority.clone(),
            path,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            timeout_ms: endpoint.timeout_ms,
            target: String::new(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: &str, value: String) -> Request {
        self.headers.push((name.to_string(), value));
        self
    }

    /// The same request described as `target`.
    pub fn described(mut self, target: &str) -> Request {
        self.target = target.to_string();
        self
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Where a service is reached: an Envoy cluster and the `:authority` it
/// expects, with the timeout of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u64,
}

/// What came back from a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The service answered (Envoy's own 504 for a timeout included).
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No answer at all: connection refused or reset. Envoy reports this as
    /// an answer with no headers.
    Reset,
    /// The call was never sent: Envoy refused it (unknown cluster) or the
    /// login's time budget for calls ran out.
    NotSent(String),
}

impl Answer {
    /// A response with a status and a body, for tests and stand-ins.
    pub fn status(status: u16, body: &str) -> Answer {
        Answer::Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The body, if there was an answer.
    pub fn body(&self) -> &[u8] {
        match self {
            Answer::Response { body, .. } => body,
            _ => &[],
        }
    }

    /// A header of the answer.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Answer::Response { headers, .. } => headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str()),
            _ => None,
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.code()
            .is_some_and(|status| (200..300).contains(&status))
    }

    /// A short description for logs and alerts: the status and at most 200
    /// characters of the body, on one line.
    pub fn summary(&self) -> String {
        match self {
            Answer::Response { status, body, .. } => {
                let text = String::from_utf8_lossy(body);
                let mut short: String = text.chars().take(200).collect();
                short = short.replace(['\n', '\r'], " ");
                if text.chars().count() > 200 {
                    short.push_str("...");
                }
                format!("status {status}: {short}")
            }
            Answer::Reset => "no answer (connection refused or reset)".into(),
            Answer::NotSent(reason) => format!("not sent: {reason}"),
        }
    }
}

/// What to do about an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Worth another attempt, no earlier than `after_s` seconds from now
    /// when the service said so (`Retry-After`).
    Retry { after_s: Option<u64> },
    /// Another attempt would fail the same way (a 4xx other than 429).
    Fail,
}

/// Classifies an answer for a background delivery.
///
/// Network errors, timeouts (Envoy answers 504), 429 and every 5xx are
/// retried; other 4xx are final: the request itself is wrong, and sending it
/// again would only repeat the error. So is a call Envoy refused to send.
pub fn classify(answer: &Answer, now_unix: u64) -> Verdict {
    if let Answer::NotSent(_) = answer {
        // Envoy refused the call outright (an unknown cluster): sending it
        // again would be refused the same way.
        return Verdict::Fail;
    }
    match answer.code() {
        None => Verdict::Retry { after_s: None },
        Some(200..=299) => Verdict::Success,
        Some(429) | Some(500..=599) => Verdict::Retry {
            after_s: answer
                .header("retry-after")
                .and_then(|value| retry_after_seconds(value, now_unix)),
        },
        Some(_) => Verdict::Fail,
    }
}

/// `Retry-After` as seconds from now: either a number of seconds or an
/// HTTP date.
fn retry_after_seconds(value: &str, now_unix: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let when = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(when.saturating_sub(now_unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(status: u16, name: &str, value: &str) -> Answer {
        Answer::Response {
            status,
            headers: vec![(name.into(), value.into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn retry_classifier_table() {
        let now = 1_800_000_000;
        let cases: Vec<(&str, Answer, Verdict)> = vec![
            ("200 ok", Answer::status(200, "ok"), Verdict::Success),
            ("201 created", Answer::status(201, "{}"), Verdict::Success),
            (
                "connection reset",
                Answer::Reset,
                Verdict::Retry { after_s: None },
            ),
            (
                "envoy timeout",
                Answer::status(504, "upstream request timeout"),
                Verdict::Retry { after_s: None },
            ),
            (
                "429 without retry-after",
                Answer::status(429, ""),
                Verdict::Retry { after_s: None },
            ),
            (
                "429 with seconds",
                with_header(429, "Retry-After", "7"),
                Verdict::Retry { after_s: Some(7) },
            ),
            (
                "503 with an http date",
                with_header(503, "retry-after", "Fri, 15 Jan 2027 08:00:10 GMT"),
                Verdict::Retry {
                    after_s: Some(1_800_000_010 - now),
                },
            ),
            (
                "429 with garbage retry-after",
                with_header(429, "retry-after", "soon"),
                Verdict::Retry { after_s: None },
            ),
            (
                "500",
                Answer::status(500, "rollup_error"),
                Verdict::Retry { after_s: None },
            ),
            (
                "502",
                Answer::status(502, ""),
                Verdict::Retry { after_s: None },
            ),
            (
                "503",
                Answer::status(503, ""),
                Verdict::Retry { after_s: None },
            ),
            (
                "400 invalid payload",
                Answer::status(400, "invalid_payload"),
                Verdict::Fail,
            ),
            ("401", Answer::status(401, ""), Verdict::Fail),
            (
                "403",
                Answer::status(403, "action_prohibited"),
                Verdict::Fail,
            ),
            (
                "404",
                Answer::status(404, "channel_not_found"),
                Verdict::Fail,
            ),
            (
                "410 archived",
                Answer::status(410, "channel_is_archived"),
                Verdict::Fail,
            ),
            ("422", Answer::status(422, ""), Verdict::Fail),
            (
                "not sent: unknown cluster",
                Answer::NotSent("unknown cluster".into()),
                Verdict::Fail,
            ),
        ];
        for (name, answer, expected) in cases {
            assert_eq!(classify(&answer, now), expected, "case {name:?}");
        }
    }

    #[test]
    fn summary_is_one_short_line() {
        let long = "x".repeat(500) + "\nsecond line";
        let summary = Answer::status(500, &long).summary();
        assert!(summary.starts_with("status 500: xxx"));
        assert!(summary.ends_with("..."));
        assert!(!summary.contains('\n'));
        assert!(summary.len() < 230);
    }
}
