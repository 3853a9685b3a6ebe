//! `--sweep`: every policy over a range of budgets, as rows for a table and lines for a plot.

use serde::Serialize;

use crate::policy::PolicyKind;
use crate::sim::{simulate, Report, SimOptions};
use crate::Trace;

/// One policy at one budget.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow {
    pub policy: String,
    pub budget_bytes: u64,
    /// The budget as a fraction of all the trace's runtimes' bytes.
    pub budget_fraction: f64,
    pub report: Report,
}

/// Fractions of all runtimes' bytes swept by default.
pub const DEFAULT_FRACTIONS: [f64; 6] = [0.05, 0.10, 0.15, 0.25, 0.35, 0.50];

/// Runs every policy at every budget.
pub fn sweep(trace: &Trace, budgets: &[u64], base: &SimOptions) -> Vec<SweepRow> {
    let total = base.catalog.total_bytes(&trace.runtimes).max(1);
    let mut rows = Vec::new();
    for &budget in budgets {
        let opts = SimOptions {
            budget,
            ..base.clone()
        };
        for kind in PolicyKind::ALL {
            rows.push(SweepRow {
                policy: kind.to_string(),
                budget_bytes: budget,
                budget_fraction: budget as f64 / total as f64,
                report: simulate(trace, kind, &opts),
            });
        }
    }
    rows
}
