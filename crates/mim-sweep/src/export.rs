//! Writing exported rows as CSV or JSON lines.

use crate::db::Row;
use serde_json::Value;
use std::io::{self, Write};

/// The union of the rows' columns, in first-seen order.
pub fn columns(rows: &[Row]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        for (c, _) in row {
            if seen.insert(c.clone()) {
                cols.push(c.clone());
            }
        }
    }
    cols
}

/// A cell's text: empty for null, strings as they are, anything else as JSON text.
fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes rows as CSV with the `csv` crate (RFC 4180 quoting, `\n` line ends): a header of all
/// columns, empty cells for missing values, arrays and objects as JSON text. No rows: an empty
/// file.
pub fn write_csv(rows: &[Row], mut w: impl Write) -> io::Result<()> {
    let cols = columns(rows);
    if cols.is_empty() {
        return w.flush();
    }
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(w);
    out.write_record(&cols)?;
    for row in rows {
        out.write_record(cols.iter().map(|c| {
            row.iter()
                .find(|(k, _)| k == c)
                .map(|(_, v)| cell_text(v))
                .unwrap_or_default()
        }))?;
    }
    out.flush()
}

/// Writes rows as JSON lines, one object per row with its columns in order.
pub fn write_jsonl(rows: &[Row], mut w: impl Write) -> io::Result<()> {
    for row in rows {
        let mut m = serde_json::Map::new();
        for (k, v) in row {
            m.insert(k.clone(), v.clone());
        }
        writeln!(w, "{}", Value::Object(m))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_fills_missing_cells() {
        let rows: Vec<Row> = vec![
            vec![("a".into(), 1.into()), ("b".into(), "x,y".into())],
            vec![
                ("a".into(), 2.5.into()),
                ("c".into(), serde_json::json!([1, 2])),
            ],
        ];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b,c\n1,\"x,y\",\n2.5,,\"[1,2]\"\n"
        );
        let mut out = Vec::new();
        write_jsonl(&rows, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":1,\"b\":\"x,y\"}\n{\"a\":2.5,\"c\":[1,2]}\n"
        );
        let mut out = Vec::new();
        write_csv(&[], &mut out).unwrap();
        assert!(out.is_empty());
    }

    /// What `write_csv` writes, `mim_plot::io::Csv` (the reader of `mim plot` and reports)
    /// reads back: a field with a comma and a quote, in a cell and in a column name.
    #[test]
    fn csv_round_trips_through_the_plot_reader() {
        let tricky = r#"say "hi", then 1,2"#;
        let rows: Vec<Row> = vec![vec![
            ("x".into(), 1.into()),
            (tricky.into(), tricky.into()),
            ("list".into(), serde_json::json!([1, "a,b"])),
        ]];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let csv = mim_plot::io::Csv::parse(&String::from_utf8(out).unwrap()).unwrap();
        assert_eq!(csv.header, vec!["x", tricky, "list"]);
        assert_eq!(csv.rows, vec![vec!["1", tricky, r#"[1,"a,b"]"#]]);
    }
}
