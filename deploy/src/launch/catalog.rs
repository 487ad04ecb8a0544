//! The demo catalog: where it is read from, and creating the products a cluster lacks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flashstock_api::CreateProductRequest;
use flashstock_client::{ShopClient, ShopError};

use super::say;
use crate::local::LocalCluster;

/// The demo catalog, compiled in, used when deploy/demo-catalog.json cannot be found.
const EMBEDDED_CATALOG: &str = include_str!("../../demo-catalog.json");

/// The repository: the nearest directory up from here with deploy/demo-catalog.json, else the
/// one this crate was built from.
pub fn repository_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join("Cargo.toml").is_file() && dir.join("deploy/demo-catalog.json").is_file() {
                return dir.to_owned();
            }
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
    built_from.parent().unwrap_or(built_from).to_owned()
}

/// The products of `path`, else of `deploy/demo-catalog.json` under `root`, else the built-in
/// catalog; every product id checked.
pub fn load(path: Option<&Path>, root: &Path) -> Result<Vec<CreateProductRequest>, String> {
    let default = root.join("deploy/demo-catalog.json");
    let (text, source) = match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the catalog {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::fs::read_to_string(&default) {
            Ok(text) => (text, default.display().to_string()),
            Err(_) => (
                EMBEDDED_CATALOG.to_owned(),
                "the built-in catalog".to_owned(),
            ),
        },
    };
    let catalog: Vec<CreateProductRequest> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{source} is not a JSON array of {{\"id\", \"name\", \"price_cents\", \"stock\"}}: {e}"
        )
    })?;
    for product in &catalog {
        flashstock_api::validate_product_id(&product.id)
            .map_err(|e| format!("{source}: product {:?}: {e}", product.id))?;
    }
    Ok(catalog)
}

/// Create the products of `catalog` the cluster does not have yet, through the public API.
pub async fn create_missing(
    cluster: &LocalCluster,
    catalog: &[CreateProductRequest],
    admin_token: Option<&str>,
) -> Result<(), String> {
    let mut shop = ShopClient::new(cluster.gateway_urls());
    if let Some(token) = admin_token {
        shop = shop.with_admin_token(token);
    }
    // Products already there (a rerun) are skipped without a write; `product_exists` covers a
    // replica that had not applied one yet.
    let known = product_ids(&shop).await?;
    let (mut created, mut existing) = (0, 0);
    for product in catalog {
        if known.contains(&product.id) {
            existing += 1;
            continue;
        }
        match shop.create_product(product).await {
            Ok(_) => created += 1,
            Err(ShopError::Rejected {
                code: flashstock_api::ErrorCode::ProductExists,
                ..
            }) => existing += 1,
            Err(e) => return Err(format!("cannot create demo product {:?}: {e}", product.id)),
        }
    }
    say(format!(
        "demo catalog: {created} products created, {existing} already there"
    ));
    Ok(())
}

/// Every product id the shop lists, page by page.
async fn product_ids(shop: &ShopClient) -> Result<BTreeSet<String>, String> {
    let mut known = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = shop
            .products(after.as_deref(), 1000)
            .await
            .map_err(|e| format!("cannot list the products: {e}"))?;
        known.extend(page.products.into_iter().map(|p| p.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(known),
        }
    }
}
