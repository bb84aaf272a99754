//! Listings Items 2021-08-01: one `patchListingsItem` per SKU (the fast
//! path) and `getListingsItem` to read a listing's quantity back.

use super::*;

/// The quantity sent: never negative, 0 when the listing must not sell.
pub(super) fn quantity_to_send(item: &PushItem) -> i64 {
    if item.availability == Availability::OutOfStock {
        0
    } else {
        item.quantity.max(0)
    }
}

/// One `merge` of the DEFAULT (merchant-fulfilled) channel's quantity: other
/// fields such as `lead_time_to_ship_max_days` are kept (<https://developer-docs.amazon.com/sp-api/docs/listings-items-api-v2021-08-01-reference>).
pub(super) fn quantity_patches(quantity: i64) -> Value {
    json!([{
        "op": "merge",
        "path": "/attributes/fulfillment_availability",
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
    }])
}

impl Amazon {
    // Listings Items (<https://developer-docs.amazon.com/sp-api/docs/listings-items-api-v2021-08-01-reference>)

    /// Patches one listing's quantity, leaving `reserve` tokens of the
    /// patch bucket for more urgent patches.
    pub(super) async fn patch_one(
        &self,
        target: &Target,
        quantity: i64,
        reserve: f64,
    ) -> ItemOutcome {
        let path = self.listing_path(target, &[("issueLocale", &self.config.issue_locale)]);
        let body = json!({
            "productType": target.product_type,
            "patches": quantity_patches(quantity),
        });
        let response = match self
            .call_leaving(
                Op::PatchListingsItem,
                reserve,
                http::Method::PATCH,
                &path,
                Some(&body),
            )
            .await
        {
            Ok(response) => response,
            Err(error) => return ItemOutcome::Failed(error),
        };
        if !(200..300).contains(&response.status) {
            return ItemOutcome::Failed(error_from(&response, "patchListingsItem"));
        }
        let value = match json_body(&response, "patchListingsItem") {
            Ok(value) => value,
            Err(error) => return ItemOutcome::Failed(error),
        };
        match str_field(&value, "status") {
            Some("ACCEPTED") => ItemOutcome::Applied { quantity },
            // INVALID comes with HTTP 200 and the reasons in `issues` (<https://developer-docs.amazon.com/sp-api/docs/listings-items-api-v2021-08-01-reference>).
            Some("INVALID") => {
                let issues: Vec<&Value> = value
                    .get("issues")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let errors: Vec<&&Value> = issues
                    .iter()
                    .filter(|i| str_field(i, "severity") == Some("ERROR"))
                    .collect();
                let shown: Vec<&&Value> = if errors.is_empty() {
                    issues.iter().collect()
                } else {
                    errors
                };
                let code = shown
                    .first()
                    .and_then(|i| str_field(i, "code"))
                    .unwrap_or("INVALID")
                    .to_owned();
                let message = shown
                    .iter()
                    .filter_map(|i| str_field(i, "message"))
                    .collect::<Vec<_>>()
                    .join("; ");
                ItemOutcome::Failed(ChannelError {
                    class: ErrorClass::Permanent,
                    code,
                    message: if message.is_empty() {
                        "submission INVALID".to_owned()
                    } else {
                        message
                    },
                    status: Some(response.status),
                    body: body_excerpt(&response),
                    retry_after: None,
                    current: None,
                })
            }
            other => ItemOutcome::Failed(ChannelError {
                class: ErrorClass::Retryable,
                code: "not_accepted".to_owned(),
                message: format!("submission status {}", other.unwrap_or("missing")),
                status: Some(response.status),
                body: body_excerpt(&response),
                retry_after: None,
                current: None,
            }),
        }
    }

    pub(super) async fn read_one(&self, target: &Target) -> Result<ChannelLevel, ChannelError> {
        let path = self.listing_path(target, &[("includedData", "fulfillmentAvailability")]);
        let response = self
            .call(Op::GetListingsItem, http::Method::GET, &path, None)
            .await?;
        if !(200..300).contains(&response.status) {
            let mut error = error_from(&response, "getListingsItem");
            if response.status == 404 {
                error.code = "not_found".to_owned();
            }
            return Err(error);
        }
        let value = json_body(&response, "getListingsItem")?;
        let quantity = value
            .get("fulfillmentAvailability")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|e| str_field(e, "fulfillmentChannelCode") == Some("DEFAULT"))
            })
            .and_then(|e| int_field(e.get("quantity")));
        Ok(ChannelLevel {
            quantity,
            availability: quantity.map(|q| {
                if q > 0 {
                    Availability::InStock
                } else {
                    Availability::OutOfStock
                }
            }),
        })
    }
}
