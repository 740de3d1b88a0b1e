//! The one CSV reader of the project's own small files: `optdesk calc`'s input and the
//! reference files in `data/` (index weights, event dates, the rate table). All of them
//! go through the `csv` crate (RFC 4180: a quoted field may hold commas, `""` and
//! newlines), and all of them report a problem the same way: the file, the line the
//! record starts on (csv's `Position`, which counts the file's lines, so a record after
//! a quoted newline is named by its own line), and the field.
//!
//! What the crate does not say by itself, this module does: a byte that is not UTF-8
//! (named by its line and byte), a byte-order mark (dropped, not part of the header),
//! and a quoted field still open at the end of the file (the crate reads it to the end
//! silently).

/// Excel's "CSV UTF-8" starts with a byte-order mark; it is not part of the header.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The bytes as text, or the line (1-based) and byte in that line (1-based) of the
/// first byte that is not UTF-8.
pub fn utf8(bytes: &[u8]) -> Result<&str, (usize, usize)> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = 1 + at
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        (line, col)
    })
}

/// A reader over `text` that returns every record as it is (no header handling, any
/// number of fields: the callers check the count against their header and name the
/// line). Blank lines are skipped by the crate and counted in its line numbers.
pub fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// `text` with its `#` comment lines (a `#` first on a line, after any spaces, outside a
/// quoted field) emptied, their line breaks kept. The crate's own `comment` option
/// leaves comment lines out of its line numbers, which would then name the wrong line;
/// an empty line is skipped and counted. A comment may hold quotes and commas.
pub fn without_comments(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('#') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for line in text.split_inclusive('\n') {
        if !quoted && line.trim_start().starts_with('#') {
            if line.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        quoted ^= line.bytes().filter(|&b| b == b'"').count() % 2 == 1;
        out.push_str(line);
    }
    std::borrow::Cow::Owned(out)
}

/// Whether the record that starts at byte `start` of `text` and runs to its end leaves a
/// quoted field open: an odd number of quote characters from there on (a closed quoted
/// field has an even number: its two quotes and each `""` inside). Call it for the last
/// record only: the crate reads an unclosed field to the end of the file.
pub fn open_quote_from(text: &str, start: usize) -> bool {
    text.as_bytes()
        .get(start..)
        .is_some_and(|rest| rest.iter().filter(|&&b| b == b'"').count() % 2 == 1)
}

/// A field as text (the whole input was checked to be UTF-8, and a field boundary is
/// an ASCII comma or newline, so this fails only on input that was not checked).
pub fn field(record: &csv::ByteRecord, i: usize) -> &str {
    record
        .get(i)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// The line (1-based) and byte offset in `text` where a record starts. The crate's
/// position is where its read began, before the empty lines it skipped: those are
/// stepped over here, so a record after an empty line is named by its own line.
pub fn start_of(text: &str, record: &csv::ByteRecord) -> (usize, usize) {
    let Some(p) = record.position() else {
        return (0, 0);
    };
    let (mut line, mut byte) = (p.line() as usize, p.byte() as usize);
    let b = text.as_bytes();
    while let Some(&c) = b.get(byte).filter(|&&c| c == b'\n' || c == b'\r') {
        line += usize::from(c == b'\n');
        byte += 1;
    }
    (line, byte)
}

/// Whether a record is a line of spaces only (the crate skips empty lines, not these).
pub fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && record[0].iter().all(|b| b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(usize, Vec<String>)> {
        let text = without_comments(text);
        let mut r = reader(&text);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while r.read_byte_record(&mut rec).unwrap() {
            out.push((
                start_of(&text, &rec).0,
                (0..rec.len()).map(|i| field(&rec, i).to_string()).collect(),
            ));
        }
        out
    }

    #[test]
    fn quoted_commas_and_newlines_stay_in_their_field_and_lines_are_counted() {
        let got = records(
            "# note, with \"a quote\n\"a,b\",\"two\n# not a comment\"\n\nx,\"say \"\"hi\"\"\"\r\ny,z\n",
        );
        assert_eq!(
            got,
            vec![
                (
                    2,
                    vec!["a,b".to_string(), "two\n# not a comment".to_string()]
                ),
                (5, vec!["x".to_string(), "say \"hi\"".to_string()]),
                (6, vec!["y".to_string(), "z".to_string()]),
            ]
        );
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_named_by_line_and_byte() {
        assert_eq!(utf8(b"a,b\nc,\xffd\n"), Err((2, 3)));
        assert_eq!(utf8(b"a,b\n"), Ok("a,b\n"));
    }

    #[test]
    fn an_open_quote_is_seen_from_the_start_of_the_last_record() {
        let t = "a,b\n\"open,1\n";
        assert!(open_quote_from(t, 4));
        assert!(!open_quote_from("a,b\n\"x\"\"y\",1\n", 4));
        assert!(!open_quote_from(t, 100));
    }
}
