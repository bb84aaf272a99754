//! Reading everything the shop shows through a bulk operation
//! (<https://shopify.dev/docs/api/usage/bulk-operations/queries>):
//!
//! - `bulkOperationRunQuery(query:)` with one query over `inventoryItems` and
//!   their `inventoryLevels` (each level's `location { id }` and its
//!   `available` quantity, `quantities(names: ["available"])`), connections
//!   selected through `edges { node }` and every parent node selecting `id`,
//!   as the guide requires
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/bulkOperationRunQuery>).
//! - One bulk query per app and shop at a time (before 2026-01): a second one
//!   is refused with `OPERATION_IN_PROGRESS`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/enums/BulkOperationUserErrorCode>).
//!   When the operation in progress is stockd's own query (a read whose
//!   process stopped), the read follows it instead of failing.
//! - The operation is polled with `node(id:)` until `COMPLETED`, `FAILED`,
//!   `CANCELED` or `EXPIRED`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation>,
//!   <https://shopify.dev/docs/api/admin-graphql/latest/enums/bulkoperationstatus>);
//!   `objectCount` and `fileSize` are `UnsignedInt64`, sent as strings.
//!   The run and the polls are paid from the same cost bucket as every other
//!   call; the bulk execution itself is not.
//! - `url` is a signed JSONL file, downloaded without the shop's token;
//!   `null` when the query matched nothing. Nested connections come as lines
//!   of their own with `__parentId`; their order relative to their parents is
//!   not relied on (from 2026-01 objects are not grouped under their parents,
//!   <https://shopify.dev/changelog/bulk-operations-group-objects-default-changed-to-false>).
//! - `FAILED` carries `errorCode`: `ACCESS_DENIED` is permanent, `TIMEOUT`
//!   and `INTERNAL_SERVER_ERROR` can succeed on a new run
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/enums/bulkoperationerrorcode>).

use super::*;
use crate::{BulkProgress, BulkRead, ShownListing};

/// The bulk query: every inventory item with its levels and their
/// `available` quantity.
pub(super) const BULK_QUERY: &str = "{ inventoryItems { edges { node { id sku \
     inventoryLevels { edges { node { location { id } \
     quantities(names: [\"available\"]) { name quantity } } } } } } } }";

pub(super) const BULK_RUN_DOCUMENT: &str = "mutation StockdBulkRead($query: String!) { \
     bulkOperationRunQuery(query: $query) { bulkOperation { id status } \
     userErrors { field message code } } }";

pub(super) const BULK_POLL_DOCUMENT: &str = "query StockdBulkPoll($id: ID!) { node(id: $id) { \
     ... on BulkOperation { id status errorCode objectCount url partialDataUrl } } }";

pub(super) const BULK_CURRENT_DOCUMENT: &str =
    "query StockdBulkCurrent { currentBulkOperation(type: QUERY) { id status query } }";

/// The documents of a bulk read: the run mutation, the poll, the look at
/// the operation in progress, and the bulk query itself (a plain query
/// document).
pub fn bulk_documents() -> Vec<String> {
    vec![
        BULK_RUN_DOCUMENT.to_string(),
        BULK_POLL_DOCUMENT.to_string(),
        BULK_CURRENT_DOCUMENT.to_string(),
        BULK_QUERY.to_string(),
    ]
}

// Requested-cost estimates, as in `graphql.rs`: a mutation 10, objects 1.
const RUN_COST: f64 = 10.0;
const POLL_COST: f64 = 2.0;
/// Throttled answers waited out within one call before giving up.
const MAX_THROTTLED: u32 = 20;
/// Failed answers (network, 5xx) retried within one call.
const MAX_RETRIES: u32 = 3;

/// How the connector waits for a bulk operation.
#[derive(Debug, Clone, Copy)]
pub struct BulkPolling {
    /// The first poll comes this long after the run.
    pub first: Duration,
    /// Polls back off by doubling up to this interval (Shopify suggests
    /// sizing it to the expected run time).
    pub max: Duration,
    /// The read gives up (retryable) after this long.
    pub give_up_after: Duration,
}

impl Default for BulkPolling {
    fn default() -> Self {
        BulkPolling {
            first: Duration::from_millis(500),
            max: Duration::from_secs(15),
            give_up_after: Duration::from_secs(6 * 3600),
        }
    }
}

/// The `{item}@{location}` key of a listing: both numeric ids.
pub(super) fn key_of(item_gid: &str, location_gid: &str) -> Option<String> {
    Some(format!(
        "{}@{}",
        gid_number(item_gid)?,
        gid_number(location_gid)?
    ))
}

/// `gid://shopify/Kind/123[?…]` → `123`.
fn gid_number(gid: &str) -> Option<&str> {
    let tail = gid.rsplit('/').next()?;
    let number = tail.split('?').next()?;
    (!number.is_empty() && number.bytes().all(|c| c.is_ascii_digit())).then_some(number)
}

/// Whitespace-insensitive comparison of two query documents.
fn same_query(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// `UnsignedInt64` as Shopify sends it (a string), or a number.
fn unsigned(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl Shopify {
    /// One GraphQL call of a bulk read: throttled answers are waited out
    /// (the limiter holds the next send back) and failed ones retried a few
    /// times; every request sent is counted.
    async fn bulk_call(
        &self,
        document: &str,
        variables: Value,
        estimate: f64,
        requests: &mut u64,
    ) -> Result<GqlOk, ChannelError> {
        let (mut throttled, mut failed) = (0, 0);
        loop {
            *requests += 1;
            match self
                .graphql(document, variables.clone(), estimate, None)
                .await
            {
                Err(e) if e.class == ErrorClass::RateLimited && throttled < MAX_THROTTLED => {
                    throttled += 1;
                }
                Err(e) if e.class == ErrorClass::Retryable && failed < MAX_RETRIES => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(250 << failed)).await;
                }
                other => return other,
            }
        }
    }

    /// Starts the bulk query, or finds stockd's own query already running.
    async fn start_bulk(&self, requests: &mut u64) -> Result<String, ChannelError> {
        let answer = self
            .bulk_call(
                BULK_RUN_DOCUMENT,
                json!({ "query": BULK_QUERY }),
                RUN_COST,
                requests,
            )
            .await?;
        let payload = answer.data.get("bulkOperationRunQuery");
        let errors: Vec<&Value> = payload
            .and_then(|p| p.get("userErrors"))
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if let Some(first) = errors.first() {
            let code = first
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("INVALID")
                .to_string();
            let message = first
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if matches!(code.as_str(), "OPERATION_IN_PROGRESS" | "LIMIT_REACHED") {
                return self.follow_running(code, message, requests).await;
            }
            return Err(with_response(
                ChannelError::new(ErrorClass::Permanent, code, message),
                answer.status,
                &answer.excerpt,
            ));
        }
        payload
            .and_then(|p| p.pointer("/bulkOperation/id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                with_response(
                    ChannelError::new(
                        ErrorClass::Retryable,
                        "bad_response",
                        "bulkOperationRunQuery returned no operation",
                    ),
                    answer.status,
                    &answer.excerpt,
                )
            })
    }

    /// Another bulk query runs: follow it when it is stockd's own query,
    /// otherwise come back later.
    async fn follow_running(
        &self,
        code: String,
        message: String,
        requests: &mut u64,
    ) -> Result<String, ChannelError> {
        let answer = self
            .bulk_call(BULK_CURRENT_DOCUMENT, json!({}), POLL_COST, requests)
            .await?;
        let current = answer.data.get("currentBulkOperation");
        let status = current
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str);
        let ours = current
            .and_then(|c| c.get("query"))
            .and_then(Value::as_str)
            .is_some_and(|q| same_query(q, BULK_QUERY));
        if ours && matches!(status, Some("CREATED" | "RUNNING")) {
            if let Some(id) = current.and_then(|c| c.get("id")).and_then(Value::as_str) {
                return Ok(id.to_string());
            }
        }
        let mut e = with_response(
            ChannelError::new(ErrorClass::Retryable, code, message),
            answer.status,
            &answer.excerpt,
        );
        e.retry_after = Some(Duration::from_secs(60));
        Err(e)
    }

    /// Polls until the operation ends; its file's URL (`None`: no data).
    async fn wait_bulk(
        &self,
        id: &str,
        requests: &mut u64,
    ) -> Result<Option<String>, ChannelError> {
        let polling = self.bulk_polling;
        let deadline = tokio::time::Instant::now() + polling.give_up_after;
        let mut interval = polling.first;
        loop {
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(polling.max.max(polling.first));
            let answer = self
                .bulk_call(BULK_POLL_DOCUMENT, json!({ "id": id }), POLL_COST, requests)
                .await?;
            let fail = |class: ErrorClass, code: &str, message: String| {
                with_response(
                    ChannelError::new(class, code, message),
                    answer.status,
                    &answer.excerpt,
                )
            };
            let Some(op) = answer.data.get("node").filter(|n| n.is_object()) else {
                return Err(fail(
                    ErrorClass::Retryable,
                    "bulk_operation_missing",
                    format!("bulk operation {id} is not found"),
                ));
            };
            let status = op.get("status").and_then(Value::as_str).unwrap_or("");
            match status {
                "CREATED" | "RUNNING" => {}
                "COMPLETED" => {
                    let url = op.get("url").and_then(Value::as_str).map(str::to_string);
                    tracing::debug!(
                        objects = unsigned(op.get("objectCount")),
                        "shopify bulk operation completed"
                    );
                    return Ok(url);
                }
                "FAILED" => {
                    let code = op
                        .get("errorCode")
                        .and_then(Value::as_str)
                        .unwrap_or("FAILED");
                    let class = if code == "ACCESS_DENIED" {
                        ErrorClass::Permanent
                    } else {
                        ErrorClass::Retryable
                    };
                    return Err(fail(
                        class,
                        code,
                        format!("bulk operation {id} failed with {code}"),
                    ));
                }
                other => {
                    // CANCELING, CANCELED, EXPIRED: a new run can succeed.
                    return Err(fail(
                        ErrorClass::Retryable,
                        "bulk_operation_ended",
                        format!("bulk operation {id} ended as {other}"),
                    ));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(fail(
                    ErrorClass::Retryable,
                    "bulk_timeout",
                    format!("bulk operation {id} did not finish in time"),
                ));
            }
        }
    }

    /// Downloads the result file (a signed URL: no token is sent).
    async fn download(&self, url: &str, requests: &mut u64) -> Result<Vec<u8>, ChannelError> {
        let mut failed = 0;
        loop {
            *requests += 1;
            let request = HttpRequest {
                method: http::Method::GET,
                url: url.to_string(),
                headers: http::HeaderMap::new(),
                body: Vec::new(),
            };
            let outcome = match self.transport.send(request).await {
                Ok(response) if (200..300).contains(&response.status) => return Ok(response.body),
                Ok(response) => {
                    let excerpt = response.body_excerpt(BODY_EXCERPT);
                    // 5xx, or an expired or refused signed URL (a new run
                    // gives a new one): retryable either way.
                    with_response(
                        ChannelError::new(
                            ErrorClass::Retryable,
                            format!("download_http_{}", response.status),
                            "the bulk operation's file could not be downloaded",
                        ),
                        response.status,
                        &excerpt,
                    )
                }
                Err(e) => e,
            };
            if failed >= MAX_RETRIES || outcome.status.is_some_and(|s| s < 500) {
                return Err(outcome);
            }
            failed += 1;
            tokio::time::sleep(Duration::from_millis(250 << failed)).await;
        }
    }

    /// Runs the bulk query and reads its file.
    pub(super) async fn bulk_read(
        &self,
        progress: BulkProgress<'_>,
    ) -> Result<BulkRead, ChannelError> {
        let started_at = chrono::Utc::now();
        let mut requests = 0;
        let id = self.start_bulk(&mut requests).await?;
        let url = self.wait_bulk(&id, &mut requests).await?;
        let listings = match url {
            None => Vec::new(),
            Some(url) => {
                let body = self.download(&url, &mut requests).await?;
                parse_jsonl(&body, progress)?
            }
        };
        progress(listings.len() as u64);
        Ok(BulkRead {
            started_at,
            listings,
            channel_requests: requests,
        })
    }
}

/// Reads the JSONL file: items (no `__parentId`) and their levels (with
/// it), in any order.
pub(super) fn parse_jsonl(
    body: &[u8],
    progress: BulkProgress<'_>,
) -> Result<Vec<ShownListing>, ChannelError> {
    let mut skus: HashMap<String, Option<String>> = HashMap::new();
    let mut levels: Vec<(String, String, Option<i64>)> = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            ChannelError::new(
                ErrorClass::Retryable,
                "bad_bulk_file",
                format!("line {} of the bulk file is not JSON: {e}", n + 1),
            )
        })?;
        let id = value.get("id").and_then(Value::as_str);
        match value.get("__parentId").and_then(Value::as_str) {
            None => {
                if let Some(id) = id {
                    let sku = value
                        .get("sku")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string);
                    skus.insert(id.to_string(), sku);
                }
            }
            Some(parent) => {
                let Some(location) = value.pointer("/location/id").and_then(Value::as_str) else {
                    continue;
                };
                let available = value
                    .get("quantities")
                    .and_then(Value::as_array)
                    .and_then(|qs| {
                        qs.iter()
                            .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
                    })
                    .and_then(|q| q.get("quantity"))
                    .and_then(Value::as_i64);
                levels.push((parent.to_string(), location.to_string(), available));
                if levels.len().is_multiple_of(1000) {
                    progress(levels.len() as u64);
                }
            }
        }
    }
    Ok(levels
        .into_iter()
        .filter_map(|(item, location, available)| {
            let key = key_of(&item, &location)?;
            Some(ShownListing {
                key,
                channel_sku: skus.get(&item).cloned().flatten(),
                level: match available {
                    Some(q) => level_of(q),
                    None => ChannelLevel {
                        quantity: None,
                        availability: None,
                    },
                },
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_before_parents_and_escaped_slashes_are_read() {
        let file = concat!(
            "{\"location\":{\"id\":\"gid:\\/\\/shopify\\/Location\\/7\"},\"quantities\":[{\"name\":\"available\",\"quantity\":4}],\"__parentId\":\"gid://shopify/InventoryItem/3\"}\n",
            "{\"id\":\"gid://shopify/InventoryItem/3\",\"sku\":\"A\"}\n",
            "\n",
            "{\"id\":\"gid://shopify/InventoryItem/5\",\"sku\":\"\"}\n",
            "{\"location\":{\"id\":\"gid://shopify/Location/7\"},\"quantities\":[],\"__parentId\":\"gid://shopify/InventoryItem/5\"}\n",
        );
        let listings = parse_jsonl(file.as_bytes(), &|_| {}).expect("parsed");
        assert_eq!(listings.len(), 2);
        assert_eq!(listings[0].key, "3@7");
        assert_eq!(listings[0].channel_sku.as_deref(), Some("A"));
        assert_eq!(listings[0].level.quantity, Some(4));
        assert_eq!(listings[1].channel_sku, None);
        assert_eq!(listings[1].level.quantity, None);
        assert!(parse_jsonl(b"{not json\n", &|_| {}).is_err());
    }

    #[test]
    fn keys_are_numeric_ids() {
        assert_eq!(
            key_of(
                "gid://shopify/InventoryItem/30322695",
                "gid://shopify/Location/1?x=1"
            ),
            Some("30322695@1".into())
        );
        assert_eq!(key_of("gid://shopify/InventoryItem/", "1"), None);
        assert!(same_query(BULK_QUERY, &BULK_QUERY.replace(' ', "\n  ")));
    }
}
