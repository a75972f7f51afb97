//! Binding and serving: plain HTTP or TLS (rustls), with connection limits and graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;

/// Certificate and key (PEM files) for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: cannot load {cert} / {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serve on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Serves `app` on `addr` until `shutdown` resolves, then drains in-flight requests for
/// up to `drain`. `bound` receives the actual address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    tls: Option<TlsConfig>,
    max_header_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
    bound: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ServeError> {
    let handle = Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(drain));
    });
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(a) = h.listening().await {
            bound(a);
        }
    });
    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
    // hyper refuses header sections larger than its buffer with 431 before the request
    // reaches the router; the router's own check gives the exact limit and a JSON body.
    let buf = (max_header_bytes * 2).max(8192);
    let bind_err = |source| ServeError::Bind { addr, source };
    match tls {
        Some(t) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                    source,
                })?;
            let mut server = axum_server::bind_rustls(addr, config).handle(handle);
            server
                .http_builder()
                .http1()
                .max_buf_size(buf)
                .header_read_timeout(Duration::from_secs(10));
            server.serve(svc).await.map_err(bind_err)
        }
        None => {
            let mut server = axum_server::bind(addr).handle(handle);
            server
                .http_builder()
                .http1()
                .max_buf_size(buf)
                .header_read_timeout(Duration::from_secs(10));
            server.serve(svc).await.map_err(bind_err)
        }
    }
}
