//! The native trace format: CSV `timestamp,user,runtime`, seconds from the trace's start.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use super::Trace;
use crate::PredictError;

/// The header line of a native trace.
pub(crate) const HEADER: &str = "timestamp,user,runtime";

/// Reads a native trace into `trace` (unsorted).
pub fn read_csv(path: &Path, trace: &mut Trace) -> Result<(), PredictError> {
    let f = std::fs::File::open(path).map_err(|e| PredictError::io(path, e))?;
    let bad = |line: usize, reason: String| PredictError::BadLine {
        path: path.to_owned(),
        line,
        reason,
    };
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| PredictError::io(path, e))?;
        let line = line.trim_start_matches('\u{feff}').trim_end();
        if i == 0 {
            if line != HEADER {
                return Err(bad(
                    1,
                    format!("expected the header {HEADER:?}, found {line:?}"),
                ));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(',');
        let (Some(t), Some(user), Some(runtime), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                i + 1,
                format!("expected 3 fields (timestamp,user,runtime), found {line:?}"),
            ));
        };
        let t: u64 = t
            .parse()
            .map_err(|_| bad(i + 1, format!("timestamp {t:?} is not whole seconds ≥ 0")))?;
        if user.is_empty() || runtime.is_empty() {
            return Err(bad(i + 1, "user and runtime must not be empty".into()));
        }
        trace.push(t, user, runtime);
    }
    Ok(())
}

/// Writes a native trace, atomically (a temporary file beside it, then a rename).
pub fn write_csv(path: &Path, trace: &Trace) -> Result<(), PredictError> {
    let tmp = path.with_extension("csv.tmp");
    let io = |e| PredictError::io(path, e);
    {
        let f = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::new(f);
        writeln!(w, "{HEADER}").map_err(io)?;
        for e in &trace.events {
            writeln!(
                w,
                "{},{},{}",
                e.t, trace.users[e.user.0 as usize], trace.runtimes[e.runtime.0 as usize]
            )
            .map_err(io)?;
        }
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}
