//! Requests and responses: the method and access checks, the routes, the security
//! headers on every response, one log line per request.

use super::{api, pages, State};
use sha2::{Digest, Sha256};
use std::io::Read;
use tiny_http::{Header, Method, Request, Response};

/// The session cookie's name.
const COOKIE: &str = "optdesk_session";

/// Every response's security headers: no external source of anything, no script at all,
/// no framing, no referrer, nothing cached.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
];

/// The access token, kept only as digests: the bearer's SHA-256 and the cookie value
/// (a SHA-256 derived from the token, so a cookie never carries the token itself).
pub(super) struct Token {
    digest: [u8; 32],
    cookie: String,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Equal in time independent of where they differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Token {
    pub(super) fn new(token: &str) -> Token {
        Token {
            digest: sha256(&[token.as_bytes()]),
            cookie: hex(&sha256(&[b"optdesk dashboard session\0", token.as_bytes()])),
        }
    }

    /// Whether `presented` is the token (compared as digests, in constant time).
    pub(super) fn is(&self, presented: &str) -> bool {
        ct_eq(&sha256(&[presented.as_bytes()]), &self.digest)
    }

    fn is_cookie(&self, presented: &str) -> bool {
        ct_eq(
            &sha256(&[presented.as_bytes()]),
            &sha256(&[self.cookie.as_bytes()]),
        )
    }
}

/// What a handler answers.
pub(super) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

pub(super) const HTML: &str = "text/html; charset=utf-8";
pub(super) const JSON: &str = "application/json";

impl Reply {
    pub(super) fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: HTML,
            body,
            headers: Vec::new(),
        }
    }

    pub(super) fn json(status: u16, v: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into()) + "\n",
            headers: Vec::new(),
        }
    }

    /// A JSON error: `{"error": why}`.
    pub(super) fn json_error(status: u16, why: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": why }))
    }

    pub(super) fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut r = Response::from_string(self.body).with_status_code(self.status);
        let mut add = |k: &str, v: &str| {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                r.add_header(h);
            }
        };
        add("Content-Type", self.content_type);
        for (k, v) in SECURITY_HEADERS {
            add(k, v);
        }
        for (k, v) in &self.headers {
            add(k, v);
        }
        r
    }
}

/// The request's query as decoded pairs.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `a%20b+c` → `a b c` (form encoding); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The path as logged: no query (it may carry anything), no control characters, no
/// secret, at most 200 characters.
fn log_path(path: &str) -> String {
    let mut p: String = path.chars().filter(|c| !c.is_control()).take(200).collect();
    p = crate::config::redact_secrets(&p);
    p
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Whether the request carries the token (bearer) or the session cookie.
fn authorized(token: &Token, req: &Request) -> bool {
    if let Some(v) = header(req, "Authorization") {
        if let Some(t) = v.strip_prefix("Bearer ") {
            if token.is(t.trim()) {
                return true;
            }
        }
    }
    req.headers()
        .iter()
        .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case("Cookie"))
        .flat_map(|h| h.value.as_str().split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && token.is_cookie(v.trim()))
}

/// Whether a Host header names this machine's loopback (`localhost`, `127.0.0.1:8640`,
/// `[::1]:8640`).
fn is_loopback_host(h: &str) -> bool {
    let h = h.trim();
    let host = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => h.rsplit_once(':').map_or(h, |(a, _)| a),
    };
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Answer one request and log it.
pub(super) fn handle(state: &mut State, mut req: Request) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let reply = route(state, &mut req, &method, &path, &Query::parse(&query));
    let stale = reply
        .headers
        .iter()
        .any(|(k, _)| *k == super::pages::STALE_HEADER);
    eprintln!(
        "serve: {method} {} {}{}",
        log_path(&path),
        reply.status,
        if stale {
            " (the last page read: a job has the store)"
        } else {
            ""
        }
    );
    // Written on a thread of its own: a client that stops reading never holds up the
    // next request or the daemon's stop (the store was released before this point).
    let response = reply.into_response();
    let _ = std::thread::Builder::new()
        .name("serve-respond".into())
        .spawn(move || {
            if let Err(e) = req.respond(response) {
                eprintln!("serve: could not send the response: {e}");
            }
        });
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn route(state: &mut State, req: &mut Request, method: &Method, path: &str, q: &Query) -> Reply {
    let readonly = matches!(method, Method::Get | Method::Head);
    if path == "/login" {
        return match method {
            Method::Get | Method::Head => pages::login(state.token.is_some(), None, 200),
            Method::Post => login_post(state, req),
            _ => not_allowed(path, "GET, HEAD, POST"),
        };
    }
    if !readonly {
        return not_allowed(path, "GET, HEAD");
    }
    // Without a token, only requests addressed to loopback: a web page elsewhere that
    // rebinds its own name to 127.0.0.1 (DNS rebinding) gets nothing.
    if state.token.is_none() {
        if let Some(host) = header(req, "Host").filter(|h| !is_loopback_host(h)) {
            let why = format!(
                "this dashboard has no token, so it answers only requests addressed to 127.0.0.1 or localhost, not '{}': set OPTDESK_DASHBOARD_TOKEN to serve it under another name (e.g. behind a reverse proxy)",
                host.chars().take(100).collect::<String>()
            );
            return if is_api(path) {
                Reply::json_error(403, &why)
            } else {
                pages::error(403, "Forbidden", &why)
            };
        }
    }
    if let Some(token) = &state.token {
        if !authorized(token, req) {
            return if is_api(path) {
                Reply::json_error(
                    401,
                    "this dashboard needs its token: send `Authorization: Bearer <OPTDESK_DASHBOARD_TOKEN>`",
                )
                .with("WWW-Authenticate", "Bearer realm=\"optdesk\"")
            } else {
                pages::login(
                    true,
                    Some("Sign in with the dashboard's token to see it."),
                    401,
                )
                .with("WWW-Authenticate", "Bearer realm=\"optdesk\"")
            };
        }
    }
    let number = |key: &str, range: std::ops::RangeInclusive<u64>, what: &str| match q.get(key) {
        None => Ok(None),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => {
                let why = format!(
                    "{key} must be {what} from {} to {}, not '{}'",
                    range.start(),
                    range.end(),
                    s.chars().take(40).collect::<String>()
                );
                Err(if is_api(path) {
                    Reply::json_error(400, &why)
                } else {
                    pages::error(400, "Bad request", &why)
                })
            }
        },
    };
    let (refresh, reloads) = match (
        number("refresh", 1..=86_400, "a number of seconds"),
        number("reloads", 0..=10_000, "a number of reloads"),
    ) {
        (Ok(r), Ok(n)) => (r, n),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match path {
        "/" => pages::today(state, refresh, reloads),
        "/history" => pages::history(state, q.get("date")),
        "/tearsheet" | "/tearsheet/" => pages::tearsheets(state),
        "/api/status" => api::status(state),
        "/api/positions" => api::positions(state),
        p if p.starts_with("/tearsheet/") => pages::tearsheet(state, &p["/tearsheet/".len()..]),
        p if p.starts_with("/api/day/") => api::day(state, &p["/api/day/".len()..]),
        p if is_api(p) => Reply::json_error(
            404,
            &format!(
                "no such endpoint {}: the API has /api/status, /api/positions and /api/day/YYYY-MM-DD",
                log_path(p)
            ),
        ),
        p => pages::error(
            404,
            "Not found",
            &format!(
                "There is no page {}. The pages are / (today), /history?date=YYYY-MM-DD and /tearsheet.",
                log_path(p)
            ),
        ),
    }
}

fn not_allowed(path: &str, allow: &str) -> Reply {
    let why = format!(
        "this dashboard only shows the desk and changes nothing: {} answers {allow} only",
        log_path(path)
    );
    let r = if is_api(path) {
        Reply::json_error(405, &why)
    } else {
        pages::error(405, "Method not allowed", &why)
    };
    r.with("Allow", allow)
}

/// The largest login form body read (tiny_http reads bodies up to 1 KB ahead).
const LOGIN_BODY_MAX: usize = 1024;

/// POST /login: the form's token; right → the session cookie and back to `/`.
fn login_post(state: &State, req: &mut Request) -> Reply {
    let Some(token) = &state.token else {
        return pages::login(false, None, 200);
    };
    // Only a body tiny_http has already read whole (it buffers up to 1 KB): reading a
    // longer one would wait on a client that may never send it.
    match req.body_length() {
        Some(n) if n <= LOGIN_BODY_MAX => {}
        _ => {
            return pages::login(
                true,
                Some("The form could not be read: send the token field alone, with a Content-Length of at most 1024 bytes."),
                413,
            )
        }
    }
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(LOGIN_BODY_MAX as u64)
        .read_to_end(&mut body);
    if read.is_err() {
        return pages::login(true, Some("The form could not be read."), 400);
    }
    let form = Query::parse(&String::from_utf8_lossy(&body));
    match form.get("token") {
        Some(t) if token.is(t.trim()) => {
            let secure = header(req, "X-Forwarded-Proto").is_some_and(|p| p == "https");
            Reply::html(
                303,
                pages::simple(
                    "Signed in",
                    "<p>Signed in. <a href=\"/\">Open the desk</a>.</p>",
                ),
            )
            .with("Location", "/")
            .with(
                "Set-Cookie",
                format!(
                    "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
                    token.cookie,
                    if secure { "; Secure" } else { "" }
                ),
            )
        }
        _ => pages::login(true, Some("That is not the dashboard's token."), 401),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_form_values() {
        for (raw, want) in [
            ("a%20b+c", "a b c"),
            ("%41%42", "AB"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("%4", "%4"),
            ("", ""),
        ] {
            assert_eq!(percent_decode(raw), want, "{raw}");
        }
        let q = Query::parse("date=2025-03-14&refresh=5&x");
        assert_eq!(q.get("date"), Some("2025-03-14"));
        assert_eq!(q.get("refresh"), Some("5"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("y"), None);
    }

    #[test]
    fn only_loopback_hosts_without_a_token() {
        for (h, ok) in [
            ("127.0.0.1:8640", true),
            ("localhost:8640", true),
            ("localhost", true),
            ("LocalHost", true),
            ("[::1]:8640", true),
            ("127.1.2.3", true),
            ("desk.localhost:80", true),
            ("evil.example", false),
            ("evil.example:8640", false),
            ("10.0.0.5:8640", false),
            ("[2001:db8::1]:8640", false),
            ("localhost.evil.example", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(h), ok, "{h}");
        }
    }

    #[test]
    fn the_token_and_its_cookie_are_checked_as_digests() {
        let t = Token::new("0123456789abcdef-token");
        assert!(t.is("0123456789abcdef-token"));
        assert!(!t.is("0123456789abcdef-tokem"));
        assert!(!t.is(""));
        assert!(!t.cookie.contains("0123456789abcdef-token"));
        assert!(t.is_cookie(&t.cookie.clone()));
        assert!(!t.is_cookie("0123456789abcdef-token"));
    }
}
