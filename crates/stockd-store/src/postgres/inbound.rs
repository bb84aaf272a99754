//! PostgreSQL side of `InboundStore`: single statements on pooled connections.

use super::PgStore;
use crate::inbound::{
    as_i64, count, dialect_pg, feed_run_from_columns, from_ms, ms, select_feed_runs,
    select_last_applied, status_str, FeedRun, FeedRunRow, InboundStore, RejectedMessage,
    RejectedRow, DELETE_REJECTED, INSERT_FEED_RUN, INSERT_REJECTED, REJECTED_ID, SELECT_REJECTED,
};
use crate::StoreError;
use async_trait::async_trait;
use tokio_postgres::Row;

fn to_feed_run(row: &Row) -> Result<FeedRunRow, StoreError> {
    let status: String = row.get(3);
    let problems: String = row.get(12);
    feed_run_from_columns(
        row.get(0),
        row.get(1),
        row.get(2),
        &status,
        row.get(4),
        row.get(5),
        [row.get(6), row.get(7), row.get(8), row.get(9), row.get(10)],
        row.get(11),
        &problems,
    )
}

#[async_trait]
impl InboundStore for PgStore {
    async fn record_rejected(&self, m: RejectedMessage) -> Result<i64, StoreError> {
        let client = self.reader().await?;
        let seq = as_i64(m.stream_seq);
        client
            .execute(
                &dialect_pg(INSERT_REJECTED),
                &[
                    &m.source,
                    &m.stream,
                    &seq,
                    &m.subject,
                    &m.code,
                    &m.reason,
                    &m.body,
                    &ms(m.received_at),
                ],
            )
            .await?;
        let row = client
            .query_one(&dialect_pg(REJECTED_ID), &[&m.source, &m.stream, &seq])
            .await?;
        Ok(row.get(0))
    }

    async fn rejected(&self, after_id: i64, limit: u32) -> Result<Vec<RejectedRow>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &dialect_pg(SELECT_REJECTED),
                &[&after_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RejectedRow {
                    id: r.get(0),
                    message: RejectedMessage {
                        source: r.get(1),
                        stream: r.get(2),
                        stream_seq: count(r.get(3))?,
                        subject: r.get(4),
                        code: r.get(5),
                        reason: r.get(6),
                        body: r.get(7),
                        received_at: from_ms(r.get(8))?,
                    },
                })
            })
            .collect()
    }

    async fn discard_rejected(&self, id: i64) -> Result<bool, StoreError> {
        let client = self.reader().await?;
        Ok(client.execute(&dialect_pg(DELETE_REJECTED), &[&id]).await? > 0)
    }

    async fn record_feed_run(&self, run: FeedRun) -> Result<i64, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_one(
                &dialect_pg(INSERT_FEED_RUN),
                &[
                    &run.feed,
                    &run.source,
                    &status_str(run.status),
                    &ms(run.started_at),
                    &ms(run.finished_at),
                    &as_i64(run.rows_total),
                    &as_i64(run.rows_applied),
                    &as_i64(run.rows_duplicate),
                    &as_i64(run.rows_bad),
                    &as_i64(run.skus),
                    &run.error,
                    &run.problems.to_string(),
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRunRow>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &dialect_pg(&select_feed_runs()),
                &[&feed, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(to_feed_run).collect()
    }

    async fn last_applied_feed_run(&self, feed: &str) -> Result<Option<FeedRunRow>, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_opt(&dialect_pg(&select_last_applied()), &[&feed])
            .await?;
        row.as_ref().map(to_feed_run).transpose()
    }
}
