//! Schemas of the bodies handlers build as JSON in place (`json!`), and of raw byte bodies: documentation types, never constructed.
//!
//! Drift between these and the handlers is what `scripts/api-test` (schemathesis' response
//! schema check against the running server) catches.
#![allow(dead_code)]

use std::borrow::Cow;

use prewarm_shared::sandbox::{SandboxInfo, WarmStats};
use prewarm_shared::Digest;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Raw bytes (a block, a file, a tar stream).
pub(super) struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Binary")
    }
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub(super) struct Health {
    /// Always `ok`: the process answers.
    status: String,
}

/// One storage tier's health.
#[derive(ToSchema)]
pub(super) struct TierHealth {
    name: String,
    /// `memory`, `disk`, `redis`, `s3`, …
    role: String,
    /// Holds the only acknowledged copy of writes.
    durable: bool,
    required: bool,
    /// `ok`, or the failure kind (`unavailable`, `integrity`, `error`).
    status: String,
}

/// `GET /readyz`: 200 when every required tier answers, else 503 with the same body.
#[derive(ToSchema)]
pub(super) struct Ready {
    ready: bool,
    tiers: Vec<TierHealth>,
}

/// How one warm runtime came to be warm.
#[derive(ToSchema)]
pub(super) struct WarmRuntime {
    runtime: String,
    digest: Digest,
    /// `warmed_here`, `fetched_warmed` or `warmed_and_published`.
    warmed: String,
    /// The warmed manifest, when there is one.
    warmed_manifest: Option<Digest>,
}

/// `GET /v1/warm/stats`.
#[derive(ToSchema)]
pub(super) struct WarmStatsView {
    #[serde(flatten)]
    stats: WarmStats,
    runtimes: Vec<WarmRuntime>,
}

/// `GET /v1/sandboxes/{id}` of a paused sandbox, and `POST …/pause`.
#[derive(ToSchema)]
pub(super) struct Paused {
    sandbox_id: String,
    /// Always `paused`.
    status: String,
    snapshot: Digest,
    /// Present on `GET /v1/sandboxes/{id}`.
    #[schema(required = false)]
    user_id: String,
    /// Present on `GET /v1/sandboxes/{id}`.
    #[schema(required = false)]
    runtime: String,
}

/// `GET /v1/sandboxes/{id}`: a running (or warming) sandbox, or a paused one.
#[derive(ToSchema)]
#[serde(untagged)]
pub(super) enum SandboxStatus {
    Live(SandboxInfo),
    Paused(Paused),
}

/// `GET /v1/sandboxes`.
#[derive(ToSchema)]
pub(super) struct SandboxList {
    sandboxes: Vec<SandboxInfo>,
}

/// A want of the predictor and what became of it (`POST /v1/users/{id}/hint`, and
/// `GET /v1/predictions`).
#[derive(ToSchema)]
pub(super) struct WantView {
    runtime: String,
    score: f64,
    /// The rule that fired.
    rule: String,
    /// Until when (the predictor's clock, seconds) the runtime is wanted warm.
    until: u64,
    /// `wanted`, `warm`, `warming`, `queued`, `no-room`, `over-budget` or `unresolved`.
    state: String,
}

/// `POST /v1/users/{id}/hint`.
#[derive(ToSchema)]
pub(super) struct Hinted {
    /// The origin's policy (`none`, `keepalive`, `popular`, `user-history`, `hybrid`, `prewarm`).
    policy: String,
    wants: Vec<WantView>,
}

/// `POST /v1/predict/clock`.
#[derive(ToSchema)]
pub(super) struct ClockSet {
    now: u64,
    /// Ticks run to get there.
    ticks: u64,
}

/// `POST /v1/predict/clock` body.
#[derive(ToSchema)]
pub(super) struct ClockBody {
    /// The predictor's new time (seconds); never earlier than now.
    now: u64,
}

/// A sandbox made from a snapshot: `POST /v1/sandboxes` with `snapshot`, and resume.
#[derive(ToSchema)]
pub(super) struct Cloned {
    #[serde(flatten)]
    info: SandboxInfo,
    snapshot: Digest,
    /// How the workspace was cloned (`reflink`, `copy`, …).
    clone: String,
}

/// `POST /v1/sandboxes`: a new sandbox (201 hot, 202 warming), or one cloned from a snapshot
/// (then with `snapshot` and `clone`). One schema, not `oneOf` the two: a clone's body would
/// match both.
#[derive(ToSchema)]
pub(super) struct Created {
    #[serde(flatten)]
    info: SandboxInfo,
    /// The snapshot it was made from, when it was.
    #[schema(required = false)]
    snapshot: Digest,
    /// How the workspace was cloned, when it was.
    #[schema(required = false)]
    clone: String,
}

/// `PUT …/files/{path}` (201).
#[derive(ToSchema)]
pub(super) struct Written {
    path: String,
    size: u64,
    /// Permission bits, as a number.
    mode: u32,
}

/// One entry of a directory listing.
#[derive(ToSchema)]
pub(super) struct FileEntry {
    name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    kind: String,
    size: u64,
    /// Permission bits, as a number (`0o644` is 420).
    mode: u32,
    /// Last modification, seconds since the Unix epoch.
    mtime: i64,
    /// A symlink's target, as stored.
    #[schema(required = false)]
    target: String,
}

/// `GET …/files/{dir}?list`.
#[derive(ToSchema)]
pub(super) struct Listing {
    /// The directory, relative to the workspace (`""`: the root).
    path: String,
    entries: Vec<FileEntry>,
}

/// `POST …/files:upload`.
#[derive(ToSchema)]
pub(super) struct Unpacked {
    /// The directory unpacked into (`""`: the root).
    dir: String,
    /// Entries written.
    entries: u64,
}

/// An entry a snapshot left out.
#[derive(ToSchema)]
pub(super) struct Skipped {
    path: String,
    reason: String,
}

/// `POST …/snapshot` (201).
#[derive(ToSchema)]
pub(super) struct Taken {
    snapshot: Digest,
    parent: Option<Digest>,
    runtime: Digest,
    files: u64,
    bytes_total: u64,
    new_blocks: u64,
    reused_blocks: u64,
    bytes_new: u64,
    files_read: u64,
    files_reused: u64,
    duration_ms: u64,
    skipped: Vec<Skipped>,
    label: Option<String>,
}

/// `POST …/snapshot` body (optional).
#[derive(ToSchema)]
pub(super) struct SnapshotBody {
    label: Option<String>,
}

/// `POST …/fork` body.
#[derive(ToSchema)]
pub(super) struct ForkBody {
    /// 1-16 sandboxes.
    #[schema(minimum = 1, maximum = 16)]
    count: u32,
    /// When given, the sandbox must be this user's (else 404).
    user_id: Option<String>,
}

/// `POST …/fork` (201).
#[derive(ToSchema)]
pub(super) struct Forked {
    snapshot: Digest,
    clone: Option<String>,
    sandboxes: Vec<SandboxInfo>,
}

/// How one user sees a snapshot.
#[derive(ToSchema)]
pub(super) struct SnapshotView {
    snapshot: Digest,
    /// The runtime's manifest.
    runtime: Digest,
    parent: Option<Digest>,
    /// Ancestry up to the root (`GET /v1/snapshots/{digest}` only; else empty).
    parents: Vec<Digest>,
    files: u64,
    bytes_total: u64,
    /// Whether the user owns it (else it was shared with them).
    owner: bool,
    label: Option<String>,
    created_ms: Option<u64>,
    /// Users it is shared with; `null` unless the user owns it.
    shared_with: Option<Vec<String>>,
}

/// `GET /v1/snapshots`.
#[derive(ToSchema)]
pub(super) struct SnapshotList {
    snapshots: Vec<SnapshotView>,
}

/// `POST /v1/snapshots/{digest}/share` body.
#[derive(ToSchema)]
pub(super) struct ShareBody {
    /// The owner sharing it.
    owner: String,
    /// The user it is shared with (1-256 bytes).
    user_id: String,
}

/// Snapshot timings and byte counts since the origin started.
#[derive(ToSchema)]
pub(super) struct SnapshotStatsView {
    snapshots_taken: u64,
    clones_made: u64,
    snapshot_ms_p50: Option<u64>,
    snapshot_ms_p99: Option<u64>,
    clone_ms_p50: Option<u64>,
    clone_ms_p99: Option<u64>,
    snapshot_bytes_logical: u64,
    snapshot_bytes_new: u64,
    snapshot_reuse_percent: Option<f64>,
}

/// `GET /v1/snapshots/stats`.
#[derive(ToSchema)]
pub(super) struct SnapshotStats {
    snapshots: SnapshotStatsView,
}
