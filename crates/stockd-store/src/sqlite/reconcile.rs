//! SQLite side of `ReconcileStore`: pooled connections, one immediate
//! transaction per committed page, alongside the event writer.

use super::channels::in_transaction;
use super::SqliteStore;
use crate::outbox::ms;
use crate::reconcile::{
    self as rc, DriftClass, PageProgress, RawItem, RawRun, ReconcileStore, Requeue, RunItem,
    RunRecord, RunStatus,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use stockd_core::{ChannelId, Sku};

fn raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: r.get(0)?,
        channel: r.get(1)?,
        trigger: r.get(2)?,
        auto_fix: r.get(3)?,
        status: r.get(4)?,
        created_at_ms: r.get(5)?,
        started_at_ms: r.get(6)?,
        finished_at_ms: r.get(7)?,
        counters: [r.get(8)?, r.get(9)?],
        cursor: r.get(10)?,
        classes: [
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
            r.get(14)?,
            r.get(15)?,
            r.get(16)?,
            r.get(17)?,
            r.get(18)?,
        ],
        error: r.get(19)?,
    })
}

fn raw_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawItem> {
    Ok(RawItem {
        sku: r.get(0)?,
        class: r.get(1)?,
        expected: r.get(2)?,
        observed: r.get(3)?,
        fixed: r.get(4)?,
        note: r.get(5)?,
    })
}

fn runs(raw: Vec<RawRun>) -> Result<Vec<RunRecord>, StoreError> {
    raw.into_iter().map(RawRun::into_run).collect()
}

#[async_trait]
impl ReconcileStore for SqliteStore {
    async fn recon_create(
        &self,
        channel: &ChannelId,
        trigger: &str,
        auto_fix: bool,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, StoreError> {
        let channel = channel.as_str().to_string();
        let trigger = trigger.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&rc::insert_run_sql())?
                .query_row(
                    params![channel, trigger, i64::from(auto_fix), ms(now)],
                    raw_run,
                )?
                .into_run()
        })
        .await
    }

    async fn recon_run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&rc::run_sql())?
                .query_row([id], raw_run)
                .optional()?
                .map(RawRun::into_run)
                .transpose()
        })
        .await
    }

    async fn recon_runs(
        &self,
        channel: Option<&ChannelId>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let channel = channel.map(|c| c.as_str().to_string());
        let before = before_id.unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&rc::runs_sql(channel.is_some()))?;
            let raw = match &channel {
                Some(c) => stmt
                    .query_map(params![before, limit, c], raw_run)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => stmt
                    .query_map(params![before, limit], raw_run)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            runs(raw)
        })
        .await
    }

    async fn recon_open(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.read(|conn| {
            let raw = conn
                .prepare_cached(&rc::open_sql())?
                .query_map([], raw_run)?
                .collect::<Result<Vec<_>, _>>()?;
            runs(raw)
        })
        .await
    }

    async fn recon_start(&self, id: i64, total: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(rc::START)?
                .execute(params![id, total, ms(now)])?;
            Ok(())
        })
        .await
    }

    async fn recon_progress(&self, id: i64, page: PageProgress) -> Result<(), StoreError> {
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let mut insert = conn.prepare_cached(rc::INSERT_ITEM)?;
                for item in &page.items {
                    insert.execute(params![
                        id,
                        item.sku,
                        item.class.as_str(),
                        rc::json_text(&item.expected),
                        rc::json_text(&item.observed),
                        i64::from(item.fixed),
                        item.note,
                    ])?;
                }
                let n = rc::progress_numbers(&page);
                conn.prepare_cached(rc::PROGRESS)?.execute(params![
                    id,
                    n[0],
                    n[1],
                    n[2],
                    n[3],
                    n[4],
                    n[5],
                    n[6],
                    n[7],
                    n[8],
                    page.cursor.as_ref().map(Sku::as_str),
                ])?;
                Ok(())
            })
        })
        .await
    }

    async fn recon_finish(
        &self,
        id: i64,
        status: RunStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(rc::FINISH)?.execute(params![
                id,
                status.as_str(),
                error,
                ms(now)
            ])?;
            Ok(())
        })
        .await
    }

    async fn recon_items(
        &self,
        id: i64,
        class: Option<DriftClass>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunItem>, StoreError> {
        let after = after.unwrap_or_default().to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&rc::items_sql(class.is_some()))?;
            let raw = match class {
                Some(c) => stmt
                    .query_map(params![id, after, limit, c.as_str()], raw_item)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => stmt
                    .query_map(params![id, after, limit], raw_item)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            raw.into_iter().map(RawItem::into_item).collect()
        })
        .await
    }

    async fn recon_latest(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.read(|conn| {
            let raw = conn
                .prepare_cached(&rc::latest_sql())?
                .query_map([], raw_run)?
                .collect::<Result<Vec<_>, _>>()?;
            runs(raw)
        })
        .await
    }

    async fn recon_requeue(
        &self,
        channel: &ChannelId,
        fixes: Vec<Requeue>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sku>, StoreError> {
        let channel = channel.as_str().to_string();
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let mut stmt = conn.prepare_cached(rc::REQUEUE)?;
                let mut queued = Vec::new();
                for fix in fixes {
                    let changed = stmt.execute(params![
                        channel,
                        fix.sku.as_str(),
                        fix.observed_quantity,
                        i64::from(fix.forget_pushed),
                        fix.seen_desired_gen as i64,
                        fix.seen_channel_gen as i64,
                        ms(now),
                        rc::REQUEUE_NOTE,
                    ])?;
                    if changed > 0 {
                        queued.push(fix.sku);
                    }
                }
                Ok(queued)
            })
        })
        .await
    }
}
