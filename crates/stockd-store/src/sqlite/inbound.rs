//! SQLite side of `InboundStore`: single statements on pooled connections.

use super::SqliteStore;
use crate::inbound::{
    as_i64, feed_run_from_columns, from_ms, ms, select_feed_runs, select_last_applied, status_str,
    FeedRun, FeedRunRow, InboundStore, RejectedMessage, RejectedRow, DELETE_REJECTED,
    INSERT_FEED_RUN, INSERT_REJECTED, REJECTED_ID, SELECT_REJECTED,
};
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::{params, Connection};

fn feed_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FeedRunColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
        r.get(11)?,
        r.get(12)?,
    ))
}

type FeedRunColumns = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    [i64; 5],
    Option<String>,
    String,
);

fn to_feed_run(c: FeedRunColumns) -> Result<FeedRunRow, StoreError> {
    feed_run_from_columns(c.0, c.1, c.2, &c.3, c.4, c.5, c.6, c.7, &c.8)
}

fn feed_runs_on(
    conn: &Connection,
    sql: &str,
    feed: &str,
    limit: i64,
) -> Result<Vec<FeedRunRow>, StoreError> {
    let raw = if sql.contains("?2") {
        conn.prepare_cached(sql)?
            .query_map(params![feed, limit], feed_run_row)?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        conn.prepare_cached(sql)?
            .query_map(params![feed], feed_run_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    raw.into_iter().map(to_feed_run).collect()
}

#[async_trait]
impl InboundStore for SqliteStore {
    async fn record_rejected(&self, m: RejectedMessage) -> Result<i64, StoreError> {
        self.read(move |conn| {
            let seq = as_i64(m.stream_seq);
            conn.prepare_cached(INSERT_REJECTED)?.execute(params![
                m.source,
                m.stream,
                seq,
                m.subject,
                m.code,
                m.reason,
                m.body,
                ms(m.received_at)
            ])?;
            Ok(conn
                .prepare_cached(REJECTED_ID)?
                .query_row(params![m.source, m.stream, seq], |r| r.get(0))?)
        })
        .await
    }

    async fn rejected(&self, after_id: i64, limit: u32) -> Result<Vec<RejectedRow>, StoreError> {
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(SELECT_REJECTED)?
                .query_map(params![after_id, i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|c| {
                    Ok(RejectedRow {
                        id: c.0,
                        message: RejectedMessage {
                            source: c.1,
                            stream: c.2,
                            stream_seq: crate::inbound::count(c.3)?,
                            subject: c.4,
                            code: c.5,
                            reason: c.6,
                            body: c.7,
                            received_at: from_ms(c.8)?,
                        },
                    })
                })
                .collect()
        })
        .await
    }

    async fn discard_rejected(&self, id: i64) -> Result<bool, StoreError> {
        self.read(move |conn| Ok(conn.prepare_cached(DELETE_REJECTED)?.execute([id])? > 0))
            .await
    }

    async fn record_feed_run(&self, run: FeedRun) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn.prepare_cached(INSERT_FEED_RUN)?.query_row(
                params![
                    run.feed,
                    run.source,
                    status_str(run.status),
                    ms(run.started_at),
                    ms(run.finished_at),
                    as_i64(run.rows_total),
                    as_i64(run.rows_applied),
                    as_i64(run.rows_duplicate),
                    as_i64(run.rows_bad),
                    as_i64(run.skus),
                    run.error,
                    run.problems.to_string()
                ],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRunRow>, StoreError> {
        let feed = feed.to_string();
        self.read(move |conn| feed_runs_on(conn, &select_feed_runs(), &feed, i64::from(limit)))
            .await
    }

    async fn last_applied_feed_run(&self, feed: &str) -> Result<Option<FeedRunRow>, StoreError> {
        let feed = feed.to_string();
        self.read(move |conn| {
            Ok(feed_runs_on(conn, &select_last_applied(), &feed, 1)?
                .into_iter()
                .next())
        })
        .await
    }
}
