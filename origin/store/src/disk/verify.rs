//! `DiskStore::verify`: re-hash every object under the data directory and quarantine the damaged ones (`prewarm store verify`).

use std::fs;
use std::path::Path;

use prewarm_shared::Digest;
use serde::Serialize;

use super::quarantine::{identity, plausible_size, Damage};
use super::DiskStore;
use crate::Kind;

/// What [`DiskStore::verify`] checked and quarantined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreVerifyReport {
    /// Entries of `blocks-v1/` and `manifests-v1/` examined, damaged ones included.
    pub objects_checked: u64,
    /// Bytes read and hashed.
    pub bytes_checked: u64,
    /// Damaged entries moved into `quarantine-v1/` (all of `damaged`).
    pub quarantined: u64,
    pub bytes_quarantined: u64,
    /// What was damaged, by path.
    pub damaged: Vec<DamagedObject>,
}

/// One damaged entry, already moved aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedObject {
    /// Where it was, relative to the data directory (`blocks-v1/3f/a9/3fa9…`).
    pub path: String,
    /// `block` or `manifest`, and the digest its name claims, when the name parses.
    pub kind: Option<&'static str>,
    pub digest: Option<Digest>,
    pub problem: Damage,
    /// What the bytes hash to, for [`Damage::HashMismatch`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Digest>,
    /// Its size, for a regular file (else 0).
    pub bytes: u64,
    /// Where it is now, relative to the data directory.
    pub moved_to: String,
}

impl DiskStore {
    /// Re-hashes every object file against the digest in its name and quarantines whatever is
    /// damaged (wrong bytes, an impossible size, unreadable, or something that is not an object
    /// file where objects live), so that it reads as missing and the next push repairs it.
    /// Streams each file; memory stays flat.
    ///
    /// Safe while the server runs: objects appear by rename, whole, and a file replaced by a
    /// put while it was being checked is left alone. Tags and `tmp/` are not checked.
    ///
    /// # Errors
    /// An I/O failure other than `EIO` while listing or reading stops the walk; what was
    /// quarantined before it stays quarantined (and was logged).
    pub fn verify(&self) -> std::io::Result<StoreVerifyReport> {
        let mut report = StoreVerifyReport::default();
        for kind in [Kind::Block, Kind::Manifest] {
            let top = self.kind_dir(kind);
            for first in list(&top)? {
                if self.stray_unless_fan_dir(&first, &mut report)? {
                    continue;
                }
                for second in list(&first)? {
                    if self.stray_unless_fan_dir(&second, &mut report)? {
                        continue;
                    }
                    for file in list(&second)? {
                        self.verify_file(kind, &file, &mut report)?;
                    }
                }
            }
        }
        report.damaged.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(report)
    }

    /// Quarantines `path` unless it is a two-hex-digit fan-out directory; true if it did.
    fn stray_unless_fan_dir(
        &self,
        path: &Path,
        report: &mut StoreVerifyReport,
    ) -> std::io::Result<bool> {
        let m = fs::symlink_metadata(path)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let fan = name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if fan && m.is_dir() {
            return Ok(false);
        }
        report.objects_checked += 1;
        self.record(path, &m, None, Damage::Stray, None, report);
        Ok(true)
    }

    /// One entry of a leaf fan-out directory.
    fn verify_file(
        &self,
        kind: Kind,
        path: &Path,
        report: &mut StoreVerifyReport,
    ) -> std::io::Result<()> {
        let m = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        report.objects_checked += 1;
        let digest = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            .filter(|d| self.object_path(kind, d) == path);
        let Some(expected) = digest.filter(|_| m.is_file()) else {
            self.record(
                path,
                &m,
                digest.map(|d| (kind, d)),
                Damage::Stray,
                None,
                report,
            );
            return Ok(());
        };
        let named = Some((kind, expected));
        if !plausible_size(kind, &expected, m.len()) {
            self.record(path, &m, named, Damage::ImpossibleSize, None, report);
            return Ok(());
        }
        match std::fs::File::open(path).and_then(prewarm_shared::Hasher::of_reader) {
            Ok((actual, len)) => {
                report.bytes_checked += len;
                if actual != expected {
                    self.record(path, &m, named, Damage::HashMismatch, Some(actual), report);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if super::is_eio(&e) => {
                self.record(path, &m, named, Damage::Unreadable, None, report);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Quarantines a damaged entry (unless a put replaced it meanwhile) and records it.
    fn record(
        &self,
        path: &Path,
        m: &fs::Metadata,
        named: Option<(Kind, Digest)>,
        problem: Damage,
        actual: Option<Digest>,
        report: &mut StoreVerifyReport,
    ) {
        let Some(moved) = self.quarantine(path, Some(identity(m)), problem) else {
            return;
        };
        let rel = |p: &Path| {
            p.strip_prefix(&self.root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let bytes = if m.is_file() { m.len() } else { 0 };
        report.quarantined += 1;
        report.bytes_quarantined += bytes;
        report.damaged.push(DamagedObject {
            path: rel(path),
            kind: named.map(|(k, _)| k.as_str()),
            digest: named.map(|(_, d)| d),
            problem,
            actual,
            bytes,
            moved_to: rel(&moved),
        });
    }
}

/// The entries of `dir`, sorted (a missing directory is empty).
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut v = rd
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    Ok(v)
}
