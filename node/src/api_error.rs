//! The error answer of every JSON endpoint, public or internal: an HTTP status and an
//! [`ErrorBody`] with a stable [`ErrorCode`] and a message for people.
//!
//! Handlers return [`ApiError`]; [`error`] builds the same answer where a handler returns a bare
//! [`Response`]. The public API's table of codes and statuses is in `gateway/routes.rs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashstock_api::{ErrorBody, ErrorCode};

/// An error answer of any HTTP endpoint: a status, a stable machine-readable code, a message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to send in `Retry-After`, for answers that ask the client to come back.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    /// The request breaks a rule of the API: nothing changed.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// This node's storage failed a read; another replica may answer.
    pub fn storage(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            e.to_string(),
        )
    }

    pub fn unknown_product(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownProduct,
            format!("no product {id:?}"),
        )
    }

    pub fn unknown_order(id: u64) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownOrder,
            format!("no order {id} on this replica (it may be archived, or not applied here yet)"),
        )
    }

    /// No such hold, or not for the token shown (the two answers are the same).
    pub fn unknown_hold(id: u64) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownHold,
            format!(
                "no hold {id} for this token on this replica (a finished hold is forgotten after \
                 the idempotency window)"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.code, self.message);
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// An error answer: `status` with an [`ErrorBody`].
pub fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        code,
        message: message.into(),
    };
    (status, Json(body)).into_response()
}
