//! Path docs of `/v1/sandboxes/{id}/files`: read, list, archive, write, delete and upload workspace files.
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use utoipa::OpenApi;

use super::views::{Binary, Listing, Unpacked, Written};

#[derive(OpenApi)]
#[openapi(paths(get_root, get_path, put_file, delete_path, upload))]
pub(super) struct Doc;

/// The workspace root: `?list` (its entries) or `?archive=tar` (its contents).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "files",
    params(
        ("id" = String, Path),
        ("list" = Option<String>, Query, description = "List the directory (any value)."),
        ("archive" = Option<String>, Query, description = "`tar`: the directory as a tar stream."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, content(
            (Listing = "application/json"),
            (Binary = "application/x-tar"),
        )),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
    ))]
fn get_root() {}

/// A file (streamed; `Range` works), or with `?list` / `?archive=tar` a directory.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/{path}", tag = "files",
    params(
        ("id" = String, Path),
        ("path" = String, Path, description = "Workspace-relative; may hold `/`."),
        ("list" = Option<String>, Query, description = "List the directory (any value)."),
        ("archive" = Option<String>, Query, description = "`tar`: the directory as a tar stream."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, content(
            (Binary = "application/octet-stream"),
            (Listing = "application/json"),
            (Binary = "application/x-tar"),
        )),
        (status = 206, description = "The range asked for.", body = Binary, content_type = "application/octet-stream"),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 416, response = super::errors::RangeNotSatisfiable),
    ))]
fn get_path() {}

/// Writes a file atomically from the body (parents made as needed).
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/{path}", tag = "files",
    params(
        ("id" = String, Path),
        ("path" = String, Path, description = "Workspace-relative; may hold `/`."),
        ("mode" = Option<String>, Query, description = "Octal permission bits, at most `0777` (default `0644`)."),
    ),
    request_body(content = Binary, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = Written),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn put_file() {}

/// Deletes a file, symlink or whole directory.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/files/{path}", tag = "files",
    params(
        ("id" = String, Path),
        ("path" = String, Path, description = "Workspace-relative; may hold `/`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn delete_path() {}

/// Unpacks a tar stream into a directory of the workspace.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files:upload", tag = "files",
    params(
        ("id" = String, Path),
        ("dir" = Option<String>, Query, description = "Workspace-relative directory (default: the root)."),
    ),
    request_body(description = "A tar stream, whatever the `Content-Type`.", content(
        (Binary = "application/x-tar"),
        (Binary = "application/octet-stream"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Unpacked),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn upload() {}
