//! Login with Amazon: the refresh-token exchange and the cached access
//! token sent as `x-amz-access-token` on every SP-API call.

use super::*;

impl Amazon {
    // LWA (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>)

    pub(super) async fn access_token(&self) -> Result<String, ChannelError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if Instant::now() < token.expires_at {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    /// Drops the cached token if it is still `value` (a concurrent renewal
    /// may already have replaced it).
    pub(super) async fn invalidate_token(&self, value: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == value) {
            *slot = None;
        }
    }

    pub(super) async fn fetch_token(&self) -> Result<AccessToken, ChannelError> {
        let body = encode_pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &self.config.refresh_token),
            ("client_id", &self.config.client_id),
            ("client_secret", &self.config.client_secret),
        ]);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let request = HttpRequest {
            method: http::Method::POST,
            url: self.config.lwa_url.clone(),
            headers,
            body: body.into_bytes(),
        };
        let response = self.transport.send(request).await?;
        if !(200..300).contains(&response.status) {
            // LWA answers OAuth errors: `{"error": "invalid_grant", …}`.
            let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
            let code = parsed
                .as_ref()
                .and_then(|v| str_field(v, "error"))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http_{}", response.status));
            let description = parsed
                .as_ref()
                .and_then(|v| str_field(v, "error_description"))
                .unwrap_or("token request refused")
                .to_owned();
            let class = match response.status {
                429 => ErrorClass::RateLimited,
                408 | 500..=599 => ErrorClass::Retryable,
                _ => ErrorClass::Permanent,
            };
            return Err(ChannelError {
                class,
                code,
                message: format!("LWA token: {description}"),
                status: Some(response.status),
                body: body_excerpt(&response),
                retry_after: response.retry_after(),
                current: None,
            });
        }
        let value = json_body(&response, "LWA token")?;
        let access_token = str_field(&value, "access_token")
            .ok_or_else(|| invalid_response(&response, "LWA token answer has no access_token"))?
            .to_owned();
        // One hour when the answer does not say (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>).
        let lifetime = int_field(value.get("expires_in"))
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(Duration::from_secs(3600));
        Ok(AccessToken {
            value: access_token,
            expires_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }
}
