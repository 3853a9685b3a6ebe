//! `prewarm gc`: mark-and-sweep of the origin's store (every tier `prewarm serve` would use), with a grace period and a dry run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use prewarm_server::config::{Config, Overrides};
use prewarm_server::gc::{collect, GcOptions, GcReport, GcStores};

use crate::cli_output;
use crate::serve_cmd::SettingArgs;

#[derive(Args)]
pub(crate) struct GcArgs {
    /// Objects written more recently than this are never deleted (`90s`, `30m`, `12h`, `7d`).
    /// It must exceed the longest push: a block uploaded for a manifest not pushed yet is
    /// unreferenced until then.
    #[arg(long, default_value = "24h", value_parser = parse_grace)]
    grace: Duration,
    /// Report what would be deleted (counts and bytes); delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    /// The TOML config `prewarm serve` runs with. Its flags and variables apply here too, so
    /// gc sees the same data directory, Redis and bucket.
    #[arg(long, env = "PREWARM_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingArgs,
}

pub(crate) async fn run(a: GcArgs) -> anyhow::Result<()> {
    let cfg = Config::load_with(a.config.as_deref(), a.settings.given())?;
    let cfg = cfg.resolve(Overrides::default(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?;
    let tiers = prewarm_server::open_tiers(&cfg)
        .await
        .context("opening the store's tiers")?;
    let stores = GcStores {
        objects: &tiers,
        tags: &tiers,
        records: &tiers,
    };
    let report = collect(
        &stores,
        GcOptions {
            grace: a.grace,
            dry_run: a.dry_run,
        },
    )
    .await
    .with_context(|| format!("collecting garbage in {}", tiers.describe()))?;
    let failed = report.failed.len();
    cli_output::result(&report, a.json, human);
    if failed > 0 {
        bail!("{failed} deletion(s) failed; they are listed above and the next run retries them");
    }
    Ok(())
}

fn human(r: &GcReport) -> String {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut s = format!(
        "roots: {} tags ({} warmed), {} snapshot records, {} paused, {} young manifests\n",
        r.roots.tags,
        r.roots.warmed_tags,
        r.roots.snapshot_records,
        r.roots.paused_records,
        r.roots.young_manifests
    );
    for (what, k) in [("manifests", &r.manifests), ("blocks", &r.blocks)] {
        s.push_str(&format!(
            "{what}: {} listed ({}), {} reachable, {} unreferenced but younger than the grace period; {verb} {} ({})\n",
            k.listed,
            bytesize::ByteSize(k.listed_bytes),
            k.reachable,
            k.young_unreferenced,
            k.deleted,
            bytesize::ByteSize(k.deleted_bytes),
        ));
    }
    if r.rescued > 0 {
        s.push_str(&format!(
            "{} object(s) became reachable during the run and were kept\n",
            r.rescued
        ));
    }
    for d in &r.dangling {
        s.push_str(&format!(
            "dangling: {} refers to missing manifest {}\n",
            d.from, d.missing
        ));
    }
    for f in &r.failed {
        s.push_str(&format!("failed: {f}\n"));
    }
    s.pop();
    s
}

/// `90s`, `30m`, `12h`, `7d`, or plain seconds.
fn parse_grace(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 12h or 7d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_grace;
    use std::time::Duration;

    #[test]
    fn grace_durations() {
        assert_eq!(parse_grace("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("0"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_grace("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            parse_grace("1w").is_err() && parse_grace("h").is_err() && parse_grace("").is_err()
        );
    }
}
