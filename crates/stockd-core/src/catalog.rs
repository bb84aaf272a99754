//! The catalog: variants (what is sold) and locations (where stock is).

use crate::ids::{LocationId, Sku};
use serde::{Deserialize, Serialize};

/// One sellable variant (size/colour). Stock is kept per variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub sku: Sku,
    pub title: Option<String>,
    /// Product or group id that ties the variants of one product together.
    pub product_id: Option<String>,
    /// GTIN/EAN barcode, as the marketplaces key products by it.
    pub gtin: Option<String>,
}

/// A place stock is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    /// Whether stock here counts towards what channels may sell.
    pub sellable: bool,
    /// Allocation order for orders without a location: lower goes first.
    pub priority: i32,
}

/// Checks a GTIN: 8, 12, 13 or 14 digits with a valid check digit.
pub fn gtin_is_valid(gtin: &str) -> bool {
    let digits: Vec<u32> = match gtin.chars().map(|c| c.to_digit(10)).collect() {
        Some(digits) => digits,
        None => return false,
    };
    if ![8, 12, 13, 14].contains(&digits.len()) {
        return false;
    }
    let (body, check) = digits.split_at(digits.len() - 1);
    // Weights alternate 3,1,3,… from the digit next to the check digit.
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    (10 - sum % 10) % 10 == check[0]
}

#[cfg(test)]
mod tests {
    use super::gtin_is_valid;

    #[test]
    fn gtin_check_digit() {
        assert!(gtin_is_valid("8712345678906"));
        assert!(gtin_is_valid("4006381333931"));
        assert!(gtin_is_valid("96385074"));
        assert!(!gtin_is_valid("4006381333932"));
        assert!(!gtin_is_valid("40063813339"));
        assert!(!gtin_is_valid("40063813339a"));
    }
}
