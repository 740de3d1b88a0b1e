//! The two Bot API methods the commands use: `getUpdates` (a long poll) and
//! `sendMessage`. Every request has a bounded timeout; an error never holds the URL
//! (it carries the bot token) nor the token itself.

use crate::net::{HttpClient, RetryPolicy};
use serde::Deserialize;
use std::time::Duration;

/// The configured bot: where the API is, its token, and the one chat it obeys.
#[derive(Clone, PartialEq, Eq)]
pub struct Bot {
    pub api: String,
    pub token: String,
    pub chat_id: String,
}

impl std::fmt::Debug for Bot {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bot(chat {})", self.chat_id)
    }
}

/// One message the bot received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub update_id: i64,
    /// The message's date (Telegram's clock), Unix seconds.
    pub date: i64,
    pub chat_id: String,
    /// `@username`, else the sender's name.
    pub sender: String,
    pub text: String,
}

/// One update: a message, or something else (an edit, a channel post) that is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Incoming>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    result: Option<T>,
}

#[derive(Deserialize)]
struct RawUpdate {
    #[serde(default)]
    message: Option<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    date: i64,
    chat: RawChat,
    #[serde(default)]
    from: Option<RawUser>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct RawChat {
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

impl RawUser {
    fn name(&self) -> String {
        if let Some(u) = self.username.as_deref().filter(|u| !u.is_empty()) {
            return format!("@{u}");
        }
        let parts: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        parts.join(" ")
    }
}

/// A chat id as text, whether the API sent it as a number or a string.
fn id_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Bot API over [`HttpClient`].
pub struct Api {
    bot: Bot,
    poll: HttpClient,
    send: HttpClient,
    poll_secs: u64,
}

impl Api {
    /// `poll_secs`: how long a `getUpdates` waits for a message; `timeout_secs`: the
    /// margin beyond it before a request is given up (a stalled API), and the timeout
    /// of one `sendMessage` try.
    pub fn new(bot: Bot, poll_secs: u64, timeout_secs: u64) -> Result<Api, String> {
        // getUpdates is tried once: the poller's own back-off handles a failure.
        let once = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        let poll = HttpClient::new(Duration::from_secs(poll_secs + timeout_secs), once)
            .map_err(|e| e.to_string())?;
        // A reply is tried twice, briefly: a stalled API must not hold a command long.
        let twice = RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        };
        let send =
            HttpClient::new(Duration::from_secs(timeout_secs), twice).map_err(|e| e.to_string())?;
        Ok(Api {
            bot,
            poll,
            send,
            poll_secs,
        })
    }

    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    fn url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.bot.api, self.bot.token)
    }

    /// `text` without the bot token or any other secret of the environment.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets = crate::config::secrets();
        secrets.push(self.bot.token.clone());
        crate::text::redact(text, &secrets)
    }

    /// The updates after `offset` (all pending ones when `None`), waiting up to
    /// `poll_secs` for one. Passing an offset confirms every update before it to
    /// Telegram, which then never sends them again.
    pub fn get_updates(&self, offset: Option<i64>) -> Result<Vec<Update>, String> {
        let mut body = serde_json::json!({
            "timeout": self.poll_secs,
            "allowed_updates": ["message"],
        });
        if let Some(o) = offset {
            body["offset"] = o.into();
        }
        let x = self.poll.post_json(&self.url("getUpdates"), &body);
        let resp = x
            .result
            .map_err(|e| self.redact(&format!("getUpdates failed: {e}")))?;
        let env: Envelope<Vec<serde_json::Value>> =
            serde_json::from_slice(&resp.body).map_err(|e| {
                self.redact(&format!(
                    "getUpdates answered something that is not the Bot API's JSON: {e}"
                ))
            })?;
        if !env.ok {
            return Err(self.redact(&format!(
                "getUpdates refused: {}",
                env.description.unwrap_or_else(|| "no description".into())
            )));
        }
        let mut out = Vec::new();
        for v in env.result.unwrap_or_default() {
            // An update of a shape this code does not know is skipped by its id, never
            // a reason to stop reading the others.
            let Some(update_id) = v.get("update_id").and_then(|u| u.as_i64()) else {
                continue;
            };
            let raw: Option<RawUpdate> = serde_json::from_value(v).ok();
            let message = raw.and_then(|r| r.message).map(|m| Incoming {
                update_id,
                date: m.date,
                chat_id: id_text(&m.chat.id),
                sender: m.from.map(|u| u.name()).unwrap_or_default(),
                text: m.text.unwrap_or_default(),
            });
            out.push(Update { update_id, message });
        }
        Ok(out)
    }

    /// Send `text` to the configured chat.
    pub fn send_message(&self, text: &str) -> Result<(), String> {
        // Telegram's limit is 4096 characters.
        let mut text = self.redact(text);
        if text.chars().count() > 4000 {
            text = text.chars().take(3990).collect::<String>() + "\n…";
        }
        let body = serde_json::json!({
            "chat_id": self.bot.chat_id,
            "text": text,
            "disable_web_page_preview": true,
        });
        let x = self.send.post_json(&self.url("sendMessage"), &body);
        x.result
            .map(|_| ())
            .map_err(|e| self.redact(&format!("sendMessage failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_numbers_or_strings_and_skip_what_is_not_a_message() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let served = std::thread::spawn(move || {
            let req = server.recv().unwrap();
            let url = req.url().to_string();
            req.respond(tiny_http::Response::from_string(
                r#"{"ok":true,"result":[
                    {"update_id":7,"message":{"message_id":1,"date":1700000000,"chat":{"id":-1001,"type":"group"},"from":{"id":5,"username":"ann"},"text":"/status"}},
                    {"update_id":8,"edited_message":{"message_id":1}},
                    {"update_id":9,"message":{"date":1700000001,"chat":{"id":"42"},"from":{"id":6,"first_name":"Bo","last_name":"Li"}}}
                ]}"#,
            ))
            .unwrap();
            url
        });
        let api = Api::new(
            Bot {
                api: format!("http://127.0.0.1:{port}"),
                token: "123456:SECRET-TOKEN".into(),
                chat_id: "42".into(),
            },
            1,
            2,
        )
        .unwrap();
        let u = api.get_updates(Some(7)).unwrap();
        assert_eq!(served.join().unwrap(), "/bot123456:SECRET-TOKEN/getUpdates");
        assert_eq!(u.len(), 3);
        let m = u[0].message.as_ref().unwrap();
        assert_eq!(
            (m.chat_id.as_str(), m.sender.as_str(), m.text.as_str()),
            ("-1001", "@ann", "/status")
        );
        assert!(u[1].message.is_none());
        let m = u[2].message.as_ref().unwrap();
        assert_eq!((m.chat_id.as_str(), m.sender.as_str()), ("42", "Bo Li"));
        assert_eq!(m.text, "");
        assert!(!format!("{:?}", api.bot()).contains("SECRET"));
    }

    #[test]
    fn an_error_page_that_echoes_the_path_loses_the_token() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        std::thread::spawn(move || {
            let req = server.recv().unwrap();
            let body = format!("Cannot POST {}", req.url());
            req.respond(tiny_http::Response::from_string(body).with_status_code(404))
                .unwrap();
        });
        let api = Api::new(
            Bot {
                api: format!("http://127.0.0.1:{port}"),
                token: "123456:SECRET-TOKEN".into(),
                chat_id: "42".into(),
            },
            1,
            2,
        )
        .unwrap();
        let e = api.get_updates(None).unwrap_err();
        assert!(e.contains("HTTP 404") && !e.contains("SECRET"), "{e}");
    }
}
