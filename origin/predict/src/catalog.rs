//! Runtime sizes and warm durations: the one measured figure, scaled estimates, or a table from a file.
//!
//! A warm is what a cold start waits for, and its bytes are what it takes of the warm-disk
//! budget. The only measured pair is python-data's (docs/BENCHMARKS.md, issue 5: 227 MB of
//! block bytes, 4168 ms from create to ready). Other runtimes scale it by size:
//! `0.5 s + 3.67 s × bytes / 227 MB` (a fixed part, then pull + compile per byte). A node's
//! learned estimates, or any measured table, replace these through [`Catalog::from_json`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::PredictError;

/// python-data's measured block bytes (docs/BENCHMARKS.md).
pub const PYTHON_DATA_BYTES: u64 = 227_000_000;
/// python-data's measured cold create → ready, in seconds (docs/BENCHMARKS.md, median of 3).
pub const PYTHON_DATA_WARM_SECS: f64 = 4.168;

/// What warming one runtime costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeSpec {
    /// Bytes it holds on the warm disk.
    pub bytes: u64,
    /// Seconds from "warm it" to ready.
    pub warm_secs: f64,
    /// True for a measured figure, false for an estimate.
    #[serde(default)]
    pub measured: bool,
}

impl RuntimeSpec {
    /// The size-scaled estimate from python-data's measurement.
    pub fn scaled(bytes: u64) -> Self {
        let warm = 0.5 + (PYTHON_DATA_WARM_SECS - 0.5) * bytes as f64 / PYTHON_DATA_BYTES as f64;
        Self {
            bytes,
            warm_secs: (warm * 1000.0).round() / 1000.0,
            measured: false,
        }
    }

    /// python-data as measured.
    pub fn python_data() -> Self {
        Self {
            bytes: PYTHON_DATA_BYTES,
            warm_secs: PYTHON_DATA_WARM_SECS,
            measured: true,
        }
    }
}

/// Runtime name → spec, with a default for names the table lacks (a trace's unknown apps).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Catalog {
    pub runtimes: BTreeMap<String, RuntimeSpec>,
    /// Used for any runtime not in the table: python-data's measured figure unless set.
    pub default: RuntimeSpec,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::standard()
    }
}

/// Sizes of the design notes' four runtime kinds (python-data measured, the others estimated).
const MAIN_KINDS: [(&str, u64); 4] = [
    ("python-ml", 1_800_000_000),
    ("python-data", PYTHON_DATA_BYTES),
    ("node-web", 180_000_000),
    ("go", 320_000_000),
];

/// Number of long-tail runtimes in the standard catalog (`tail-01` … `tail-50`).
pub const TAIL_RUNTIMES: usize = 50;

impl Catalog {
    /// The design notes' four kinds plus 50 long-tail runtimes of 60 MB – 900 MB, log-uniform
    /// and deterministic (the same table every run).
    pub fn standard() -> Self {
        let mut runtimes = BTreeMap::new();
        for (name, bytes) in MAIN_KINDS {
            let spec = if name == "python-data" {
                RuntimeSpec::python_data()
            } else {
                RuntimeSpec::scaled(bytes)
            };
            runtimes.insert(name.to_owned(), spec);
        }
        for i in 0..TAIL_RUNTIMES {
            // A fixed low-discrepancy walk over [0, 1): the golden-ratio sequence.
            let u = (i as f64 * 0.618_033_988_75).fract();
            let bytes = (60e6 * (900.0f64 / 60.0).powf(u)) as u64;
            runtimes.insert(
                tail_name(i),
                RuntimeSpec::scaled(bytes / 1_000_000 * 1_000_000),
            );
        }
        Self {
            runtimes,
            default: RuntimeSpec::python_data(),
        }
    }

    /// The standard runtime names, most popular first (the synthetic trace's Zipf ranks).
    pub fn standard_ranking() -> Vec<String> {
        let mut v: Vec<String> = MAIN_KINDS.iter().map(|(n, _)| (*n).to_owned()).collect();
        v.extend((0..TAIL_RUNTIMES).map(tail_name));
        v
    }

    /// A table from JSON: `{"runtimes": {"name": {"bytes": …, "warm_secs": …}}, "default": {…}}`
    /// (`default` optional).
    pub fn from_json(path: &Path) -> Result<Self, PredictError> {
        #[derive(Deserialize)]
        struct File {
            runtimes: BTreeMap<String, RuntimeSpec>,
            default: Option<RuntimeSpec>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| PredictError::io(path, e))?;
        let f: File = serde_json::from_str(&text).map_err(|e| PredictError::BadFile {
            path: path.to_owned(),
            reason: format!("not a runtime table: {e}"),
        })?;
        let cat = Self {
            runtimes: f.runtimes,
            default: f.default.unwrap_or_else(RuntimeSpec::python_data),
        };
        for (name, s) in cat
            .runtimes
            .iter()
            .chain([(&"default".to_owned(), &cat.default)])
        {
            if s.bytes == 0 || !(s.warm_secs.is_finite() && s.warm_secs >= 0.0) {
                return Err(PredictError::BadFile {
                    path: path.to_owned(),
                    reason: format!("runtime {name}: bytes must be > 0 and warm_secs ≥ 0"),
                });
            }
        }
        Ok(cat)
    }

    /// The spec of `name`, or the default.
    pub fn spec(&self, name: &str) -> &RuntimeSpec {
        self.runtimes.get(name).unwrap_or(&self.default)
    }

    /// Bytes of every runtime in `names` together.
    pub fn total_bytes<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> u64 {
        names.into_iter().map(|n| self.spec(n).bytes).sum()
    }
}

fn tail_name(i: usize) -> String {
    format!("tail-{:02}", i + 1)
}
