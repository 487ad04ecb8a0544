//! The baselines the benchmark drives with the same load generator, on the same machine:
//!
//! - [`bare`]: a bare axum server that answers every product view with one fixed JSON body
//!   shaped like a gateway's: the ceiling of what a view can cost here.
//! - [`relational`]: the textbook answer, PostgreSQL (fsync and synchronous commit on) behind an
//!   axum endpoint with the gateway's URL shapes, through a pool of C = 300 connections.
//! - [`redis_stack`]: the flash-sale stack, Redis behind an axum endpoint, a purchase one Lua
//!   script: in memory only, one server, no replication.
//!
//! All three speak enough of the public API (`/v1/products/...`) for the load generator's workloads,
//! set-up and final check to run against them unchanged.

pub mod bare;
pub mod redis_stack;
pub mod relational;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashstock_api::ErrorBody;

/// An error in the public API's shape.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            code: flashstock_api::ErrorCode::parse(code),
            message: message.into(),
        }),
    )
        .into_response()
}

/// `201 Created` with the new product, as the gateway answers a creation.
pub(crate) fn created(product: flashstock_api::Product) -> Response {
    (
        StatusCode::CREATED,
        Json(flashstock_api::ProductChanged {
            product: product.into(),
            replayed: false,
        }),
    )
        .into_response()
}

/// `409 product_exists`, as the gateway answers a creation of an id already taken.
pub(crate) fn product_exists(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "product_exists",
        format!("product {id:?} already exists"),
    )
}

/// The exit of a baseline binary named `name`: success, or the error on stderr and failure.
pub fn exit_code(name: &str, served: Result<(), String>) -> std::process::ExitCode {
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A purchase refused for what it is: `400 invalid_request` with this message.
pub(crate) struct Invalid(&'static str);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, "invalid_request", self.0)
    }
}

/// A purchase's idempotency key, or the gateway's refusal when the header is missing or the
/// quantity is zero.
pub(crate) fn purchase_key(
    headers: &axum::http::HeaderMap,
    request: &flashstock_api::PurchaseRequest,
) -> Result<String, Invalid> {
    let key = headers
        .get(flashstock_api::IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(Invalid("the Idempotency-Key header is required"))?;
    if request.quantity == 0 {
        return Err(Invalid("quantity must be positive"));
    }
    Ok(key.to_owned())
}

/// Serve `router` on `listener` (accepted connections without Nagle's delay) after printing
/// `listening on http://ADDR (what)`, the line the benchmark waits for; until SIGTERM or Ctrl-C.
pub async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    what: &str,
) -> Result<(), String> {
    println!(
        "listening on http://{} ({what})",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    axum::serve(nodelay(listener), router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| e.to_string())
}

/// A baseline's listener: accepted connections without Nagle's delay, as the gateways set them,
/// so that a comparison measures the servers and not the socket options.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn tap(stream: &mut tokio::net::TcpStream) {
        let _ = stream.set_nodelay(true);
    }
    listener.tap_io(tap as fn(&mut tokio::net::TcpStream))
}
