//! Run metrics as JSON lines, one object per record:
//! `{"step": N, "split": "train"|"val", "loss": X, ...}`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Open `path` for appending; records after `keep_through_step` (written by a run that
    /// went on past its last checkpoint) are dropped so a resumed run continues cleanly.
    pub fn open(path: &Path, keep_through_step: Option<u64>) -> Result<MetricsLog> {
        match keep_through_step {
            None => {
                std::fs::write(path, b"").map_err(|e| Error::io(path, e))?;
            }
            Some(step) => {
                let kept: Vec<String> = read_records(path)?
                    .into_iter()
                    .filter(|r| {
                        r.get("step")
                            .and_then(Value::as_u64)
                            .is_some_and(|s| s <= step)
                    })
                    .map(|r| Value::Object(r).to_string())
                    .collect();
                let mut text = kept.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                crate::data::fsutil::write_atomic(path, text.as_bytes())?;
            }
        }
        Ok(MetricsLog {
            path: path.to_path_buf(),
        })
    }

    pub fn record(&self, step: u64, split: &str, fields: &[(&str, f64)]) -> Result<()> {
        let mut m = Map::new();
        m.insert("step".into(), Value::from(step));
        m.insert("split".into(), Value::from(split));
        for (k, v) in fields {
            let v = serde_json::Number::from_f64(*v)
                .map(Value::Number)
                .unwrap_or(Value::Null);
            m.insert((*k).into(), v);
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(f, "{}", Value::Object(m)).map_err(|e| Error::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// All records of a metrics file (missing file: none).
pub fn read_records(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(Error::format(
                path,
                format!("line {}", i + 1),
                "not a JSON object",
            )),
        })
        .collect()
}
