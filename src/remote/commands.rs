//! The commands a message can carry, parsed; a bad one says why and changes nothing.

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Help,
    Status,
    Positions,
    Pnl,
    Kill {
        on: bool,
    },
    /// `/flatten`: ask for the confirmation.
    Flatten,
    /// `/flatten confirm`: do it, when a `/flatten` came within the window.
    FlattenConfirm,
}

impl Command {
    /// Whether it changes the desk (the kill switch, positions): such a command is not
    /// acted on when it arrives late.
    pub fn changes_the_desk(&self) -> bool {
        matches!(
            self,
            Command::Kill { .. } | Command::Flatten | Command::FlattenConfirm
        )
    }
}

/// A message split into its command word (lower case, without `/` and `@botname`) and
/// arguments, and what they mean, or why they mean nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub name: String,
    pub args: Vec<String>,
    pub command: Result<Command, String>,
}

/// How long a `/flatten` waits for its `/flatten confirm`.
pub const CONFIRM_WINDOW_SECS: u64 = 60;

pub fn help() -> String {
    format!(
        "optdesk commands:\n\
         /status — the last session's jobs (ok, failed), equity, the kill switch and halts\n\
         /positions — the open positions, marked at the latest snapshot\n\
         /pnl — the last session's P&L by strategy, and the total\n\
         /kill on — halt new entries (the kill file, as `optdesk kill on`)\n\
         /kill off — resume new entries\n\
         /flatten — close every open position: asks for /flatten confirm within {CONFIRM_WINDOW_SECS} s\n\
         /help — this list"
    )
}

pub fn parse(text: &str) -> Parsed {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    let args: Vec<String> = words.map(str::to_string).collect();
    let Some(word) = first.strip_prefix('/') else {
        return Parsed {
            name: String::new(),
            args,
            command: Err(if text.trim().is_empty() {
                "only text commands are understood; /help lists them".into()
            } else {
                "not a command (commands start with /); /help lists them".into()
            }),
        };
    };
    // In a group, Telegram sends `/status@my_bot`.
    let name = word.split('@').next().unwrap_or("").to_lowercase();
    let lower: Vec<String> = args.iter().map(|a| a.to_lowercase()).collect();
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(format!(
                "/{name} takes no arguments (got \"{}\"); nothing done",
                args.join(" ")
            ))
        }
    };
    let command = match name.as_str() {
        "help" | "start" => no_args(Command::Help),
        "status" => no_args(Command::Status),
        "positions" => no_args(Command::Positions),
        "pnl" => no_args(Command::Pnl),
        "kill" => match lower.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["on"] => Ok(Command::Kill { on: true }),
            ["off"] => Ok(Command::Kill { on: false }),
            _ => Err(format!(
                "usage: /kill on or /kill off (got \"{}\"); nothing done",
                args.join(" ")
            )),
        },
        "flatten" => match lower.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [] => Ok(Command::Flatten),
            ["confirm"] => Ok(Command::FlattenConfirm),
            _ => Err(format!(
                "usage: /flatten, then /flatten confirm within {CONFIRM_WINDOW_SECS} s (got \"{}\"); nothing done",
                args.join(" ")
            )),
        },
        _ => Err(format!(
            "unknown command /{name}; nothing done. /help lists the commands"
        )),
    };
    Parsed {
        name,
        args,
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_bad_arguments() {
        let cases: &[(&str, Result<Command, &str>)] = &[
            ("/status", Ok(Command::Status)),
            ("/Status@optdesk_bot", Ok(Command::Status)),
            ("  /positions ", Ok(Command::Positions)),
            ("/pnl", Ok(Command::Pnl)),
            ("/help", Ok(Command::Help)),
            ("/kill on", Ok(Command::Kill { on: true })),
            ("/kill OFF", Ok(Command::Kill { on: false })),
            ("/kill", Err("usage: /kill on or /kill off")),
            ("/kill maybe", Err("usage: /kill on or /kill off")),
            ("/kill on now", Err("usage: /kill on or /kill off")),
            ("/flatten", Ok(Command::Flatten)),
            ("/flatten confirm", Ok(Command::FlattenConfirm)),
            (
                "/flatten now",
                Err("usage: /flatten, then /flatten confirm"),
            ),
            ("/status please", Err("/status takes no arguments")),
            ("/buy 100 SPY", Err("unknown command /buy")),
            ("hello", Err("not a command")),
            ("", Err("only text commands")),
        ];
        for (text, want) in cases {
            let p = parse(text);
            match (want, &p.command) {
                (Ok(c), Ok(got)) => assert_eq!(c, got, "{text}"),
                (Err(start), Err(why)) => assert!(why.starts_with(start), "{text}: {why}"),
                _ => panic!("{text}: {p:?}"),
            }
        }
        assert_eq!(parse("/kill On").args, vec!["On"]);
        assert_eq!(parse("/Status@optdesk_bot").name, "status");
    }
}
