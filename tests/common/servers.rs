//! Real servers on 127.0.0.1 for the tests: an SMTP server (mailin's SMTP state machine,
//! with AUTH PLAIN/LOGIN) and an HTTP server (tiny_http) with scripted replies.
#![allow(dead_code)]

use mailin::{response, AuthMechanism, Handler, Response, SessionBuilder};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message the SMTP server accepted.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    pub auth_user: Option<String>,
}

/// What the SMTP server saw.
#[derive(Debug, Default)]
pub struct SmtpLog {
    pub messages: Vec<Received>,
    pub auth_attempts: Vec<(String, String)>,
}

#[derive(Clone)]
struct SmtpHandler {
    user: String,
    password: String,
    reject_rcpt: Option<String>,
    log: Arc<Mutex<SmtpLog>>,
    current: Received,
    authed: Option<String>,
}

impl Handler for SmtpHandler {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.reject_rcpt.as_deref() == Some(to) {
            return Response::custom(550, format!("5.1.1 <{to}>: Recipient address rejected"));
        }
        response::OK
    }
    fn data_start(&mut self, _d: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Received {
            from: from.to_string(),
            to: to.to_vec(),
            data: Vec::new(),
            auth_user: self.authed.clone(),
        };
        response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> Response {
        let msg = std::mem::take(&mut self.current);
        self.log.lock().unwrap().messages.push(msg);
        response::OK
    }
    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check(user, password)
    }
    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check(user, password)
    }
}

impl SmtpHandler {
    fn check(&mut self, user: &str, password: &str) -> Response {
        self.log
            .lock()
            .unwrap()
            .auth_attempts
            .push((user.to_string(), password.to_string()));
        if user == self.user && password == self.password {
            self.authed = Some(user.to_string());
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

/// How the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text; AUTH allowed without TLS (a loopback relay).
    None,
    /// STARTTLS offered; AUTH only after it.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// An SMTP server on 127.0.0.1 that requires AUTH with `user`/`password`.
pub struct SmtpServer {
    pub port: u16,
    pub log: Arc<Mutex<SmtpLog>>,
    /// The server's self-signed certificate (PEM), for the TLS modes.
    pub cert_pem: String,
}

impl SmtpServer {
    pub fn start(user: &str, password: &str, reject_rcpt: Option<&str>) -> SmtpServer {
        SmtpServer::start_with(user, password, reject_rcpt, SmtpTls::None)
    }

    pub fn start_with(
        user: &str,
        password: &str,
        reject_rcpt: Option<&str>,
        tls: SmtpTls,
    ) -> SmtpServer {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
                .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(SmtpLog::default()));
        let handler = SmtpHandler {
            user: user.into(),
            password: password.into(),
            reject_rcpt: reject_rcpt.map(String::from),
            log: log.clone(),
            current: Received::default(),
            authed: None,
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let h = handler.clone();
                let config = config.clone();
                std::thread::spawn(move || {
                    let _ = serve_smtp(stream, h, tls, config);
                });
            }
        });
        SmtpServer {
            port,
            log,
            cert_pem: cert.pem(),
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }
}

fn serve_smtp(
    stream: TcpStream,
    handler: SmtpHandler,
    tls: SmtpTls,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut builder = SessionBuilder::new("test.smtp.local");
    builder
        .enable_auth(AuthMechanism::Plain)
        .enable_auth(AuthMechanism::Login);
    match tls {
        SmtpTls::None => {
            builder.insecure_enable_plaintext_auth();
        }
        SmtpTls::StartTls => {
            builder.enable_start_tls();
        }
        SmtpTls::Implicit => {}
    }
    let peer: IpAddr = stream.peer_addr()?.ip();
    let mut session = builder.build(peer, handler);
    let wrap = |tcp: TcpStream| {
        let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(rustls::StreamOwned::new(conn, tcp))
    };
    if tls == SmtpTls::Implicit {
        session.tls_active();
        let mut s = wrap(stream)?;
        session.greeting().write_to(&mut s)?;
        s.flush()?;
        pump(s, &mut session)?;
        return Ok(());
    }
    let mut out = &stream;
    session.greeting().write_to(&mut out)?;
    if pump(&stream, &mut session)? {
        // STARTTLS accepted: the rest of the session is encrypted.
        session.tls_active();
        pump(wrap(stream)?, &mut session)?;
    }
    Ok(())
}

/// Feed the session line by line; `Ok(true)` when it asks to upgrade to TLS.
fn pump<S: Read + Write, H: Handler>(
    stream: S,
    session: &mut mailin::Session<H>,
) -> std::io::Result<bool> {
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(false);
        }
        let resp = session.process(&line);
        if resp.action != mailin::Action::NoReply {
            resp.write_to(r.get_mut())?;
            r.get_mut().flush()?;
        }
        match resp.action {
            mailin::Action::Close => return Ok(false),
            mailin::Action::UpgradeTls => return Ok(true),
            _ => {}
        }
    }
}

/// One HTTP request the server received.
#[derive(Debug, Clone)]
pub struct HttpHit {
    pub url: String,
    pub body: String,
}

/// How the HTTP server answers, request by request (the last one repeats).
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Wait this long before answering 200.
    Sleep(Duration),
    /// Answer with this status and an error page that echoes the request path, raw and
    /// percent-encoded (Express's default 404 page, many proxies).
    EchoPath(u16),
}

pub struct HttpServer {
    pub port: u16,
    pub hits: Arc<Mutex<Vec<HttpHit>>>,
}

impl HttpServer {
    pub fn start(script: Vec<Reply>) -> HttpServer {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        let server = Arc::new(server);
        std::thread::spawn(move || {
            for (n, mut req) in server.incoming_requests().enumerate() {
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                h.lock().unwrap().push(HttpHit {
                    url: req.url().to_string(),
                    body,
                });
                let reply = script[n.min(script.len() - 1)];
                let url = req.url().to_string();
                std::thread::spawn(move || {
                    let status = match reply {
                        Reply::Status(s) | Reply::EchoPath(s) => s,
                        Reply::Sleep(d) => {
                            std::thread::sleep(d);
                            200
                        }
                    };
                    let body = if let Reply::EchoPath(_) = reply {
                        let encoded: String = url
                            .bytes()
                            .map(|b| {
                                if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                                    (b as char).to_string()
                                } else {
                                    format!("%{b:02X}")
                                }
                            })
                            .collect();
                        format!("<pre>Cannot POST {url}</pre>\n<!-- {encoded} -->")
                    } else if status == 200 {
                        r#"{"ok":true}"#.to_string()
                    } else {
                        format!(r#"{{"ok":false,"description":"test server says {status}"}}"#)
                    };
                    let _ = req
                        .respond(tiny_http::Response::from_string(body).with_status_code(status));
                });
            }
        });
        HttpServer { port, hits }
    }

    pub fn hits(&self) -> Vec<HttpHit> {
        self.hits.lock().unwrap().clone()
    }
}

/// What [`PathServer`] answers to one request.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Answer {
    /// 200 with `body`.
    pub fn ok(body: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with a small HTML page; a 429 says `Retry-After: 0`.
    pub fn status(status: u16) -> Answer {
        let mut a = Answer::ok(format!("<html>{status}</html>")).with_status(status);
        if status == 429 {
            a = a.header("Retry-After", "0");
        }
        a
    }

    pub fn with_status(mut self, status: u16) -> Answer {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What [`PathServer`] answers for a request: its URL (path and query), how many times
/// the same URL was asked before, and the request's `Cookie` header.
pub type Route = dyn Fn(&str, usize, &str) -> Answer + Send + Sync;

/// An HTTP server on 127.0.0.1 answering by URL, each request on its own thread (a
/// slow answer does not hold the others).
pub struct PathServer {
    pub port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl PathServer {
    pub fn start(route: Arc<Route>) -> PathServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            let mut seen: std::collections::HashMap<String, usize> = Default::default();
            for req in server.incoming_requests() {
                let url = req.url().to_string();
                let cookie = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Cookie"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                h.lock().unwrap().push(url.clone());
                let n = seen.entry(url.clone()).or_default();
                let a = route(&url, *n, &cookie);
                *n += 1;
                std::thread::spawn(move || {
                    std::thread::sleep(a.delay);
                    let mut resp =
                        tiny_http::Response::from_string(a.body).with_status_code(a.status);
                    for (k, v) in &a.headers {
                        resp.add_header(
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                        );
                    }
                    let _ = req.respond(resp);
                });
            }
        });
        PathServer { port, hits }
    }

    /// Every URL asked, in order.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    /// How many times `url` was asked.
    pub fn count(&self, url: &str) -> usize {
        self.hits().iter().filter(|u| *u == url).count()
    }
}
