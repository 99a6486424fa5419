//! The run folder: `config.toml`, `metrics.jsonl`, `summary.json`, `model.bpk`. Whole files are
//! written atomically (a temporary file in the same folder, fsync, rename, then an fsync of the
//! folder so the rename itself survives a power cut), so a crash or kill never leaves a
//! half-written result; `metrics.jsonl` is append-only, one flushed line per record.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: `path.tmp` is written and synced, renamed over `path`,
/// and the folder synced. The temporary name is fixed on purpose (not `tempfile`'s random
/// one): a write killed halfway leaves `path.tmp`, which the next write of the same file
/// replaces, so a killed-and-resumed run ends with no temporary file in its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// fsync of a folder (makes a rename in it durable); a no-op where folders cannot be opened
/// as files.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `dir/name.tmp` for `dir/name`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// An append-only JSON-lines file; each record is one `write` of a full line, then flushed.
/// The lines written are kept (they are few), so a checkpoint can record them.
pub struct JsonlWriter {
    file: File,
    lines: Vec<String>,
}

impl JsonlWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Self {
            file,
            lines: Vec::new(),
        })
    }

    /// Replaces the file atomically by `lines` (each without its newline), then appends to it:
    /// how a resumed run continues `metrics.jsonl` from a checkpoint.
    pub fn resume(path: &Path, lines: Vec<String>) -> io::Result<Self> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self { file, lines })
    }

    /// Every line written so far (without newlines), including those a resume started from.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Appends one record as a line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        let line = serde_json::to_string(record).map_err(io::Error::other)?;
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.flush()?;
        self.lines.push(line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn atomic_write_replaces_and_leaves_no_tmp() {
        let dir = std::env::temp_dir().join(format!("mim-results-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("summary.json");
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("summary.json")],
            "{left:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
