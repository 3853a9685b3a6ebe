//! Path docs of the snapshot routes: snapshot, fork, pause, resume; list, read, share, delete snapshots; their stats.
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use utoipa::OpenApi;

use super::views::{
    Cloned, ForkBody, Forked, Paused, ShareBody, SnapshotBody, SnapshotList, SnapshotStats,
    SnapshotView, Taken,
};

#[derive(OpenApi)]
#[openapi(paths(snapshot, fork, pause, resume, list, stats, info, remove, share))]
pub(super) struct Doc;

/// Snapshots a sandbox's workspace; its user becomes an owner.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/snapshot", tag = "snapshots",
    params(("id" = String, Path)),
    request_body(content = Option<SnapshotBody>, description = "Optional; may be empty."),
    security(("bearer" = [])),
    responses(
        (status = 201, body = Taken),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn snapshot() {}

/// Snapshots a sandbox and makes `count` sandboxes from the snapshot.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fork", tag = "snapshots",
    params(("id" = String, Path)),
    request_body = ForkBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = Forked),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn fork() {}

/// Snapshots a sandbox and stops it; its id stays resolvable until resumed.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "snapshots",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Paused),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
    ))]
fn pause() {}

/// Brings a paused sandbox back under its id.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "snapshots",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Ready.", body = Cloned),
        (status = 202, description = "Warming.", body = Cloned),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
    ))]
fn resume() {}

/// The snapshots a user owns or has been shared.
#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots",
    params(("user_id" = String, Query)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SnapshotList),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn list() {}

/// Snapshot timings and byte counts since the origin started.
#[utoipa::path(get, path = "/v1/snapshots/stats", tag = "snapshots",
    security(("bearer" = [])),
    responses(
        (status = 200, body = SnapshotStats),
        (status = 404, response = super::errors::NotFound),
    ))]
fn stats() {}

/// One snapshot as the user sees it, with its ancestry.
#[utoipa::path(get, path = "/v1/snapshots/{digest}", tag = "snapshots",
    params(("digest" = String, Path, description = "`sha256:<hex>`"), ("user_id" = String, Query)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SnapshotView),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn info() {}

/// Drops the user's ownership; the snapshot goes when its last owner does.
#[utoipa::path(delete, path = "/v1/snapshots/{digest}", tag = "snapshots",
    params(("digest" = String, Path, description = "`sha256:<hex>`"), ("user_id" = String, Query)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn remove() {}

/// An owner shares a snapshot with another user.
#[utoipa::path(post, path = "/v1/snapshots/{digest}/share", tag = "snapshots",
    params(("digest" = String, Path, description = "`sha256:<hex>`")),
    request_body = ShareBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = SnapshotView),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn share() {}
