//! Request body I/O: reading an admitted call's body while refusing it as soon as it
//! passes the size cap, and reading (and dropping) a refused call's body so the client
//! gets the refusal instead of a reset connection.
//!
//! What this file is for: the bytes of the request body. What it is not for: what the
//! body means (the mock parses it, providers get it as is) or the response body
//! ([`super::respond`]).

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;

use super::accounting::CallRecord;
use super::refusal::Refusal;
use super::ModelProxy;

/// How long a refused call's body is read (and dropped) before the refusal is sent
/// regardless.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(10);

impl ModelProxy {
    /// Reads the request body, refusing it as soon as it passes the cap.
    pub(super) async fn read_body(
        &self,
        body: Body,
        call: &mut CallRecord,
    ) -> Result<Vec<u8>, Refusal> {
        use http_body::Body as _;
        let max = self.config.max_request_bytes;
        let mut body = body;
        let mut buf = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => break,
                Some(Ok(f)) => {
                    if let Some(data) = f.data_ref() {
                        let len = u64::try_from(buf.len() + data.len()).unwrap_or(u64::MAX);
                        if len > max {
                            call.request_bytes = len;
                            return Err(self.too_large(len));
                        }
                        buf.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("cannot read the request body: {e}"),
                    ))
                }
            }
        }
        call.request_bytes = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        Ok(buf)
    }

    /// Reads and drops a refused call's body, up to the request cap and for at most
    /// [`DISCARD_TIMEOUT`]; returns the bytes read.
    pub(super) async fn discard_body(&self, body: Body) -> u64 {
        use http_body::Body as _;
        let max = self.config.max_request_bytes;
        let mut body = body;
        let mut read: u64 = 0;
        let drain = async {
            while read <= max {
                match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            read = read.saturating_add(data.len() as u64);
                        }
                    }
                    None | Some(Err(_)) => break,
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
        read
    }
}
