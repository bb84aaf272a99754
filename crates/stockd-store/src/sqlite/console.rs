//! SQLite side of `ConsoleReads` (see `crate::console`).

use super::outbox::{raw_row, to_rows};
use super::SqliteStore;
use crate::console::{self as c, ChannelHealth, ConsoleReads, LaggingFilter, OversellTotals};
use crate::outbox::OutboxRow;
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::{params, Connection};
use stockd_core::{ChannelId, RmaId, Sku, Variant};

fn variants(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Variant>, StoreError> {
    let raw = conn
        .prepare_cached(sql)?
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(sku, title, product_id, gtin)| {
            Ok(Variant {
                sku: parse_id(sku, Sku::parse)?,
                title,
                product_id,
                gtin,
            })
        })
        .collect()
}

#[async_trait]
impl ConsoleReads for SqliteStore {
    async fn search_variants(&self, text: &str, limit: u32) -> Result<Vec<Variant>, StoreError> {
        let text = text.trim().to_string();
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |conn| {
            let max = limit as usize;
            let mut found = variants(
                conn,
                c::SKU_PREFIX_SQL,
                params![text, c::prefix_end(&text), limit],
            )?;
            let upper = text.to_uppercase();
            if found.len() < max && upper != text {
                let more = variants(
                    conn,
                    c::SKU_PREFIX_SQL,
                    params![upper, c::prefix_end(&upper), limit],
                )?;
                c::merge(&mut found, more, max);
            }
            let gtin_like = c::may_be_gtin(&text);
            if found.len() < max && gtin_like {
                let more = variants(conn, c::GTIN_SQL, params![text, limit])?;
                c::merge(&mut found, more, max);
            }
            // A barcode that matched is not looked for in titles too.
            if found.len() < max && (!gtin_like || found.is_empty()) {
                let more = if c::title_by_trigram(&text) {
                    variants(
                        conn,
                        c::SQLITE_TITLE_TRIGRAM_SQL,
                        params![c::fts_phrase(&text), limit],
                    )?
                } else {
                    // SQLite's lower() folds ASCII only.
                    let start = text.to_ascii_lowercase();
                    variants(
                        conn,
                        c::SQLITE_TITLE_PREFIX_SQL,
                        params![start, c::prefix_end(&start), limit],
                    )?
                };
                c::merge(&mut found, more, max);
            }
            Ok(found)
        })
        .await
    }

    async fn ledger_seqs_of(&self, sku: &Sku, limit: u32) -> Result<Vec<u64>, StoreError> {
        let sku = sku.as_str().to_string();
        self.read(move |conn| {
            let seqs = conn
                .prepare_cached(c::LEDGER_SEQS_SQL)?
                .query_map(params![sku, limit], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(seqs.into_iter().map(|s| s as u64).collect())
        })
        .await
    }

    async fn ledger_head(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let head: i64 = conn
                .prepare_cached(c::LEDGER_HEAD_SQL)?
                .query_row([], |r| r.get(0))?;
            Ok(head as u64)
        })
        .await
    }

    async fn channel_health(
        &self,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelHealth>, StoreError> {
        let channels = channels.to_vec();
        self.read(move |conn| {
            channels
                .into_iter()
                .map(|channel| {
                    let (lagging, oldest, held): (i64, Option<i64>, i64) = conn
                        .prepare_cached(c::HEALTH_SQL)?
                        .query_row(params![channel.as_str(), c::HELD_BY_BUDGET_NOTE], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?;
                    let dead: i64 = conn
                        .prepare_cached(c::DEAD_COUNT_SQL)?
                        .query_row([channel.as_str()], |r| r.get(0))?;
                    Ok(ChannelHealth {
                        channel,
                        lagging: lagging as u64,
                        oldest_unsent: oldest.map(c::from_ms).transpose()?,
                        held_by_budget: held as u64,
                        dead_letters: dead as u64,
                    })
                })
                .collect()
        })
        .await
    }

    async fn lagging_listings(
        &self,
        channel: &ChannelId,
        filter: LaggingFilter,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let channel = channel.as_str().to_string();
        let after = after.map(|s| s.as_str().to_string()).unwrap_or_default();
        self.read(move |conn| {
            let sql = c::lagging_sql(filter);
            let mut stmt = conn.prepare_cached(&sql)?;
            let raw = if filter == LaggingFilter::HeldByBudget {
                stmt.query_map(
                    params![channel, after, limit, c::HELD_BY_BUDGET_NOTE],
                    raw_row,
                )?
                .collect::<Result<Vec<_>, _>>()?
            } else {
                stmt.query_map(params![channel, after, limit], raw_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            to_rows(raw)
        })
        .await
    }

    async fn oversell_totals(&self) -> Result<OversellTotals, StoreError> {
        self.read(|conn| {
            let (lines, units): (i64, i64) = conn
                .prepare_cached(c::OVERSELL_SQL)?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(OversellTotals {
                lines: lines as u64,
                units,
            })
        })
        .await
    }

    async fn recent_pushes_of(
        &self,
        sku: &Sku,
        limit: u32,
    ) -> Result<Vec<crate::kpis::PushAttempt>, StoreError> {
        let sku = sku.as_str().to_string();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&c::recent_pushes_sql())?
                .query_map(params![sku, limit], super::kpis::raw_attempt)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(crate::kpis::RawAttempt::into_attempt)
                .collect()
        })
        .await
    }

    async fn open_returns_of(&self, sku: &Sku, limit: u32) -> Result<Vec<RmaId>, StoreError> {
        let sku = sku.as_str().to_string();
        self.read(move |conn| {
            let ids = conn
                .prepare_cached(c::OPEN_RETURNS_OF_SQL)?
                .query_map(params![sku, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.into_iter()
                .map(|id| parse_id(id, RmaId::parse))
                .collect()
        })
        .await
    }
}
