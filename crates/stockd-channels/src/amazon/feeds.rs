//! `JSON_LISTINGS_FEED` through the Feeds API 2021-06-30: the feed
//! document, its submission, following it to its processing report, and
//! feeds remembered while still processing.

use super::*;

/// What one feed's processing gave for its messages.
pub(super) enum FeedResult {
    /// The processing report's errors.
    Done(Report),
    /// Still processing when the bound passed.
    Pending(String),
    /// The whole feed failed; every message gets this error.
    Failed(ChannelError),
}

impl Amazon {
    // JSON_LISTINGS_FEED (<https://developer-docs.amazon.com/sp-api/docs/feeds-api-v2021-06-30-use-case-guide>)

    /// The feed document for `entries` of (message id, target, quantity).
    pub(super) fn feed_document(&self, entries: &[(u32, &Target, i64)]) -> Value {
        let messages: Vec<Value> = entries
            .iter()
            .map(|(message_id, target, quantity)| {
                json!({
                    "messageId": message_id,
                    "sku": target.seller_sku,
                    "operationType": "PATCH",
                    "productType": target.product_type,
                    "patches": quantity_patches(*quantity),
                })
            })
            .collect();
        json!({
            "header": {
                "sellerId": self.config.seller_id,
                "version": "2.0",
                "issueLocale": self.config.issue_locale,
            },
            "messages": messages,
        })
    }

    /// Creates, uploads and submits one feed; returns its id.
    pub(super) async fn submit_feed(
        &self,
        marketplace_id: &str,
        document: &Value,
    ) -> Result<String, ChannelError> {
        let response = self
            .call(
                Op::CreateFeedDocument,
                http::Method::POST,
                &format!("{FEEDS_PREFIX}/documents"),
                Some(&json!({ "contentType": FEED_CONTENT_TYPE })),
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "createFeedDocument"));
        }
        let created = json_body(&response, "createFeedDocument")?;
        let (Some(document_id), Some(url)) = (
            str_field(&created, "feedDocumentId"),
            str_field(&created, "url"),
        ) else {
            return Err(invalid_response(
                &response,
                "createFeedDocument answer lacks feedDocumentId or url",
            ));
        };
        self.document_transfer(
            http::Method::PUT,
            url,
            Some(document.to_string().into_bytes()),
        )
        .await?;
        let response = self
            .call(
                Op::CreateFeed,
                http::Method::POST,
                &format!("{FEEDS_PREFIX}/feeds"),
                Some(&json!({
                    "feedType": "JSON_LISTINGS_FEED",
                    "marketplaceIds": [marketplace_id],
                    "inputFeedDocumentId": document_id,
                })),
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "createFeed"));
        }
        let feed = json_body(&response, "createFeed")?;
        str_field(&feed, "feedId")
            .map(str::to_owned)
            .ok_or_else(|| invalid_response(&response, "createFeed answer has no feedId"))
    }

    /// One `getFeed`: the processing status and the result document id.
    pub(super) async fn feed_status(
        &self,
        feed_id: &str,
    ) -> Result<(String, Option<String>), ChannelError> {
        let response = self
            .call(
                Op::GetFeed,
                http::Method::GET,
                &format!("{FEEDS_PREFIX}/feeds/{}", percent_encode(feed_id)),
                None,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "getFeed"));
        }
        let feed = json_body(&response, "getFeed")?;
        let status = str_field(&feed, "processingStatus")
            .ok_or_else(|| invalid_response(&response, "getFeed answer has no processingStatus"))?
            .to_owned();
        Ok((
            status,
            str_field(&feed, "resultFeedDocumentId").map(str::to_owned),
        ))
    }

    /// Interprets a finished feed's status; `None` while it still runs.
    pub(super) async fn feed_outcome(
        &self,
        feed_id: &str,
        status: &str,
        result_document: Option<String>,
    ) -> Option<FeedResult> {
        match status {
            "DONE" => Some(match result_document {
                Some(document) => match self.processing_report(&document).await {
                    Ok(results) => FeedResult::Done(results),
                    Err(error) => FeedResult::Failed(error),
                },
                None => FeedResult::Failed(ChannelError::new(
                    ErrorClass::Retryable,
                    "no_report",
                    format!("feed {feed_id} is DONE without a result document"),
                )),
            }),
            // FATAL: "some, none, or all of the operations … may have
            // completed"; the values are absolute, so a resend is safe.
            "FATAL" | "CANCELLED" => Some(FeedResult::Failed(ChannelError::new(
                ErrorClass::Retryable,
                format!("feed_{}", status.to_ascii_lowercase()),
                format!("feed {feed_id} ended {status}"),
            ))),
            _ => None,
        }
    }

    /// Follows a submitted feed until it ends or `feed_timeout` passes.
    pub(super) async fn follow_feed(&self, feed_id: &str) -> FeedResult {
        let deadline = Instant::now() + self.config.feed_timeout;
        let mut last = "IN_QUEUE".to_owned();
        loop {
            let next = Instant::now() + self.config.feed_poll_interval;
            if next > deadline {
                return FeedResult::Pending(last);
            }
            tokio::time::sleep_until(next).await;
            match self.feed_status(feed_id).await {
                Ok((status, document)) => {
                    if let Some(result) = self.feed_outcome(feed_id, &status, document).await {
                        return result;
                    }
                    last = status;
                }
                // Transient trouble while the feed runs: keep following.
                Err(error)
                    if matches!(error.class, ErrorClass::Retryable | ErrorClass::RateLimited) => {}
                Err(mut error) => {
                    // The feed itself may well have applied; resending is safe.
                    error.class = ErrorClass::Retryable;
                    return FeedResult::Failed(error);
                }
            }
        }
    }

    /// Downloads a processing report and maps its issues to message ids.
    pub(super) async fn processing_report(
        &self,
        document_id: &str,
    ) -> Result<Report, ChannelError> {
        let response = self
            .call(
                Op::GetFeedDocument,
                http::Method::GET,
                &format!("{FEEDS_PREFIX}/documents/{}", percent_encode(document_id)),
                None,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "getFeedDocument"));
        }
        let document = json_body(&response, "getFeedDocument")?;
        let url = str_field(&document, "url")
            .ok_or_else(|| invalid_response(&response, "getFeedDocument answer has no url"))?;
        let download = self.document_transfer(http::Method::GET, url, None).await?;
        if download.body.starts_with(&[0x1f, 0x8b]) {
            // GZIP reports are not decoded (no decompressor in the build).
            return Err(ChannelError::new(
                ErrorClass::Retryable,
                "report_compressed",
                "the processing report is GZIP-compressed, which is not supported",
            ));
        }
        let report = json_body(&download, "processing report")?;
        let issues = report
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid_response(&download, "processing report has no issues array"))?;
        Ok(parse_report(issues, &download))
    }

    /// Resolves `pending` entries of earlier feeds with one status check each.
    pub(super) async fn resume_pending(
        &self,
        items: &[PushItem],
        outcomes: &mut [Option<ItemOutcome>],
    ) {
        let now = Instant::now();
        let mut by_feed: BTreeMap<String, Vec<(usize, u32, String)>> = BTreeMap::new();
        {
            let mut pending = self.pending_map();
            pending.retain(|_, p| now.duration_since(p.since) < PENDING_TTL);
            for (index, item) in items.iter().enumerate() {
                let Some(entry) = pending.get(&item.idempotency_key) else {
                    continue;
                };
                let same = parse_external(&item.external, &self.config.marketplace_id)
                    .map(|t| t.seller_sku == entry.seller_sku)
                    .unwrap_or(false)
                    && quantity_to_send(item) == entry.quantity;
                if same {
                    by_feed.entry(entry.feed_id.clone()).or_default().push((
                        index,
                        entry.message_id,
                        entry.seller_sku.clone(),
                    ));
                } else {
                    pending.remove(&item.idempotency_key);
                }
            }
        }
        for (feed_id, entries) in by_feed {
            // Kept while the feed runs or could not be asked; dropped once
            // it ended (or is unknown).
            let (result, keep) = match self.feed_status(&feed_id).await {
                Ok((status, document)) => {
                    match self.feed_outcome(&feed_id, &status, document).await {
                        Some(result) => (result, false),
                        None => (FeedResult::Pending(status), true),
                    }
                }
                Err(error) => {
                    let keep = error.class != ErrorClass::Permanent;
                    (FeedResult::Failed(error), keep)
                }
            };
            for (index, message_id, seller_sku) in &entries {
                outcomes[*index] = Some(feed_item_outcome(
                    &result,
                    &feed_id,
                    *message_id,
                    seller_sku,
                    quantity_to_send(&items[*index]),
                ));
                if !keep {
                    self.pending_map().remove(&items[*index].idempotency_key);
                }
            }
        }
    }

    /// Sends `group` (indexes into `items`, one marketplace) as one or more
    /// feeds and follows them.
    pub(super) async fn push_feed(
        &self,
        marketplace_id: &str,
        group: &[(usize, Target)],
        items: &[PushItem],
        outcomes: &mut [Option<ItemOutcome>],
    ) {
        for chunk in group.chunks(FEED_MAX_MESSAGES) {
            let entries = feed_entries(chunk, items);
            let document = self.feed_document(&entries);
            let result = match self.submit_feed(marketplace_id, &document).await {
                Ok(feed_id) => {
                    let result = self.follow_feed(&feed_id).await;
                    (Some(feed_id), result)
                }
                Err(error) => (None, FeedResult::Failed(error)),
            };
            let (feed_id, result) = result;
            let feed_id = feed_id.unwrap_or_default();
            for ((index, target), (message_id, _, quantity)) in chunk.iter().zip(&entries) {
                if matches!(result, FeedResult::Pending(_)) {
                    self.pending_map().insert(
                        items[*index].idempotency_key.clone(),
                        PendingRef {
                            feed_id: feed_id.clone(),
                            message_id: *message_id,
                            seller_sku: target.seller_sku.clone(),
                            quantity: *quantity,
                            since: Instant::now(),
                        },
                    );
                }
                outcomes[*index] = Some(feed_item_outcome(
                    &result,
                    &feed_id,
                    *message_id,
                    &target.seller_sku,
                    *quantity,
                ));
            }
        }
    }
}

/// A processing report's ERROR issues, by what they name.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) per_message: HashMap<u32, ChannelError>,
    /// Issues naming a SKU but no message id.
    pub(super) per_sku: HashMap<String, ChannelError>,
    /// Issues naming neither: they concern every message.
    pub(super) feed_level: Option<ChannelError>,
}

/// Maps a processing report's issues: an ERROR makes its message fail
/// permanently; messages without one applied (WARNING/INFO do not block).
/// An ERROR naming no message nor SKU fails every message, retryably.
pub(super) fn parse_report(issues: &[Value], download: &HttpResponse) -> Report {
    let mut per_message: HashMap<u32, Vec<&Value>> = HashMap::new();
    let mut per_sku: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut feed_level: Vec<&Value> = Vec::new();
    for issue in issues {
        if str_field(issue, "severity") != Some("ERROR") {
            continue;
        }
        match int_field(issue.get("messageId")).and_then(|m| u32::try_from(m).ok()) {
            Some(message_id) => per_message.entry(message_id).or_default().push(issue),
            None => match str_field(issue, "sku") {
                Some(sku) => per_sku.entry(sku.to_owned()).or_default().push(issue),
                None => feed_level.push(issue),
            },
        }
    }
    let to_error = |class: ErrorClass, list: &[&Value]| {
        let code = list
            .first()
            .and_then(|i| str_field(i, "code"))
            .unwrap_or("feed_error")
            .to_owned();
        let message = list
            .iter()
            .filter_map(|i| str_field(i, "message"))
            .collect::<Vec<_>>()
            .join("; ");
        ChannelError {
            class,
            code,
            message,
            status: Some(download.status),
            body: Some(Value::Array(list.iter().map(|v| (*v).clone()).collect()).to_string()),
            retry_after: None,
            current: None,
        }
    };
    Report {
        per_message: per_message
            .into_iter()
            .map(|(id, list)| (id, to_error(ErrorClass::Permanent, &list)))
            .collect(),
        per_sku: per_sku
            .into_iter()
            .map(|(sku, list)| (sku, to_error(ErrorClass::Permanent, &list)))
            .collect(),
        feed_level: (!feed_level.is_empty()).then(|| to_error(ErrorClass::Retryable, &feed_level)),
    }
}

/// The outcome of one feed message.
pub(super) fn feed_item_outcome(
    result: &FeedResult,
    feed_id: &str,
    message_id: u32,
    seller_sku: &str,
    quantity: i64,
) -> ItemOutcome {
    match result {
        FeedResult::Done(report) => {
            let error = report
                .per_message
                .get(&message_id)
                .or_else(|| report.per_sku.get(seller_sku))
                .or(report.feed_level.as_ref());
            match error {
                Some(error) => ItemOutcome::Failed(error.clone()),
                None => ItemOutcome::Applied { quantity },
            }
        }
        FeedResult::Pending(status) => ItemOutcome::Failed(ChannelError::new(
            ErrorClass::Retryable,
            "pending",
            format!("feed {feed_id} still {status}; checked again on the next push of this item"),
        )),
        FeedResult::Failed(error) => ItemOutcome::Failed(error.clone()),
    }
}

/// The tracker's reference of one feed message: `{feedId}#{messageId}`.
fn feed_reference(feed_id: &str, message_id: u32) -> String {
    format!("{feed_id}#{message_id}")
}

fn parse_feed_reference(reference: &str) -> Option<(&str, u32)> {
    let (feed_id, message_id) = reference.rsplit_once('#')?;
    Some((feed_id, message_id.parse().ok()?)).filter(|(f, _)| !f.is_empty())
}

impl Amazon {
    /// Submits `group` (indexes into `items`, one marketplace) as one or
    /// more feeds without following them: each message comes back
    /// `Accepted` with its feed and message id.
    pub(super) async fn submit_feeds(
        &self,
        marketplace_id: &str,
        group: &[(usize, Target)],
        items: &[PushItem],
        out: &mut [Option<Submitted>],
    ) {
        for chunk in group.chunks(FEED_MAX_MESSAGES) {
            let entries = feed_entries(chunk, items);
            let document = self.feed_document(&entries);
            let submitted = self.submit_feed(marketplace_id, &document).await;
            for ((index, _), (message_id, _, _)) in chunk.iter().zip(&entries) {
                out[*index] = Some(match &submitted {
                    Ok(feed_id) => Submitted::Accepted {
                        reference: feed_reference(feed_id, *message_id),
                    },
                    Err(error) => Submitted::Done(ItemOutcome::Failed(error.clone())),
                });
            }
        }
    }

    /// Asks `getFeed` once per feed the items name and, for a finished
    /// feed, reads its processing report (`getFeedDocument`): one answer
    /// per item, `None` while its feed still runs or could not be asked.
    pub(super) async fn track_feeds(
        &self,
        items: &[TrackedItem],
    ) -> Result<Vec<Option<ItemOutcome>>, ChannelError> {
        let mut out: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut by_feed: BTreeMap<&str, Vec<(usize, u32)>> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            match parse_feed_reference(&item.reference) {
                Some((feed_id, message_id)) => by_feed
                    .entry(feed_id)
                    .or_default()
                    .push((index, message_id)),
                None => {
                    out[index] = Some(ItemOutcome::Failed(ChannelError::new(
                        ErrorClass::Retryable,
                        "bad_reference",
                        format!("{} names no feed message", item.reference),
                    )))
                }
            }
        }
        for (feed_id, entries) in by_feed {
            let result = match self.feed_status(feed_id).await {
                Ok((status, document)) => {
                    match self.feed_outcome(feed_id, &status, document).await {
                        Some(result) => result,
                        None => continue,
                    }
                }
                // Throttled: the other feeds are asked next time.
                Err(error) if error.class == ErrorClass::RateLimited => break,
                Err(error) if error.class == ErrorClass::Permanent => FeedResult::Failed(error),
                Err(_) => continue,
            };
            for (index, message_id) in entries {
                let item = &items[index].item;
                let seller_sku = parse_external(&item.external, &self.config.marketplace_id)
                    .map(|t| t.seller_sku)
                    .unwrap_or_default();
                out[index] = Some(feed_item_outcome(
                    &result,
                    feed_id,
                    message_id,
                    &seller_sku,
                    quantity_to_send(item),
                ));
            }
        }
        Ok(out)
    }

    /// The bulk lane without waiting: per marketplace, more than
    /// `feed_threshold` items go in a feed that is submitted and tracked
    /// later; the others are patched at once.
    pub(super) async fn submit_items(
        &self,
        items: &[PushItem],
    ) -> Result<Vec<Submitted>, ChannelError> {
        let mut out: Vec<Option<Submitted>> = vec![None; items.len()];
        let mut groups: Vec<(String, Vec<(usize, Target)>)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match parse_external(&item.external, &self.config.marketplace_id) {
                Ok(target) => match groups.iter_mut().find(|(m, _)| *m == target.marketplace_id) {
                    Some((_, group)) => group.push((index, target)),
                    None => groups.push((target.marketplace_id.clone(), vec![(index, target)])),
                },
                Err(error) => out[index] = Some(Submitted::Done(ItemOutcome::Failed(error))),
            }
        }
        let mut rest: Vec<usize> = Vec::new();
        for (marketplace_id, group) in groups {
            if group.len() > self.config.feed_threshold {
                self.submit_feeds(&marketplace_id, &group, items, &mut out)
                    .await;
            } else {
                rest.extend(group.iter().map(|(index, _)| *index));
            }
        }
        if !rest.is_empty() {
            let patched: Vec<PushItem> = rest.iter().map(|i| items[*i].clone()).collect();
            match self
                .push_items(&patched, usize::MAX, BULK_PATCH_RESERVE)
                .await
            {
                Ok(outcomes) => {
                    for (index, outcome) in rest.iter().zip(outcomes) {
                        out[*index] = Some(Submitted::Done(outcome));
                    }
                }
                Err(error) => {
                    if rest.len() == items.len() {
                        return Err(error);
                    }
                    for index in &rest {
                        out[*index] = Some(Submitted::Done(ItemOutcome::Failed(error.clone())));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Submitted::Done(crate::not_sent())))
            .collect())
    }
}

/// A feed's messages for one chunk: message id (from 1), target, quantity.
fn feed_entries<'a>(
    chunk: &'a [(usize, Target)],
    items: &[PushItem],
) -> Vec<(u32, &'a Target, i64)> {
    chunk
        .iter()
        .enumerate()
        .map(|(n, (index, target))| (n as u32 + 1, target, quantity_to_send(&items[*index])))
        .collect()
}
