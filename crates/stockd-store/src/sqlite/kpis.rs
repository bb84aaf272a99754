//! SQLite side of `KpiStore`: pooled connections, one transaction per
//! recorded batch.

use super::channels::in_transaction;
use super::SqliteStore;
use crate::kpis::{self as k, DayCounts, DayFigures, KpiStore, PushAttempt, RawAttempt};
use crate::outbox::ms;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::params;
use stockd_core::{ChannelId, Sku};

pub(crate) fn raw_attempt(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAttempt> {
    Ok(RawAttempt {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        channel: r.get(2)?,
        sku: r.get(3)?,
        desired_gen: r.get(4)?,
        rules_version: r.get(5)?,
        caused_seq: r.get(6)?,
        sent: r.get(7)?,
        outcome: r.get(8)?,
        channel_quantity: r.get(9)?,
        code: r.get(10)?,
        message: r.get(11)?,
        latency_ms: r.get(12)?,
    })
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn add_days(
    conn: &rusqlite::Connection,
    days: &[(ChannelId, NaiveDate, DayCounts)],
) -> Result<(), StoreError> {
    let mut add = conn.prepare_cached(k::ADD_DAY)?;
    let mut latency = conn.prepare_cached(k::ADD_LATENCY)?;
    for (channel, day, c) in days {
        let day = k::day_text(*day);
        add.execute(params![
            channel.as_str(),
            day,
            i(c.order_lines),
            i(c.pushes),
            i(c.failures),
            i(c.dead_letters),
            i(c.stock_cancels),
        ])?;
        for (bucket, n) in c.latency.iter().enumerate() {
            if *n > 0 {
                latency.execute(params![channel.as_str(), day, bucket as i64, i(*n)])?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl KpiStore for SqliteStore {
    async fn kpi_ledger_cursor(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let seq: i64 = conn
                .prepare_cached(k::CURSOR)?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(seq).unwrap_or(0))
        })
        .await
    }

    async fn kpi_follow_ledger(
        &self,
        from: u64,
        to: u64,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<bool, StoreError> {
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let moved = conn
                    .prepare_cached(k::MOVE_CURSOR)?
                    .execute(params![i(from), i(to)])?;
                if moved == 0 {
                    return Ok(false);
                }
                add_days(conn, &days)?;
                Ok(true)
            })
        })
        .await
    }

    async fn kpi_record(
        &self,
        attempts: Vec<PushAttempt>,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<(), StoreError> {
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let mut insert = conn.prepare_cached(k::INSERT_ATTEMPT)?;
                for a in &attempts {
                    insert.execute(params![
                        ms(a.at),
                        a.channel.as_str(),
                        a.sku.as_str(),
                        i(a.desired_gen),
                        a.rules_version.map(i64::from),
                        a.caused_seq.map(i),
                        a.sent.to_string(),
                        a.outcome,
                        a.channel_quantity,
                        a.code,
                        a.message,
                        a.latency_ms,
                    ])?;
                }
                add_days(conn, &days)
            })
        })
        .await
    }

    async fn push_attempts(
        &self,
        sku: Option<&Sku>,
        channel: Option<&ChannelId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<PushAttempt>, StoreError> {
        let sku = sku.map(|s| s.as_str().to_string());
        let channel = channel.map(|c| c.as_str().to_string());
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached(&k::attempts_sql(sku.is_some(), channel.is_some()))?;
            let raw = match (&sku, &channel) {
                (Some(s), Some(c)) => stmt
                    .query_map(params![after, limit, s, c], raw_attempt)?
                    .collect::<Result<Vec<_>, _>>()?,
                (Some(v), None) | (None, Some(v)) => stmt
                    .query_map(params![after, limit, v], raw_attempt)?
                    .collect::<Result<Vec<_>, _>>()?,
                (None, None) => stmt
                    .query_map(params![after, limit], raw_attempt)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            raw.into_iter().map(RawAttempt::into_attempt).collect()
        })
        .await
    }

    async fn push_attempts_prune(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let n = conn
                .prepare_cached(k::PRUNE)?
                .execute(params![ms(before), limit])?;
            Ok(n as u64)
        })
        .await
    }

    async fn kpi_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        channel: Option<&ChannelId>,
    ) -> Result<Vec<DayFigures>, StoreError> {
        let channel = channel.map(|c| c.as_str().to_string());
        let (from_text, to_text) = (k::day_text(from), k::day_text(to));
        let until = k::day_text(to.succ_opt().unwrap_or(to));
        self.read(move |conn| {
            let mut days_stmt = conn.prepare_cached(&k::days_sql(channel.is_some()))?;
            let day_row = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                ))
            };
            let days = match &channel {
                Some(c) => days_stmt
                    .query_map(params![from_text, to_text, c], day_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => days_stmt
                    .query_map(params![from_text, to_text], day_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let mut lat_stmt = conn.prepare_cached(&k::latency_sql(channel.is_some()))?;
            let lat_row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            let latency = match &channel {
                Some(c) => lat_stmt
                    .query_map(params![from_text, to_text, c], lat_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => lat_stmt
                    .query_map(params![from_text, to_text], lat_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            // A kit line short on several components has one note per
            // component: count lines, not notes.
            let mut sql = String::from(
                "SELECT channel, substr(received_at, 1, 10), COUNT(DISTINCT seq || ' ' || line_id) \
                 FROM oversells \
                 WHERE received_at >= ?1 AND received_at < ?2",
            );
            if channel.is_some() {
                sql.push_str(" AND channel = ?3");
            }
            sql.push_str(" GROUP BY 1, 2");
            let mut over_stmt = conn.prepare_cached(&sql)?;
            let over_row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
            let oversold = match &channel {
                Some(c) => over_stmt
                    .query_map(params![from_text, until, c], over_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => over_stmt
                    .query_map(params![from_text, until], over_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            k::assemble(days, latency, oversold)
        })
        .await
    }
}
