//! The encoding of product and order records, which checkout extends without changing what the
//! release before wrote.
//!
//! A record is the bincode of its [`Product`] (or [`Order`]), followed, only when they are not
//! empty, by the bincode of its [`ProductTerms`] (or [`OrderTerms`]). A record that no checkout
//! command touched is therefore byte for byte what the release before writes and reads; terms
//! appear only after the cluster version that brings checkout (2), which no older release runs.

use flashstock_api::{Order, OrderTerms, Product, ProductTerms};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A product with its terms: what `p/<id>` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    pub product: Product,
    pub terms: ProductTerms,
}

/// An order with its terms: what `o/<id>` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order: Order,
    pub terms: OrderTerms,
}

impl ProductRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_pair(&self.product, &self.terms, self.terms.is_empty())
    }

    pub fn decode(bytes: &[u8]) -> Result<ProductRecord, String> {
        let (product, terms) = decode_pair(bytes, "product")?;
        Ok(ProductRecord { product, terms })
    }

    /// Whether `initial_stock + restocked == stock + held + sold`.
    pub fn is_conserved(&self) -> bool {
        self.terms.conserves(&self.product)
    }
}

impl OrderRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_pair(&self.order, &self.terms, self.terms.is_empty())
    }

    pub fn decode(bytes: &[u8]) -> Result<OrderRecord, String> {
        let (order, terms) = decode_pair(bytes, "order")?;
        Ok(OrderRecord { order, terms })
    }
}

fn encode_pair<A: Serialize, B: Serialize>(first: &A, terms: &B, terms_empty: bool) -> Vec<u8> {
    let mut bytes = bincode::serialize(first).expect("records always serialize");
    if !terms_empty {
        bincode::serialize_into(&mut bytes, terms).expect("records always serialize");
    }
    bytes
}

fn decode_pair<A: DeserializeOwned, B: DeserializeOwned + Default>(
    bytes: &[u8],
    what: &str,
) -> Result<(A, B), String> {
    let mut rest = bytes;
    let first = bincode::deserialize_from(&mut rest)
        .map_err(|e| format!("malformed {what} record: {e}"))?;
    let terms = if rest.is_empty() {
        B::default()
    } else {
        bincode::deserialize(rest).map_err(|e| format!("malformed {what} terms: {e}"))?
    };
    Ok((first, terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashstock_api::{HoldId, OrderId};

    fn mug() -> Product {
        Product {
            id: "mug".into(),
            name: "Mug".into(),
            price_cents: 900,
            stock: 5,
            initial_stock: 7,
            restocked: 0,
            sold: 2,
        }
    }

    #[test]
    fn a_record_without_terms_is_the_release_befores() {
        let record = ProductRecord {
            product: mug(),
            terms: ProductTerms::default(),
        };
        assert_eq!(record.encode(), bincode::serialize(&mug()).unwrap());
        assert_eq!(ProductRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn terms_follow_the_record_and_come_back() {
        let mut product = mug();
        product.stock = 3;
        let record = ProductRecord {
            product,
            terms: ProductTerms {
                held: 2,
                limit_per_customer: Some(2),
                limit_epoch: 1,
                cancelled: 0,
            },
        };
        assert!(record.is_conserved());
        let bytes = record.encode();
        assert_eq!(ProductRecord::decode(&bytes).unwrap(), record);
        assert!(ProductRecord::decode(&bytes[..bytes.len() - 1]).is_err());

        let order = OrderRecord {
            order: Order {
                id: OrderId::new(3, 0),
                key: "k".into(),
                product: "mug".into(),
                quantity: 1,
                customer: None,
                price_cents: 900,
                remaining: 2,
                placed_at_ms: 1,
                token: None,
            },
            terms: OrderTerms {
                lines: Vec::new(),
                hold: Some(HoldId(9)),
                cancelled_at_ms: Some(5),
            },
        };
        assert_eq!(OrderRecord::decode(&order.encode()).unwrap(), order);
    }
}
