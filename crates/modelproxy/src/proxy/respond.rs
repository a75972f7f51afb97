//! The provider's answer to the agent. A compressed answer is refused (it could not be
//! checked for keys) and an over-cap one too; a small complete body is buffered,
//! redacted and answered with its length; a stream (SSE, or a body of unknown length)
//! is copied chunk by chunk by a pump on a blocking thread, redacted across chunk
//! boundaries and cut at the cap. Either way the call is accounted and audited before
//! the agent sees the end of the body.
//!
//! What this file is for: response bodies. What it is not for: response headers
//! ([`super::headers`]) or the exchange itself ([`super::upstream`]).

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;

use super::accounting::CallRecord;
use super::refusal::Refusal;
use super::upstream::{BodyShape, Fetched, FetchedBody};
use super::ModelProxy;
use crate::redact::{redact_bytes, StreamRedactor};
use crate::usage::{SseUsage, Usage};

impl ModelProxy {
    pub(super) async fn respond(self: Arc<Self>, call: CallRecord, fetched: Fetched) -> Response {
        let Fetched { parts, body } = fetched;
        let status = parts.status;
        let shape = BodyShape::of(&parts.headers);
        if shape.compressed {
            return self.refuse(
                &call,
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_compressed",
                    "the provider sent a compressed body, which the proxy cannot check for keys",
                ),
            );
        }
        let max = self.config.max_response_bytes;
        let headers = self.response_headers(&parts.headers);
        let too_large = |n: u64| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                format!("the provider's response ({n} bytes or more) exceeds the {max} byte limit"),
            )
        };
        if let Some(n) = shape.length {
            if n > max {
                return self.refuse(&call, too_large(n));
            }
        }
        let body = match body {
            FetchedBody::Read(read) => Ok(read),
            FetchedBody::Pending(body) if shape.whole() => {
                tokio::task::spawn_blocking(move || {
                    body.into_with_config().limit(max).read_to_vec()
                })
                .await
            }
            FetchedBody::Pending(body) => {
                // Streaming (SSE, or a body of unknown length): chunk by chunk.
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
                let proxy = Arc::clone(&self);
                let status_code = status.as_u16();
                let is_sse = shape.sse;
                tokio::task::spawn_blocking(move || {
                    proxy.pump(call, status_code, is_sse, body, tx)
                });
                let mut resp = Response::new(Body::new(ChannelBody { rx }));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                return resp;
            }
        };
        // Small, complete JSON: buffered, redacted, accounted, answered with a length.
        let bytes = match body {
            Ok(Ok(b)) => b,
            Ok(Err(ureq::Error::BodyExceedsLimit(_))) => {
                return self.refuse(&call, too_large(max.saturating_add(1)))
            }
            Ok(Err(e)) => {
                let code = if matches!(e, ureq::Error::Timeout(_)) {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream_read_failed")
                };
                let msg = self
                    .redactor
                    .redact(&format!("reading the provider's response failed: {e}"));
                return self.refuse(&call, Refusal::new(code.0, code.1, msg));
            }
            Err(_) => {
                return self.refuse(
                    &call,
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        "upstream worker failed",
                    ),
                )
            }
        };
        let usage = Usage::from_body(&bytes);
        let n = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let out = redact_bytes(&self.redactor, &bytes);
        self.account(&call.ident, usage);
        self.record(&call, status.as_u16(), n, usage, None);
        let mut resp = Response::new(Body::from(out));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// Copies an upstream body to the agent (blocking thread). Cuts the stream when the
    /// cap is passed or the provider fails; accounts and audits before the agent sees
    /// the end of the body.
    fn pump(
        &self,
        call: CallRecord,
        status: u16,
        is_sse: bool,
        body: ureq::Body,
        tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    ) {
        let max = self.config.max_response_bytes;
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        let mut total: u64 = 0;
        let mut sse = SseUsage::default();
        let mut whole = Vec::new();
        let mut red = StreamRedactor::new(self.redactor.clone(), self.keys.clone());
        let mut failure: Option<(&'static str, String)> = None;
        let mut client_gone = false;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some((
                        "upstream_read_failed",
                        format!("provider stream failed: {e}"),
                    ));
                    break;
                }
            };
            total = total.saturating_add(n as u64);
            if total > max {
                failure = Some((
                    "response_too_large",
                    format!("the provider's response exceeded the {max} byte limit; cut"),
                ));
                break;
            }
            let chunk = &buf[..n];
            if is_sse {
                sse.push(chunk);
            } else {
                whole.extend_from_slice(chunk);
            }
            let out = red.push(chunk);
            if !out.is_empty() && tx.blocking_send(Ok(Bytes::from(out))).is_err() {
                client_gone = true;
                break;
            }
        }
        let usage = if is_sse {
            sse.usage
        } else {
            Usage::from_body(&whole)
        };
        self.account(&call.ident, usage);
        match failure {
            None => {
                let tail = red.finish();
                if !client_gone && !tail.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(tail)));
                }
                self.record(&call, status, total, usage, None);
            }
            Some((code, msg)) => {
                tracing::warn!(session = %call.ident.session, code, "model proxy: response cut");
                self.record(
                    &call,
                    StatusCode::BAD_GATEWAY.as_u16(),
                    total,
                    usage,
                    Some(code),
                );
                let _ = tx.blocking_send(Err(io::Error::other(self.redactor.redact(&msg))));
            }
        }
        drop(tx);
    }
}

/// A response body fed by the pump thread.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}
