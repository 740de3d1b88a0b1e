//! `optdesk sql`: run one read-only query and print it as a table, CSV or JSON.

use duckdb::arrow::array::Array;
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::Connection;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// A query result as text cells, with which columns are numeric (for alignment/JSON).
pub struct TextResult {
    pub columns: Vec<String>,
    pub numeric: Vec<bool>,
    pub boolean: Vec<bool>,
    pub rows: Vec<Vec<Option<String>>>,
}

pub fn run(conn: &Connection, sql: &str) -> Result<TextResult, duckdb::Error> {
    let mut stmt = conn.prepare(sql)?;
    let arrow = stmt.query_arrow([])?;
    let schema = arrow.get_schema();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let boolean: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type() == &DataType::Boolean)
        .collect();
    let opts = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in arrow {
        let fmts: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).map(|f| (f, c.clone())))
            .collect::<Result<_, _>>()
            .map_err(|e| duckdb::Error::ToSqlConversionFailure(Box::new(e)))?;
        for i in 0..batch.num_rows() {
            rows.push(
                fmts.iter()
                    .map(|(f, c)| (!c.is_null(i)).then(|| f.value(i).to_string()))
                    .collect(),
            );
        }
    }
    Ok(TextResult {
        columns,
        numeric,
        boolean,
        rows,
    })
}

pub fn write(r: &TextResult, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Csv => {
            writeln!(
                out,
                "{}",
                r.columns
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            )?;
            for row in &r.rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| c.as_deref().map(csv_field).unwrap_or_default())
                    .collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
        Format::Json => {
            let arr: Vec<serde_json::Value> = r
                .rows
                .iter()
                .map(|row| {
                    let mut m = serde_json::Map::new();
                    for (i, c) in row.iter().enumerate() {
                        let v = match c {
                            None => serde_json::Value::Null,
                            Some(s) if r.numeric[i] => s
                                .parse::<serde_json::Number>()
                                .map(serde_json::Value::Number)
                                .unwrap_or_else(|_| serde_json::Value::String(s.clone())),
                            Some(s) if r.boolean[i] => serde_json::Value::Bool(s == "true"),
                            Some(s) => serde_json::Value::String(s.clone()),
                        };
                        m.insert(r.columns[i].clone(), v);
                    }
                    serde_json::Value::Object(m)
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &arr)?;
            writeln!(out)?;
        }
        Format::Table => write_table(r, out)?,
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An aligned plain-text table; numbers right-aligned, NULL shown as empty.
pub fn write_table(r: &TextResult, out: &mut dyn Write) -> std::io::Result<()> {
    let mut w: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &r.rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.as_deref().map(|s| s.chars().count()).unwrap_or(0));
        }
    }
    let line = |cells: Vec<String>| cells.join("  ").trim_end().to_string();
    writeln!(
        out,
        "{}",
        line(
            r.columns
                .iter()
                .enumerate()
                .map(|(i, c)| pad(c, w[i], r.numeric[i]))
                .collect()
        )
    )?;
    writeln!(out, "{}", line(w.iter().map(|n| "-".repeat(*n)).collect()))?;
    for row in &r.rows {
        writeln!(
            out,
            "{}",
            line(
                row.iter()
                    .enumerate()
                    .map(|(i, c)| pad(c.as_deref().unwrap_or(""), w[i], r.numeric[i]))
                    .collect()
            )
        )?;
    }
    writeln!(
        out,
        "({} row{})",
        r.rows.len(),
        if r.rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

fn pad(s: &str, width: usize, right: bool) -> String {
    if right {
        format!("{s:>width$}")
    } else {
        format!("{s:<width$}")
    }
}
