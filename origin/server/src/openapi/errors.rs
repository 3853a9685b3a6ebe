//! The error responses of the document: the one error body under each status the API sends, and the ones every operation may get.

#![allow(dead_code)] // the response types exist for their derive only

use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, ToResponse};

use prewarm_shared::wire::ErrorBody;

/// A parameter or body that is not what the endpoint takes (`code` names what: `bad_request`,
/// `bad_json`, `bad_digest`, `bad_name`, `bad_path`, …).
#[derive(ToResponse)]
pub(super) struct BadRequest(ErrorBody);

/// No token, or not the origin's (`code`: `unauthorized`).
#[derive(ToResponse)]
pub(super) struct Unauthorized(ErrorBody);

/// A token whose scope does not allow this route, or a sandbox token naming another user
/// (`code`: `forbidden`).
#[derive(ToResponse)]
pub(super) struct Forbidden(ErrorBody);

/// No such object, tag, sandbox, file or snapshot, or not this user's (`code`: `not_found`).
#[derive(ToResponse)]
pub(super) struct NotFound(ErrorBody);

/// The resource is not in a state that allows this: a manifest before its blocks
/// (`missing_blocks`), exec on a sandbox still warming (`not_ready`), a directory where a file
/// is wanted (`is_dir`, `not_dir`, `not_file`).
#[derive(ToResponse)]
pub(super) struct Conflict(ErrorBody);

/// The body is over the route's limit, named in the message (`code`: `too_large`).
#[derive(ToResponse)]
pub(super) struct TooLarge(ErrorBody);

/// The range is outside the object (`code`: `range_not_satisfiable`); `Content-Range: bytes */size`.
#[derive(ToResponse)]
pub(super) struct RangeNotSatisfiable(ErrorBody);

/// Bytes that do not hash to their digest (`digest_mismatch`), or a manifest the repository
/// refuses (its own code).
#[derive(ToResponse)]
pub(super) struct Unprocessable(ErrorBody);

/// A fault of the origin; the message is generic, the cause is logged (`code`: `internal`).
#[derive(ToResponse)]
pub(super) struct Internal(ErrorBody);

/// A storage tier is down; retry after `Retry-After` seconds (`code`: `unavailable`).
#[derive(ToResponse)]
pub(super) struct Unavailable(ErrorBody);

/// The request took longer than the origin's request timeout.
#[derive(ToResponse)]
pub(super) struct Timeout(ErrorBody);

/// Adds the errors any operation may answer with (500, 503, 504) and, to protected ones, 401.
pub(super) struct CommonErrors;

fn add(op: &mut Operation, status: &str, name: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(op, "401", "Unauthorized");
                }
                add(op, "500", "Internal");
                add(op, "503", "Unavailable");
                add(op, "504", "Timeout");
            }
        }
    }
}
