//! The sweep phase of gc: pick unreferenced objects older than the grace period, re-check the roots, delete manifests then blocks.

use std::collections::HashSet;
use std::time::SystemTime;

use prewarm_shared::Digest;
use prewarm_store::{Kind, Listed};

use super::mark::Marks;
use super::{GcError, GcReport, GcStores, KindReport};

/// Sweeps `manifests` and `blocks` (the listings taken before marking) against `marks`.
pub(super) async fn sweep(
    s: &GcStores<'_>,
    marks: &mut Marks,
    manifests: Vec<Listed>,
    blocks: Vec<Listed>,
    cutoff: SystemTime,
    report: &mut GcReport,
    dry_run: bool,
) -> Result<(), GcError> {
    let doomed_manifests = pick(&manifests, &marks.manifests, cutoff, &mut report.manifests);
    recheck(s, marks, cutoff, report).await?;
    let doomed_manifests = spare(doomed_manifests, &marks.manifests, report);
    delete(
        s,
        Kind::Manifest,
        &doomed_manifests,
        dry_run,
        &mut report.manifests,
        &mut report.failed,
    )
    .await;

    let doomed_blocks = pick(&blocks, &marks.blocks, cutoff, &mut report.blocks);
    recheck(s, marks, cutoff, report).await?;
    let doomed_blocks = spare(doomed_blocks, &marks.blocks, report);
    delete(
        s,
        Kind::Block,
        &doomed_blocks,
        dry_run,
        &mut report.blocks,
        &mut report.failed,
    )
    .await;

    report.manifests.reachable = count_in(&manifests, &marks.manifests);
    report.blocks.reachable = count_in(&blocks, &marks.blocks);
    Ok(())
}

/// Unmarked objects written before `cutoff`; counts the listing and the young unreferenced.
fn pick(
    listed: &[Listed],
    marked: &HashSet<Digest>,
    cutoff: SystemTime,
    r: &mut KindReport,
) -> Vec<Listed> {
    r.listed = listed.len() as u64;
    r.listed_bytes = listed.iter().map(|l| l.size).sum();
    let unmarked = listed.iter().filter(|l| !marked.contains(&l.digest));
    let (old, young): (Vec<&Listed>, Vec<&Listed>) = unmarked.partition(|l| l.written <= cutoff);
    r.young_unreferenced = young.len() as u64;
    old.into_iter().cloned().collect()
}

/// Lists the roots and manifests again and marks whatever became reachable since.
async fn recheck(
    s: &GcStores<'_>,
    marks: &mut Marks,
    cutoff: SystemTime,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let manifests = s.objects.list(Kind::Manifest).await?;
    marks.roots(s, &manifests, cutoff, report).await
}

/// `doomed` without what is now marked; those count as rescued.
fn spare(doomed: Vec<Listed>, marked: &HashSet<Digest>, report: &mut GcReport) -> Vec<Listed> {
    let before = doomed.len();
    let kept: Vec<Listed> = doomed
        .into_iter()
        .filter(|l| !marked.contains(&l.digest))
        .collect();
    report.rescued += (before - kept.len()) as u64;
    kept
}

async fn delete(
    s: &GcStores<'_>,
    kind: Kind,
    doomed: &[Listed],
    dry_run: bool,
    r: &mut KindReport,
    failed: &mut Vec<String>,
) {
    for l in doomed {
        if !dry_run {
            if let Err(e) = s.objects.delete(kind, &l.digest).await {
                tracing::warn!(kind = kind.as_str(), digest = %l.digest, error = %e, "gc: delete failed");
                failed.push(format!("{} {}: {e}", kind.as_str(), l.digest));
                continue;
            }
            tracing::info!(kind = kind.as_str(), digest = %l.digest, bytes = l.size, "gc: deleted");
        }
        r.deleted += 1;
        r.deleted_bytes += l.size;
    }
}

fn count_in(listed: &[Listed], marked: &HashSet<Digest>) -> u64 {
    listed.iter().filter(|l| marked.contains(&l.digest)).count() as u64
}
