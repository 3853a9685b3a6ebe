//! The one check that a sandbox named in the path belongs to the caller: another user's sandbox is 404, as if it did not exist.

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prewarm_node::sandbox::SandboxError;

use super::SandboxState;
use crate::auth::{Caller, Need};
use crate::error::ApiError;

/// On every route the table marks [`Need::OwnSandbox`]: looks up the `{id}`'s user (a live
/// sandbox, else a paused one) and answers 404 (the same body as an absent sandbox) when the
/// caller may not see it. An id that is neither passes on, for the handler's own 404.
pub(crate) async fn guard(State(st): State<SandboxState>, req: Request, next: Next) -> Response {
    if req.extensions().get::<Need>() != Some(&Need::OwnSandbox) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let id = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params
            .iter()
            .find(|(k, _)| *k == "id")
            .map(|(_, v)| v.to_owned()),
        Err(e) => return e.into_response(),
    };
    let caller = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous);
    let Some(id) = id else {
        // The table says this route names a sandbox; a route that does not is a bug: closed.
        return ApiError::NotFound("no such sandbox".into()).into_response();
    };
    match owner_of(&st, &id).await {
        Ok(Some(owner)) if !caller.sees(&owner) => {
            return ApiError::from(SandboxError::NotFound(id)).into_response();
        }
        Ok(_) => {}
        // Closed: without the record, no one's request goes on to read it.
        Err(e) => return e.into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The user of sandbox `id`, live or paused; `None` if there is no such sandbox.
async fn owner_of(st: &SandboxState, id: &str) -> Result<Option<String>, ApiError> {
    if let Some(svc) = &st.service {
        if let Ok(info) = svc.get(id) {
            return Ok(Some(info.user_id));
        }
    }
    let Some(s) = st.snapshots.as_ref() else {
        return Ok(None);
    };
    Ok(s.records.paused(id).await?.map(|p| p.request.user_id))
}
