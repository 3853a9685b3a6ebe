//! `GET /v1/sandboxes/{id}/exec` as a WebSocket: output streamed while the command runs.
//!
//! Protocol: the client sends one text message, an [`ExecRequest`] as JSON. The server sends
//! `{"stream":"stdout"|"stderr","data":"…"}` messages as output arrives (UTF-8, never split
//! inside a character; invalid bytes replaced), then one `{"result":ExecResult}` — the same
//! body `POST …/exec` returns — or `{"error":{"code","message"}}`, and closes.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use prewarm_shared::sandbox::ExecRequest;
use prewarm_shared::wire::ErrorBody;
use serde_json::json;
use tokio::sync::mpsc;

use prewarm_node::jail::exec::Pipe;
use prewarm_node::sandbox::SandboxService;

use super::SandboxState;
use crate::error::{ApiError, ErrorCode};

/// Pieces of output in flight between the command and the socket.
const LIVE_BUFFER: usize = 64;

pub(super) async fn exec_ws(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let svc = super::routes::service(&state)?.clone();
    Ok(ws.on_upgrade(move |socket| run(socket, svc, id)))
}

async fn run(mut socket: WebSocket, svc: SandboxService, id: String) {
    let req = match socket.recv().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<ExecRequest>(t.as_str()),
        _ => return,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            let body = ErrorBody::new(
                ErrorCode::BadJson.as_str(),
                format!("first message must be an exec request: {e}"),
            );
            return finish(socket, json!(body)).await;
        }
    };
    let (tx, mut rx) = mpsc::channel(LIVE_BUFFER);
    let exec = svc.exec_live(&id, req, Some(tx));
    tokio::pin!(exec);
    let mut carry = [Vec::new(), Vec::new()];
    let result = loop {
        tokio::select! {
            r = &mut exec => break r,
            Some((pipe, data)) = rx.recv() => send_chunk(&mut socket, &mut carry, pipe, data).await,
        }
    };
    // The sender went with the finished command: what is buffered is all that is left.
    while let Ok((pipe, data)) = rx.try_recv() {
        send_chunk(&mut socket, &mut carry, pipe, data).await;
    }
    for (i, pipe) in [Pipe::Stdout, Pipe::Stderr].into_iter().enumerate() {
        if !carry[i].is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut carry[i])).into_owned();
            send_text(&mut socket, pipe, rest).await;
        }
    }
    let last = match result {
        Ok(res) => json!({ "result": res }),
        Err(e) => {
            let e = ApiError::from(e);
            json!(ErrorBody::new(e.code().as_str(), e.public_message()))
        }
    };
    finish(socket, last).await;
}

/// Sends the complete UTF-8 prefix of `carry + data`, keeping an unfinished character back.
async fn send_chunk(socket: &mut WebSocket, carry: &mut [Vec<u8>; 2], pipe: Pipe, data: Vec<u8>) {
    let buf = &mut carry[pipe as usize];
    buf.extend_from_slice(&data);
    let text = match std::str::from_utf8(buf) {
        Ok(s) => {
            let s = s.to_string();
            buf.clear();
            s
        }
        // Only an unfinished character at the end: keep it for the next piece.
        Err(e) if e.error_len().is_none() => {
            let rest = buf.split_off(e.valid_up_to());
            let s = String::from_utf8_lossy(buf).into_owned();
            *buf = rest;
            s
        }
        Err(_) => String::from_utf8_lossy(&std::mem::take(buf)).into_owned(),
    };
    if !text.is_empty() {
        send_text(socket, pipe, text).await;
    }
}

async fn send_text(socket: &mut WebSocket, pipe: Pipe, data: String) {
    let stream = match pipe {
        Pipe::Stdout => "stdout",
        Pipe::Stderr => "stderr",
    };
    // A client that left is not an error for the command; it still runs to completion.
    let _ = socket
        .send(Message::Text(
            json!({ "stream": stream, "data": data }).to_string().into(),
        ))
        .await;
}

async fn finish(mut socket: WebSocket, last: serde_json::Value) {
    let _ = socket.send(Message::Text(last.to_string().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}
