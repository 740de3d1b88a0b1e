//! The live dashboard: a small HTTP server (tiny_http, one request at a time) over the
//! store, run by the daemon (`optdesk schedule --serve`) beside its firings or alone
//! (`optdesk serve`, read-only).
//!
//! The server never holds the store between requests: each request that needs data
//! takes the daemon's process gate (`store::try_gate`, so it never opens the file while
//! a firing's jobs run in the same process), opens the store read-only, reads, and drops
//! both before the response is written. When a job has the store, the today page is
//! answered from the last one read, with its "data taken at" time and a note; the API
//! answers 503 with Retry-After and the reason.
//!
//! Nothing is fetched from outside (every style and font is in the page, no script at
//! all), nothing changes the store (GET and HEAD only, and POST /login), loopback by
//! default; any other address needs `OPTDESK_DASHBOARD_TOKEN`.

mod api;
mod http;
mod pages;

use crate::config::Config;
use crate::store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the dashboard listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8640";

/// The environment variable holding the dashboard's access token.
pub const TOKEN_VAR: &str = "OPTDESK_DASHBOARD_TOKEN";

/// The shortest token accepted: a guessable token on a network is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// How long a request waits for a running job to release the store.
const GATE_WAIT: Duration = Duration::from_secs(3);

/// Who else may be using the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inside the daemon: take the process gate before opening the store.
    Daemon,
    /// `optdesk serve`: no jobs in this process; another process may be writing.
    Standalone,
}

/// What the server needs.
pub struct Options {
    /// HOST:PORT to listen on.
    pub addr: String,
    /// The store.
    pub db: PathBuf,
    pub config: Config,
    /// The daemon's pretend date (testing), for "today" and the next firings.
    pub pretend: Option<NaiveDate>,
    /// The access token (from `OPTDESK_DASHBOARD_TOKEN`), if set.
    pub token: Option<String>,
    pub mode: Mode,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "'{addr}' is not an address to listen on ({why}); expected HOST:PORT, e.g. 127.0.0.1:8640"
    )]
    BadAddr { addr: String, why: String },
    #[error("refusing to serve the dashboard on {addr}: it is not a loopback address and OPTDESK_DASHBOARD_TOKEN is not set; set it to a long random token (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1 behind a reverse proxy")]
    NeedsToken { addr: String },
    #[error("OPTDESK_DASHBOARD_TOKEN is too short ({len} characters; at least {min}): use a long random token, e.g. `openssl rand -hex 32`")]
    WeakToken { len: usize, min: usize },
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Why a request could not read the store.
#[derive(Debug, Clone)]
enum Unavailable {
    /// A job (in this process or another) has the store: try again shortly.
    Busy(String),
    /// The store cannot be read (missing, too new, a query failed).
    Failed(String),
}

impl Unavailable {
    fn reason(&self) -> &str {
        match self {
            Unavailable::Busy(s) | Unavailable::Failed(s) => s,
        }
    }
}

/// The dashboard, bound and ready to answer.
pub struct Dashboard {
    server: tiny_http::Server,
    local: SocketAddr,
    state: State,
}

/// What the handlers share.
struct State {
    db: PathBuf,
    config: Config,
    pretend: Option<NaiveDate>,
    token: Option<http::Token>,
    mode: Mode,
    entries: Vec<crate::schedule::Entry>,
    risk_free_rate: f64,
    /// The last today page's data, answered (with a note) while a job has the store.
    last_today: Option<pages::Today>,
}

/// The socket addresses `addr` (HOST:PORT) names.
fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ServeError> {
    let bad = |why: String| ServeError::BadAddr {
        addr: addr.to_string(),
        why,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("it names no address".into()));
    }
    Ok(addrs)
}

impl Dashboard {
    /// Check the address and the token, then listen. A non-loopback address without a
    /// token is refused before anything listens.
    pub fn bind(opts: Options) -> Result<Dashboard, ServeError> {
        let addrs = resolve(&opts.addr)?;
        let token = opts.token.filter(|t| !t.trim().is_empty());
        if let Some(t) = &token {
            if t.len() < MIN_TOKEN_LEN {
                return Err(ServeError::WeakToken {
                    len: t.len(),
                    min: MIN_TOKEN_LEN,
                });
            }
        }
        if token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(ServeError::NeedsToken {
                addr: opts.addr.clone(),
            });
        }
        let server = tiny_http::Server::http(addrs[0]).map_err(|e| ServeError::Bind {
            addr: opts.addr.clone(),
            message: e.to_string(),
        })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ServeError::Bind {
                addr: opts.addr.clone(),
                message: "not an IP socket".into(),
            })?;
        let entries = crate::schedule::entries(&opts.config)?;
        let risk_free_rate = crate::jobs::email_report::load_params(&opts.config)
            .map(|(f, _)| f.params.risk_free_rate)
            .unwrap_or(crate::report::DEFAULT_RISK_FREE_RATE);
        Ok(Dashboard {
            server,
            local,
            state: State {
                db: opts.db,
                config: opts.config,
                pretend: opts.pretend,
                token: token.map(|t| http::Token::new(&t)),
                mode: opts.mode,
                entries,
                risk_free_rate,
                last_today: None,
            },
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The URL to open (never with the token in it).
    pub fn url(&self) -> String {
        let host = if self.local.ip().is_unspecified() {
            "<this machine's address>".to_string()
        } else {
            match self.local {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        format!("http://{host}:{}/", self.local.port())
    }

    /// Whether requests need the token.
    pub fn needs_token(&self) -> bool {
        self.state.token.is_some()
    }

    /// Answer requests one at a time until `stop` is set (checked every 200 ms).
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            match self.server.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(req)) => http::handle(&mut self.state, req),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("serve: could not accept a request: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

impl State {
    /// Now in New York (the daemon's pretend date, if any).
    fn now_ny(&self) -> DateTime<chrono_tz::Tz> {
        crate::clock::now_ny(self.pretend)
    }

    /// Open the store read-only for one request and run `f` on it; the gate and the
    /// store are released before this returns.
    fn read<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, String>,
    ) -> Result<(T, DateTime<Utc>), Unavailable> {
        self.read_at(&self.db, f)
    }

    /// [`State::read`] on another store file (a backtest's).
    fn read_at<T>(
        &self,
        path: &std::path::Path,
        f: impl FnOnce(&Store) -> Result<T, String>,
    ) -> Result<(T, DateTime<Utc>), Unavailable> {
        let _gate = match self.mode {
            Mode::Daemon => match crate::store::try_gate(GATE_WAIT) {
                Some(g) => Some(g),
                None => {
                    return Err(Unavailable::Busy(
                        "The daemon is running a job, which has the store".into(),
                    ))
                }
            },
            Mode::Standalone => None,
        };
        let store = match Store::open_read(path, GATE_WAIT) {
            Ok(s) => s,
            Err(StoreError::InUse { .. } | StoreError::Locked { .. }) => {
                let holder = crate::store::current_writer(&crate::store::lock_path_for(path))
                    .map(|h| format!(": {}", crate::config::redact_secrets(&h)))
                    .unwrap_or_default();
                return Err(Unavailable::Busy(format!(
                    "Another process has the store open (a job is running){holder}"
                )));
            }
            Err(StoreError::Missing { .. }) => {
                return Err(Unavailable::Busy(format!(
                    "There is no store yet at {}: the first run creates it",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(Unavailable::Failed(crate::config::redact_secrets(
                    &e.to_string(),
                )))
            }
        };
        let taken = Utc::now();
        let out = f(&store).map_err(|e| Unavailable::Failed(crate::config::redact_secrets(&e)));
        drop(store);
        out.map(|v| (v, taken))
    }
}

/// Serve until `stop` is set, on its own thread; the URL is printed first.
pub fn spawn(
    dashboard: Dashboard,
    stop: std::sync::Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || dashboard.run(&stop))
}
