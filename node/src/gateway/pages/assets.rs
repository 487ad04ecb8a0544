//! The storefront's CSS and JavaScript, embedded in the binary at build time.
//!
//! Pages link each asset by a versioned URL, `/assets/{version}/{name}`, whose version is a hash
//! of the file's bytes computed at compile time. A browser may therefore cache an asset for a
//! year: a new build with a changed file links a new URL. A request for an outdated version still
//! gets the current file (a page rendered by the previous build, mid-deploy), but uncached.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    version: u64,
}

/// FNV-1a, 64 bits: a stable content hash that a `const fn` can compute.
const fn content_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../../assets/", $name));
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            version: content_hash(BODY),
        }
    }};
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: [Asset; 3] = [
    asset!("shop.css", CSS),
    asset!("shop.js", JS),
    asset!("ops.js", JS),
];

/// What a cached asset of the current version may be kept for: it never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn url_of(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .expect("a known asset");
    format!("/assets/{:016x}/{}", asset.version, asset.name)
}

/// The versioned URLs the templates link.
pub struct AssetUrls {
    pub css: String,
    pub shop_js: String,
    pub ops_js: String,
}

pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    css: url_of("shop.css"),
    shop_js: url_of("shop.js"),
    ops_js: url_of("ops.js"),
});

/// `GET /assets/{version}/{name}`.
pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let current = format!("{:016x}", asset.version) == version;
    let cache = if current { IMMUTABLE } else { "no-cache" };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_version() {
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
        for asset in &ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
            assert!(url_of(asset.name).ends_with(asset.name));
        }
    }
}
