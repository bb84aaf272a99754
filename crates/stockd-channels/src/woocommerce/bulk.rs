//! Reading every listing the site shows. WooCommerce has no export job:
//! its bulk path is paging the collections
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-products>,
//! <https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-product-variations>):
//!
//! - `GET /products?per_page=100&page=N&orderby=id&order=asc`: simple
//!   products are listings; a variable product names its `variations`, read
//!   with `GET /products/{id}/variations?per_page=100&page=N&orderby=id&order=asc`.
//!   Ordering by id keeps a product created during the read from shifting
//!   the pages already read.
//! - `_fields=` keeps the answers to the stock fields (a WordPress global
//!   parameter, <https://developer.wordpress.org/rest-api/using-the-rest-api/global-parameters/#_fields>).
//! - Pages follow `X-WP-TotalPages` (or a `Link` with `rel="next"`,
//!   <https://developer.wordpress.org/rest-api/using-the-rest-api/pagination/>);
//!   at most 100 per page.
//! - Requests go through the connector's authentication and pacing; a 429
//!   waits for `Retry-After`, a 5xx is retried a few times.

use super::*;
use crate::{BulkProgress, BulkRead, ShownListing};

/// The most a collection page holds (`per_page` is 1 to 100).
const PAGE_SIZE: usize = 100;
/// Guard against a server whose pagination headers never end (10 million
/// resources per collection).
const MAX_COLLECTION_PAGES: u32 = 100_000;
const PRODUCT_FIELDS: &str = "id,type,sku,manage_stock,stock_quantity,stock_status,variations";
const VARIATION_FIELDS: &str = "id,sku,manage_stock,stock_quantity,stock_status";
/// Throttled answers waited out per page.
const MAX_THROTTLED: u32 = 20;
/// Failed answers (network, 5xx) retried per page.
const MAX_RETRIES: u32 = 3;

/// The key of a listing: `{product}` or `{parent}/{variation}`.
pub(super) fn key_of(target: Target) -> String {
    match target {
        Target::Product(id) => id.to_string(),
        Target::Variation { parent, id } => format!("{parent}/{id}"),
    }
}

fn shown(target: Target, resource: &Value) -> ShownListing {
    ShownListing {
        key: key_of(target),
        channel_sku: resource
            .get("sku")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        level: level_of(resource),
    }
}

impl WooCommerce {
    /// One page of a collection, retried through throttling and failures;
    /// `(resources, whether another page follows)`.
    async fn page(
        &self,
        path: &str,
        fields: &str,
        page: u32,
        requests: &mut u64,
    ) -> Result<(Vec<Value>, bool), ChannelError> {
        let query = vec![
            ("per_page".to_owned(), PAGE_SIZE.to_string()),
            ("page".to_owned(), page.to_string()),
            ("orderby".to_owned(), "id".to_owned()),
            ("order".to_owned(), "asc".to_owned()),
            ("_fields".to_owned(), fields.to_owned()),
        ];
        let (mut throttled, mut failed) = (0, 0);
        loop {
            *requests += 1;
            let error = match self.send(http::Method::GET, path, &query, None).await {
                Ok(response) if (200..300).contains(&response.status) => {
                    let Ok(Value::Array(resources)) =
                        serde_json::from_slice::<Value>(&response.body)
                    else {
                        return Err(invalid_response(&response, "list answer is not an array"));
                    };
                    let more = page < MAX_COLLECTION_PAGES && has_next_page(&response, page);
                    return Ok((resources, more));
                }
                Ok(response) => error_from_response(&response),
                Err(error) => error,
            };
            match error.class {
                // `send` blocked the limiter for Retry-After.
                ErrorClass::RateLimited if throttled < MAX_THROTTLED => throttled += 1,
                ErrorClass::Retryable if failed < MAX_RETRIES => {
                    failed += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250 << failed)).await;
                }
                _ => return Err(error),
            }
        }
    }

    pub(super) async fn page_all(
        &self,
        progress: BulkProgress<'_>,
    ) -> Result<BulkRead, ChannelError> {
        let started_at = chrono::Utc::now();
        let mut requests = 0;
        let mut listings = Vec::new();
        let mut variable: Vec<u64> = Vec::new();
        let mut page = 1;
        loop {
            let (products, more) = self
                .page("/products", PRODUCT_FIELDS, page, &mut requests)
                .await?;
            for product in &products {
                let Some(id) = id_value(product.get("id")) else {
                    continue;
                };
                if product.get("type").and_then(Value::as_str) == Some("variable") {
                    variable.push(id);
                } else {
                    listings.push(shown(Target::Product(id), product));
                }
            }
            progress(listings.len() as u64);
            if !more {
                break;
            }
            page += 1;
        }
        for parent in variable {
            let path = format!("/products/{parent}/variations");
            let mut page = 1;
            loop {
                let (variations, more) = match self
                    .page(&path, VARIATION_FIELDS, page, &mut requests)
                    .await
                {
                    Ok(answer) => answer,
                    // Deleted since its product page was read.
                    Err(e) if e.status == Some(404) => break,
                    Err(e) => return Err(e),
                };
                for variation in &variations {
                    if let Some(id) = id_value(variation.get("id")) {
                        listings.push(shown(Target::Variation { parent, id }, variation));
                    }
                }
                progress(listings.len() as u64);
                if !more {
                    break;
                }
                page += 1;
            }
        }
        Ok(BulkRead {
            started_at,
            listings,
            channel_requests: requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_stored_externals() {
        let mut external = External::new();
        external.insert("product_id".into(), json!("12"));
        assert_eq!(
            parse_external(&external).map(key_of).ok(),
            Some("12".into())
        );
        external.insert("variation_id".into(), json!(34));
        assert_eq!(
            parse_external(&external).map(key_of).ok(),
            Some("12/34".into())
        );
        external.insert("variation_id".into(), json!(0));
        assert_eq!(
            parse_external(&external).map(key_of).ok(),
            Some("12".into())
        );
    }
}
