//! The bulk read: every processed product through Products v1
//! `products.list` (`GET /products/v1/accounts/{account}/products`,
//! `pageSize` up to 1000, `nextPageToken` until absent;
//! `specs/gmc/products_v1/products.proto`,
//! <https://developers.google.com/merchant/api/reference/rest/products_v1/accounts.products/list>).
//!
//! - Processed products are what Google shows, "after applying rules and
//!   supplemental data sources"; writes show there minutes later
//!   (`products.proto`), so a listing acknowledged after the read started may
//!   show its earlier state.
//! - A product's key is `contentLanguage~feedLabel~offerId` (the plain form
//!   of its name, with the offer id normalised as Google does), matched
//!   against the same key built from a listing's external ids. Google keeps
//!   availability, not a count: the level's quantity is
//!   `sellOnGoogleQuantity` when the product has one, otherwise none.
//! - A list call counts once against the method's quota whatever its page
//!   size (<https://developers.google.com/merchant/api/guides/quotas-limits>).
//!   A per-minute quota error is waited out (its `Retry-After`, or 60 s) and
//!   the same page asked again; a daily quota error ends the read.

use super::*;
use crate::ShownListing;

/// The largest page `products.list` serves (`products.proto`).
pub const LIST_PAGE_SIZE: usize = 1000;
/// Transient failures (no answer, 5xx) retried per page.
const PAGE_RETRIES: u32 = 3;
/// Longest quota wait the read sits out before giving up.
const MAX_QUOTA_WAIT: Duration = Duration::from_secs(300);

/// The matching key of a product: `contentLanguage~feedLabel~offerId`.
pub fn product_key(content_language: &str, feed_label: &str, offer_id: &str) -> String {
    format!(
        "{content_language}~{feed_label}~{}",
        normalize_offer_id(offer_id)
    )
}

impl Target {
    pub(super) fn key(&self) -> String {
        product_key(&self.content_language, &self.feed_label, &self.offer_id)
    }
}

impl Gmc {
    fn list_url(&self, page_token: Option<&str>) -> String {
        let mut url = format!(
            "{}/products/v1/accounts/{}/products?pageSize={LIST_PAGE_SIZE}",
            self.api(),
            percent_encode(self.account()),
        );
        if let Some(token) = page_token {
            url.push_str("&pageToken=");
            url.push_str(&percent_encode(token));
        }
        url
    }

    /// One page, waiting out per-minute quota errors and retrying transient
    /// failures; `requests` counts what was sent.
    async fn list_page(
        &self,
        page_token: Option<&str>,
        requests: &mut u64,
    ) -> Result<Value, ChannelError> {
        let mut failures = 0;
        loop {
            if let Some(error) = self.blocked_error(Method::ListProducts) {
                match error.retry_after {
                    Some(wait) if wait <= MAX_QUOTA_WAIT => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    _ => return Err(error),
                }
            }
            *requests += 1;
            let result = self
                .call_method(
                    Method::ListProducts,
                    http::Method::GET,
                    self.list_url(page_token),
                    None,
                )
                .await;
            match result {
                Ok(response) => {
                    return response_json(&response).ok_or_else(|| {
                        invalid_response(&response, "products.list answer is not JSON")
                    })
                }
                // Blocked by `call_method`: waited out at the top.
                Err(error) if error.class == ErrorClass::RateLimited => {
                    if error.retry_after.is_none_or(|wait| wait > MAX_QUOTA_WAIT) {
                        return Err(error);
                    }
                }
                Err(error) if error.class == ErrorClass::Retryable && failures < PAGE_RETRIES => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1 << failures)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads every processed product of the account.
    pub(super) async fn list_all(
        &self,
        progress: BulkProgress<'_>,
    ) -> Result<BulkRead, ChannelError> {
        let started_at = Utc::now();
        let mut requests = 0u64;
        let mut listings = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = self.list_page(page_token.as_deref(), &mut requests).await?;
            if let Some(products) = page.get("products").and_then(Value::as_array) {
                for product in products {
                    if let Some(listing) = shown_listing(product) {
                        listings.push(listing);
                    }
                }
            }
            progress(listings.len() as u64);
            page_token = page
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if page_token.is_none() {
                return Ok(BulkRead {
                    started_at,
                    listings,
                    channel_requests: requests,
                });
            }
        }
    }
}

/// A processed product as a shown listing; `None` without the three parts
/// of its key.
fn shown_listing(product: &Value) -> Option<ShownListing> {
    let text = |key: &str| {
        product
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let offer_id = text("offerId")?;
    let key = product_key(text("contentLanguage")?, text("feedLabel")?, offer_id);
    Some(ShownListing {
        key,
        channel_sku: Some(offer_id.to_owned()),
        level: level_of(product),
    })
}
