//! `stockctl product ...` and `stockctl buy`: the catalog and manual purchases through the
//! gateways' public API (`/v1`), with [`ShopClient`]'s failover and same-key retries.
//!
//! A write that runs out of time is reported as an unknown outcome (exit 3), never as a failure:
//! it may still commit. `buy` prints the idempotency key to retry with.

use std::future::Future;

use flashstock_api::{CreateProductRequest, ErrorCode, Order, Product, ProductList};
use flashstock_client::{new_key, ShopClient, ShopError};

use crate::args::{BuyArgs, ProductCommand};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{cents, emit, Table};

pub async fn product(ctx: &Context, command: ProductCommand) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    match command {
        ProductCommand::List { after, limit, all } => {
            list(ctx, &client, after, limit as usize, all).await
        }
        ProductCommand::Show { id, linearizable } => {
            let view = if linearizable {
                read(ctx, client.product_linearizable(&id)).await?
            } else {
                read(ctx, client.product(&id)).await?
            };
            emit(ctx.output, &view, || product_table([&view.product]));
            Ok(())
        }
        ProductCommand::Create {
            id,
            name,
            price_cents,
            stock,
        } => {
            let request = CreateProductRequest {
                id: id.clone(),
                name,
                price_cents,
                stock,
            };
            let hint = format!("check with `stockctl product show {id}`");
            let changed = write(ctx, client.create_product(&request), &hint).await?;
            emit(ctx.output, &changed, || product_table([&changed.product]));
            Ok(())
        }
        ProductCommand::Import(args) => crate::import::import(ctx, args).await,
        ProductCommand::Restock { id, quantity } => {
            let hint = format!(
                "check with `stockctl product show {id} --linearizable` before restocking again"
            );
            let changed = write(ctx, client.restock(&id, quantity), &hint).await?;
            emit(ctx.output, &changed, || product_table([&changed.product]));
            Ok(())
        }
    }
}

/// One page of products, or every page when `all` is set (then one list without `next_after`).
async fn list(
    ctx: &Context,
    client: &ShopClient,
    after: Option<String>,
    limit: usize,
    all: bool,
) -> Result<(), CliError> {
    let mut list = read(ctx, client.products(after.as_deref(), limit)).await?;
    if all {
        while let Some(next) = list.next_after.take() {
            let page = read(ctx, client.products(Some(&next), limit)).await?;
            list = merge(list, page);
        }
    }
    emit(ctx.output, &list, || product_table(&list.products));
    if let Some(next) = &list.next_after {
        eprintln!("stockctl: the page is full, more may follow: pass --after {next}, or --all");
    }
    Ok(())
}

/// Two consecutive pages as one: the lower applied index, which every product is as fresh as.
fn merge(mut first: ProductList, next: ProductList) -> ProductList {
    first.applied_index = first.applied_index.min(next.applied_index);
    first.products.extend(next.products);
    first.next_after = next.next_after;
    first
}

pub async fn buy(ctx: &Context, args: BuyArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let key = args.key.unwrap_or_else(new_key);
    let hint = format!(
        "retry with the same key to learn it: stockctl buy {} {} --key {key}",
        args.product, args.quantity
    );
    let purchase = client.purchase_with_key(&key, &args.product, args.quantity);
    let response = write(ctx, purchase, &hint).await?;
    emit(ctx.output, &response, || {
        order_table(&response.order, response.replayed)
    });
    Ok(())
}

/// A read within the command's deadline; running out of time is `unavailable`.
async fn read<T>(
    ctx: &Context,
    call: impl Future<Output = Result<T, ShopError>>,
) -> Result<T, CliError> {
    match tokio::time::timeout(ctx.remaining(), call).await {
        Ok(result) => result.map_err(|e| CliError::from_shop(e, "")),
        Err(_) => Err(CliError::failed(
            ErrorCode::Unavailable,
            format!("no answer within {:?}", ctx.timeout),
        )),
    }
}

/// A write within the command's deadline; running out of time leaves the outcome unknown.
async fn write<T>(
    ctx: &Context,
    call: impl Future<Output = Result<T, ShopError>>,
    hint: &str,
) -> Result<T, CliError> {
    match tokio::time::timeout(ctx.remaining(), call).await {
        Ok(result) => result.map_err(|e| CliError::from_shop(e, hint)),
        Err(_) => Err(CliError::unknown(
            format!("no answer within {:?}", ctx.timeout),
            hint,
        )),
    }
}

fn product_table<'a>(products: impl IntoIterator<Item = &'a Product>) -> Table {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "PRICE",
        "STOCK",
        "SOLD",
        "INITIAL",
        "RESTOCKED",
    ]);
    for p in products {
        table.push(vec![
            p.id.clone(),
            p.name.clone(),
            cents(p.price_cents),
            p.stock.to_string(),
            p.sold.to_string(),
            p.initial_stock.to_string(),
            p.restocked.to_string(),
        ]);
    }
    table
}

fn order_table(order: &Order, replayed: bool) -> Table {
    let mut table = Table::new(&[
        "ORDER",
        "PRODUCT",
        "QUANTITY",
        "PRICE",
        "REMAINING",
        "KEY",
        "REPLAYED",
    ]);
    table.push(vec![
        order.id.to_string(),
        order.product.clone(),
        order.quantity.to_string(),
        cents(order.price_cents),
        order.remaining.to_string(),
        order.key.clone(),
        replayed.to_string(),
    ]);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str) -> Product {
        Product {
            id: id.into(),
            name: format!("{id} name"),
            price_cents: 250,
            stock: 3,
            initial_stock: 5,
            restocked: 0,
            sold: 2,
        }
    }

    #[test]
    fn pages_merge_into_one_list() {
        let first = ProductList {
            applied_index: 9,
            products: vec![product("a")],
            next_after: Some("a".into()),
        };
        let next = ProductList {
            applied_index: 7,
            products: vec![product("b")],
            next_after: None,
        };
        let all = merge(first, next);
        assert_eq!(all.applied_index, 7);
        assert_eq!(all.products.len(), 2);
        assert_eq!(all.next_after, None);
    }

    #[test]
    fn product_rows_show_price_and_counters() {
        let text = product_table([&product("tee")]).render();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "tee  tee name  2.50   3      2     5        0"
        );
    }
}
