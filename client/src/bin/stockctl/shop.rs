//! `stockctl product ...`, `stockctl buy` and checkout (`hold`, `confirm`, `release`,
//! `cancel`): the catalog and manual purchases through the gateways' public API (`/v1`), with
//! [`ShopClient`]'s failover and same-key retries.
//!
//! A write that runs out of time is reported as an unknown outcome (exit 3), never as a failure:
//! it may still commit. `buy` and the checkout commands print the idempotency key to retry with.

use std::future::Future;

use flashstock_api::{
    CreateProductRequest, ErrorCode, HoldDetails, Order, OrderWithLines, ProductDetails,
    ProductList,
};
use flashstock_client::{new_key, ShopClient, ShopError};

use crate::args::{BuyArgs, CancelArgs, HoldActionArgs, HoldArgs, Limit, ProductCommand};
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
            limit_per_customer,
        } => {
            let request = CreateProductRequest {
                id: id.clone(),
                name,
                price_cents,
                stock,
                limit_per_customer,
            };
            let hint = format!("check with `stockctl product show {id}`");
            let changed = write(ctx, client.create_product(&request), &hint).await?;
            emit(ctx.output, &changed, || product_table([&changed.product]));
            Ok(())
        }
        ProductCommand::Import(args) => crate::import::import(ctx, args).await,
        ProductCommand::Limit { id, limit, key } => {
            let key = key.unwrap_or_else(new_key);
            let limit = match limit {
                Limit::Items(items) => Some(items),
                Limit::None => None,
            };
            let shown = limit.map_or_else(|| "none".to_owned(), |n| n.to_string());
            let hint =
                format!("retry with the same key: stockctl product limit {id} {shown} --key {key}");
            let changed = write(ctx, client.set_limit_with_key(&key, &id, limit), &hint).await?;
            emit(ctx.output, &changed, || product_table([&changed.product]));
            Ok(())
        }
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

pub async fn hold(ctx: &Context, args: HoldArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let key = args.key.unwrap_or_else(new_key);
    let lines: Vec<String> = args
        .lines
        .iter()
        .map(|line| format!("{}:{}", line.product, line.quantity))
        .collect();
    let customer = args
        .customer
        .as_deref()
        .map_or_else(String::new, |c| format!(" --customer {c}"));
    let hint = format!(
        "retry with the same key to learn it: stockctl hold {}{customer} --key {key}",
        lines.join(" ")
    );
    let held = client.hold_with_key(&key, args.lines, args.customer.as_deref());
    let response = write(ctx, held, &hint).await?;
    emit(ctx.output, &response, || {
        hold_table(&response.hold, Some(&response.token), response.replayed)
    });
    Ok(())
}

pub async fn confirm(ctx: &Context, args: HoldActionArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let key = args.key.unwrap_or_else(new_key);
    let hint = format!(
        "retry with the same key to learn it: stockctl confirm {} --token {} --key {key}",
        args.hold, args.token
    );
    let confirmed = client.confirm_hold_with_key(&key, args.hold, &args.token);
    let response = write(ctx, confirmed, &hint).await?;
    emit(ctx.output, &response, || {
        lines_table(&response.order, response.replayed)
    });
    Ok(())
}

pub async fn release(ctx: &Context, args: HoldActionArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let key = args.key.unwrap_or_else(new_key);
    let hint = format!(
        "retry with the same key to learn it: stockctl release {} --token {} --key {key}",
        args.hold, args.token
    );
    let released = client.release_hold_with_key(&key, args.hold, &args.token);
    let response = write(ctx, released, &hint).await?;
    emit(ctx.output, &response, || {
        hold_table(&response.hold, None, response.replayed)
    });
    Ok(())
}

pub async fn cancel(ctx: &Context, args: CancelArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let key = args.key.unwrap_or_else(new_key);
    let response = match &args.token {
        Some(token) => {
            let hint = format!(
                "retry with the same key to learn it: stockctl cancel {} --token {token} --key \
                 {key}",
                args.order
            );
            let cancelled = client.cancel_order_with_key(&key, args.order, token);
            write(ctx, cancelled, &hint).await?
        }
        None => {
            let hint = format!(
                "retry with the same key to learn it: stockctl cancel {} --admin --key {key}",
                args.order
            );
            let cancelled = client.admin_cancel_order_with_key(&key, args.order);
            write(ctx, cancelled, &hint).await?
        }
    };
    emit(ctx.output, &response, || {
        lines_table(&response.order, response.replayed)
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

/// Products with what is held and their limit per customer.
fn product_table<'a>(products: impl IntoIterator<Item = &'a ProductDetails>) -> Table {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "PRICE",
        "STOCK",
        "HELD",
        "SOLD",
        "INITIAL",
        "RESTOCKED",
        "LIMIT",
    ]);
    for p in products {
        table.push(vec![
            p.id.clone(),
            p.name.clone(),
            cents(p.price_cents),
            p.stock.to_string(),
            p.held.to_string(),
            p.sold.to_string(),
            p.initial_stock.to_string(),
            p.restocked.to_string(),
            p.limit_per_customer
                .map_or_else(|| "-".to_owned(), |limit| limit.to_string()),
        ]);
    }
    table
}

/// A cart's lines as `PRODUCT:QUANTITY ...`.
fn cart_cell<'a>(lines: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    lines
        .into_iter()
        .map(|(product, quantity)| format!("{product}:{quantity}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A hold, with its token when it was just placed.
fn hold_table(hold: &HoldDetails, token: Option<&str>, replayed: bool) -> Table {
    let mut table = Table::new(&[
        "HOLD",
        "STATUS",
        "LINES",
        "CUSTOMER",
        "EXPIRES_AT_MS",
        "TOKEN",
        "REPLAYED",
    ]);
    let status = serde_json::to_value(hold.status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    table.push(vec![
        hold.id.to_string(),
        status,
        cart_cell(hold.lines.iter().map(|l| (l.product.as_str(), l.quantity))),
        hold.customer.clone().unwrap_or_else(|| "-".to_owned()),
        hold.expires_at_ms.to_string(),
        token.unwrap_or("-").to_owned(),
        replayed.to_string(),
    ]);
    table
}

/// An order of one or more lines, with its status and token.
fn lines_table(order: &OrderWithLines, replayed: bool) -> Table {
    let mut table = Table::new(&["ORDER", "STATUS", "LINES", "TOTAL", "TOKEN", "REPLAYED"]);
    let status = serde_json::to_value(order.status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let total: u64 = order
        .lines
        .iter()
        .map(|line| u64::from(line.quantity) * line.price_cents)
        .sum();
    table.push(vec![
        order.id.to_string(),
        status,
        cart_cell(order.lines.iter().map(|l| (l.product.as_str(), l.quantity))),
        cents(total),
        order.token.clone().unwrap_or_else(|| "-".to_owned()),
        replayed.to_string(),
    ]);
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
    use flashstock_api::Product;

    fn product(id: &str) -> ProductDetails {
        Product {
            id: id.into(),
            name: format!("{id} name"),
            price_cents: 250,
            stock: 3,
            initial_stock: 5,
            restocked: 0,
            sold: 2,
        }
        .into()
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
            "tee  tee name  2.50   3      0     2     5        0          -"
        );
    }
}
