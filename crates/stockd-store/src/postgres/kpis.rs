//! PostgreSQL side of `KpiStore`: pooled connections, one transaction per
//! recorded batch.

use super::PgStore;
use crate::kpis::{self as k, DayCounts, DayFigures, KpiStore, PushAttempt, RawAttempt};
use crate::outbox::{ms, pg};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use stockd_core::{ChannelId, Sku};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub(crate) fn attempt(r: &Row) -> Result<PushAttempt, StoreError> {
    RawAttempt {
        id: r.try_get(0)?,
        at_ms: r.try_get(1)?,
        channel: r.try_get(2)?,
        sku: r.try_get(3)?,
        desired_gen: r.try_get(4)?,
        rules_version: r.try_get(5)?,
        caused_seq: r.try_get(6)?,
        sent: r.try_get(7)?,
        outcome: r.try_get(8)?,
        channel_quantity: r.try_get(9)?,
        code: r.try_get(10)?,
        message: r.try_get(11)?,
        latency_ms: r.try_get(12)?,
    }
    .into_attempt()
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn add_days(
    tx: &tokio_postgres::Transaction<'_>,
    days: &[(ChannelId, NaiveDate, DayCounts)],
) -> Result<(), StoreError> {
    let add = tx.prepare(&pg(k::ADD_DAY)).await?;
    let latency = tx.prepare(&pg(k::ADD_LATENCY)).await?;
    for (channel, day, c) in days {
        let day = k::day_text(*day);
        tx.execute(
            &add,
            &[
                &channel.as_str(),
                &day,
                &i(c.order_lines),
                &i(c.pushes),
                &i(c.failures),
                &i(c.dead_letters),
                &i(c.stock_cancels),
            ],
        )
        .await?;
        for (bucket, n) in c.latency.iter().enumerate() {
            if *n > 0 {
                tx.execute(
                    &latency,
                    &[&channel.as_str(), &day, &(bucket as i64), &i(*n)],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl KpiStore for PgStore {
    async fn kpi_ledger_cursor(&self) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let seq: i64 = client.query_one(k::CURSOR, &[]).await?.try_get(0)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn kpi_follow_ledger(
        &self,
        from: u64,
        to: u64,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<bool, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let moved = tx.execute(&pg(k::MOVE_CURSOR), &[&i(from), &i(to)]).await?;
        if moved == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        add_days(&tx, &days).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn kpi_record(
        &self,
        attempts: Vec<PushAttempt>,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<(), StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare(&pg(k::INSERT_ATTEMPT)).await?;
        for a in &attempts {
            let sent = a.sent.to_string();
            tx.execute(
                &insert,
                &[
                    &ms(a.at),
                    &a.channel.as_str(),
                    &a.sku.as_str(),
                    &i(a.desired_gen),
                    &a.rules_version.map(i64::from),
                    &a.caused_seq.map(i),
                    &sent,
                    &a.outcome,
                    &a.channel_quantity,
                    &a.code,
                    &a.message,
                    &a.latency_ms,
                ],
            )
            .await?;
        }
        add_days(&tx, &days).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn push_attempts(
        &self,
        sku: Option<&Sku>,
        channel: Option<&ChannelId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<PushAttempt>, StoreError> {
        let client = self.reader().await?;
        let limit = i64::from(limit);
        let sql = pg(&k::attempts_sql(sku.is_some(), channel.is_some()));
        let sku_text = sku.map(|s| s.as_str().to_string());
        let channel_text = channel.map(|c| c.as_str().to_string());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &limit];
        if let Some(s) = &sku_text {
            params.push(s);
        }
        if let Some(c) = &channel_text {
            params.push(c);
        }
        let rows = client.query(&sql, &params).await?;
        rows.iter().map(attempt).collect()
    }

    async fn push_attempts_prune(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let n = client
            .execute(&pg(k::PRUNE), &[&ms(before), &i64::from(limit)])
            .await?;
        Ok(n)
    }

    async fn kpi_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        channel: Option<&ChannelId>,
    ) -> Result<Vec<DayFigures>, StoreError> {
        let client = self.reader().await?;
        let (from_text, to_text) = (k::day_text(from), k::day_text(to));
        let channel_text = channel.map(|c| c.as_str().to_string());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from_text, &to_text];
        if let Some(c) = &channel_text {
            params.push(c);
        }
        let days = client
            .query(&pg(&k::days_sql(channel.is_some())), &params)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    [
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                        r.try_get(6)?,
                    ],
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let latency = client
            .query(&pg(&k::latency_sql(channel.is_some())), &params)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let start = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let end = to
            .succ_opt()
            .unwrap_or(to)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        // A kit line short on several components has one note per component:
        // count lines, not notes.
        let mut sql = String::from(
            "SELECT channel, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
             COUNT(DISTINCT (seq, line_id)) \
             FROM oversells WHERE received_at >= $1 AND received_at < $2",
        );
        let mut over_params: Vec<&(dyn ToSql + Sync)> = vec![&start, &end];
        if let Some(c) = &channel_text {
            sql.push_str(" AND channel = $3");
            over_params.push(c);
        }
        sql.push_str(" GROUP BY 1, 2");
        let oversold = client
            .query(&sql, &over_params)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        k::assemble(days, latency, oversold)
    }
}
