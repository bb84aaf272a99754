//! Inventory: listing ids as GraphQL gids, the `inventorySetQuantities`
//! rounds with compare-and-set (stale items read back and sent again) and
//! reading levels through `nodes(ids:)`.

use super::*;

/// A GID of `kind` from a GID string, a numeric string or a JSON number.
/// Numbers are kept as integers: REST ids exceed 2^53 (<https://shopify.dev/docs/api/admin-graphql>).
pub(super) fn gid(external: &External, key: &str, kind: &str) -> Result<String, ChannelError> {
    let missing = || {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            format!("listing has no Shopify {key}"),
        )
    };
    let invalid = |v: &Value| {
        ChannelError::new(
            ErrorClass::Permanent,
            "invalid_external_id",
            format!("listing's Shopify {key} is not a {kind} id: {v}"),
        )
    };
    let value = external.get(key).ok_or_else(missing)?;
    let prefix = format!("gid://shopify/{kind}/");
    match value {
        Value::Null => Err(missing()),
        Value::Number(n) => match n.as_u64() {
            Some(id) if id > 0 => Ok(format!("{prefix}{id}")),
            _ => Err(invalid(value)),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                Err(missing())
            } else if let Some(tail) = s.strip_prefix(&prefix) {
                let numeric = tail.split('?').next().unwrap_or_default();
                if !numeric.is_empty() && numeric.bytes().all(|c| c.is_ascii_digit()) {
                    Ok(s.to_string())
                } else {
                    Err(invalid(value))
                }
            } else if s.bytes().all(|c| c.is_ascii_digit()) {
                Ok(format!("{prefix}{s}"))
            } else {
                Err(invalid(value))
            }
        }
        _ => Err(invalid(value)),
    }
}

pub(super) fn item_and_location(external: &External) -> Result<(String, String), ChannelError> {
    let item = gid(external, "inventory_item_id", "InventoryItem")?;
    let location = gid(external, "location_id", "Location")?;
    Ok((item, location))
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Position in the `push` input.
    pub(super) index: usize,
    pub(super) item: String,
    pub(super) location: String,
    pub(super) quantity: i64,
    /// What the channel is believed to hold (`compareQuantity` /
    /// `changeFromQuantity`); `None` only with `changeFromQuantity`, where an
    /// explicit null opts out of the check (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
    pub(super) compare: Option<i64>,
    pub(super) idempotency_key: String,
    pub(super) reference: String,
}

pub(super) struct SetAnswer {
    pub(super) user_errors: Vec<UserError>,
    /// `quantityAfterChange` of `available` per (item, location).
    pub(super) after: HashMap<(String, String), Option<i64>>,
    pub(super) status: u16,
    pub(super) excerpt: String,
}

/// Whether `reference` is a URI with a scheme; <https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities> accepts `gid://app/Entity/id` or any
/// other URI with a scheme.
pub(super) fn has_scheme(reference: &str) -> bool {
    let Some((scheme, rest)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

/// `referenceDocumentUri` for one call. One shared reference is sent as is
/// (made into `gid://stockd/Reference/…` when it has no scheme); several
/// references in one call are named as one batch in the preferred
/// `gid://[app]/[entity]/[id]` form (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
pub(super) fn reference_uri(round: &[Entry]) -> String {
    let first = round.first().map(|e| e.reference.as_str()).unwrap_or("");
    if !first.is_empty() && round.iter().all(|e| e.reference == first) {
        if has_scheme(first) {
            return first.to_string();
        }
        return format!("gid://stockd/Reference/{}", percent_encode(first));
    }
    let mut hasher = Sha256::new();
    for e in round {
        hasher.update(e.reference.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("gid://stockd/PushBatch/{hex}")
}

pub(super) fn uuid_from_digest(digest: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // RFC 4122 name-based layout: version 5, variant 10.
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `@idempotent` key of one call: a UUID derived from the items'
/// idempotency keys and the exact values sent, so a retry of the same batch
/// reuses it and a different call (a subset after per-item errors, other
/// values) never collides with it (IDEMPOTENCY_KEY_PARAMETER_MISMATCH, <https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
pub(super) fn batch_idempotency_key(round: &[Entry], reference: &str, attempt: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"stockd/shopify/inventorySetQuantities\0");
    for e in round {
        let compare = e
            .compare
            .map_or_else(|| "null".to_string(), |c| c.to_string());
        for part in [
            e.idempotency_key.as_str(),
            e.item.as_str(),
            e.location.as_str(),
            &e.quantity.to_string(),
            &compare,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
    }
    hasher.update(reference.as_bytes());
    hasher.update([0]);
    if attempt > 0 {
        hasher.update(format!("attempt-{attempt}").as_bytes());
    }
    uuid_from_digest(&hasher.finalize())
}

pub(super) fn level_of(quantity: i64) -> ChannelLevel {
    ChannelLevel {
        quantity: Some(quantity),
        availability: Some(if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        }),
    }
}

pub(super) fn with_response(mut e: ChannelError, status: u16, excerpt: &str) -> ChannelError {
    e.status = Some(status);
    e.body = Some(excerpt.to_string());
    e
}

impl Shopify {
    /// Levels for resolved (item, location) pairs, in the order given.
    pub(super) async fn read_resolved(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut out: Vec<Option<Result<ChannelLevel, ChannelError>>> = vec![None; pairs.len()];
        // One location per query (`inventoryLevel(locationId:)`), in first-seen order.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, (_, location)) in pairs.iter().enumerate() {
            let g = *group_of.entry(location.as_str()).or_insert_with(|| {
                groups.push((location.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        let mut any_answered = false;
        let mut failure: Option<ChannelError> = None;
        'groups: for (location, positions) in &groups {
            for chunk in positions.chunks(self.items_per_call(levels_cost)) {
                let ids: Vec<&str> = chunk.iter().map(|&i| pairs[i].0.as_str()).collect();
                let variables = json!({ "ids": ids, "locationId": location });
                let answer = match self
                    .graphql(LEVELS_DOCUMENT, variables, levels_cost(chunk.len()), None)
                    .await
                {
                    Ok(answer) => answer,
                    Err(e) => {
                        failure = Some(e);
                        break 'groups;
                    }
                };
                any_answered = true;
                let nodes = answer.data.get("nodes").and_then(Value::as_array);
                for (k, &i) in chunk.iter().enumerate() {
                    let node = nodes.and_then(|n| n.get(k));
                    out[i] = Some(level_from_node(
                        &pairs[i].0,
                        node,
                        chunk.len(),
                        nodes,
                        &answer,
                    ));
                }
            }
        }
        if let Some(e) = failure {
            if !any_answered {
                return Err(e);
            }
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(Err(e.clone()));
            }
        }
        Ok(out
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_read",
                        "level was not read",
                    ))
                })
            })
            .collect())
    }

    /// One `inventorySetQuantities` call for `round`.
    pub(super) async fn send_set(
        &self,
        round: &[Entry],
        attempt: u32,
    ) -> Result<SetAnswer, ChannelError> {
        let quantities: Vec<Value> = round
            .iter()
            .map(|e| {
                let mut q = json!({
                    "inventoryItemId": e.item,
                    "locationId": e.location,
                    "quantity": e.quantity,
                });
                if self.change_from {
                    // <https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities> (2026-01+): explicit null opts out of the check.
                    q["changeFromQuantity"] = e.compare.map_or(Value::Null, Value::from);
                } else {
                    q["compareQuantity"] = e.compare.map_or(Value::Null, Value::from);
                }
                q
            })
            .collect();
        let reference = reference_uri(round);
        let variables = json!({ "input": {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": reference,
            "quantities": quantities,
        }});
        let key = self
            .change_from
            .then(|| batch_idempotency_key(round, &reference, attempt));
        let document = set_document(key.as_deref());
        let answer = self
            .graphql(
                &document,
                variables,
                self.set_estimate(round.len()),
                Some(round.len()),
            )
            .await?;
        let bad = |message: &str| {
            with_response(
                ChannelError::new(ErrorClass::Retryable, "bad_response", message),
                answer.status,
                &answer.excerpt,
            )
        };
        let payload = answer
            .data
            .get("inventorySetQuantities")
            .filter(|p| p.is_object())
            .ok_or_else(|| bad("no inventorySetQuantities payload"))?;
        let user_errors = match payload.get("userErrors") {
            Some(Value::Array(list)) => list.iter().map(UserError::parse).collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(bad("userErrors is not a list")),
        };
        let mut after = HashMap::new();
        if let Some(changes) = payload
            .pointer("/inventoryAdjustmentGroup/changes")
            .and_then(Value::as_array)
        {
            for change in changes {
                if change.get("name").and_then(Value::as_str) != Some("available") {
                    continue;
                }
                let item = change.pointer("/item/id").and_then(Value::as_str);
                let location = change.pointer("/location/id").and_then(Value::as_str);
                if let (Some(item), Some(location)) = (item, location) {
                    let quantity = change.get("quantityAfterChange").and_then(Value::as_i64);
                    after.insert((item.to_string(), location.to_string()), quantity);
                }
            }
        }
        Ok(SetAnswer {
            user_errors,
            after,
            status: answer.status,
            excerpt: answer.excerpt,
        })
    }

    /// Current levels for stale entries, as `Stale` failures.
    pub(super) async fn stale_failures(
        &self,
        stale: &[(Entry, String)],
        status: u16,
        excerpt: &str,
    ) -> Vec<(usize, ChannelError)> {
        let pairs: Vec<(String, String)> = stale
            .iter()
            .map(|(e, _)| (e.item.clone(), e.location.clone()))
            .collect();
        let levels = self.read_resolved(&pairs).await;
        stale
            .iter()
            .enumerate()
            .map(|(k, (entry, message))| {
                let current = match &levels {
                    Ok(levels) => levels
                        .get(k)
                        .and_then(|l| l.as_ref().ok())
                        .and_then(|l| l.quantity),
                    Err(_) => None,
                };
                let code = if self.change_from {
                    "CHANGE_FROM_QUANTITY_STALE"
                } else {
                    "COMPARE_QUANTITY_STALE"
                };
                let mut e = with_response(
                    ChannelError::new(ErrorClass::Stale, code, message.clone()),
                    status,
                    excerpt,
                );
                e.current = current;
                (entry.index, e)
            })
            .collect()
    }

    /// Sends one chunk (≤ 250) until every entry has an outcome: entries
    /// failing with a user error are taken out and the rest resent. Returns
    /// how many were applied; `Err` when a call failed as a whole.
    pub(super) async fn push_chunk(
        &self,
        chunk: Vec<Entry>,
        outcomes: &mut [Option<ItemOutcome>],
        applied_so_far: usize,
    ) -> Result<usize, ChannelError> {
        let mut applied = 0;
        let mut round: Vec<Entry> = Vec::with_capacity(chunk.len());
        let mut seen = HashSet::new();
        for entry in chunk {
            if seen.insert((entry.item.clone(), entry.location.clone())) {
                round.push(entry);
            } else {
                outcomes[entry.index] = Some(ItemOutcome::Failed(ChannelError::new(
                    ErrorClass::Permanent,
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    "the same inventory item and location appear twice in one batch",
                )));
            }
        }
        let mut attempt = 0u32;
        while !round.is_empty() {
            let answer = match self.send_set(&round, attempt).await {
                Ok(answer) => answer,
                Err(e) => {
                    if applied_so_far + applied == 0 {
                        return Err(e);
                    }
                    for entry in &round {
                        outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                    }
                    return Ok(applied);
                }
            };
            let SetAnswer {
                user_errors,
                after,
                status,
                excerpt,
            } = answer;
            let applied_quantity = |entry: &Entry| -> Option<i64> {
                after
                    .get(&(entry.item.clone(), entry.location.clone()))
                    .map(|q| q.unwrap_or(entry.quantity))
            };
            if user_errors.is_empty() {
                for entry in &round {
                    let quantity = applied_quantity(entry).unwrap_or(entry.quantity);
                    outcomes[entry.index] = Some(ItemOutcome::Applied { quantity });
                }
                applied += round.len();
                break;
            }
            if let Some(ue) = user_errors
                .iter()
                .find(|u| u.code == "IDEMPOTENCY_CONCURRENT_REQUEST")
            {
                let e = with_response(
                    ChannelError::new(ErrorClass::Retryable, ue.code.clone(), ue.message.clone()),
                    status,
                    &excerpt,
                );
                if applied_so_far + applied == 0 {
                    return Err(e);
                }
                for entry in &round {
                    outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                }
                return Ok(applied);
            }
            // <https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>: "Retry with a new idempotency key" — once.
            if attempt == 0
                && user_errors
                    .iter()
                    .any(|u| u.code == "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")
            {
                attempt = 1;
                continue;
            }

            // Attribute each error to a quantity of this round.
            let mut failed: HashMap<usize, ChannelError> = HashMap::new();
            let mut stale: HashMap<usize, String> = HashMap::new();
            let mut unattributed_stale: Option<String> = None;
            let mut unattributed: Option<ChannelError> = None;
            for ue in &user_errors {
                let position = ue
                    .position()
                    .filter(|&p| p < round.len())
                    .or((round.len() == 1).then_some(0));
                let as_error = || {
                    with_response(
                        ChannelError::new(
                            ErrorClass::Permanent,
                            ue.code.clone(),
                            ue.message.clone(),
                        ),
                        status,
                        &excerpt,
                    )
                };
                match (position, ue.is_stale()) {
                    (Some(p), true) => {
                        stale.insert(p, ue.message.clone());
                    }
                    (Some(p), false) => {
                        failed.entry(p).or_insert_with(as_error);
                    }
                    (None, true) => unattributed_stale = Some(ue.message.clone()),
                    (None, false) => unattributed = unattributed.or_else(|| Some(as_error())),
                }
            }
            // A channel that applied the valid quantities despite errors says
            // so in `changes`; those are done and must not be resent.
            let mut done: HashSet<usize> = HashSet::new();
            for (p, entry) in round.iter().enumerate() {
                if failed.contains_key(&p) || stale.contains_key(&p) {
                    continue;
                }
                if let Some(quantity) = applied_quantity(entry) {
                    outcomes[entry.index] = Some(ItemOutcome::Applied { quantity });
                    done.insert(p);
                    applied += 1;
                }
            }
            if let Some(e) = unattributed {
                // An error naming no quantity concerns the whole call.
                for p in 0..round.len() {
                    if !done.contains(&p) && !stale.contains_key(&p) {
                        failed.entry(p).or_insert_with(|| e.clone());
                    }
                }
            }
            if let Some(message) = unattributed_stale {
                // Find the stale ones by reading: those whose count differs
                // from the compare value (all of them if none can be told).
                let candidates: Vec<usize> = (0..round.len())
                    .filter(|p| {
                        !done.contains(p) && !failed.contains_key(p) && !stale.contains_key(p)
                    })
                    .collect();
                let pairs: Vec<(String, String)> = candidates
                    .iter()
                    .map(|&p| (round[p].item.clone(), round[p].location.clone()))
                    .collect();
                let levels = self.read_resolved(&pairs).await.ok();
                let mut found = false;
                for (k, &p) in candidates.iter().enumerate() {
                    let current = levels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .and_then(|l| l.as_ref().ok())
                        .and_then(|l| l.quantity);
                    if let (Some(current), Some(compare)) = (current, round[p].compare) {
                        if current != compare {
                            stale.insert(p, message.clone());
                            found = true;
                        }
                    }
                }
                if !found {
                    for p in candidates {
                        stale.insert(p, message.clone());
                    }
                }
            }

            let stale_entries: Vec<(Entry, String)> = stale
                .iter()
                .map(|(&p, message)| (round[p].clone(), message.clone()))
                .collect();
            for (index, e) in self.stale_failures(&stale_entries, status, &excerpt).await {
                outcomes[index] = Some(ItemOutcome::Failed(e));
            }
            for (&p, e) in &failed {
                outcomes[round[p].index] = Some(ItemOutcome::Failed(e.clone()));
            }
            let before = round.len();
            round = round
                .into_iter()
                .enumerate()
                .filter(|(p, _)| {
                    !done.contains(p) && !failed.contains_key(p) && !stale.contains_key(p)
                })
                .map(|(_, entry)| entry)
                .collect();
            if round.len() == before {
                // Errors that removed nothing cannot be resolved by resending.
                let e = with_response(
                    ChannelError::new(
                        ErrorClass::Permanent,
                        "unattributed_user_error",
                        "user errors named no quantity of the call",
                    ),
                    status,
                    &excerpt,
                );
                for entry in &round {
                    outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                }
                break;
            }
        }
        Ok(applied)
    }
}

/// One `nodes` entry as a level (`None` node: unknown item; `null` level:
/// not stocked at the location).
pub(super) fn level_from_node(
    asked: &str,
    node: Option<&Value>,
    expected: usize,
    nodes: Option<&Vec<Value>>,
    answer: &GqlOk,
) -> Result<ChannelLevel, ChannelError> {
    let fail = |class: ErrorClass, code: &str, message: &str| {
        Err(with_response(
            ChannelError::new(class, code, message),
            answer.status,
            &answer.excerpt,
        ))
    };
    if nodes.map(Vec::len) != Some(expected) {
        return fail(
            ErrorClass::Retryable,
            "bad_response",
            "nodes does not match the ids asked for",
        );
    }
    let Some(node) = node.filter(|n| !n.is_null()) else {
        return fail(
            ErrorClass::Permanent,
            "INVALID_INVENTORY_ITEM",
            "no such inventory item",
        );
    };
    if node
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| id != asked)
    {
        return fail(
            ErrorClass::Retryable,
            "bad_response",
            "nodes answered for another id",
        );
    }
    let Some(level) = node.get("inventoryLevel").filter(|l| !l.is_null()) else {
        return fail(
            ErrorClass::Permanent,
            "ITEM_NOT_STOCKED_AT_LOCATION",
            "the inventory item is not stocked at the location",
        );
    };
    let available = level
        .get("quantities")
        .and_then(Value::as_array)
        .and_then(|qs| {
            qs.iter()
                .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
        })
        .and_then(|q| q.get("quantity"))
        .and_then(Value::as_i64);
    match available {
        Some(quantity) => Ok(level_of(quantity)),
        None => fail(
            ErrorClass::Retryable,
            "bad_response",
            "level has no available quantity",
        ),
    }
}
