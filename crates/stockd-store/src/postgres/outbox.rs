//! PostgreSQL side of the outbox: the writer's desired-state reads and
//! writes (inside the group transaction) and the dispatcher's `OutboxStore`.

use super::channels::{
    active_rules_on, bundles_on, channels_on, listing_keys_on, sales_since_on, variant_stock_on,
};
use super::{to_location, PgBackend, PgStore};
use crate::availability::AvailabilityReads;
use crate::channels::{ChannelRecord, RulesVersion, VariantStock};
use crate::hot;
use crate::outbox::{
    self as ob, pg, DeadLetter, DesiredStates, DesiredWrite, OutboxRow, OutboxStore, OutboxUpdate,
    RawDead, RawRow,
};
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use stockd_core::availability::{Bundle, Listing, Sale};
use stockd_core::{ChannelId, Location, Sku};
use tokio_postgres::{GenericClient, Row};

impl AvailabilityReads for PgBackend {
    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        channels_on(&self.client).await
    }
    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, name, sellable, priority FROM locations ORDER BY priority, id",
                &[],
            )
            .await?;
        rows.iter().map(to_location).collect()
    }
    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        bundles_on(&self.client).await
    }
    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError> {
        active_rules_on(&self.client).await
    }
    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError> {
        variant_stock_on(&self.client, skus).await
    }
    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
        listing_keys_on(&self.client, skus).await
    }
    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError> {
        sales_since_on(&self.client, skus, since).await
    }
}

impl DesiredStates for PgBackend {
    async fn stored_desired(
        &mut self,
        skus: &[Sku],
        _keys: &[(ChannelId, Sku)],
    ) -> Result<BTreeMap<(ChannelId, Sku), ob::StoredDesired>, StoreError> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows = self.client.query(hot::PG_STORED_DESIRED, &[&names]).await?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let desired: &str = row.get(2);
            let version: Option<i64> = row.get(3);
            out.insert(
                (
                    parse_id(row.get(0), ChannelId::parse)?,
                    parse_id(row.get(1), Sku::parse)?,
                ),
                ob::StoredDesired {
                    state: serde_json::from_str(desired)?,
                    rules_version: version.and_then(|v| u32::try_from(v).ok()),
                    lagging: row.get(4),
                },
            );
        }
        Ok(out)
    }

    async fn write_desired(
        &mut self,
        rows: &[DesiredWrite],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.bulk_writes
            .count(&["listing_state"], rows.len() as u64);
        if rows.is_empty() {
            return Ok(());
        }
        // Two statements for the whole set (UNNEST of arrays), not one round
        // trip per row: the keys are distinct (one computed state per listing).
        let (changed, version_only): (Vec<&DesiredWrite>, Vec<&DesiredWrite>) =
            rows.iter().partition(|r| r.value_changed);
        if !changed.is_empty() {
            let channels: Vec<&str> = changed.iter().map(|r| r.channel.as_str()).collect();
            let skus: Vec<&str> = changed.iter().map(|r| r.sku.as_str()).collect();
            let states = changed
                .iter()
                .map(|r| ob::state_json(&r.state))
                .collect::<Result<Vec<_>, _>>()?;
            let versions: Vec<Option<i64>> = changed
                .iter()
                .map(|r| r.rules_version.map(i64::from))
                .collect();
            let seqs: Vec<Option<i64>> = changed
                .iter()
                .map(|r| r.caused_seq.map(|s| s as i64))
                .collect();
            let caused: Vec<i64> = changed.iter().map(|r| ob::ms(r.caused_at)).collect();
            let insert = self.statement_owned(pg(ob::PG_INSERT_DESIRED_MANY)).await?;
            self.client
                .execute(
                    &insert,
                    &[
                        &channels,
                        &skus,
                        &states,
                        &versions,
                        &seqs,
                        &caused,
                        &ob::ms(now),
                    ],
                )
                .await?;
        }
        if !version_only.is_empty() {
            let channels: Vec<&str> = version_only.iter().map(|r| r.channel.as_str()).collect();
            let skus: Vec<&str> = version_only.iter().map(|r| r.sku.as_str()).collect();
            let versions: Vec<Option<i64>> = version_only
                .iter()
                .map(|r| r.rules_version.map(i64::from))
                .collect();
            let update = self.statement_owned(pg(ob::PG_UPDATE_VERSION_MANY)).await?;
            self.client
                .execute(&update, &[&channels, &skus, &versions])
                .await?;
        }
        Ok(())
    }

    async fn record_outbox(&mut self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        for update in updates {
            record(&self.client, update).await?;
        }
        Ok(())
    }

    async fn setup_generation(&mut self) -> Result<i64, StoreError> {
        let stmt = self.statement(hot::SETUP_GENERATION).await?;
        Ok(self.client.query_one(&stmt, &[]).await?.get(0))
    }

    fn setup_cache(
        &mut self,
    ) -> &mut Option<(i64, std::sync::Arc<crate::availability::LoadedSetup>)> {
        &mut self.setup
    }

    async fn listed_after(
        &mut self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<Sku>, StoreError> {
        let after = after.map(|s| s.as_str().to_string()).unwrap_or_default();
        let rows = self
            .client
            .query(&pg(hot::LISTED_AFTER), &[&after, &i64::from(limit)])
            .await?;
        rows.iter()
            .map(|r| parse_id(r.get(0), Sku::parse))
            .collect()
    }
}

fn raw_row(r: &Row) -> RawRow {
    RawRow {
        channel: r.get(0),
        sku: r.get(1),
        desired: r.get(2),
        rules_version: r.get(3),
        desired_gen: r.get(4),
        caused_seq: r.get(5),
        caused_at_ms: r.get(6),
        dirty_since_ms: r.get(7),
        sent_gen: r.get(8),
        pushed: r.get(9),
        pushed_at_ms: r.get(10),
        channel_quantity: r.get(11),
        recent_pushes: r.get(12),
        attempts: r.get(13),
        next_attempt_ms: r.get(14),
        last_error: r.get(15),
        parked: r.get(16),
        channel_gen: r.get(17),
        parked_gen: r.get(18),
        protective: r.get(19),
        unacked_since_ms: r.get(20),
        in_flight_ref: r.get(21),
        in_flight_sent: r.get(22),
        in_flight_at_ms: r.get(23),
    }
}

fn raw_dead(r: &Row) -> RawDead {
    RawDead {
        id: r.get(0),
        channel: r.get(1),
        sku: r.get(2),
        desired_gen: r.get(3),
        desired: r.get(4),
        code: r.get(5),
        message: r.get(6),
        status: r.get(7),
        body: r.get(8),
        attempts: r.get(9),
        created_at_ms: r.get(10),
        superseded: r.get(11),
        transient: r.get(12),
    }
}

pub(super) fn to_rows(rows: &[Row]) -> Result<Vec<OutboxRow>, StoreError> {
    rows.iter().map(|r| raw_row(r).into_row()).collect()
}

async fn record<C: GenericClient>(client: &C, update: &OutboxUpdate) -> Result<(), StoreError> {
    match update {
        OutboxUpdate::ChannelMoved {
            channel,
            sku,
            delta,
            at,
        } => {
            client
                .execute(
                    &pg(ob::CHANNEL_MOVED),
                    &[&channel.as_str(), &sku.as_str(), delta, &ob::ms(*at)],
                )
                .await?;
        }
        OutboxUpdate::Acked {
            channel,
            sku,
            gen,
            state,
            channel_quantity,
            at,
            counted,
            recent_before,
            channel_gen,
        } => {
            client
                .execute(
                    &pg(ob::ACK),
                    &[
                        &channel.as_str(),
                        &sku.as_str(),
                        &(*gen as i64),
                        &ob::state_json(state)?,
                        &ob::ms(*at),
                        channel_quantity,
                        &ob::recent_pushes_json(recent_before, *at, *counted)?,
                        &(*channel_gen as i64),
                    ],
                )
                .await?;
        }
        OutboxUpdate::Failed {
            channel,
            sku,
            attempts,
            next_attempt_at,
            error,
        } => {
            client
                .execute(
                    &pg(ob::FAILED),
                    &[
                        &channel.as_str(),
                        &sku.as_str(),
                        &i64::from(*attempts),
                        &ob::ms(*next_attempt_at),
                        error,
                    ],
                )
                .await?;
        }
        OutboxUpdate::Deferred {
            channel,
            sku,
            until,
            note,
        } => {
            client
                .execute(
                    &pg(ob::DEFERRED),
                    &[&channel.as_str(), &sku.as_str(), &ob::ms(*until), note],
                )
                .await?;
        }
        OutboxUpdate::InFlight {
            channel,
            sku,
            holder,
            until,
        } => {
            client
                .execute(
                    &pg(ob::IN_FLIGHT),
                    &[&channel.as_str(), &sku.as_str(), &ob::ms(*until), holder],
                )
                .await?;
        }
        OutboxUpdate::Accepted {
            channel,
            sku,
            accepted,
            until,
        } => {
            client
                .execute(
                    &pg(ob::ACCEPTED),
                    &[
                        &channel.as_str(),
                        &sku.as_str(),
                        &accepted.reference,
                        &serde_json::to_string(&accepted.sent)?,
                        &ob::ms(accepted.at),
                        &ob::ms(*until),
                    ],
                )
                .await?;
        }
        OutboxUpdate::ChannelQuantity {
            channel,
            sku,
            quantity,
        } => {
            client
                .execute(
                    &pg(ob::CHANNEL_QUANTITY),
                    &[&channel.as_str(), &sku.as_str(), quantity],
                )
                .await?;
        }
        OutboxUpdate::Dead { letter } => {
            client
                .execute(
                    &pg(ob::INSERT_DEAD),
                    &[
                        &letter.channel.as_str(),
                        &letter.sku.as_str(),
                        &(letter.desired_gen as i64),
                        &serde_json::to_string(&letter.desired)?,
                        &letter.code,
                        &letter.message,
                        &letter.status.map(i64::from),
                        &letter.body,
                        &i64::from(letter.attempts),
                        &ob::ms(letter.created_at),
                        &i64::from(letter.transient),
                    ],
                )
                .await?;
            client
                .execute(
                    &pg(ob::PARK),
                    &[
                        &letter.channel.as_str(),
                        &letter.sku.as_str(),
                        &i64::from(letter.attempts),
                        &format!("{}: {}", letter.code, letter.message),
                        &(letter.desired_gen as i64),
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

impl PgStore {
    async fn unpark(&self, id: i64, retry: bool) -> Result<bool, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.query_opt(&pg(ob::DEAD_ONE), &[&id]).await? else {
            return Ok(false);
        };
        let channel: String = row.get(0);
        let sku: String = row.get(1);
        tx.execute(&pg(ob::DEAD_DELETE), &[&id]).await?;
        let others: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM dead_letters WHERE channel = $1 AND sku = $2",
                &[&channel, &sku],
            )
            .await?
            .get(0);
        if others == 0 {
            if retry {
                tx.execute(
                    &pg(ob::UNPARK_RETRY),
                    &[&channel, &sku, &ob::ms(Utc::now())],
                )
                .await?;
            } else {
                tx.execute(&pg(ob::UNPARK_DISCARD), &[&channel, &sku])
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_due(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let client = self.reader().await?;
        let class = |protective: bool, room: u32| {
            let client = &client;
            async move {
                let sql = pg(&ob::due_sql(protective));
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&channel.as_str(), &ob::ms(now), &i64::from(room)];
                to_rows(&client.query(&sql, &params).await?)
            }
        };
        let protective = class(true, limit).await?;
        let room = limit.saturating_sub(protective.len() as u32);
        let rest = if room == 0 {
            Vec::new()
        } else {
            class(false, room).await?
        };
        Ok(ob::due_rows(protective, rest))
    }

    async fn outbox(
        &self,
        channel: Option<&ChannelId>,
        after: Option<(&ChannelId, &Sku)>,
        pending_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let (after_channel, after_sku) = after
            .map(|(c, s)| (c.as_str().to_string(), s.as_str().to_string()))
            .unwrap_or_default();
        let sql = pg(&ob::page_sql(channel.is_some(), pending_only));
        let client = self.reader().await?;
        let limit = i64::from(limit);
        let rows = match channel {
            Some(c) => {
                client
                    .query(&sql, &[&after_channel, &after_sku, &limit, &c.as_str()])
                    .await?
            }
            None => {
                client
                    .query(&sql, &[&after_channel, &after_sku, &limit])
                    .await?
            }
        };
        to_rows(&rows)
    }

    async fn outbox_rows(
        &self,
        channel: &ChannelId,
        skus: &[Sku],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let client = self.reader().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM listing_state WHERE channel = $1 AND sku = ANY($2) ORDER BY sku",
                    ob::ROW_COLUMNS
                ),
                &[&channel.as_str(), &names],
            )
            .await?;
        to_rows(&rows)
    }

    async fn outbox_record(&self, updates: Vec<OutboxUpdate>) -> Result<(), StoreError> {
        self.writer.record_outbox(updates).await
    }

    async fn outbox_channel_moved(
        &self,
        channel: &ChannelId,
        moves: Vec<(Sku, Option<i64>)>,
    ) -> Result<(), StoreError> {
        self.writer
            .record_outbox(ob::channel_moves(channel, moves, Utc::now()))
            .await
    }

    async fn dead_letters(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(&pg(ob::DEAD_PAGE), &[&after_id, &i64::from(limit)])
            .await?;
        rows.iter().map(|r| raw_dead(r).into_letter()).collect()
    }

    async fn outbox_oldest_unsent(&self) -> Result<Vec<(ChannelId, DateTime<Utc>)>, StoreError> {
        let client = self.reader().await?;
        let rows = client.query(&pg(ob::OLDEST_UNSENT), &[]).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(r.get::<_, String>(0), ChannelId::parse)?,
                    ob::from_ms(r.get::<_, i64>(1)),
                ))
            })
            .collect()
    }

    async fn channel_lease(
        &self,
        channel: &ChannelId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.reader().await?;
        let n = client
            .execute(
                &pg(ob::LEASE_TAKE),
                &[&channel.as_str(), &holder, &ob::ms(until), &ob::ms(now)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn outbox_accepted(
        &self,
        channel: &ChannelId,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(&ob::accepted_sql()),
                &[&channel.as_str(), &i64::from(limit)],
            )
            .await?;
        to_rows(&rows)
    }

    async fn outbox_release_in_flight(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        Ok(client
            .execute(&pg(ob::RELEASE_IN_FLIGHT), &[&channel.as_str(), &holder])
            .await?)
    }

    async fn channel_lease_release(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<(), StoreError> {
        let client = self.reader().await?;
        client
            .execute(&pg(ob::LEASE_RELEASE), &[&channel.as_str(), &holder])
            .await?;
        Ok(())
    }

    async fn poll_cursor(&self, channel: &ChannelId) -> Result<Option<String>, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_opt(&pg(ob::POLL_CURSOR), &[&channel.as_str()])
            .await?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
    }

    async fn set_poll_cursor(
        &self,
        channel: &ChannelId,
        holder: &str,
        cursor: Option<&str>,
    ) -> Result<(), StoreError> {
        let client = self.reader().await?;
        client
            .execute(
                &pg(ob::SET_POLL_CURSOR),
                &[&channel.as_str(), &holder, &cursor, &ob::ms(Utc::now())],
            )
            .await?;
        Ok(())
    }

    async fn dead_letter_retry(&self, id: i64) -> Result<bool, StoreError> {
        self.unpark(id, true).await
    }

    async fn dead_letter_discard(&self, id: i64) -> Result<bool, StoreError> {
        self.unpark(id, false).await
    }

    async fn dead_letters_revive(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let revived = tx
            .execute(
                &pg(ob::REVIVE_TRANSIENT),
                &[&channel.as_str(), &ob::ms(now)],
            )
            .await?;
        tx.execute(&pg(ob::DROP_REVIVED), &[&channel.as_str()])
            .await?;
        tx.commit().await?;
        Ok(revived)
    }
}
