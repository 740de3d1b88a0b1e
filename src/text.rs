//! Text for people: messages and error chains on one line, for the store, the terminal
//! and the logs.

/// Any whitespace (newlines from a server reply, say) collapsed to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and every cause under it, on one line (causes already in the message are
/// not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = src.source();
    }
    one_line(&s)
}
