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

fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Writes rows as CSV (RFC 4180 quoting): a header of all columns, empty cells for missing
/// values, arrays and objects as JSON text.
pub fn write_csv(rows: &[Row], mut w: impl Write) -> io::Result<()> {
    let cols = columns(rows);
    let header: Vec<String> = cols
        .iter()
        .map(|c| csv_field(&Value::String(c.clone())))
        .collect();
    writeln!(w, "{}", header.join(","))?;
    for row in rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                row.iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| csv_field(v))
                    .unwrap_or_default()
            })
            .collect();
        writeln!(w, "{}", cells.join(","))?;
    }
    w.flush()
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
    }
}
