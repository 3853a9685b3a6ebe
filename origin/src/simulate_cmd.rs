//! `prewarm simulate`: replay a trace through a warming policy on a virtual clock, sweep budgets, or generate a synthetic trace.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use prewarm_predict::generate::{generate, GenParams};
use prewarm_predict::sim::Report;
use prewarm_predict::sweep::{sweep, SweepRow, DEFAULT_FRACTIONS};
use prewarm_predict::trace::write_csv;
use prewarm_predict::{simulate, Catalog, PolicyKind, SimOptions, Trace};

use crate::cli_output;

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Trace file: CSV `timestamp,user,runtime`, or Azure Functions 2019 day files
    /// (`HashOwner,HashApp,HashFunction,Trigger,1..1440`; repeat --trace for consecutive days).
    #[arg(long, required_unless_present = "generate")]
    trace: Vec<PathBuf>,
    /// Policy: none, keepalive, popular, user-history, hybrid, prewarm.
    #[arg(long, default_value = "prewarm")]
    policy: String,
    /// Warm-disk budget: bytes, human units (`2GiB`, `500MB`), or a share of all the trace's
    /// runtimes (`25%`).
    #[arg(long, required_unless_present_any = ["sweep", "generate"])]
    budget: Option<String>,
    /// Print JSON (`hot_rate` a fraction, overall and per runtime).
    #[arg(long)]
    json: bool,
    /// Run every policy over a range of budgets; write a plot and a table.
    #[arg(long)]
    sweep: bool,
    /// Budgets for --sweep, comma-separated (same units as --budget). Default 5,10,15,25,35,50 %.
    #[arg(long, value_delimiter = ',')]
    budgets: Vec<String>,
    /// Where --sweep writes its plot (SVG).
    #[arg(long, default_value = "sweep.svg")]
    plot: PathBuf,
    /// Where --sweep writes its table (Markdown).
    #[arg(long, default_value = "sweep.md")]
    table: PathBuf,
    /// Runtime sizes and warm durations (JSON `{"runtimes": {NAME: {"bytes", "warm_secs"}},
    /// "default": {…}}`). Default: python-data's measured figures, others scaled by size.
    #[arg(long)]
    runtimes: Option<PathBuf>,
    /// How long a sandbox lives after it is ready; its runtime is pinned meanwhile.
    #[arg(long, default_value_t = 60)]
    session_secs: u64,
    /// Nodes the users are spread over (user modulo nodes); each has the whole --budget and
    /// its own predictor.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Write a synthetic trace to this file instead of simulating (see docs/PREDICTION.md).
    #[arg(long, value_name = "OUT")]
    generate: Option<PathBuf>,
    /// --generate: number of events.
    #[arg(long, default_value_t = GenParams::default().events)]
    events: u64,
    /// --generate: number of users.
    #[arg(long, default_value_t = GenParams::default().users)]
    users: u32,
    /// --generate: days covered.
    #[arg(long, default_value_t = GenParams::default().days)]
    days: u32,
    /// --generate: random seed (the same seed gives the same trace).
    #[arg(long, default_value_t = GenParams::default().seed)]
    seed: u64,
}

pub(crate) async fn run(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(a))
        .await
        .context("the simulation thread failed")?
}

fn run_blocking(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = match &a.runtimes {
        Some(p) => Catalog::from_json(p)?,
        None => Catalog::standard(),
    };
    if let Some(out) = &a.generate {
        return generate_cmd(&a, out, &catalog);
    }
    let trace = Trace::read(&a.trace)?;
    let total = catalog.total_bytes(&trace.runtimes);
    let base = SimOptions {
        budget: 0,
        session_secs: a.session_secs,
        catalog,
        nodes: a.nodes,
    };
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if a.sweep {
        let budgets: Vec<u64> = if a.budgets.is_empty() {
            DEFAULT_FRACTIONS
                .iter()
                .map(|f| (total as f64 * f) as u64)
                .collect()
        } else {
            a.budgets
                .iter()
                .map(|b| parse_budget(b, total))
                .collect::<anyhow::Result<_>>()?
        };
        let rows = sweep(&trace, &budgets, &base);
        prewarm_predict::plot::plot(&rows, &a.plot)?;
        let table = sweep_table(&rows);
        write_atomic(&a.table, &table)?;
        cli_output::result(&rows, a.json, |_| {
            format!(
                "{table}\nplot: {}\ntable: {}",
                a.plot.display(),
                a.table.display()
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    let policy: PolicyKind = a.policy.parse()?;
    let budget_arg = a.budget.as_deref().unwrap_or_default();
    let opts = SimOptions {
        budget: parse_budget(budget_arg, total)?,
        ..base
    };
    let report = simulate(&trace, policy, &opts);
    cli_output::result(&report, a.json, human_report);
    Ok(ExitCode::SUCCESS)
}

fn generate_cmd(a: &SimulateArgs, out: &PathBuf, catalog: &Catalog) -> anyhow::Result<ExitCode> {
    let p = GenParams {
        events: a.events,
        users: a.users,
        days: a.days,
        seed: a.seed,
        ..GenParams::default()
    };
    let trace = generate(&p)?;
    write_csv(out, &trace)?;
    let total = catalog.total_bytes(&trace.runtimes);
    let summary = serde_json::json!({
        "trace": out,
        "events": trace.events.len(),
        "users": trace.users.len(),
        "runtimes": trace.runtimes.len(),
        "all_runtimes_bytes": total,
        "budget_25_percent_bytes": total / 4,
        "params": p,
    });
    cli_output::result(&summary, a.json, |_| {
        format!(
            "wrote {} events of {} users over {} runtimes to {} (all runtimes {}, 25 % = {})",
            trace.events.len(),
            trace.users.len(),
            trace.runtimes.len(),
            out.display(),
            gib(total),
            gib(total / 4)
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Bytes, human units (bytesize: `2GiB`, `500 MB`), or `N%` of `total`.
fn parse_budget(s: &str, total: u64) -> anyhow::Result<u64> {
    let s = s.trim();
    let bytes = if let Some(pct) = s.strip_suffix('%') {
        let f: f64 = pct
            .trim()
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite() && *f > 0.0 && *f <= 100.0)
            .with_context(|| format!("budget {s:?}: a percentage must be in (0, 100]"))?;
        (total as f64 * f / 100.0) as u64
    } else {
        match s.parse::<bytesize::ByteSize>() {
            Ok(b) => b.as_u64(),
            Err(e) => bail!(
                "budget {s:?} is not a size (bytes, or units such as 2GiB, 500MB, or 25%): {e}"
            ),
        }
    };
    if bytes == 0 {
        bail!("budget {s:?} is zero: nothing could ever be warm");
    }
    Ok(bytes)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn pct(f: f64) -> String {
    format!("{:.1} %", f * 100.0)
}

fn human_report(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "policy {}, budget {}, {} creates",
        r.policy,
        gib(r.budget_bytes),
        r.events
    );
    let _ = writeln!(
        s,
        "hot-start rate {} ({} cold starts, {} avoided against none, {} pinned out by live sandboxes)",
        pct(r.hot_rate),
        r.cold_starts,
        r.cold_starts_avoided_vs_none,
        r.cold_starts_pinned_out
    );
    let _ = writeln!(
        s,
        "warm work {} warms, {:.0} s, {}; wasted {} warms, {:.0} s, {}",
        r.warm_work.warms,
        r.warm_work.seconds,
        gib(r.warm_work.bytes),
        r.wasted_warm_work.warms,
        r.wasted_warm_work.seconds,
        gib(r.wasted_warm_work.bytes)
    );
    let _ = writeln!(
        s,
        "wait p50 {:.3} s, p99 {:.3} s",
        r.wait_p50_secs, r.wait_p99_secs
    );
    let _ = writeln!(
        s,
        "{:<14} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "runtime", "creates", "hot", "cold", "avoided", "p99 wait"
    );
    for (name, x) in &r.runtimes {
        let _ = writeln!(
            s,
            "{:<14} {:>9} {:>8} {:>8} {:>9} {:>8.2}s",
            name,
            x.events,
            pct(x.hot_rate),
            x.cold_starts,
            x.cold_starts_avoided_vs_none,
            x.wait_p99_secs
        );
    }
    s.trim_end().to_owned()
}

/// The sweep as a Markdown table, one row per policy and budget.
fn sweep_table(rows: &[SweepRow]) -> String {
    let mut s = String::from(
        "| budget | policy | hot starts | cold starts | of which pinned out | avoided vs none | warm work (s / GiB) | wasted (s / GiB) | wait p50 / p99 (s) | python-ml | python-data | node-web | go |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let x = &r.report;
        let rt = |n: &str| {
            x.runtimes
                .get(n)
                .map_or("–".to_owned(), |v| pct(v.hot_rate))
        };
        let _ = writeln!(
            s,
            "| {} ({:.0} %) | {} | {} | {} | {} | {} | {:.0} / {:.1} | {:.0} / {:.1} | {:.2} / {:.2} | {} | {} | {} | {} |",
            gib(r.budget_bytes),
            r.budget_fraction * 100.0,
            r.policy,
            pct(x.hot_rate),
            x.cold_starts,
            x.cold_starts_pinned_out,
            x.cold_starts_avoided_vs_none,
            x.warm_work.seconds,
            x.warm_work.bytes as f64 / (1u64 << 30) as f64,
            x.wasted_warm_work.seconds,
            x.wasted_warm_work.bytes as f64 / (1u64 << 30) as f64,
            x.wait_p50_secs,
            x.wait_p99_secs,
            rt("python-ml"),
            rt("python-data"),
            rt("node-web"),
            rt("go"),
        );
    }
    s
}

fn write_atomic(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
