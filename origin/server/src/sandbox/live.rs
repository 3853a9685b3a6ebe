//! `GET /v1/sandboxes/{id}/exec` as a WebSocket: output streamed while the command runs.
//!
//! Protocol: the client sends one text message, an [`ExecRequest`] as JSON (or a [`RunRequest`],
//! which has `code`: run in the sandbox's interpreter; `GET …/run` is the same socket). The server sends
//! `{"stream":"stdout"|"stderr","data":"…"}` messages as output arrives (UTF-8, never split
//! inside a character; invalid bytes replaced), then one `{"result":ExecResult}` — the same
//! body `POST …/exec` (or `…/run`) returns — or `{"error":{"code","message"}}`, and closes.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use prewarm_shared::run::RunRequest;
use prewarm_shared::sandbox::ExecRequest;
use prewarm_shared::wire::ErrorBody;
use serde_json::json;
use tokio::sync::mpsc;

use prewarm_node::jail::exec::Pipe;
use prewarm_node::sandbox::SandboxService;

use super::SandboxState;
use crate::error::{ApiError, ErrorCode};

/// Pieces of output in flight between the command and the socket.
pub(super) const LIVE_BUFFER: usize = 64;

pub(super) async fn exec_ws(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let svc = super::routes::service(&state)?.clone();
    Ok(ws.on_upgrade(move |socket| run(socket, svc, id)))
}

async fn run(mut socket: WebSocket, svc: SandboxService, id: String) {
    let first = match socket.recv().await {
        Some(Ok(Message::Text(t))) => t,
        _ => return,
    };
    let (tx, rx) = mpsc::channel(LIVE_BUFFER);
    // A run request (it has `code`) runs in the sandbox's interpreter; anything else is exec.
    let is_run = serde_json::from_str::<serde_json::Value>(first.as_str())
        .is_ok_and(|v| v.get("code").is_some());
    let parsed = if is_run {
        serde_json::from_str::<RunRequest>(first.as_str()).map(Call::Run)
    } else {
        serde_json::from_str::<ExecRequest>(first.as_str()).map(Call::Exec)
    };
    match parsed {
        Ok(Call::Exec(req)) => stream(socket, svc.exec_live(&id, req, Some(tx)), rx).await,
        Ok(Call::Run(req)) => stream(socket, svc.run_code(&id, req, Some(tx)), rx).await,
        Err(e) => {
            let body = ErrorBody::new(
                ErrorCode::BadJson.as_str(),
                format!("first message must be an exec or a run request: {e}"),
            );
            finish(socket, json!(body)).await
        }
    }
}

/// The first message of a live socket.
enum Call {
    Exec(ExecRequest),
    Run(RunRequest),
}

/// Sends output from `rx` while `call` runs, then its result as `{"result":…}` (or the error
/// body), and closes: the protocol of every live socket (exec, run).
pub(super) async fn stream<T: serde::Serialize>(
    mut socket: WebSocket,
    call: impl std::future::Future<Output = Result<T, prewarm_node::sandbox::SandboxError>>,
    mut rx: mpsc::Receiver<(Pipe, Vec<u8>)>,
) {
    tokio::pin!(call);
    let mut carry = [Vec::new(), Vec::new()];
    // The socket is read while the call runs, so a client's pings are answered (the socket
    // queues the pong as it reads one); once the client closed it, it is no longer read. The
    // call runs to its end either way.
    let mut open = true;
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            Some((pipe, data)) = rx.recv() => send_chunk(&mut socket, &mut carry, pipe, data).await,
            msg = socket.recv(), if open => match msg {
                Some(Ok(Message::Close(_)) | Err(_)) | None => open = false,
                Some(Ok(_)) => {}
            },
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

pub(super) async fn finish(mut socket: WebSocket, last: serde_json::Value) {
    let _ = socket.send(Message::Text(last.to_string().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}
