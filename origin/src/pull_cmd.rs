//! `prewarm pull` argument parsing and wiring (the work is in `prewarm_origin::pull`).

use clap::Args;

#[derive(Args)]
pub(crate) struct PullArgs {}

pub(crate) async fn run(_a: PullArgs) -> anyhow::Result<()> {
    anyhow::bail!("pull is being wired")
}
