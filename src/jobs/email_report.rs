//! `email_report` — the daily report, last in `optdesk run daily`.
//!
//! Gathers the day from the store ([`crate::report::load`]), renders the email (plain
//! text + HTML with the equity chart as an inline PNG) and the HTML dashboard, always
//! writes the message as an `.eml` file under `params.reports_dir`, and sends it by
//! SMTP when a host is configured. Each send — or its failure, with the server's
//! reply — is recorded in `reports`. A day already sent is not sent again unless
//! `--resend`. SMTP settings come from `jobs/email_report.toml`, overridden by the
//! `OPTDESK_SMTP_*` environment variables; the password only from
//! `OPTDESK_SMTP_PASSWORD`.

use super::{AfterRollback, Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError, JobFile};
use crate::report::chart::{line_chart_png, YFormat};
use crate::report::email::{self, Security, Smtp};
use crate::report::{self, dashboard};
use crate::store::write_atomic;
use chrono::Utc;
use duckdb::params;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEF: JobDef = JobDef {
    name: "email_report",
    about: "the daily report: email (text + HTML + chart) by SMTP or to logs/reports/*.eml; data/dashboard.html",
    writes: &["reports"],
    reads_chains: false,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpParams {
    pub host: String,
    pub port: u16,
    pub security: String,
    pub user: String,
    pub from: String,
    pub to: Vec<String>,
    pub timeout_secs: u64,
    pub ca_file: String,
}

impl Default for SmtpParams {
    fn default() -> Self {
        SmtpParams {
            host: String::new(),
            port: 0,
            security: "starttls".into(),
            user: String::new(),
            from: String::new(),
            to: Vec::new(),
            timeout_secs: 30,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub subject_prefix: String,
    pub risk_free_rate: f64,
    pub reports_dir: String,
    pub dashboard: String,
    pub smtp: SmtpParams,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            subject_prefix: "optdesk".into(),
            risk_free_rate: crate::report::DEFAULT_RISK_FREE_RATE,
            reports_dir: "logs/reports".into(),
            dashboard: "data/dashboard.html".into(),
            smtp: SmtpParams::default(),
        }
    }
}

/// Load and validate `jobs/email_report.toml` (also used by `optdesk report`).
pub fn load_params(config: &Config) -> Result<(JobFile<Params>, String), ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    let invalid = |message: String| ConfigError::Invalid {
        file: config.dir.join("email_report.toml").display().to_string(),
        message,
    };
    let p = &file.params;
    if !(-0.05..=1.0).contains(&p.risk_free_rate) {
        return Err(invalid(format!(
            "params.risk_free_rate = {}: expected an annual rate between -0.05 and 1 (0.04 is 4%)",
            p.risk_free_rate
        )));
    }
    Security::parse(&p.smtp.security).map_err(|e| invalid(format!("params.smtp.{e}")))?;
    if p.smtp.timeout_secs == 0 {
        return Err(invalid(
            "params.smtp.timeout_secs must be at least 1".into(),
        ));
    }
    if p.reports_dir.trim().is_empty() || p.dashboard.trim().is_empty() {
        return Err(invalid(
            "params.reports_dir and params.dashboard must name a folder and a file".into(),
        ));
    }
    Ok((file, text))
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text) = load_params(config)?;
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&text),
        job: Box::new(EmailReport {
            params: file.params,
        }),
    })
}

pub struct EmailReport {
    pub params: Params,
}

/// SMTP settings: the file, overridden by `OPTDESK_SMTP_*`. `Ok(None)` when no host is
/// set anywhere (the report is then only written to a file).
pub fn resolve_smtp(p: &SmtpParams) -> Result<Option<Smtp>, String> {
    let env = crate::config::env_var;
    let host = env("OPTDESK_SMTP_HOST").unwrap_or_else(|| p.host.clone());
    if host.trim().is_empty() {
        return Ok(None);
    }
    let security = match env("OPTDESK_SMTP_SECURITY") {
        Some(s) => Security::parse(&s).map_err(|e| format!("OPTDESK_SMTP_SECURITY: {e}"))?,
        None => Security::parse(&p.security)?,
    };
    if security == Security::None && !email::is_loopback(&host) {
        return Err(format!(
            "security = none is accepted only for a loopback host, not '{host}': use starttls or tls"
        ));
    }
    let port = match env("OPTDESK_SMTP_PORT") {
        Some(s) => s
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("OPTDESK_SMTP_PORT = '{s}' is not a port number"))?,
        None if p.port != 0 => p.port,
        None => match security {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        },
    };
    let user = env("OPTDESK_SMTP_USER").or_else(|| Some(p.user.clone()).filter(|u| !u.is_empty()));
    let password = env("OPTDESK_SMTP_PASSWORD");
    if let (Some(u), None) = (&user, &password) {
        return Err(format!(
            "SMTP user '{u}' is set but OPTDESK_SMTP_PASSWORD is not (the password is read only from the environment)"
        ));
    }
    let from = env("OPTDESK_SMTP_FROM").unwrap_or_else(|| p.from.clone());
    if from.trim().is_empty() {
        return Err("no sender: set params.smtp.from or OPTDESK_SMTP_FROM".into());
    }
    let to: Vec<String> = match env("OPTDESK_SMTP_TO") {
        Some(s) => s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        None => p.to.clone(),
    };
    if to.is_empty() {
        return Err(
            "no recipients: set params.smtp.to or OPTDESK_SMTP_TO (comma-separated)".into(),
        );
    }
    Ok(Some(Smtp {
        host,
        port,
        security,
        user,
        password,
        from,
        to,
        timeout_secs: p.timeout_secs,
        ca_file: env("OPTDESK_SMTP_CA_FILE")
            .or_else(|| Some(p.ca_file.clone()).filter(|f| !f.trim().is_empty()))
            .map(PathBuf::from),
    }))
}

/// Render and write the dashboard for a loaded day.
pub fn write_dashboard(data: &report::ReportData, path: &Path) -> Result<(), String> {
    write_atomic(path, dashboard::render(data).as_bytes())
        .map_err(|e| format!("cannot write the dashboard {}: {e}", path.display()))
}

impl Job for EmailReport {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let p = &self.params;
        let data = report::load(ctx.conn, ctx.as_of, p.risk_free_rate)
            .map_err(|e| JobError::Failed(format!("cannot read the day's report: {e}")))?;
        let dashboard_path = ctx.config.resolve(&p.dashboard);
        write_dashboard(&data, &dashboard_path).map_err(JobError::Failed)?;
        let dash = dashboard_path.display().to_string();
        let eml_path = ctx
            .config
            .resolve(&p.reports_dir)
            .join(format!("{}-daily.eml", ctx.as_of));
        let eml = eml_path.display().to_string();

        // SMTP settings problems still leave the report on disk (below).
        let smtp = resolve_smtp(&p.smtp);
        let sending = matches!(smtp, Ok(Some(_))) && !ctx.dry_run;
        if sending && !ctx.resend {
            let sent_before: Option<(String, String)> = ctx
                .conn
                .query_row(
                    "SELECT coalesce(message_id, ''), strftime(created_at, '%Y-%m-%d %H:%M UTC') FROM reports
                     WHERE as_of = ? AND status = 'sent' ORDER BY created_at DESC LIMIT 1",
                    params![ctx.as_of],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((id, when)) = sent_before {
                return Ok(JobOutput {
                    rows_written: 0,
                    summary: format!(
                        "already sent on {when} (message {id}), kept in {eml}: not sent again (use --resend); dashboard {dash}"
                    ),
                });
            }
        }

        let subject = data.subject(&p.subject_prefix);
        let text = email::render_text(&data);
        let html = email::render_html(&data);
        let png = line_chart_png(
            "Equity vs. benchmarks (total return)",
            &dashboard::equity_series(&data),
            760,
            360,
            2,
            YFormat::Percent,
        )
        .map_err(|e| JobError::Failed(format!("cannot draw the equity chart: {e}")))?;

        // A relative CA file is relative to the project folder, like every path here.
        let smtp = smtp.map(|s| {
            s.map(|mut s| {
                s.ca_file = s.ca_file.map(|f| ctx.config.resolve(&f.to_string_lossy()));
                s
            })
        });
        let (from, to) = match &smtp {
            Ok(Some(s)) => (s.from.clone(), s.to.clone()),
            _ => (
                Some(p.smtp.from.clone())
                    .filter(|f| !f.trim().is_empty())
                    .unwrap_or_else(|| "optdesk <optdesk@localhost>".into()),
                p.smtp.to.clone(),
            ),
        };
        // A message needs a recipient: a report only written to a file is addressed
        // to its sender.
        let to = if to.is_empty() {
            vec![from.clone()]
        } else {
            to
        };
        let domain = from
            .rsplit('@')
            .next()
            .map(|d| d.trim_end_matches('>').trim().to_string())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "localhost".into());
        // Unique per send attempt; the same for a re-run that only writes the file.
        let attempt: i64 = if sending {
            ctx.conn.query_row(
                "SELECT count(*) + 1 FROM reports WHERE as_of = ? AND status <> 'written'",
                params![ctx.as_of],
                |r| r.get(0),
            )?
        } else {
            0
        };
        let tag: String = {
            use sha2::{Digest, Sha256};
            let h = Sha256::digest(format!("{subject}\n{}", ctx.config.dir.display()));
            h.iter().take(4).map(|b| format!("{b:02x}")).collect()
        };
        let msg_id = format!("optdesk.daily.{}.{attempt}.{tag}@{domain}", ctx.as_of);
        let msg =
            email::build_message(&from, &to, &msg_id, &subject, text, html, png).map_err(|e| {
                JobError::Failed(format!("{e} (jobs/email_report.toml or OPTDESK_SMTP_*)"))
            })?;
        write_atomic(&eml_path, &msg.formatted())
            .map_err(|e| JobError::Failed(format!("cannot write {eml}: {e}")))?;

        let row = ReportRow {
            as_of: ctx.as_of,
            subject,
            recipients: None,
            message_id: msg_id,
            status: "written",
            eml: eml.clone(),
            error: None,
        };

        let smtp = smtp
            .map_err(|e| JobError::Failed(format!("SMTP settings: {e}; the report is at {eml}")))?;
        let Some(smtp) = smtp else {
            // Once per day and content: re-running the day adds nothing.
            let known: bool = ctx.conn.query_row(
                "SELECT count(*) > 0 FROM reports WHERE as_of = ? AND status = 'written' AND message_id = ?",
                params![ctx.as_of, row.message_id],
                |r| r.get(0),
            )?;
            if !known {
                row.insert(ctx.conn, ctx.run_id)?;
            }
            return Ok(JobOutput {
                rows_written: u64::from(!known),
                summary: format!(
                    "no SMTP host (params.smtp.host or OPTDESK_SMTP_HOST): report written to {eml}; dashboard {dash}"
                ),
            });
        };
        if ctx.dry_run {
            return Ok(JobOutput {
                rows_written: 0,
                summary: format!(
                    "dry run: not sent to {}; report written to {eml}; dashboard {dash}",
                    smtp.to.join(", ")
                ),
            });
        }
        let recipients = smtp.to.join(", ");
        let row = ReportRow {
            recipients: Some(recipients.clone()),
            status: "sent",
            ..row
        };
        match email::send(&smtp, &msg) {
            Ok(_reply) => {
                row.insert(ctx.conn, ctx.run_id)?;
                Ok(JobOutput {
                    rows_written: 1,
                    summary: format!(
                        "sent to {recipients} via {}:{} ({}); report {eml}; dashboard {dash}",
                        smtp.host,
                        smtp.port,
                        smtp.security.as_str()
                    ),
                })
            }
            Err(reply) => {
                let message = format!(
                    "sending the report via {}:{} ({}) failed: {reply}; the report is at {eml}",
                    smtp.host,
                    smtp.port,
                    smtp.security.as_str()
                );
                let row = ReportRow {
                    status: "failed",
                    error: Some(reply),
                    ..row
                };
                Err(JobError::FailedWithRecord {
                    message,
                    record: AfterRollback(Box::new(move |conn, run_id| row.insert(conn, run_id))),
                })
            }
        }
    }
}

/// One row of `reports`.
struct ReportRow {
    as_of: chrono::NaiveDate,
    subject: String,
    recipients: Option<String>,
    message_id: String,
    status: &'static str,
    eml: String,
    error: Option<String>,
}

impl ReportRow {
    fn insert(&self, conn: &duckdb::Connection, run_id: i64) -> Result<(), duckdb::Error> {
        conn.execute(
            "INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                self.as_of,
                Utc::now().naive_utc(),
                self.subject,
                self.recipients,
                self.message_id,
                self.status,
                self.eml,
                self.error,
                run_id
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_host_nothing_is_sent() {
        // The environment may carry OPTDESK_SMTP_HOST on a developer's machine; this
        // test only runs the file path when it does not.
        if std::env::var("OPTDESK_SMTP_HOST").is_ok() {
            return;
        }
        assert_eq!(resolve_smtp(&SmtpParams::default()).unwrap(), None);
    }

    #[test]
    fn file_settings_are_checked() {
        if std::env::vars().any(|(k, _)| k.starts_with("OPTDESK_SMTP_")) {
            return;
        }
        let mut p = SmtpParams {
            host: "smtp.example.com".into(),
            from: "desk@example.com".into(),
            to: vec!["me@example.com".into()],
            ..SmtpParams::default()
        };
        let s = resolve_smtp(&p).unwrap().unwrap();
        assert_eq!((s.port, s.security), (587, Security::StartTls));
        p.security = "tls".into();
        assert_eq!(resolve_smtp(&p).unwrap().unwrap().port, 465);
        p.security = "none".into();
        let e = resolve_smtp(&p).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        p.security = "starttls".into();
        p.user = "desk".into();
        let e = resolve_smtp(&p).unwrap_err();
        assert!(e.contains("OPTDESK_SMTP_PASSWORD"), "{e}");
        p.user.clear();
        p.to.clear();
        assert!(resolve_smtp(&p).unwrap_err().contains("recipients"));
    }
}
