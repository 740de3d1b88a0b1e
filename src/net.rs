//! One blocking HTTP client for everything optdesk sends or fetches: every request has a
//! timeout, a failure that can pass (a timeout, a dropped or refused connection, HTTP
//! 429, a 5xx) is tried again with exponential back-off, and a failure that cannot (any
//! other 4xx, a request that cannot be made) is not. Each error says which it is
//! ([`NetError::is_retryable`]).
//!
//! A URL can carry a secret — the Telegram bot token is in its path, a webhook URL often
//! has one in its path or query — so no error here ever includes the URL.

use std::sync::Arc;
use std::time::Duration;

/// How often and how patiently a request is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included (0 counts as 1).
    pub attempts: u32,
    /// The wait before the first retry; it doubles before each later one.
    pub base_backoff: Duration,
    /// The longest wait between two tries, also the cap on a server's `Retry-After`
    /// (a server asking for an hour must not stall a batch job for an hour).
    pub max_backoff: Duration,
    /// Also try a 403 again: a CDN's bot management (Cboe's) refuses now and then a
    /// request it accepts a moment later.
    pub retry_forbidden: bool,
}

impl Default for RetryPolicy {
    /// 3 tries, 250 ms then 500 ms apart, never more than 4 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            retry_forbidden: false,
        }
    }
}

impl RetryPolicy {
    /// The exponential back-off before retry number `retry` (1 = the first retry):
    /// `base_backoff * 2^(retry-1)`, at most `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Whether `err` is worth another try under this policy.
    pub fn retries(&self, err: &NetError) -> bool {
        err.is_retryable() || (self.retry_forbidden && err.status() == Some(403))
    }

    /// The wait before retry number `retry` after `err`: the server's `Retry-After`
    /// when a 429 gave one (capped at `max_backoff`), else the back-off.
    pub fn wait_before_retry(&self, retry: u32, err: &NetError) -> Duration {
        match err {
            NetError::RateLimited {
                retry_after: Some(after),
                ..
            } => (*after).min(self.max_backoff),
            _ => self.backoff(retry),
        }
    }
}

/// Why a request failed. The text never includes the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// No complete answer within the client's timeout. Retryable.
    #[error("timed out after {}", seconds(.after))]
    Timeout { after: Duration },
    /// HTTP 429; `retry_after` is the server's `Retry-After` in seconds, when given.
    /// Retryable.
    #[error("HTTP {}{}", status_line(&429), detail(.body))]
    RateLimited {
        retry_after: Option<Duration>,
        /// The start of the answer's body, on one line.
        body: String,
    },
    /// Any other answer that is not a success. Retryable when 5xx.
    #[error("HTTP {}{}", status_line(.status), detail(.body))]
    Http {
        status: u16,
        /// The start of the answer's body, on one line.
        body: String,
    },
    /// The connection could not be made, or broke before the answer was read.
    /// Retryable.
    #[error("{reason}")]
    Disconnected { reason: String },
    /// The request cannot be made at all (a malformed URL, no HTTP client). Final.
    #[error("{reason}")]
    Request { reason: String },
}

impl NetError {
    /// Whether trying the same request again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Timeout { .. }
            | NetError::RateLimited { .. }
            | NetError::Disconnected { .. } => true,
            NetError::Http { status, .. } => *status >= 500,
            NetError::Request { .. } => false,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            NetError::RateLimited { .. } => Some(429),
            NetError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// "10 s", or "250 ms" when not a whole number of seconds.
fn seconds(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// "503 Service Unavailable".
fn status_line(status: &u16) -> String {
    reqwest::StatusCode::from_u16(*status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
}

fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// The first 300 bytes of a body, on one line (enough for an API's error description).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    crate::text::one_line(text[..end].trim())
}

/// A 429's `Retry-After`, when given in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A successful answer (2xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a request came to after its tries, and how many tries it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub result: Result<Response, NetError>,
    /// Tries made, the first one included (0 only when the client could not be built).
    pub attempts: u32,
}

/// Waits between tries; tests replace it so that they never sleep.
pub type Sleep = Arc<dyn Fn(Duration) + Send + Sync>;

/// A blocking HTTP client with a timeout on every try and a [`RetryPolicy`].
///
/// Blocking on purpose: the batch jobs are synchronous, and the daemon runs them on
/// tokio's blocking threads, where this client works.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::blocking::Client,
    timeout: Duration,
    policy: RetryPolicy,
    sleep: Sleep,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client whose every try times out after `timeout` (connecting, sending and
    /// reading the whole answer).
    pub fn new(timeout: Duration, policy: RetryPolicy) -> Result<HttpClient, NetError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("optdesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetError::Request {
                reason: format!(
                    "cannot build the HTTP client: {}",
                    crate::text::error_chain(&e.without_url())
                ),
            })?;
        Ok(HttpClient {
            client,
            timeout,
            policy,
            sleep: Arc::new(std::thread::sleep),
        })
    }

    /// The same client, waiting between tries with `sleep` instead of
    /// `std::thread::sleep` (tests record the waits instead of sleeping).
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> HttpClient {
        self.sleep = Arc::new(sleep);
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// GET `url`.
    pub fn get(&self, url: &str) -> Exchange {
        self.send(|c| c.get(url))
    }

    /// POST `body` as JSON to `url`.
    pub fn post_json<T: serde::Serialize + ?Sized>(&self, url: &str, body: &T) -> Exchange {
        self.send(|c| c.post(url).json(body))
    }

    /// The request `request` builds (again for each try: headers, query, body), tried
    /// under the policy.
    pub fn send(
        &self,
        request: impl Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> Exchange {
        let (result, attempts) = self.tried(|| self.try_once(request(&self.client)));
        Exchange { result, attempts }
    }

    /// The cookies a GET of `url` sets (`name=value`), whatever the status below 500
    /// other than 429: a consent or cookie host answers 404 with its cookie
    /// (`fc.yahoo.com`). Tried under the policy.
    pub fn cookies(&self, url: &str, user_agent: &str) -> Result<Vec<String>, NetError> {
        self.tried(|| {
            let resp = self
                .client
                .get(url)
                .header(reqwest::header::USER_AGENT, user_agent)
                .send()
                .map_err(|e| self.transport(e))?;
            let status = resp.status().as_u16();
            let cookies = resp
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .map(|v| v.trim().to_string())
                .filter(|v| v.contains('='))
                .collect();
            match status {
                429 => Err(NetError::RateLimited {
                    retry_after: retry_after(resp.headers()),
                    body: String::new(),
                }),
                s if s >= 500 => Err(NetError::Http {
                    status: s,
                    body: String::new(),
                }),
                _ => Ok(cookies),
            }
        })
        .0
    }

    /// `once` tried under the policy: its result and the tries made.
    fn tried<T>(&self, once: impl Fn() -> Result<T, NetError>) -> (Result<T, NetError>, u32) {
        let allowed = self.policy.attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match once() {
                Ok(v) => return (Ok(v), attempts),
                Err(e) => e,
            };
            if attempts >= allowed || !self.policy.retries(&err) {
                return (Err(err), attempts);
            }
            (self.sleep)(self.policy.wait_before_retry(attempts, &err));
        }
    }

    fn try_once(&self, request: reqwest::blocking::RequestBuilder) -> Result<Response, NetError> {
        let resp = request.send().map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status.is_success() {
            let body = resp.bytes().map_err(|e| self.transport(e))?;
            return Ok(Response {
                status: status.as_u16(),
                body: body.to_vec(),
            });
        }
        let retry_after = retry_after(resp.headers());
        // The status decides; a body that cannot be read only loses the detail.
        let body = resp.bytes().map(|b| snippet(&b)).unwrap_or_default();
        Err(if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            NetError::RateLimited { retry_after, body }
        } else {
            NetError::Http {
                status: status.as_u16(),
                body,
            }
        })
    }

    /// A transport failure, without its URL (a Telegram URL carries the bot token).
    fn transport(&self, e: reqwest::Error) -> NetError {
        let e = e.without_url();
        if e.is_timeout() {
            NetError::Timeout {
                after: self.timeout,
            }
        } else if e.is_builder() {
            NetError::Request {
                reason: crate::text::error_chain(&e),
            }
        } else {
            NetError::Disconnected {
                reason: crate::text::error_chain(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// The secret parts of the URLs the tests call: no error may show them.
    const PATH: &str = "/bot42:SECRET-TOKEN/sendMessage?key=HOOK-SECRET";

    fn assert_no_url(e: &NetError) {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(
                !text.contains("SECRET") && !text.contains("sendMessage"),
                "{text}"
            );
        }
    }

    /// An HTTP server on 127.0.0.1 answering request n with `script[n]` (status and
    /// an optional Retry-After; the last entry repeats). Returns the port and the
    /// request count.
    fn scripted(script: Vec<(u16, Option<&'static str>)>) -> (u16, Arc<Mutex<usize>>) {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let hits = Arc::new(Mutex::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let n = {
                    let mut h = h.lock().unwrap();
                    *h += 1;
                    *h - 1
                };
                let (status, retry_after) = script[n.min(script.len() - 1)];
                let mut resp = tiny_http::Response::from_string(format!(
                    r#"{{"ok":false,"description":"test server says {status}"}}"#
                ))
                .with_status_code(status);
                if let Some(v) = retry_after {
                    resp.add_header(
                        tiny_http::Header::from_bytes(&b"Retry-After"[..], v.as_bytes()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        (port, hits)
    }

    /// A client whose waits are recorded, never slept.
    fn client(timeout: Duration, attempts: u32) -> (HttpClient, Arc<Mutex<Vec<Duration>>>) {
        let policy = RetryPolicy {
            attempts,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            retry_forbidden: false,
        };
        let waits = Arc::new(Mutex::new(Vec::new()));
        let w = waits.clone();
        let c = HttpClient::new(timeout, policy)
            .unwrap()
            .with_sleep(move |d| w.lock().unwrap().push(d));
        (c, waits)
    }

    fn waits(w: &Arc<Mutex<Vec<Duration>>>) -> Vec<u64> {
        w.lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect()
    }

    #[test]
    fn a_503_is_retried_after_the_back_off_then_succeeds() {
        let (port, hits) = scripted(vec![(503, None), (503, None), (200, None)]);
        let (c, w) = client(Duration::from_secs(5), 3);
        let x = c.post_json(
            &format!("http://127.0.0.1:{port}{PATH}"),
            &serde_json::json!({"text": "hi"}),
        );
        assert_eq!(x.attempts, 3);
        assert_eq!(x.result.unwrap().status, 200);
        assert_eq!(*hits.lock().unwrap(), 3);
        assert_eq!(waits(&w), [100, 200], "exponential back-off");
    }

    #[test]
    fn a_5xx_that_persists_uses_every_attempt_and_says_so() {
        let (port, hits) = scripted(vec![(500, None)]);
        let (c, w) = client(Duration::from_secs(5), 3);
        let x = c.get(&format!("http://127.0.0.1:{port}{PATH}"));
        assert_eq!(x.attempts, 3);
        assert_eq!(*hits.lock().unwrap(), 3);
        assert_eq!(waits(&w), [100, 200]);
        let e = x.result.unwrap_err();
        assert!(matches!(e, NetError::Http { status: 500, .. }), "{e:?}");
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            r#"HTTP 500 Internal Server Error: {"ok":false,"description":"test server says 500"}"#
        );
        assert_no_url(&e);
    }

    #[test]
    fn a_429_waits_as_retry_after_says_capped_then_as_the_back_off() {
        let (port, hits) = scripted(vec![
            (429, Some("2")),
            (429, Some("3600")),
            (429, None),
            (200, None),
        ]);
        let (c, w) = client(Duration::from_secs(5), 4);
        let x = c.get(&format!("http://127.0.0.1:{port}{PATH}"));
        assert_eq!(x.attempts, 4);
        assert!(x.result.is_ok(), "{:?}", x.result);
        assert_eq!(*hits.lock().unwrap(), 4);
        // 2 s as asked; an hour capped at max_backoff; no header: the third back-off.
        assert_eq!(waits(&w), [2_000, 30_000, 400]);
    }

    #[test]
    fn a_429_is_reported_as_rate_limited_with_its_retry_after() {
        let (port, _) = scripted(vec![(429, Some("7"))]);
        let (c, _) = client(Duration::from_secs(5), 2);
        let e = c
            .get(&format!("http://127.0.0.1:{port}{PATH}"))
            .result
            .unwrap_err();
        assert_eq!(
            e,
            NetError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                body: r#"{"ok":false,"description":"test server says 429"}"#.into()
            }
        );
        assert!(e.is_retryable());
        assert_eq!(e.status(), Some(429));
        assert!(
            e.to_string().starts_with("HTTP 429 Too Many Requests: "),
            "{e}"
        );
        assert_no_url(&e);
    }

    #[test]
    fn a_404_is_final_and_not_retried() {
        let (port, hits) = scripted(vec![(404, None), (200, None)]);
        let (c, w) = client(Duration::from_secs(5), 3);
        let x = c.get(&format!("http://127.0.0.1:{port}{PATH}"));
        assert_eq!(x.attempts, 1);
        assert_eq!(*hits.lock().unwrap(), 1);
        assert!(waits(&w).is_empty());
        let e = x.result.unwrap_err();
        assert!(matches!(e, NetError::Http { status: 404, .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert!(e.to_string().starts_with("HTTP 404 Not Found: "), "{e}");
        assert_no_url(&e);
    }

    #[test]
    fn a_timeout_is_retried_and_reported_as_a_timeout() {
        // Accepts connections and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        let (c, w) = client(Duration::from_millis(200), 2);
        let x = c.get(&format!("http://127.0.0.1:{port}{PATH}"));
        assert_eq!(x.attempts, 2);
        assert_eq!(waits(&w), [100]);
        let e = x.result.unwrap_err();
        assert_eq!(
            e,
            NetError::Timeout {
                after: Duration::from_millis(200)
            }
        );
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "timed out after 200 ms");
        assert_no_url(&e);
    }

    #[test]
    fn a_refused_connection_is_retried_and_reported_as_disconnected() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (c, w) = client(Duration::from_secs(5), 3);
        let x = c.get(&format!("http://127.0.0.1:{port}{PATH}"));
        assert_eq!(x.attempts, 3);
        assert_eq!(waits(&w), [100, 200]);
        let e = x.result.unwrap_err();
        assert!(matches!(e, NetError::Disconnected { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().to_lowercase().contains("connect"), "{e}");
        assert_no_url(&e);
    }

    #[test]
    fn a_malformed_url_is_final_and_not_echoed() {
        let (c, w) = client(Duration::from_secs(5), 3);
        let x = c.get("http://[::1:SECRET/sendMessage");
        assert_eq!(x.attempts, 1);
        assert!(waits(&w).is_empty());
        let e = x.result.unwrap_err();
        assert!(matches!(e, NetError::Request { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert_no_url(&e);
    }

    #[test]
    fn the_back_off_doubles_up_to_its_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (1..=7).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(p.backoff(u32::MAX), p.max_backoff);
        let limited = NetError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            body: String::new(),
        };
        assert_eq!(p.wait_before_retry(3, &limited), Duration::from_secs(1));
        assert_eq!(limited.to_string(), "HTTP 429 Too Many Requests");
    }
}
