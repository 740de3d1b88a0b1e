//! The kill switch's file: `optdesk kill on|off` and the Telegram `/kill on|off` both
//! turn it on and off here. While the file named by `jobs/select_trades.toml`
//! (`params.kill_file`, default `data/KILL`) exists, `select_trades` makes no new
//! entries and refuses each proposal with rule `kill_switch`.

use crate::config::{Config, ConfigError};
use std::path::PathBuf;

/// The kill switch as `select_trades` will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitch {
    /// The kill file.
    pub file: PathBuf,
    /// Whether the kill file exists.
    pub file_on: bool,
    /// `risk.kill_switch = true` in `jobs/select_trades.toml`.
    pub config_on: bool,
}

impl KillSwitch {
    /// Whether new entries are halted.
    pub fn on(&self) -> bool {
        self.file_on || self.config_on
    }

    /// One line for a trader: on or off, and why.
    pub fn describe(&self) -> String {
        match (self.file_on, self.config_on) {
            (false, false) => "kill switch OFF".into(),
            (true, false) => format!("kill switch ON ({} exists)", self.file.display()),
            (false, true) => {
                "kill switch ON (risk.kill_switch = true in jobs/select_trades.toml)".into()
            }
            (true, true) => format!(
                "kill switch ON ({} exists, and risk.kill_switch = true in jobs/select_trades.toml)",
                self.file.display()
            ),
        }
    }
}

/// What turning the switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillChange {
    /// The file was written.
    On { file: PathBuf },
    /// The file was removed.
    Off { file: PathBuf, config_on: bool },
    /// There was no file to remove.
    AlreadyOff { file: PathBuf, config_on: bool },
}

impl KillChange {
    /// The line `optdesk kill` prints and `/kill` replies.
    pub fn message(&self) -> String {
        let still = |config_on: bool| {
            if config_on {
                "; but risk.kill_switch = true in jobs/select_trades.toml still halts new entries"
            } else {
                ""
            }
        };
        match self {
            KillChange::On { file } => format!(
                "kill switch ON: no new entries while {} exists (`optdesk kill off` resumes)",
                file.display()
            ),
            KillChange::Off { file, config_on } => {
                format!(
                    "kill switch OFF: removed {}{}",
                    file.display(),
                    still(*config_on)
                )
            }
            KillChange::AlreadyOff { file, config_on } => format!(
                "kill switch was already off ({} does not exist){}",
                file.display(),
                still(*config_on)
            ),
        }
    }
}

/// Why the switch could not be turned.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// The kill switch's state under `config`.
pub fn state(config: &Config) -> Result<KillSwitch, ConfigError> {
    let (file, config_on) = crate::jobs::select_trades::kill_settings(config)?;
    Ok(KillSwitch {
        file_on: file.exists(),
        file,
        config_on,
    })
}

/// Turn the switch on: write the kill file, saying `by` whom and when.
pub fn turn_on(config: &Config, by: &str) -> Result<KillChange, KillError> {
    let (file, _) = crate::jobs::select_trades::kill_settings(config)?;
    let io = |what, source| KillError::Io {
        what,
        path: file.display().to_string(),
        source,
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| KillError::Io {
            what: "create",
            path: dir.display().to_string(),
            source: e,
        })?;
    }
    std::fs::write(
        &file,
        format!(
            "kill switch turned on by {by} at {}\n",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
    .map_err(|e| io("write", e))?;
    Ok(KillChange::On { file })
}

/// Turn the switch off: remove the kill file (the configuration's switch stays as set).
pub fn turn_off(config: &Config) -> Result<KillChange, KillError> {
    let (file, config_on) = crate::jobs::select_trades::kill_settings(config)?;
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(KillChange::Off { file, config_on }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(KillChange::AlreadyOff { file, config_on })
        }
        Err(e) => Err(KillError::Io {
            what: "remove",
            path: file.display().to_string(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_then_off_then_off_again() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let config = Config::load(&jobs, true).unwrap();
        assert!(!state(&config).unwrap().on());
        let on = turn_on(&config, "a test").unwrap();
        assert!(on.message().starts_with("kill switch ON"), "{on:?}");
        let s = state(&config).unwrap();
        assert!(s.on() && s.file_on && !s.config_on);
        assert_eq!(s.file, dir.path().join("data/KILL"));
        assert!(std::fs::read_to_string(&s.file)
            .unwrap()
            .contains("by a test"));
        assert!(turn_off(&config)
            .unwrap()
            .message()
            .starts_with("kill switch OFF: removed"));
        assert!(turn_off(&config)
            .unwrap()
            .message()
            .starts_with("kill switch was already off"));
        assert!(!state(&config).unwrap().on());
    }
}
