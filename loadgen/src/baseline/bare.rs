//! The bare axum baseline: `GET /v1/products/{id}` answers one fixed JSON body shaped like a
//! gateway's product view (same size, same headers), with no storage behind it. A view on a
//! gateway does this plus one read of its local replica, so this is the ceiling for views.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use flashstock_api::{Product, ProductView, APPLIED_INDEX_HEADER};

/// The body every view gets.
pub fn fixed_body() -> Bytes {
    let view = ProductView {
        applied_index: 123_456,
        product: Product {
            id: "lg1234567890ab-std-0000042".into(),
            name: "Load product 42".into(),
            price_cents: 1042,
            stock: 999_999_000,
            initial_stock: 1_000_000_000,
            restocked: 0,
            sold: 1000,
        }
        .into(),
    };
    Bytes::from(serde_json::to_vec(&view).expect("a product view serializes"))
}

/// The router: product views only.
pub fn router() -> Router {
    let body = fixed_body();
    Router::new().route(
        "/v1/products/{id}",
        get(move |Path(_id): Path<String>| {
            let body = body.clone();
            async move { view(body) }
        }),
    )
}

fn view(body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static(APPLIED_INDEX_HEADER),
                HeaderValue::from_static("123456"),
            ),
        ],
        body,
    )
        .into_response()
}
