//! Stock updates followed by a tracker instead of by the push that sent
//! them: `submit` sends the v10 stock PUTs and hands back each 202's
//! process status id; `track` asks bol about many of them at once through
//! the bulk process-status read, `POST /shared/process-status` with
//! `{"processStatusQueries":[{"processStatusId":…}]}` (1 to 1,000 ids per
//! request, `BulkProcessStatusRequest` / `ProcessStatusResponse` in
//! `specs/bol/shared-v10.json`), paced by its own bucket (2/s in bol's older
//! published list, UNCONFIRMED today,
//! <https://api.bol.com/retailer/public/Retailer-API/ratelimits.html>).
//!
//! A process the answer does not list has expired (statuses are "only
//! retained for a limited period", `specs/bol/shared-v10.json`): the
//! offer's stock is read back and the update is applied only when bol holds
//! the amount sent.

use super::{
    json_of, offer_id_of, process_state, stock_amount, string_value, Bol, Endpoint, InFlight,
    Media, Process,
};
use crate::{ChannelError, ErrorClass, ItemOutcome, PushItem, Submitted, TrackedItem};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Most ids one bulk process-status request takes (`specs/bol/shared-v10.json`).
const BULK_STATUS_IDS: usize = 1_000;

/// The process status id a 202 names: `processStatusId`, else the last
/// segment of a link to a process status.
fn process_id(status: &Value) -> Option<String> {
    if let Some(id) = string_value(status.get("processStatusId")) {
        return Some(id);
    }
    status
        .get("links")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|l| l.get("href").and_then(Value::as_str))
        .find_map(|href| {
            href.split_once("/process-status/")
                .map(|(_, id)| id.trim_end_matches('/').to_owned())
        })
        .filter(|id| !id.is_empty())
}

impl Bol {
    /// v10: sends each stock PUT (leaving `reserve` tokens for protective
    /// updates); a pending process comes back `Accepted` with its process
    /// status id.
    pub(super) async fn submit_v10(&self, items: &[PushItem], reserve: f64) -> Vec<Submitted> {
        let mut out = Vec::with_capacity(items.len());
        let mut halted: Option<ChannelError> = None;
        for (index, item) in items.iter().enumerate() {
            if let Some(error) = &halted {
                out.push(Submitted::Done(ItemOutcome::Failed(error.clone())));
                continue;
            }
            let offer_id = match offer_id_of(&item.external) {
                Ok(id) => id,
                Err(error) => {
                    out.push(Submitted::Done(ItemOutcome::Failed(error)));
                    continue;
                }
            };
            let amount = stock_amount(item.quantity);
            match self.put_stock(&offer_id, amount, reserve).await {
                Ok(status) => match self.follow_up(index, &offer_id, amount, &status) {
                    Ok(_) => match process_id(&status) {
                        Some(reference) => out.push(Submitted::Accepted { reference }),
                        None => out.push(Submitted::Done(ItemOutcome::Failed(ChannelError::new(
                            ErrorClass::Retryable,
                            "no_process_status",
                            format!(
                                "stock update of offer {offer_id}: answer names no process status"
                            ),
                        )))),
                    },
                    Err(outcome) => out.push(Submitted::Done(outcome)),
                },
                Err(error) => {
                    // The rest would meet the same block or refused token.
                    if error.class == ErrorClass::RateLimited
                        || error.code == "unauthorized"
                        || error.code == "auth_failed"
                    {
                        halted = Some(error.clone());
                    }
                    out.push(Submitted::Done(ItemOutcome::Failed(error)));
                }
            }
        }
        out
    }

    /// Reads the process statuses of `items` in bulk; `None` while pending.
    pub(super) async fn track_processes(
        &self,
        items: &[TrackedItem],
    ) -> Result<Vec<Option<ItemOutcome>>, ChannelError> {
        let mut out: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let url = format!("{}/shared/process-status", self.api());
        for (chunk_no, chunk) in items.chunks(BULK_STATUS_IDS).enumerate() {
            let queries: Vec<Value> = chunk
                .iter()
                .map(|item| json!({"processStatusId": item.reference}))
                .collect();
            let body = json!({ "processStatusQueries": queries });
            let response = match self
                .call(
                    Endpoint::ProcessStatusBulk,
                    http::Method::POST,
                    &url,
                    Media::V10,
                    Some(&body),
                    "bulk process status",
                )
                .await
            {
                Ok(response) => response,
                // Nothing asked yet: the caller tries again later.
                Err(error) if chunk_no == 0 => return Err(error),
                // Some were answered: the rest stay pending.
                Err(_) => break,
            };
            let answer = json_of(&response, "bulk process status")?;
            let statuses: HashMap<String, &Value> = answer
                .get("processStatuses")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|s| string_value(s.get("processStatusId")).map(|id| (id, s)))
                        .collect()
                })
                .unwrap_or_default();
            for (n, item) in chunk.iter().enumerate() {
                let index = chunk_no * BULK_STATUS_IDS + n;
                let offer_id = match offer_id_of(&item.item.external) {
                    Ok(id) => id,
                    Err(error) => {
                        out[index] = Some(ItemOutcome::Failed(error));
                        continue;
                    }
                };
                let amount = stock_amount(item.item.quantity);
                out[index] = match statuses.get(&item.reference) {
                    Some(status) => match process_state(status) {
                        Process::Pending => None,
                        _ => self.follow_up(index, &offer_id, amount, status).err(),
                    },
                    // Expired: what bol holds decides.
                    None => Some(
                        self.read_back(&InFlight {
                            index,
                            offer_id,
                            amount,
                            url: String::new(),
                        })
                        .await,
                    ),
                };
            }
        }
        Ok(out)
    }
}
