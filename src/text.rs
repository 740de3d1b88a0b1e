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

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not searched for: replacing every "42" or "/" in a
/// message would hide the message without protecting anything.
const MIN_SECRET_LEN: usize = 4;

/// `text` with every secret, and each secret's percent-encoded form (upper- and
/// lower-case hex, as a server may echo a request path either way), replaced by
/// `[redacted]`. Longer secrets are replaced first, so a secret that contains another
/// is hidden whole.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        let upper = percent_encode(s);
        let lower = lower_hex(&upper);
        for f in [s.clone(), upper, lower] {
            if !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_string();
    for f in &forms {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), REDACTED);
        }
    }
    out
}

/// Every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%3A` → `%3a`, leaving everything else as it is.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_each_secret_raw_and_percent_encoded() {
        let secrets = vec!["123:SECRET-TOKEN".to_string(), "/hook/s3cr3t".to_string()];
        let cases = [
            (
                "HTTP 404 Not Found: Cannot POST /bot123:SECRET-TOKEN/sendMessage",
                "HTTP 404 Not Found: Cannot POST /bot[redacted]/sendMessage",
            ),
            ("path /bot123%3ASECRET-TOKEN/x", "path /bot[redacted]/x"),
            ("path /bot123%3aSECRET-TOKEN/x", "path /bot[redacted]/x"),
            ("Cannot POST /hook/s3cr3t", "Cannot POST [redacted]"),
            ("GET %2Fhook%2Fs3cr3t?x", "GET [redacted]?x"),
            ("nothing secret here", "nothing secret here"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text, &secrets), want, "{text}");
        }
    }

    #[test]
    fn redact_ignores_empty_and_tiny_secrets_and_prefers_the_longest() {
        let secrets = vec![
            String::new(),
            "/".to_string(),
            "abcd".to_string(),
            "abcdef".to_string(),
        ];
        assert_eq!(
            redact("a/b abcdef abcd", &secrets),
            "a/b [redacted] [redacted]"
        );
    }
}
