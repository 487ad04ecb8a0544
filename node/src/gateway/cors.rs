//! CORS on the public API (`/v1/...`), for the shop page's failover: a page served by one
//! gateway reads, streams and buys through another when its own stops answering, and the
//! browser lets it read those answers only if the other gateway grants the page's origin.
//!
//! The grant goes to exactly the origins of `gateway.public_origins`, compared byte for byte
//! with the request's `Origin`; never a wildcard, never credentials (the page sends none). Any
//! other origin gets no CORS header at all, so its scripts can send simple requests (as any
//! web page can) but never read an answer, nor send what needs a preflight: a purchase
//! (`content-type: application/json`, `idempotency-key`) or an admin call (`authorization`).
//!
//! A preflight (`OPTIONS` with `Access-Control-Request-Method`) from a listed origin, for `GET`
//! or `POST` with no headers but `content-type` and `idempotency-key` (what the page sends), is
//! answered 204 here, before any handler; every other `OPTIONS` goes on to the router, which
//! answers 405 `method_not_allowed` without a grant. Answers to listed origins expose
//! `Retry-After` (which the page reads after a 429); every answer of the API says
//! `Vary: Origin`, since its CORS headers depend on it.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Gateway;

/// The methods the page uses on the API.
const ALLOWED_METHODS: [Method; 2] = [Method::GET, Method::POST];
/// The request headers the page sets that are not CORS-safelisted, lower case.
const ALLOWED_HEADERS: [&str; 2] = ["content-type", flashstock_api::IDEMPOTENCY_KEY_HEADER];
/// How long a browser may cache a preflight's grant: ten minutes, short enough that removing
/// a gateway from the list takes effect soon.
const PREFLIGHT_MAX_AGE_SECONDS: u32 = 600;

/// The public API's paths: only they are granted; pages and assets are read from their own
/// gateway.
fn is_api(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// `request`'s `Origin` when it is one of `gateway.public_origins`.
fn granted_origin(gateway: &Gateway, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    gateway
        .node
        .config
        .gateway
        .public_origins
        .iter()
        .any(|listed| listed.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// Whether a preflight asks only for what the page uses.
fn preflight_allowed(headers: &HeaderMap) -> bool {
    let method = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    if !method.is_some_and(|m| ALLOWED_METHODS.contains(&m)) {
        return false;
    }
    headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .all(|name| {
                        ALLOWED_HEADERS
                            .iter()
                            .any(|allowed| name.eq_ignore_ascii_case(allowed))
                    })
            })
        })
}

/// What CORS makes of one request, decided from the request before it is served.
pub enum Cors {
    /// Not the API: nothing.
    Page,
    /// A granted preflight: answered at once ([`Cors::preflight`]), and no further.
    Preflight { origin: HeaderValue },
    /// An API answer: `Vary: Origin`, and the grant when the origin is listed.
    Api { grant: Option<HeaderValue> },
}

impl Cors {
    pub fn of(gateway: &Gateway, request: &Request) -> Cors {
        if !is_api(request.uri().path()) {
            return Cors::Page;
        }
        let origin = granted_origin(gateway, request.headers());
        let is_preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = !is_preflight || preflight_allowed(request.headers());
        match (is_preflight, allowed, origin) {
            (true, true, Some(origin)) => Cors::Preflight { origin },
            // A preflight asking for more than the page uses gets the router's answer (405), and
            // no grant.
            (_, allowed, origin) => Cors::Api {
                grant: origin.filter(|_| allowed),
            },
        }
    }

    /// The answer to a granted preflight.
    pub fn preflight(&self) -> Option<Response> {
        match self {
            Cors::Preflight { origin } => Some(preflight(origin.clone())),
            _ => None,
        }
    }

    /// Add what was decided to `response`.
    pub fn apply(self, response: &mut Response) {
        let Cors::Api { grant } = self else {
            return;
        };
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = grant {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("retry-after"),
            );
        }
    }
}

fn preflight(origin: HeaderValue) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, idempotency-key"),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(PREFLIGHT_MAX_AGE_SECONDS),
            ),
            (
                header::VARY,
                HeaderValue::from_static(
                    "origin, access-control-request-method, access-control-request-headers",
                ),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight_headers(method: &str, headers: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if let Some(headers) = headers {
            map.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).unwrap(),
            );
        }
        map
    }

    #[test]
    fn preflights_may_ask_for_what_the_page_sends_only() {
        assert!(preflight_allowed(&preflight_headers("GET", None)));
        assert!(preflight_allowed(&preflight_headers(
            "POST",
            Some("content-type,Idempotency-Key")
        )));
        assert!(preflight_allowed(&preflight_headers(
            "POST",
            Some("idempotency-key, content-type")
        )));
        assert!(!preflight_allowed(&preflight_headers("DELETE", None)));
        assert!(!preflight_allowed(&preflight_headers("PUT", None)));
        assert!(!preflight_allowed(&preflight_headers(
            "POST",
            Some("content-type, authorization")
        )));
        assert!(!preflight_allowed(&HeaderMap::new()));
    }

    #[test]
    fn the_page_s_header_names_are_what_the_api_reads() {
        assert_eq!(
            flashstock_api::IDEMPOTENCY_KEY_HEADER.to_ascii_lowercase(),
            ALLOWED_HEADERS[1]
        );
    }
}
