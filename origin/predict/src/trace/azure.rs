//! The Azure Functions 2019 public trace, as published: per-function per-minute invocation counts of one day.
//!
//! Header `HashOwner,HashApp,HashFunction,Trigger,1,2,…,1440`; each row one function's
//! invocations in each minute of the day. Owner → user, app → runtime (an app is one
//! deployable with one runtime image, the unit a node warms). `n` invocations in a minute
//! become `n` creates spread evenly over its 60 seconds.

use std::io::BufRead;
use std::path::Path;

use super::Trace;
use crate::{PredictError, DAY};

/// Minutes in a day file.
pub(crate) const MINUTES: usize = 1440;

/// Reads one day file into `trace` as day `day` (0-based), unsorted.
pub fn read_azure(path: &Path, day: u64, trace: &mut Trace) -> Result<(), PredictError> {
    let f = std::fs::File::open(path).map_err(|e| PredictError::io(path, e))?;
    let bad = |line: usize, reason: String| PredictError::BadLine {
        path: path.to_owned(),
        line,
        reason,
    };
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| PredictError::io(path, e))?;
        let line = line.trim_start_matches('\u{feff}').trim_end();
        let fields: Vec<&str> = line.split(',').collect();
        if i == 0 {
            let ok = fields.len() == 4 + MINUTES
                && fields[..4] == ["HashOwner", "HashApp", "HashFunction", "Trigger"]
                && fields[4..]
                    .iter()
                    .enumerate()
                    .all(|(m, f)| f.parse::<usize>() == Ok(m + 1));
            if !ok {
                return Err(bad(
                    1,
                    "expected the header HashOwner,HashApp,HashFunction,Trigger,1,2,…,1440".into(),
                ));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if fields.len() != 4 + MINUTES {
            return Err(bad(
                i + 1,
                format!("expected {} fields, found {}", 4 + MINUTES, fields.len()),
            ));
        }
        let (owner, app) = (fields[0], fields[1]);
        if owner.is_empty() || app.is_empty() {
            return Err(bad(i + 1, "HashOwner and HashApp must not be empty".into()));
        }
        for (m, count) in fields[4..].iter().enumerate() {
            let n: u64 = count.parse().map_err(|_| {
                bad(
                    i + 1,
                    format!(
                        "minute {}: count {count:?} is not a whole number ≥ 0",
                        m + 1
                    ),
                )
            })?;
            for k in 0..n {
                let t = day * DAY + m as u64 * 60 + k * 60 / n;
                trace.push(t, owner, app);
            }
        }
    }
    Ok(())
}

/// One function's row of a day file: owner, app, and (minute 1..=1440, invocations) pairs.
pub type AzureRow<'a> = (&'a str, &'a str, &'a [(usize, u64)]);

/// A day file in the published layout (function `f`, trigger `http`; minutes not given are 0):
/// for tests and for turning other counts into this format.
pub fn format_azure_day(rows: &[AzureRow]) -> String {
    let mut s = String::from("HashOwner,HashApp,HashFunction,Trigger");
    for m in 1..=MINUTES {
        s.push_str(&format!(",{m}"));
    }
    s.push('\n');
    for (owner, app, counts) in rows {
        let mut minutes = vec![0u64; MINUTES];
        for (m, n) in *counts {
            minutes[m - 1] = *n;
        }
        s.push_str(&format!("{owner},{app},f,http"));
        for n in minutes {
            s.push_str(&format!(",{n}"));
        }
        s.push('\n');
    }
    s
}
