//! `optdesk calc` — the desk calculator for a whole CSV file.
//!
//! Input columns: `right` (C/P), `spot`, `strike`, `t_years`, `rate`, `div_yield`, and
//! either `price` (solve the IV) or `vol` (price it); any other columns are carried
//! through untouched. Output: the input columns plus `iv`, `price`, `delta`, `gamma`,
//! `vega` (per 1.00 of vol), `theta` (per calendar day), `rho` (per 1.00 of rate) and
//! `note` (why a row has no IV). A row with a `price` solves it; otherwise its `vol` is
//! used.
//!
//! The whole file is validated before anything is written: a bad row fails the file
//! with its line and field, and no output file appears. Parsing, solving and
//! formatting run on every core, in chunks, and the chunks are written in order.

use crate::csvfile;
use crate::model::OptionRight;
use crate::pricing::bsm::BsmInputs;
use crate::pricing::iv::implied_vol;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CalcError {
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

const REQUIRED: [&str; 6] = ["right", "spot", "strike", "t_years", "rate", "div_yield"];
const OUTPUTS: [&str; 8] = [
    "iv", "price", "delta", "gamma", "vega", "theta", "rho", "note",
];

/// One parsed row.
#[derive(Debug, Clone, Copy)]
struct Row {
    right: OptionRight,
    spot: f64,
    strike: f64,
    t_years: f64,
    rate: f64,
    div_yield: f64,
    price: Option<f64>,
    vol: Option<f64>,
}

struct Columns {
    idx: [usize; 6],
    price: Option<usize>,
    vol: Option<usize>,
    /// Where each output column sits in the input, when it does (such a column is not
    /// appended again): computed values are written into those cells (a stale iv or
    /// greek is never carried through; an input price is kept, an empty one filled).
    at: [Option<usize>; 8],
    header: Vec<String>,
}

fn columns(header: &csv::ByteRecord, file: &str) -> Result<Columns, CalcError> {
    let names: Vec<String> = (0..header.len())
        .map(|i| csvfile::field(header, i).trim().to_ascii_lowercase())
        .collect();
    let find = |n: &str| names.iter().position(|x| x == n);
    let mut idx = [0; 6];
    for (i, n) in REQUIRED.iter().enumerate() {
        idx[i] = find(n).ok_or_else(|| CalcError::Input {
            file: file.into(),
            message: format!("line 1: missing column '{n}' (need right, spot, strike, t_years, rate, div_yield and price or vol)"),
        })?;
    }
    let (price, vol) = (find("price"), find("vol"));
    if price.is_none() && vol.is_none() {
        return Err(CalcError::Input {
            file: file.into(),
            message: "line 1: missing column 'price' or 'vol' (one is needed: price to solve the IV, vol to price)".into(),
        });
    }
    let at = OUTPUTS.map(find);
    Ok(Columns {
        idx,
        price,
        vol,
        at,
        header: names,
    })
}

fn parse_row(
    rec: &csv::ByteRecord,
    lineno: usize,
    c: &Columns,
    file: &str,
) -> Result<Row, CalcError> {
    let f = |i: usize| csvfile::field(rec, i);
    let err = |field: &str, msg: String| CalcError::Input {
        file: file.into(),
        message: format!("line {lineno}, field '{field}': {msg}"),
    };
    if rec.len() != c.header.len() {
        return Err(CalcError::Input {
            file: file.into(),
            message: format!(
                "line {lineno}: {} fields, the header has {}",
                rec.len(),
                c.header.len()
            ),
        });
    }
    let num = |i: usize, name: &str| -> Result<f64, CalcError> {
        let s = f(i).trim();
        let v: f64 = s
            .parse()
            .map_err(|_| err(name, format!("'{s}' is not a number")))?;
        if !v.is_finite() {
            return Err(err(name, format!("'{s}' is not a finite number")));
        }
        Ok(v)
    };
    let opt = |i: Option<usize>, name: &str| -> Result<Option<f64>, CalcError> {
        match i {
            Some(i) if !f(i).trim().is_empty() => num(i, name).map(Some),
            _ => Ok(None),
        }
    };
    let right = match f(c.idx[0]).trim() {
        "C" | "c" | "call" | "CALL" | "Call" => OptionRight::Call,
        "P" | "p" | "put" | "PUT" | "Put" => OptionRight::Put,
        other => return Err(err("right", format!("'{other}' is not C or P"))),
    };
    let row = Row {
        right,
        spot: num(c.idx[1], "spot")?,
        strike: num(c.idx[2], "strike")?,
        t_years: num(c.idx[3], "t_years")?,
        rate: num(c.idx[4], "rate")?,
        div_yield: num(c.idx[5], "div_yield")?,
        price: opt(c.price, "price")?,
        vol: opt(c.vol, "vol")?,
    };
    for (name, v) in [
        ("spot", row.spot),
        ("strike", row.strike),
        ("t_years", row.t_years),
    ] {
        if v < 0.0 {
            return Err(err(name, format!("{v} is negative")));
        }
    }
    if row.spot == 0.0 {
        return Err(err("spot", "must be positive".into()));
    }
    if row.strike == 0.0 {
        return Err(err("strike", "must be positive".into()));
    }
    if let Some(p) = row.price {
        if p < 0.0 {
            return Err(err("price", format!("{p} is negative")));
        }
    }
    match (row.price, row.vol) {
        (None, None) => Err(err(
            if c.price.is_some() { "price" } else { "vol" },
            "empty: a row needs a price or a vol".into(),
        )),
        (None, Some(v)) if v < 0.0 => Err(err("vol", format!("{v} is negative"))),
        _ => Ok(row),
    }
}

/// The computed fields of one row (None = empty cell).
struct Out {
    iv: Option<f64>,
    greeks: Option<crate::pricing::bsm::Greeks>,
    note: &'static str,
}

fn compute(r: &Row) -> Out {
    let mut inputs = BsmInputs {
        right: r.right,
        spot: r.spot,
        strike: r.strike,
        t_years: r.t_years,
        rate: r.rate,
        div_yield: r.div_yield,
        vol: 0.0,
    };
    match r.price {
        Some(p) => {
            match implied_vol(r.right, p, r.spot, r.strike, r.t_years, r.rate, r.div_yield) {
                Ok(v) => {
                    inputs.vol = v;
                    Out {
                        iv: Some(v),
                        greeks: Some(inputs.greeks()),
                        note: "",
                    }
                }
                Err(e) => Out {
                    iv: None,
                    greeks: None,
                    note: e.code(),
                },
            }
        }
        None => {
            inputs.vol = r.vol.unwrap_or(0.0);
            Out {
                iv: r.vol,
                greeks: Some(inputs.greeks()),
                note: "",
            }
        }
    }
}

fn push_f64(buf: &mut Vec<u8>, v: Option<f64>, fmt: &mut ryu::Buffer) {
    buf.push(b',');
    if let Some(x) = v.filter(|x| x.is_finite()) {
        buf.extend_from_slice(fmt.format_finite(x).as_bytes());
    }
}

/// Summary of a calc run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalcSummary {
    pub rows: usize,
    pub solved: usize,
    pub unsolved: usize,
}

/// Records per chunk of work.
const CHUNK: usize = 8192;

/// Run the calculator on CSV text; returns the output CSV bytes.
///
/// The body is cut into chunks of about [`CHUNK`] records, each read by its own `csv`
/// reader into a reused `ByteRecord`, parsed, solved and formatted on every core, and
/// the chunks are joined in order. Without a quote in the file every line break ends a
/// record, so the chunks are cut at line breaks; with quotes, one pass of the crate's
/// reader over the whole body finds where the chunks' records start.
pub fn run_text(text: &str, file: &str) -> Result<(Vec<u8>, CalcSummary), CalcError> {
    let text = csvfile::strip_bom(text);
    let input = |message: String| CalcError::Input {
        file: file.into(),
        message,
    };
    let csv_error = |e: csv::Error| input(crate::text::one_line(&e.to_string()));
    let mut reader = csvfile::reader(text);
    let mut header = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut header).map_err(csv_error)? {
        return Err(input(
            "line 1: the file is empty (expected a header)".into(),
        ));
    }
    let cols = columns(&header, file)?;
    let body_start = (reader.position().byte() as usize).min(text.len());
    let body_line = reader.position().line() as usize;
    // (byte, line) where each chunk starts.
    let mut starts = vec![(body_start, body_line)];
    if !text.contains('"') {
        let (mut at, mut line) = (body_start, body_line);
        'cut: loop {
            for _ in 0..CHUNK {
                match text[at..].find('\n') {
                    Some(i) => at += i + 1,
                    None => break 'cut,
                }
                line += 1;
            }
            if at < text.len() {
                starts.push((at, line));
            }
        }
    } else {
        let body = &text[body_start..];
        let mut reader = csvfile::reader(body);
        let mut rec = csv::ByteRecord::new();
        let (mut n, mut last) = (0usize, None);
        while reader.read_byte_record(&mut rec).map_err(csv_error)? {
            let (line, at) = csvfile::start_of(body, &rec);
            last = Some((line, at));
            if n > 0 && n % CHUNK == 0 {
                starts.push((body_start + at, body_line + line - 1));
            }
            n += 1;
        }
        if let Some((line, at)) = last {
            if csvfile::open_quote_from(body, at) {
                return Err(input(format!(
                    "line {}: a quoted field is not closed",
                    body_line + line - 1
                )));
            }
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|s| s.0)
        .chain([text.len()])
        .collect();
    let parts: Vec<Chunk> = starts
        .par_iter()
        .zip(ends.par_iter())
        .map(|(&(start, line), &end)| format_chunk(&text[start..end], line, &cols, file))
        .collect::<Result<_, _>>()?;
    let header_text = text[..body_start].trim_end_matches(['\r', '\n']);
    let mut out =
        Vec::with_capacity(parts.iter().map(|p| p.out.len()).sum::<usize>() + body_start + 64);
    out.extend_from_slice(header_text.as_bytes());
    for (i, n) in OUTPUTS.iter().enumerate() {
        if cols.at[i].is_none() {
            out.push(b',');
            out.extend_from_slice(n.as_bytes());
        }
    }
    out.push(b'\n');
    let (mut rows, mut solved) = (0, 0);
    for p in parts {
        out.extend_from_slice(&p.out);
        rows += p.rows;
        solved += p.solved;
    }
    Ok((
        out,
        CalcSummary {
            rows,
            solved,
            unsolved: rows - solved,
        },
    ))
}

/// One chunk's output lines and counts.
struct Chunk {
    out: Vec<u8>,
    rows: usize,
    solved: usize,
}

/// Parse, solve and format the records of `chunk`, whose first byte is on line
/// `first_line` of the file.
fn format_chunk(
    chunk: &str,
    first_line: usize,
    cols: &Columns,
    file: &str,
) -> Result<Chunk, CalcError> {
    let mut reader = csvfile::reader(chunk);
    let mut rec = csv::ByteRecord::new();
    let mut buf = Vec::with_capacity(chunk.len() + chunk.len() / 2);
    let mut fmt = ryu::Buffer::new();
    let (mut rows, mut solved) = (0, 0);
    loop {
        let read = reader
            .read_byte_record(&mut rec)
            .map_err(|e| CalcError::Input {
                file: file.into(),
                message: crate::text::one_line(&e.to_string()),
            })?;
        if !read {
            break;
        }
        if csvfile::is_blank(&rec) {
            continue;
        }
        let (line, start) = csvfile::start_of(chunk, &rec);
        let end = (reader.position().byte() as usize).min(chunk.len());
        let r = parse_row(&rec, first_line + line - 1, cols, file)?;
        rows += 1;
        let o = compute(&r);
        solved += usize::from(o.iv.is_some());
        let g = o.greeks;
        let vals = [
            o.iv,
            g.map(|g| g.price),
            g.map(|g| g.delta),
            g.map(|g| g.gamma),
            g.map(|g| g.vega),
            g.map(|g| g.theta_per_day),
            g.map(|g| g.rho),
        ];
        // Rewrite the record only when it has a cell to fill: an input price is kept,
        // so the usual "solve the IV" file is copied as it is.
        let rewrite = cols
            .at
            .iter()
            .enumerate()
            .any(|(i, a)| a.is_some() && !(i == 1 && r.price.is_some()));
        if rewrite {
            // Rewrite the cells of output columns the input already has.
            let mut fields: Vec<String> = (0..rec.len())
                .map(|i| csvfile::field(&rec, i).to_string())
                .collect();
            for (i, v) in vals.iter().enumerate() {
                if let Some(k) = cols.at[i] {
                    let keep_input_price = i == 1 && r.price.is_some();
                    if !keep_input_price {
                        fields[k] = v
                            .filter(|x| x.is_finite())
                            .map(|x| fmt.format_finite(x).to_string())
                            .unwrap_or_default();
                    }
                }
            }
            if let Some(k) = cols.at[7] {
                fields[k] = o.note.to_string();
            }
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                if f.contains([',', '"', '\n', '\r']) {
                    buf.push(b'"');
                    buf.extend_from_slice(f.replace('"', "\"\"").as_bytes());
                    buf.push(b'"');
                } else {
                    buf.extend_from_slice(f.as_bytes());
                }
            }
        } else {
            let raw = chunk[start.min(end)..end].trim_end_matches(['\r', '\n']);
            buf.extend_from_slice(raw.as_bytes());
        }
        for (i, v) in vals.iter().enumerate() {
            if cols.at[i].is_none() {
                push_f64(&mut buf, *v, &mut fmt);
            }
        }
        if cols.at[7].is_none() {
            buf.push(b',');
            buf.extend_from_slice(o.note.as_bytes());
        }
        buf.push(b'\n');
    }
    Ok(Chunk {
        out: buf,
        rows,
        solved,
    })
}

/// The file's bytes as text; a byte that is not UTF-8 is an error naming its line.
fn utf8_text(bytes: Vec<u8>, file: &str) -> Result<String, CalcError> {
    String::from_utf8(bytes).map_err(|e| {
        let (line, col) = csvfile::utf8(e.as_bytes()).err().unwrap_or((1, 1));
        CalcError::Input {
            file: file.into(),
            message: format!(
                "line {line}, byte {col}: not valid UTF-8 (save the file as CSV UTF-8)"
            ),
        }
    })
}

/// Run on a file; write `output` atomically (temporary file, then rename) or stdout.
pub fn run_file(input: &Path, output: Option<&Path>) -> Result<CalcSummary, CalcError> {
    let name = input.display().to_string();
    let bytes = std::fs::read(input).map_err(|e| CalcError::Io {
        file: name.clone(),
        source: e,
    })?;
    let text = utf8_text(bytes, &name)?;
    let (bytes, summary) = run_text(&text, &name)?;
    match output {
        Some(path) => {
            let oname = path.display().to_string();
            let io = |e| CalcError::Io {
                file: oname.clone(),
                source: e,
            };
            crate::store::write_atomic(path, &bytes).map_err(io)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            lock.write_all(&bytes).map_err(|e| CalcError::Io {
                file: "stdout".into(),
                source: e,
            })?;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, String> {
        run_text(text, "in.csv")
            .map(|(b, _)| String::from_utf8(b).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn solves_prices_and_prices_vols_keeping_extra_columns() {
        let out = run("id,right,spot,strike,t_years,rate,div_yield,price\nA,C,42,40,0.5,0.1,0,4.759422392871532\nB,P,42,40,0.5,0.1,0,50\n").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "id,right,spot,strike,t_years,rate,div_yield,price,iv,delta,gamma,vega,theta,rho,note"
        );
        let a: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(a[0], "A");
        let iv: f64 = a[8].parse().unwrap();
        assert!((iv - 0.2).abs() < 1e-12, "{iv}");
        assert!(
            lines[2].ends_with(",,,,,,,above_upper_bound"),
            "{}",
            lines[2]
        );
        let v =
            run("right,spot,strike,t_years,rate,div_yield,vol\nC,42,40,0.5,0.1,0,0.2\n").unwrap();
        let f: Vec<&str> = v.lines().nth(1).unwrap().split(',').collect();
        let price: f64 = f[8].parse().unwrap();
        assert!((price - 4.759422).abs() < 1e-6, "{price}");
    }

    #[test]
    fn bad_input_names_line_and_field() {
        let h = "right,spot,strike,t_years,rate,div_yield,price\n";
        let cases = [
            (
                "right,spot,t_years,rate,div_yield,price\n",
                "missing column 'strike'",
            ),
            (
                "right,spot,strike,t_years,rate,div_yield\n",
                "missing column 'price' or 'vol'",
            ),
            (
                &*format!("{h}C,100,100,0.5,0,0,1\nC,abc,100,0.5,0,0,1\n"),
                "line 3, field 'spot': 'abc' is not a number",
            ),
            (
                &*format!("{h}C,100,100,0.5,0,0,-1\n"),
                "line 2, field 'price'",
            ),
            (
                &*format!("{h}C,100,-100,0.5,0,0,1\n"),
                "line 2, field 'strike'",
            ),
            (
                &*format!("{h}C,100,100,-0.5,0,0,1\n"),
                "line 2, field 't_years'",
            ),
            (
                &*format!("{h}X,100,100,0.5,0,0,1\n"),
                "line 2, field 'right': 'X' is not C or P",
            ),
        ];
        for (text, want) in cases {
            let e = run(text).unwrap_err();
            assert!(
                e.starts_with("in.csv: ") && e.contains(want),
                "{e} / want {want}"
            );
        }
    }

    #[test]
    fn output_columns_in_the_input_are_recomputed_not_carried_through() {
        // A mixed file (price where known, vol otherwise) and a stale iv column.
        let out = run("right,spot,strike,t_years,rate,div_yield,price,vol,iv\n\
                       C,42,40,0.5,0.1,0,4.759422392871532,,0.99\n\
                       C,42,40,0.5,0.1,0,,0.2,0.99\n")
        .unwrap();
        let l: Vec<Vec<&str>> = out.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(
            l[0].len(),
            15,
            "iv and price not appended twice: {:?}",
            l[0]
        );
        assert_eq!(l[1][6], "4.759422392871532", "an input price is kept");
        assert!(
            (l[1][8].parse::<f64>().unwrap() - 0.2).abs() < 1e-12,
            "stale iv recomputed: {}",
            l[1][8]
        );
        assert!(
            (l[2][6].parse::<f64>().unwrap() - 4.759422).abs() < 1e-6,
            "an empty price is filled: {}",
            l[2][6]
        );
        assert_eq!(l[2][8], "0.2");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_header() {
        assert!(
            run("\u{feff}right,spot,strike,t_years,rate,div_yield,vol\nC,100,100,1,0,0,0.2\n")
                .is_ok()
        );
    }

    #[test]
    fn a_row_with_a_different_field_count_is_refused_naming_its_line() {
        let h = "right,spot,strike,t_years,rate,div_yield,price\n";
        for (text, want) in [
            (
                format!("{h}C,100,100,0.5,0.04,0.01,7.5\nC,100,100,0.5,0.04,0.01,7.5,EXTRA,MORE\n"),
                "line 3: 9 fields, the header has 7",
            ),
            (
                format!("{h}C,100,100,0.5,0.04,0.01\n"),
                "line 2: 6 fields, the header has 7",
            ),
        ] {
            let e = run(&text).unwrap_err();
            assert!(e.contains(want), "{e} / want {want}");
        }
    }

    #[test]
    fn a_quoted_newline_is_part_of_its_field_and_lines_are_still_counted() {
        let text = "name,right,spot,strike,t_years,rate,div_yield,vol\n\
                    \"two\nlines\",C,100,100,1,0,0,0.2\n\
                    plain,C,100,100,1,0,0,0.2\n";
        let out = run(text).unwrap();
        assert!(out.contains("\"two\nlines\",C,100"), "{out}");
        assert_eq!(out.matches(",C,100,100,1,0,0,0.2,").count(), 2, "{out}");
        // The record after it starts on line 4.
        let bad = text.replace("plain,C,100", "plain,C,abc");
        let e = run(&bad).unwrap_err();
        assert!(e.contains("line 4, field 'spot'"), "{e}");
        let open = "name,right,spot,strike,t_years,rate,div_yield,vol\n\"open,C,1\n";
        assert!(run(open)
            .unwrap_err()
            .contains("line 2: a quoted field is not closed"));
    }

    #[test]
    fn empty_lines_and_crlf_endings_keep_the_line_numbers_of_the_file() {
        let text = "right,spot,strike,t_years,rate,div_yield,vol\r\n\r\n\
                    C,100,100,1,0,0,0.2\r\n\r\n   \r\nC,abc,100,1,0,0,0.2\r\n";
        let e = run(text).unwrap_err();
        assert!(e.contains("line 6, field 'spot'"), "{e}");
        let ok = run(&text.replace("abc", "100")).unwrap();
        assert_eq!(ok.lines().count(), 3, "{ok}");
        assert!(!ok.contains('\r'), "{ok:?}");
    }

    #[test]
    fn lines_are_named_right_in_every_chunk_with_and_without_quotes() {
        for first in ["plain", "\"two\nlines, quoted\""] {
            let mut text = String::from("name,right,spot,strike,t_years,rate,div_yield,vol\n");
            text.push_str(&format!("{first},C,100,100,1,0,0,0.2\n"));
            for i in 0..(3 * CHUNK) {
                let spot = if i == 2 * CHUNK + 5 { "abc" } else { "100" };
                text.push_str(&format!("r{i},C,{spot},100,1,0,0,0.2\n"));
            }
            let extra = usize::from(first.contains('\n'));
            let e = run(&text).unwrap_err();
            let want = format!("line {}, field 'spot'", 2 * CHUNK + 5 + 3 + extra);
            assert!(e.contains(&want), "{e} / want {want}");
            let (out, summary) = run_text(&text.replace("abc", "100"), "in.csv").unwrap();
            assert_eq!(summary.rows, 3 * CHUNK + 1);
            assert_eq!(summary.solved, 3 * CHUNK + 1);
            assert_eq!(
                out.iter().filter(|&&b| b == b'\n').count(),
                3 * CHUNK + 2 + extra
            );
        }
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_reported_with_its_line() {
        let mut bytes =
            b"right,spot,strike,t_years,rate,div_yield,vol\nC,100,100,1,0,0,0.2\n".to_vec();
        bytes.extend_from_slice(b"C,1\xff0,100,1,0,0,0.2\n");
        let e = utf8_text(bytes, "in.csv").unwrap_err().to_string();
        assert!(
            e.starts_with("in.csv: line 3, byte 4: not valid UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn quoted_fields_are_handled() {
        let out = run(
            "name,right,spot,strike,t_years,rate,div_yield,vol\n\"a, b\",C,100,100,1,0,0,0.2\n",
        )
        .unwrap();
        assert!(
            out.lines().nth(1).unwrap().starts_with("\"a, b\",C,"),
            "{out}"
        );
    }
}
