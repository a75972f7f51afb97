//! A minimal HTTP/1.1 client over a unix socket, enough to talk to the host model proxy:
//! one `POST` per connection (`Connection: close`), a `Content-Length` request body, and
//! a response body framed by `Content-Length`, `Transfer-Encoding: chunked` or the end
//! of the connection — always capped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::provider::ProviderError;

/// Largest status line + headers accepted, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Posts JSON to the model proxy's socket.
#[derive(Debug, Clone)]
pub struct UnixHttp {
    pub socket: PathBuf,
    /// Per-read and per-write timeout.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_body: usize,
}

fn transport(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Transport(e.to_string())
}

impl UnixHttp {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(300),
            max_body: crate::provider::MAX_RESPONSE_BYTES,
        }
    }

    /// `POST path` with a JSON body and extra (non-secret) headers.
    pub fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, ProviderError> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|e| transport(format!("connect {}: {e}", self.socket.display())))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(transport)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(transport)?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: model-proxy\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nAccept-Encoding: identity\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut w = &stream;
        w.write_all(head.as_bytes()).map_err(transport)?;
        w.write_all(body).map_err(transport)?;
        w.flush().map_err(transport)?;
        read_response(BufReader::new(&stream), self.max_body)
    }
}

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::BadResponse(msg.into())
}

fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, ProviderError> {
    let mut buf = Vec::new();
    let n = r
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(transport)?;
    if n == 0 {
        return Err(transport("connection closed before the response head"));
    }
    if n > *budget {
        return Err(bad(format!(
            "response head is larger than {MAX_HEAD_BYTES} bytes"
        )));
    }
    *budget -= n;
    let line = String::from_utf8(buf).map_err(|_| bad("response head is not UTF-8"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Parses an HTTP/1.1 response from `r`.
pub fn read_response(mut r: impl BufRead, max_body: usize) -> Result<Response, ProviderError> {
    let mut budget = MAX_HEAD_BYTES;
    let status_line = read_line(&mut r, &mut budget)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!(
            "not an HTTP/1.x status line: {:?}",
            status_line.chars().take(80).collect::<String>()
        )));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| bad(format!("bad status code {code:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_line(&mut r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(bad("malformed response header"));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| bad(format!("bad content-length {v:?}")))?;
                if n > max_body {
                    return Err(ProviderError::TooLarge {
                        len: n,
                        max: max_body,
                    });
                }
                length = Some(n);
            }
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "content-encoding" if !v.eq_ignore_ascii_case("identity") => {
                return Err(bad(format!("unsupported content-encoding {v:?}")))
            }
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(&mut r, max_body)?
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        r.read_exact(&mut body).map_err(transport)?;
        body
    } else {
        let mut body = Vec::new();
        r.take(max_body as u64 + 1)
            .read_to_end(&mut body)
            .map_err(transport)?;
        if body.len() > max_body {
            return Err(ProviderError::TooLarge {
                len: body.len(),
                max: max_body,
            });
        }
        body
    };
    Ok(Response { status, body })
}

fn read_chunked(r: &mut impl BufRead, max_body: usize) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let line = read_line(r, &mut budget)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        if size == 0 {
            // Trailers, then the final blank line.
            let mut budget = MAX_HEAD_BYTES;
            while !read_line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ProviderError::TooLarge {
                len: body.len().saturating_add(size),
                max: max_body,
            });
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(transport)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).map_err(transport)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], max: usize) -> Result<Response, ProviderError> {
        read_response(raw, max)
    }

    #[test]
    fn content_length_chunked_and_eof_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"hello world");
        let r = parse(b"HTTP/1.0 403 Forbidden\r\n\r\nno", 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (403, &b"no"[..]));
    }

    #[test]
    fn caps_and_garbage_are_typed_errors() {
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 100),
            Err(ProviderError::TooLarge { .. })
        ));
        assert!(matches!(
            parse(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n",
                100
            ),
            Err(ProviderError::TooLarge { .. })
        ));
        assert!(matches!(
            parse(&[b'x'; 200], 100),
            Err(ProviderError::BadResponse(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n", 0).map(|r| r.body.len()),
            Ok(0)
        ));
        assert!(parse(b"", 100).is_err());
        assert!(parse(b"HTTP/1.1 2000 OK\r\n\r\n", 100).is_err());
        assert!(parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100
        )
        .is_err());
    }

    proptest::proptest! {
        #[test]
        fn read_response_is_total(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse(&b, 1000);
        }
    }
}
