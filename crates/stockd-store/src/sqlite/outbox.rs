//! SQLite side of the outbox: the writer's desired-state reads and writes
//! (inside the group transaction) and the dispatcher's `OutboxStore`.

use super::channels::{
    active_rules_on, bundles_on, channels_on, in_transaction, listing_keys_on, sales_since_on,
    variant_stock_on,
};
use super::{all_locations, unplanned_limit, SqliteBackend, SqliteStore};
use crate::availability::AvailabilityReads;
use crate::channels::{ChannelRecord, RulesVersion, VariantStock};
use crate::hot;
use crate::outbox::{
    self as ob, DeadLetter, DesiredStates, DesiredWrite, OutboxRow, OutboxStore, OutboxUpdate,
    RawDead, RawRow, StoredDesired,
};
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use stockd_core::availability::{Bundle, Listing, Sale};
use stockd_core::{ChannelId, Location, Sku};

impl AvailabilityReads for SqliteBackend {
    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        channels_on(&self.conn)
    }
    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        all_locations(&self.conn)
    }
    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        bundles_on(&self.conn)
    }
    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError> {
        active_rules_on(&self.conn)
    }
    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError> {
        variant_stock_on(&self.conn, skus)
    }
    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
        listing_keys_on(&self.conn, skus)
    }
    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError> {
        sales_since_on(&self.conn, skus, since)
    }
}

impl DesiredStates for SqliteBackend {
    async fn stored_desired(
        &mut self,
        _skus: &[Sku],
        keys: &[(ChannelId, Sku)],
    ) -> Result<BTreeMap<(ChannelId, Sku), StoredDesired>, StoreError> {
        // One statement per batch of SKUs, every channel at once (a SKU's
        // rows share a page), in key order; rows of channels not asked for
        // (disabled) are skipped unparsed.
        let channels: std::collections::HashMap<&str, &ChannelId> = keys
            .iter()
            .map(|(channel, _)| (channel.as_str(), channel))
            .collect();
        let listed: std::collections::BTreeSet<&str> =
            keys.iter().map(|(_, sku)| sku.as_str()).collect();
        let listed: Vec<&str> = listed.into_iter().collect();
        let mut out = BTreeMap::new();
        super::batch::each_batch(
            &self.conn,
            super::batch::stored_desired_in(),
            &[],
            &listed,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            },
            |(channel, sku, desired, version, lagging)| {
                let Some(&channel) = channels.get(channel.as_str()) else {
                    return Ok(());
                };
                out.insert(
                    (channel.clone(), super::batch::sku(sku)?),
                    StoredDesired {
                        state: serde_json::from_str(&desired)?,
                        rules_version: version.and_then(|v| u32::try_from(v).ok()),
                        lagging,
                    },
                );
                Ok(())
            },
        )?;
        Ok(out)
    }

    async fn write_desired(
        &mut self,
        rows: &[DesiredWrite],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut lagging = self.conn.prepare_cached(ob::UPDATE_LAGGING_DESIRED)?;
        let mut insert = self.conn.prepare_cached(ob::INSERT_DESIRED)?;
        let mut version = self.conn.prepare_cached(ob::UPDATE_VERSION)?;
        for row in rows {
            let rules_version = row.rules_version.map(i64::from);
            if row.value_changed {
                let state = ob::state_json(&row.state)?;
                let (seq, caused_at) = (row.caused_seq.map(|s| s as i64), ob::ms(row.caused_at));
                let (channel, sku) = (row.channel.as_str(), row.sku.as_str());
                // A lagging row the update missed (none in one transaction)
                // is still written, by the insert.
                let updated = row.lagging
                    && lagging.execute(params![
                        channel,
                        sku,
                        state,
                        rules_version,
                        seq,
                        caused_at
                    ])? == 1;
                if !updated {
                    insert.execute(params![
                        channel,
                        sku,
                        state,
                        rules_version,
                        seq,
                        caused_at,
                        ob::ms(now),
                    ])?;
                }
            } else {
                version.execute(params![
                    row.channel.as_str(),
                    row.sku.as_str(),
                    rules_version
                ])?;
            }
        }
        Ok(())
    }

    async fn record_outbox(&mut self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        for update in updates {
            record(&self.conn, update)?;
        }
        Ok(())
    }

    async fn setup_generation(&mut self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(hot::SETUP_GENERATION)?
            .query_row([], |r| r.get(0))?)
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
        let raw = self
            .conn
            .prepare_cached(hot::LISTED_AFTER)?
            .query_map(params![after, limit], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter().map(|s| parse_id(s, Sku::parse)).collect()
    }
}

pub(super) fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        channel: r.get(0)?,
        sku: r.get(1)?,
        desired: r.get(2)?,
        rules_version: r.get(3)?,
        desired_gen: r.get(4)?,
        caused_seq: r.get(5)?,
        caused_at_ms: r.get(6)?,
        dirty_since_ms: r.get(7)?,
        sent_gen: r.get(8)?,
        pushed: r.get(9)?,
        pushed_at_ms: r.get(10)?,
        channel_quantity: r.get(11)?,
        recent_pushes: r.get(12)?,
        attempts: r.get(13)?,
        next_attempt_ms: r.get(14)?,
        last_error: r.get(15)?,
        parked: r.get(16)?,
        channel_gen: r.get(17)?,
        parked_gen: r.get(18)?,
        protective: r.get(19)?,
        unacked_since_ms: r.get(20)?,
        in_flight_ref: r.get(21)?,
        in_flight_sent: r.get(22)?,
        in_flight_at_ms: r.get(23)?,
    })
}

fn raw_dead(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDead> {
    Ok(RawDead {
        id: r.get(0)?,
        channel: r.get(1)?,
        sku: r.get(2)?,
        desired_gen: r.get(3)?,
        desired: r.get(4)?,
        code: r.get(5)?,
        message: r.get(6)?,
        status: r.get(7)?,
        body: r.get(8)?,
        attempts: r.get(9)?,
        created_at_ms: r.get(10)?,
        superseded: r.get(11)?,
        transient: r.get(12)?,
    })
}

pub(super) fn to_rows(raw: Vec<RawRow>) -> Result<Vec<OutboxRow>, StoreError> {
    raw.into_iter().map(RawRow::into_row).collect()
}

fn record(conn: &Connection, update: &OutboxUpdate) -> Result<(), StoreError> {
    match update {
        OutboxUpdate::ChannelMoved {
            channel,
            sku,
            delta,
            at,
        } => {
            conn.prepare_cached(ob::CHANNEL_MOVED)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                delta,
                ob::ms(*at)
            ])?;
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
            conn.prepare_cached(ob::ACK)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                *gen as i64,
                ob::state_json(state)?,
                ob::ms(*at),
                channel_quantity,
                ob::recent_pushes_json(recent_before, *at, *counted)?,
                *channel_gen as i64,
            ])?;
        }
        OutboxUpdate::Failed {
            channel,
            sku,
            attempts,
            next_attempt_at,
            error,
        } => {
            conn.prepare_cached(ob::FAILED)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                attempts,
                ob::ms(*next_attempt_at),
                error
            ])?;
        }
        OutboxUpdate::Deferred {
            channel,
            sku,
            until,
            note,
        } => {
            conn.prepare_cached(ob::DEFERRED)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                ob::ms(*until),
                note
            ])?;
        }
        OutboxUpdate::InFlight {
            channel,
            sku,
            holder,
            until,
        } => {
            conn.prepare_cached(ob::IN_FLIGHT)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                ob::ms(*until),
                holder
            ])?;
        }
        OutboxUpdate::Accepted {
            channel,
            sku,
            accepted,
            until,
        } => {
            conn.prepare_cached(ob::ACCEPTED)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                accepted.reference,
                serde_json::to_string(&accepted.sent)?,
                ob::ms(accepted.at),
                ob::ms(*until),
            ])?;
        }
        OutboxUpdate::ChannelQuantity {
            channel,
            sku,
            quantity,
        } => {
            conn.prepare_cached(ob::CHANNEL_QUANTITY)?.execute(params![
                channel.as_str(),
                sku.as_str(),
                quantity
            ])?;
        }
        OutboxUpdate::Dead { letter } => {
            conn.prepare_cached(ob::INSERT_DEAD)?.execute(params![
                letter.channel.as_str(),
                letter.sku.as_str(),
                letter.desired_gen as i64,
                serde_json::to_string(&letter.desired)?,
                letter.code,
                letter.message,
                letter.status.map(i64::from),
                letter.body,
                letter.attempts,
                ob::ms(letter.created_at),
                i64::from(letter.transient),
            ])?;
            conn.prepare_cached(ob::PARK)?.execute(params![
                letter.channel.as_str(),
                letter.sku.as_str(),
                letter.attempts,
                format!("{}: {}", letter.code, letter.message),
                letter.desired_gen as i64,
            ])?;
        }
    }
    Ok(())
}

fn unpark(conn: &Connection, id: i64, sql: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    in_transaction(conn, |conn| {
        let found = conn
            .prepare_cached(ob::DEAD_ONE)?
            .query_row([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((channel, sku)) = found else {
            return Ok(false);
        };
        conn.prepare_cached(ob::DEAD_DELETE)?.execute([id])?;
        // Another letter of the same listing keeps it parked.
        let others: i64 = conn.query_row(
            "SELECT COUNT(*) FROM dead_letters WHERE channel = ?1 AND sku = ?2",
            params![channel, sku],
            |r| r.get(0),
        )?;
        if others == 0 {
            if sql == ob::UNPARK_RETRY {
                conn.prepare_cached(sql)?
                    .execute(params![channel, sku, ob::ms(now)])?;
            } else {
                conn.prepare_cached(sql)?.execute(params![channel, sku])?;
            }
        }
        Ok(true)
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_due(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let channel = channel.clone();
        self.read(move |conn| {
            let class = |protective: bool, limit: u32| {
                let raw = conn
                    .prepare_cached(&unplanned_limit(&ob::due_sql(protective)))?
                    .query_map(params![channel.as_str(), ob::ms(now), limit], raw_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                to_rows(raw)
            };
            let protective = class(true, limit)?;
            let room = limit.saturating_sub(protective.len() as u32);
            let rest = if room == 0 {
                Vec::new()
            } else {
                class(false, room)?
            };
            Ok(ob::due_rows(protective, rest))
        })
        .await
    }

    async fn outbox(
        &self,
        channel: Option<&ChannelId>,
        after: Option<(&ChannelId, &Sku)>,
        pending_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let channel = channel.map(|c| c.as_str().to_string());
        let (after_channel, after_sku) = after
            .map(|(c, s)| (c.as_str().to_string(), s.as_str().to_string()))
            .unwrap_or_default();
        self.read(move |conn| {
            let sql = unplanned_limit(&ob::page_sql(channel.is_some(), pending_only));
            let mut stmt = conn.prepare_cached(&sql)?;
            let raw = match &channel {
                Some(c) => stmt
                    .query_map(params![after_channel, after_sku, limit, c], raw_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => stmt
                    .query_map(params![after_channel, after_sku, limit], raw_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            to_rows(raw)
        })
        .await
    }

    async fn outbox_rows(
        &self,
        channel: &ChannelId,
        skus: &[Sku],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let channel = channel.clone();
        let skus = skus.to_vec();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&ob::rows_sql())?;
            let mut raw = Vec::new();
            for sku in &skus {
                if let Some(row) = stmt
                    .query_row(params![channel.as_str(), sku.as_str()], raw_row)
                    .optional()?
                {
                    raw.push(row);
                }
            }
            to_rows(raw)
        })
        .await
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
            .record_outbox(ob::channel_moves(channel, moves, self.writer.now()))
            .await
    }

    async fn dead_letters(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(ob::DEAD_PAGE)?
                .query_map(params![after_id, limit], raw_dead)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(RawDead::into_letter).collect()
        })
        .await
    }

    async fn outbox_oldest_unsent(&self) -> Result<Vec<(ChannelId, DateTime<Utc>)>, StoreError> {
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(ob::OLDEST_UNSENT)?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(c, at)| Ok((parse_id(c, ChannelId::parse)?, ob::from_ms(at))))
                .collect()
        })
        .await
    }

    async fn channel_lease(
        &self,
        channel: &ChannelId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (channel, holder) = (channel.as_str().to_string(), holder.to_string());
        self.read(move |conn| {
            let n = conn.prepare_cached(ob::LEASE_TAKE)?.execute(params![
                channel,
                holder,
                ob::ms(until),
                ob::ms(now)
            ])?;
            Ok(n == 1)
        })
        .await
    }

    async fn outbox_accepted(
        &self,
        channel: &ChannelId,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let channel = channel.clone();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&unplanned_limit(&ob::accepted_sql()))?
                .query_map(params![channel.as_str(), limit], raw_row)?
                .collect::<Result<Vec<_>, _>>()?;
            to_rows(raw)
        })
        .await
    }

    async fn outbox_release_in_flight(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<u64, StoreError> {
        let (channel, holder) = (channel.as_str().to_string(), holder.to_string());
        self.read(move |conn| {
            let n = conn
                .prepare_cached(ob::RELEASE_IN_FLIGHT)?
                .execute(params![channel, holder])?;
            Ok(n as u64)
        })
        .await
    }

    async fn channel_lease_release(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<(), StoreError> {
        let (channel, holder) = (channel.as_str().to_string(), holder.to_string());
        self.read(move |conn| {
            conn.prepare_cached(ob::LEASE_RELEASE)?
                .execute(params![channel, holder])?;
            Ok(())
        })
        .await
    }

    async fn poll_cursor(&self, channel: &ChannelId) -> Result<Option<String>, StoreError> {
        let channel = channel.as_str().to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(ob::POLL_CURSOR)?
                .query_row([channel], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn set_poll_cursor(
        &self,
        channel: &ChannelId,
        holder: &str,
        cursor: Option<&str>,
    ) -> Result<(), StoreError> {
        let (channel, holder) = (channel.as_str().to_string(), holder.to_string());
        let cursor = cursor.map(str::to_string);
        let now = ob::ms(self.writer.now());
        self.read(move |conn| {
            conn.prepare_cached(ob::SET_POLL_CURSOR)?
                .execute(params![channel, holder, cursor, now])?;
            Ok(())
        })
        .await
    }

    async fn dead_letter_retry(&self, id: i64) -> Result<bool, StoreError> {
        let now = self.writer.now();
        self.read(move |conn| unpark(conn, id, ob::UNPARK_RETRY, now))
            .await
    }

    async fn dead_letter_discard(&self, id: i64) -> Result<bool, StoreError> {
        let now = self.writer.now();
        self.read(move |conn| unpark(conn, id, ob::UNPARK_DISCARD, now))
            .await
    }

    async fn dead_letters_revive(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let channel = channel.as_str().to_string();
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let revived = conn
                    .prepare_cached(ob::REVIVE_TRANSIENT)?
                    .execute(params![channel, ob::ms(now)])?;
                conn.prepare_cached(ob::DROP_REVIVED)?
                    .execute(params![channel])?;
                Ok(revived as u64)
            })
        })
        .await
    }
}
