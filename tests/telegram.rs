//! Telegram commands against a fake Bot API on 127.0.0.1: the real `optdesk schedule`
//! daemon (on a pretend Saturday, so no job fires) long-polls `getUpdates`, answers the
//! configured chat with `sendMessage`, ignores other chats and stale messages, halts
//! entries with `/kill on`, flattens only on `/flatten confirm`, survives a failing and a
//! stalling API, and never writes or prints the bot token.

mod common;
use common::Desk;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "7654321:AAH-fake-bot-token-for-the-tests-xyz";
const CHAT: &str = "4242";
const STRANGER: &str = "999";

/// A fake Bot API: a queue of updates served by getUpdates (honouring `offset`, which
/// confirms and drops what is below it) and a record of every sendMessage.
struct FakeBot {
    port: u16,
    queue: Arc<Mutex<Vec<Value>>>,
    sent: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicI64,
    /// getUpdates answers 500 (with a page that echoes the path) this many times.
    fail: Arc<AtomicUsize>,
    /// then stalls (answers nothing for 8 s) this many times.
    stall: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    bad_paths: Arc<Mutex<Vec<String>>>,
}

impl FakeBot {
    fn start() -> FakeBot {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let fake = FakeBot {
            port,
            queue: Arc::default(),
            sent: Arc::default(),
            next_id: AtomicI64::new(100),
            fail: Arc::default(),
            stall: Arc::default(),
            polls: Arc::default(),
            bad_paths: Arc::default(),
        };
        let (queue, sent, fail, stall, polls, bad) = (
            fake.queue.clone(),
            fake.sent.clone(),
            fake.fail.clone(),
            fake.stall.clone(),
            fake.polls.clone(),
            fake.bad_paths.clone(),
        );
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let (queue, sent, fail, stall, polls, bad) = (
                    queue.clone(),
                    sent.clone(),
                    fail.clone(),
                    stall.clone(),
                    polls.clone(),
                    bad.clone(),
                );
                std::thread::spawn(move || {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let url = req.url().to_string();
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let ok = |x: Value| {
                        tiny_http::Response::from_string(
                            json!({"ok": true, "result": x}).to_string(),
                        )
                    };
                    if url == format!("/bot{TOKEN}/getUpdates") {
                        polls.fetch_add(1, Ordering::SeqCst);
                        let take = |n: &AtomicUsize| {
                            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                                .is_ok()
                        };
                        if take(&fail) {
                            let page = format!("Internal error while serving POST {url}");
                            let _ = req.respond(
                                tiny_http::Response::from_string(page).with_status_code(500),
                            );
                            return;
                        }
                        if take(&stall) {
                            std::thread::sleep(Duration::from_secs(8));
                            let _ = req.respond(ok(json!([])));
                            return;
                        }
                        let offset = v["offset"].as_i64().unwrap_or(0);
                        let out: Vec<Value> = {
                            let mut q = queue.lock().unwrap();
                            q.retain(|u| u["update_id"].as_i64().unwrap() >= offset);
                            q.clone()
                        };
                        if out.is_empty() {
                            // A short stand-in for the long poll.
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        let _ = req.respond(ok(Value::Array(out)));
                    } else if url == format!("/bot{TOKEN}/sendMessage") {
                        sent.lock().unwrap().push(v);
                        let _ = req.respond(ok(json!({"message_id": 1})));
                    } else {
                        bad.lock().unwrap().push(url);
                        let _ = req.respond(tiny_http::Response::empty(404));
                    }
                });
            }
        });
        fake
    }

    /// Queue a text message from `chat`, dated `age_secs` ago.
    fn message(&self, chat: &str, text: &str, age_secs: i64) -> i64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let date = chrono::Utc::now().timestamp() - age_secs;
        self.queue.lock().unwrap().push(json!({
            "update_id": id,
            "message": {
                "message_id": id,
                "date": date,
                "chat": {"id": chat.parse::<i64>().unwrap(), "type": "private"},
                "from": {"id": 1, "is_bot": false, "first_name": "Pat", "username": format!("user{chat}")},
                "text": text,
            }
        }));
        id
    }

    fn replies(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Wait for a new reply (after the first `seen`) containing `want`; all new replies.
    fn wait_reply(&self, seen: usize, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.replies();
            if let Some(hit) = r.iter().skip(seen).find(|t| t.contains(want)) {
                return hit.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no reply containing {want:?} after reply {seen}: {r:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send `text` from the configured chat and wait for its answer.
    fn ask(&self, text: &str, want: &str) -> String {
        let seen = self.replies().len();
        self.message(CHAT, text, 0);
        self.wait_reply(seen, want)
    }
}

struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(desk: &Desk, fake: &FakeBot) -> Daemon {
        let mut child = desk
            .cmd()
            // A Saturday: no firing comes due while the test runs.
            .args(["schedule", "--pretend-date", "2024-06-08"])
            .env("OPTDESK_TELEGRAM_TOKEN", TOKEN)
            .env("OPTDESK_TELEGRAM_CHAT_ID", CHAT)
            .env(
                "OPTDESK_TELEGRAM_API",
                format!("http://127.0.0.1:{}", fake.port),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (err, out) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
        for pipe in [
            Box::new(err) as Box<dyn Read + Send>,
            Box::new(out) as Box<dyn Read + Send>,
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(l);
                }
            });
        }
        Daemon { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn stop(self) -> Vec<String> {
        let Daemon { mut child, log } = self;
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the daemon stops within a minute of SIGTERM")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let log = log.lock().unwrap().clone();
        assert!(status.success(), "exit {status:?}: {log:#?}");
        log
    }
}

fn commands(desk: &Desk, filter: &str) -> Vec<(String, String, String, String)> {
    let c = desk.open();
    let mut s = c
        .prepare(&format!(
            "SELECT coalesce(chat_id, ''), coalesce(text, ''), status, result FROM commands WHERE {filter} ORDER BY received_at"
        ))
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[cfg(unix)]
#[test]
fn commands_from_the_configured_chat_act_and_everything_else_changes_nothing() {
    let desk = Desk::new();
    // Short polls and timeouts keep the stalled-API case quick.
    let cfg = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    let cfg = cfg
        .replace("poll_secs = 10", "poll_secs = 1")
        .replace("timeout_secs = 10\n", "timeout_secs = 2\n");
    assert!(cfg.contains("poll_secs = 1\n"));
    desk.write_config("desk.toml", &cfg);
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    let open = desk.count("SELECT count(*) FROM positions");
    assert!(open >= 1, "something to flatten");
    let kill_file = desk.dir.path().join("data/KILL");

    let fake = FakeBot::start();
    // Queued while the daemon was down: never acted on.
    fake.message(CHAT, "/flatten", 3600);
    fake.message(CHAT, "/flatten confirm", 3590);
    let daemon = Daemon::start(&desk, &fake);
    let stale = fake.wait_reply(0, "were not acted on");
    assert!(stale.contains("/flatten confirm"), "{stale}");

    let status = fake.ask("/status", "optdesk status");
    assert!(
        status.contains("session 2024-06-04")
            && status.contains("failed")
            && status.contains("equity $")
            && status.contains("kill switch OFF")
            && status.contains(&format!("{open} open position(s) now"))
            && status.contains("halts on 2024-06-04"),
        "{status}"
    );
    let positions = fake.ask("/positions", "open position(s)");
    assert!(
        positions.contains(&format!("{open} open position(s)")),
        "{positions}"
    );
    let pnl = fake.ask("/pnl", "P&L");
    assert!(
        pnl.contains("2024-06-04") && pnl.contains("total:"),
        "{pnl}"
    );
    fake.ask("/help", "/flatten confirm");

    // Another chat: nothing happens, no answer (not even to a token it sends), recorded.
    let seen = fake.replies().len();
    fake.message(STRANGER, "/kill on", 0);
    fake.message(STRANGER, "/flatten", 0);
    fake.message(STRANGER, &format!("/flatten confirm {TOKEN}"), 0);
    fake.ask("/help", "/kill on");
    assert_eq!(fake.replies().len(), seen + 1, "{:#?}", fake.replies());
    assert!(!kill_file.exists());
    let refused = commands(&desk, "status = 'refused'");
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(refused.iter().all(|r| r.0 == STRANGER), "{refused:#?}");
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM commands WHERE status = 'refused' AND sender = '@user999'"
        ),
        3
    );

    // Bad arguments and unknown commands: a clear answer, nothing changed.
    fake.ask("/kill maybe", "usage: /kill on or /kill off");
    fake.ask("/buy 100 SPY", "unknown command /buy");
    fake.ask("/flatten now", "usage: /flatten");
    assert!(!kill_file.exists());
    assert_eq!(desk.count("SELECT count(*) FROM positions"), open);

    // A confirm without a recent /flatten in this process does nothing.
    fake.ask(
        "/flatten confirm",
        "no /flatten request since optdesk started",
    );
    assert_eq!(desk.count("SELECT count(*) FROM positions"), open);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE job = 'flatten'"),
        0
    );

    fake.ask("/kill on", "kill switch ON");
    assert!(kill_file.exists());
    fake.ask("/status", "kill switch ON");

    // /flatten alone asks; nothing is closed until the confirm.
    let ask = fake.ask("/flatten", "/flatten confirm within 60 s");
    assert!(
        ask.contains(&format!("all {open} open position(s)")),
        "{ask}"
    );
    assert_eq!(desk.count("SELECT count(*) FROM positions"), open);
    let done = fake.ask("/flatten confirm", "flatten done");
    assert!(done.contains("0 position(s) open now"), "{done}");
    assert_eq!(desk.count("SELECT count(*) FROM positions"), 0);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE job = 'flatten' AND status = 'ok' AND trigger = 'telegram'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM commands c JOIN job_runs j USING (run_id) WHERE c.command = 'flatten' AND c.status = 'done'"),
        1
    );

    // The API fails (a 500 whose page echoes the path, with the token), then stalls
    // past the client's timeout: the daemon lives on, records the streak once, and
    // answers again.
    let polls = fake.polls.load(Ordering::SeqCst);
    fake.fail.store(1, Ordering::SeqCst);
    fake.stall.store(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.stall.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "the poller stopped polling");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = fake.ask("/status", "optdesk status");
    assert!(after.contains("0 open position(s) now"), "{after}");
    assert!(fake.polls.load(Ordering::SeqCst) >= polls + 3);
    let errors = commands(&desk, "command = 'getUpdates' AND status = 'error'");
    assert_eq!(errors.len(), 1, "once per streak: {errors:#?}");
    assert!(errors[0].3.contains("HTTP 500"), "{errors:#?}");
    let back = commands(&desk, "command = 'getUpdates' AND status = 'done'");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(
        back[0].3.contains("after 2 failed poll(s)") && back[0].3.contains("timed out"),
        "{back:#?}"
    );
    assert!(
        daemon
            .log()
            .iter()
            .any(|l| l.contains("getUpdates failed: HTTP 500")),
        "{:#?}",
        daemon.log()
    );

    let log = daemon.stop();
    assert!(
        log.iter().any(|l| l.contains("stopped cleanly")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("telegram: stopped")),
        "{log:#?}"
    );

    // Every message is a row; the stale ones expired, the first confirm too.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM commands WHERE status = 'expired' AND text = '/flatten confirm'"
        ),
        2
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM commands WHERE status = 'invalid'"),
        3
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM commands WHERE status = 'pending'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT update_id) FROM commands WHERE update_id IS NOT NULL"),
        desk.count("SELECT count(*) FROM commands WHERE update_id IS NOT NULL AND command IS DISTINCT FROM 'sendMessage'"),
        "each update handled once"
    );
    assert!(fake.bad_paths.lock().unwrap().is_empty());

    // The kill file written by /kill on halts the next session's entries.
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-05"]);
    let halted = desk.count(
        "SELECT count(*) FROM risk_decisions WHERE as_of = DATE '2024-06-05' AND rule = 'kill_switch'
         AND decision = 'refused' AND reason = 'new entries halted: the kill switch is on (data/KILL)'",
    );
    assert!(halted >= 1, "a proposal refused by the kill switch");
    assert_eq!(
        desk.count("SELECT count(*) FROM risk_decisions WHERE as_of = DATE '2024-06-05' AND intent = 'entry' AND decision = 'approved'"),
        0
    );
    let msg: String = desk
        .open()
        .query_row(
            "SELECT message FROM job_runs WHERE job = 'select_trades' AND as_of = DATE '2024-06-05'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(msg.contains("kill switch on"), "{msg}");
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));

    // The bot token is in no table, no line the daemon printed, no reply.
    let c = desk.open();
    let cols: Vec<(String, String)> = {
        let mut s = c
            .prepare(
                "SELECT table_name, column_name FROM information_schema.columns
                 WHERE data_type = 'VARCHAR' AND table_name IN
                   (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')",
            )
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert!(cols.iter().any(|(t, _)| t == "commands"));
    let secret = TOKEN.split(':').nth(1).unwrap();
    for (t, col) in &cols {
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM \"{t}\" WHERE \"{col}\" LIKE '%' || ? || '%'"),
                [secret],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "the bot token is in {t}.{col}");
    }
    assert!(
        desk.count("SELECT count(*) FROM commands WHERE text LIKE '%[redacted]%'") == 1,
        "the stranger's token is recorded redacted"
    );
    assert!(!log.iter().any(|l| l.contains(secret)), "{log:#?}");
    assert!(!fake.replies().iter().any(|r| r.contains(secret)));
}
