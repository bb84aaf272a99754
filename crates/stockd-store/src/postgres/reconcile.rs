//! PostgreSQL side of `ReconcileStore`: pooled connections, one transaction
//! per committed page.

use super::PgStore;
use crate::outbox::{ms, pg};
use crate::reconcile::{
    self as rc, DriftClass, PageProgress, RawItem, RawRun, ReconcileStore, Requeue, RunItem,
    RunRecord, RunStatus,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use stockd_core::{ChannelId, Sku};
use tokio_postgres::Row;

fn raw_run(r: &Row) -> Result<RawRun, StoreError> {
    Ok(RawRun {
        id: r.try_get(0)?,
        channel: r.try_get(1)?,
        trigger: r.try_get(2)?,
        auto_fix: r.try_get(3)?,
        status: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
        started_at_ms: r.try_get(6)?,
        finished_at_ms: r.try_get(7)?,
        counters: [r.try_get(8)?, r.try_get(9)?],
        cursor: r.try_get(10)?,
        classes: [
            r.try_get(11)?,
            r.try_get(12)?,
            r.try_get(13)?,
            r.try_get(14)?,
            r.try_get(15)?,
            r.try_get(16)?,
            r.try_get(17)?,
            r.try_get(18)?,
        ],
        error: r.try_get(19)?,
    })
}

fn runs(rows: &[Row]) -> Result<Vec<RunRecord>, StoreError> {
    rows.iter().map(|r| raw_run(r)?.into_run()).collect()
}

fn item(r: &Row) -> Result<RunItem, StoreError> {
    RawItem {
        sku: r.try_get(0)?,
        class: r.try_get(1)?,
        expected: r.try_get(2)?,
        observed: r.try_get(3)?,
        fixed: r.try_get(4)?,
        note: r.try_get(5)?,
    }
    .into_item()
}

#[async_trait]
impl ReconcileStore for PgStore {
    async fn recon_create(
        &self,
        channel: &ChannelId,
        trigger: &str,
        auto_fix: bool,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_one(
                &pg(&rc::insert_run_sql()),
                &[&channel.as_str(), &trigger, &i64::from(auto_fix), &ms(now)],
            )
            .await?;
        raw_run(&row)?.into_run()
    }

    async fn recon_run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let client = self.reader().await?;
        let rows = client.query(&pg(&rc::run_sql()), &[&id]).await?;
        Ok(runs(&rows)?.into_iter().next())
    }

    async fn recon_runs(
        &self,
        channel: Option<&ChannelId>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.reader().await?;
        let before = before_id.unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        let sql = pg(&rc::runs_sql(channel.is_some()));
        let rows = match channel {
            Some(c) => client.query(&sql, &[&before, &limit, &c.as_str()]).await?,
            None => client.query(&sql, &[&before, &limit]).await?,
        };
        runs(&rows)
    }

    async fn recon_open(&self) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.reader().await?;
        let rows = client.query(&pg(&rc::open_sql()), &[]).await?;
        runs(&rows)
    }

    async fn recon_start(&self, id: i64, total: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let client = self.reader().await?;
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        client
            .execute(&pg(rc::START), &[&id, &total, &ms(now)])
            .await?;
        Ok(())
    }

    async fn recon_progress(&self, id: i64, page: PageProgress) -> Result<(), StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare(&pg(rc::INSERT_ITEM)).await?;
        for item in &page.items {
            tx.execute(
                &insert,
                &[
                    &id,
                    &item.sku,
                    &item.class.as_str(),
                    &rc::json_text(&item.expected),
                    &rc::json_text(&item.observed),
                    &i64::from(item.fixed),
                    &item.note,
                ],
            )
            .await?;
        }
        let n = rc::progress_numbers(&page);
        let cursor = page.cursor.as_ref().map(|s| s.as_str().to_string());
        tx.execute(
            &pg(rc::PROGRESS),
            &[
                &id, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7], &n[8], &cursor,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recon_finish(
        &self,
        id: i64,
        status: RunStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.reader().await?;
        client
            .execute(&pg(rc::FINISH), &[&id, &status.as_str(), &error, &ms(now)])
            .await?;
        Ok(())
    }

    async fn recon_items(
        &self,
        id: i64,
        class: Option<DriftClass>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunItem>, StoreError> {
        let client = self.reader().await?;
        let after = after.unwrap_or_default();
        let limit = i64::from(limit);
        let sql = pg(&rc::items_sql(class.is_some()));
        let rows = match class {
            Some(c) => {
                client
                    .query(&sql, &[&id, &after, &limit, &c.as_str()])
                    .await?
            }
            None => client.query(&sql, &[&id, &after, &limit]).await?,
        };
        rows.iter().map(item).collect()
    }

    async fn recon_latest(&self) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.reader().await?;
        let rows = client.query(&pg(&rc::latest_sql()), &[]).await?;
        runs(&rows)
    }

    async fn recon_requeue(
        &self,
        channel: &ChannelId,
        fixes: Vec<Requeue>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sku>, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare(&pg(rc::REQUEUE)).await?;
        let mut queued = Vec::new();
        for fix in fixes {
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &channel.as_str(),
                        &fix.sku.as_str(),
                        &fix.observed_quantity,
                        &i64::from(fix.forget_pushed),
                        &(fix.seen_desired_gen as i64),
                        &(fix.seen_channel_gen as i64),
                        &ms(now),
                        &rc::REQUEUE_NOTE,
                    ],
                )
                .await?;
            if changed > 0 {
                queued.push(fix.sku);
            }
        }
        tx.commit().await?;
        Ok(queued)
    }
}
