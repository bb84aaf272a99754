//! PostgreSQL side of `ConsoleReads` (see `crate::console`).

use super::outbox::to_rows;
use super::PgStore;
use crate::console::{self as c, ChannelHealth, ConsoleReads, LaggingFilter, OversellTotals};
use crate::outbox::{pg, OutboxRow};
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use stockd_core::{ChannelId, RmaId, Sku, Variant};
use tokio_postgres::Row;

fn variants(rows: &[Row]) -> Result<Vec<Variant>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Variant {
                sku: parse_id(r.get::<_, String>(0), Sku::parse)?,
                title: r.get(1),
                product_id: r.get(2),
                gtin: r.get(3),
            })
        })
        .collect()
}

#[async_trait]
impl ConsoleReads for PgStore {
    async fn search_variants(&self, text: &str, limit: u32) -> Result<Vec<Variant>, StoreError> {
        let text = text.trim();
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.reader().await?;
        let max = limit as usize;
        let n = i64::from(limit);
        let prefix_sql = pg(c::SKU_PREFIX_SQL);
        // starts_with guards against collations that do not sort by bytes.
        let prefixed = |found: Vec<Variant>, p: &str| -> Vec<Variant> {
            found
                .into_iter()
                .filter(|v| v.sku.as_str().starts_with(p))
                .collect()
        };
        let rows = client
            .query(&prefix_sql, &[&text, &c::prefix_end(text), &n])
            .await?;
        let mut found = prefixed(variants(&rows)?, text);
        let upper = text.to_uppercase();
        if found.len() < max && upper != text {
            let rows = client
                .query(&prefix_sql, &[&upper, &c::prefix_end(&upper), &n])
                .await?;
            c::merge(&mut found, prefixed(variants(&rows)?, &upper), max);
        }
        let gtin_like = c::may_be_gtin(text);
        if found.len() < max && gtin_like {
            let rows = client.query(&pg(c::GTIN_SQL), &[&text, &n]).await?;
            c::merge(&mut found, variants(&rows)?, max);
        }
        // A barcode that matched is not looked for in titles too.
        if found.len() < max && (!gtin_like || found.is_empty()) {
            let lower = text.to_lowercase();
            let trigram = c::title_by_trigram(text)
                && client
                    .query_one(c::PG_HAS_TRIGRAM_SQL, &[])
                    .await?
                    .get::<_, bool>(0);
            let more = if trigram {
                let pattern = format!("%{}%", c::like_escape(&lower));
                let rows = client
                    .query(c::PG_TITLE_TRIGRAM_SQL, &[&pattern, &n])
                    .await?;
                variants(&rows)?
            } else {
                // Without pg_trgm (or for short text) titles match by their start.
                let rows = client
                    .query(
                        c::PG_TITLE_PREFIX_SQL,
                        &[&lower, &c::prefix_end(&lower), &n],
                    )
                    .await?;
                variants(&rows)?
                    .into_iter()
                    .filter(|v| {
                        v.title
                            .as_deref()
                            .is_some_and(|t| t.to_lowercase().starts_with(&lower))
                    })
                    .collect()
            };
            c::merge(&mut found, more, max);
        }
        Ok(found)
    }

    async fn ledger_seqs_of(&self, sku: &Sku, limit: u32) -> Result<Vec<u64>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(&pg(c::LEDGER_SEQS_SQL), &[&sku.as_str(), &i64::from(limit)])
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn ledger_head(&self) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let row = client.query_one(c::LEDGER_HEAD_SQL, &[]).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn channel_health(
        &self,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelHealth>, StoreError> {
        let client = self.reader().await?;
        let health_sql = pg(c::HEALTH_SQL);
        let dead_sql = pg(c::DEAD_COUNT_SQL);
        let mut out = Vec::with_capacity(channels.len());
        for channel in channels {
            let row = client
                .query_one(&health_sql, &[&channel.as_str(), &c::HELD_BY_BUDGET_NOTE])
                .await?;
            let dead = client.query_one(&dead_sql, &[&channel.as_str()]).await?;
            out.push(ChannelHealth {
                channel: channel.clone(),
                lagging: row.get::<_, i64>(0) as u64,
                oldest_unsent: row.get::<_, Option<i64>>(1).map(c::from_ms).transpose()?,
                held_by_budget: row.get::<_, i64>(2) as u64,
                dead_letters: dead.get::<_, i64>(0) as u64,
            });
        }
        Ok(out)
    }

    async fn lagging_listings(
        &self,
        channel: &ChannelId,
        filter: LaggingFilter,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let client = self.reader().await?;
        let sql = pg(&c::lagging_sql(filter));
        let after = after.map_or("", |s| s.as_str());
        let limit = i64::from(limit);
        let rows = if filter == LaggingFilter::HeldByBudget {
            client
                .query(
                    &sql,
                    &[&channel.as_str(), &after, &limit, &c::HELD_BY_BUDGET_NOTE],
                )
                .await?
        } else {
            client
                .query(&sql, &[&channel.as_str(), &after, &limit])
                .await?
        };
        to_rows(&rows)
    }

    async fn oversell_totals(&self) -> Result<OversellTotals, StoreError> {
        let client = self.reader().await?;
        let row = client.query_one(c::OVERSELL_SQL, &[]).await?;
        Ok(OversellTotals {
            lines: row.get::<_, i64>(0) as u64,
            units: row.get(1),
        })
    }

    async fn recent_pushes_of(
        &self,
        sku: &Sku,
        limit: u32,
    ) -> Result<Vec<crate::kpis::PushAttempt>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(&c::recent_pushes_sql()),
                &[&sku.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(super::kpis::attempt).collect()
    }

    async fn open_returns_of(&self, sku: &Sku, limit: u32) -> Result<Vec<RmaId>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(c::OPEN_RETURNS_OF_SQL),
                &[&sku.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| parse_id(r.get::<_, String>(0), RmaId::parse))
            .collect()
    }
}
