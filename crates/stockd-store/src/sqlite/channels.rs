//! SQLite side of `ChannelStore`. These writes are rare; they run on a pooled
//! connection in an immediate transaction, alongside the event writer.

use super::{batch, inbound_columns, to_inbound, unplanned_limit, SqliteStore};
use crate::channels::{
    self as sql, bundles_from_rows, channel_from_columns, listing_from_columns,
    listing_key_from_columns, locations_column, sales_in, ChannelRecord, ChannelStore, KitChange,
    ListingRecord, RulesVersion, VariantStock,
};
use crate::hot;
use crate::rows::{parse_id, parse_time};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use stockd_core::availability::{Bundle, Listing, Sale};
use stockd_core::rules::RulesDocument;
use stockd_core::{ChannelId, LocationId, Quantities, Sku, Variant};

pub(crate) fn in_transaction<T>(
    conn: &Connection,
    body: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match body(conn) {
        Ok(value) => {
            conn.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn channel_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Option<String>, bool)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn listing_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, Option<i32>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_listings(
    raw: Vec<(String, String, String, Option<i32>)>,
) -> Result<Vec<ListingRecord>, StoreError> {
    raw.into_iter()
        .map(|(channel, sku, external, rank)| listing_from_columns(channel, sku, &external, rank))
        .collect()
}

fn rules_version_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_rules_version(
    raw: (i64, String, String, String, String),
) -> Result<RulesVersion, StoreError> {
    let (version, document, message, author, created_at) = raw;
    Ok(RulesVersion {
        version: u32::try_from(version).map_err(crate::rows::corrupt)?,
        document: serde_json::from_str(&document)?,
        message,
        author,
        created_at: parse_time(&created_at)?,
    })
}

pub(crate) fn channels_on(conn: &Connection) -> Result<Vec<ChannelRecord>, StoreError> {
    let raw = conn
        .prepare_cached(sql::CHANNELS_ALL)?
        .query_map([], channel_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(id, kind, locations, enabled)| channel_from_columns(id, &kind, locations, enabled))
        .collect()
}

pub(crate) fn listings_of_on(
    conn: &Connection,
    skus: &[Sku],
) -> Result<Vec<ListingRecord>, StoreError> {
    let mut by_sku: HashMap<String, Vec<ListingRecord>> = HashMap::new();
    batch::each_batch(
        conn,
        batch::listings_in(),
        &[],
        &batch::distinct(skus),
        listing_row,
        |(channel, sku, external, rank)| {
            let key = sku.clone();
            let listing = listing_from_columns(channel, sku, &external, rank)?;
            by_sku.entry(key).or_default().push(listing);
            Ok(())
        },
    )?;
    Ok(batch::in_order(skus, by_sku))
}

pub(crate) fn listing_keys_on(conn: &Connection, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
    let mut out = Vec::new();
    batch::each_batch(
        conn,
        batch::listing_keys_in(),
        &[],
        &batch::distinct(skus),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        |(channel, sku, rank)| {
            out.push(listing_key_from_columns(channel, sku, rank)?);
            Ok(())
        },
    )?;
    Ok(out)
}

pub(crate) fn bundles_on(conn: &Connection) -> Result<Vec<Bundle>, StoreError> {
    let raw = conn
        .prepare_cached(sql::BUNDLES_ALL)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    bundles_from_rows(raw)
}

pub(crate) fn active_rules_on(conn: &Connection) -> Result<Option<RulesVersion>, StoreError> {
    conn.prepare_cached(sql::RULES_ACTIVE)?
        .query_row([], rules_version_row)
        .optional()?
        .map(to_rules_version)
        .transpose()
}

pub(crate) fn variant_stock_on(
    conn: &Connection,
    skus: &[Sku],
) -> Result<Vec<VariantStock>, StoreError> {
    let asked = batch::distinct(skus);
    let mut found: HashMap<String, Vec<VariantStock>> = HashMap::with_capacity(asked.len());
    batch::each_batch(
        conn,
        batch::variants_in(),
        &[],
        &asked,
        |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        |(sku, title, product_id, gtin)| {
            let variant = Variant {
                sku: batch::sku(sku.clone())?,
                title,
                product_id,
                gtin,
            };
            found.insert(
                sku,
                vec![VariantStock {
                    variant,
                    stock: Vec::new(),
                    inbound: Vec::new(),
                }],
            );
            Ok(())
        },
    )?;
    let known: Vec<&str> = asked
        .into_iter()
        .filter(|s| found.contains_key(*s))
        .collect();
    batch::each_batch(
        conn,
        batch::stock_in(),
        &[],
        &known,
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Quantities {
                    on_hand: r.get(2)?,
                    reserved: r.get(3)?,
                    pending_return: r.get(4)?,
                    written_off: r.get(5)?,
                },
            ))
        },
        |(sku, location, q)| {
            if let Some(v) = found.get_mut(&sku).and_then(|v| v.first_mut()) {
                v.stock.push((parse_id(location, LocationId::parse)?, q));
            }
            Ok(())
        },
    )?;
    batch::each_batch(
        conn,
        batch::inbound_in(),
        &[],
        &known,
        inbound_columns,
        |(raw, qty, confirmed)| {
            let line = to_inbound(raw, qty, confirmed)?;
            if let Some(v) = found.get_mut(line.sku.as_str()).and_then(|v| v.first_mut()) {
                v.inbound.push(line);
            }
            Ok(())
        },
    )?;
    Ok(batch::in_order(skus, found))
}

pub(crate) fn sales_since_on(
    conn: &Connection,
    skus: &[Sku],
    since: DateTime<Utc>,
) -> Result<Vec<Sale>, StoreError> {
    // Stored times are RFC 3339 in UTC: a second-precision prefix compares
    // correctly as text; the exact bound is checked after parsing.
    let since_prefix = since.format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut stmt = conn.prepare_cached(hot::SQLITE_SALES_SINCE)?;
    let mut sales = Vec::new();
    for sku in skus {
        let rows = stmt
            .query_map(params![sku.as_str(), since_prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (event, received_at) in rows {
            let at = parse_time(&received_at)?;
            if at >= since {
                sales.extend(sales_in(&event, sku, at)?);
            }
        }
    }
    Ok(sales)
}

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn upsert_channel(&self, channel: ChannelRecord) -> Result<(), StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(sql::CHANNEL_UPSERT)?.execute(params![
                channel.id.as_str(),
                channel.kind.as_str(),
                locations_column(&channel)?,
                channel.enabled
            ])?;
            conn.prepare_cached(hot::BUMP_SETUP)?.execute([])?;
            Ok(())
        })
        .await
    }

    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        self.read(channels_on).await
    }

    async fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(sql::CHANNEL_ONE)?
                .query_row([id.as_str()], channel_row)
                .optional()?;
            raw.map(|(id, kind, locations, enabled)| {
                channel_from_columns(id, &kind, locations, enabled)
            })
            .transpose()
        })
        .await
    }

    async fn upsert_listings(&self, listings: Vec<ListingRecord>) -> Result<usize, StoreError> {
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let mut stmt = conn.prepare_cached(sql::SQLITE_LISTING_UPSERT)?;
                for listing in &listings {
                    stmt.execute(params![
                        listing.channel.as_str(),
                        listing.sku.as_str(),
                        serde_json::to_string(&listing.external)?,
                        listing.rank
                    ])?;
                }
                Ok(listings.len())
            })
        })
        .await
    }

    async fn listings(
        &self,
        channel: &ChannelId,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<ListingRecord>, StoreError> {
        let channel = channel.clone();
        let after = after.map(|s| s.as_str().to_string()).unwrap_or_default();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&unplanned_limit(hot::LISTINGS_PAGE))?
                .query_map(params![channel.as_str(), after, limit], listing_row)?
                .collect::<Result<Vec<_>, _>>()?;
            to_listings(raw)
        })
        .await
    }

    async fn listings_of(&self, skus: &[Sku]) -> Result<Vec<ListingRecord>, StoreError> {
        let skus = skus.to_vec();
        self.read(move |conn| listings_of_on(conn, &skus)).await
    }

    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
        let skus = skus.to_vec();
        self.read(move |conn| listing_keys_on(conn, &skus)).await
    }

    async fn listed_skus(&self, after: Option<&Sku>, limit: u32) -> Result<Vec<Sku>, StoreError> {
        let after = after.map(|s| s.as_str().to_string()).unwrap_or_default();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(hot::LISTED_AFTER)?
                .query_map(params![after, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(|s| parse_id(s, Sku::parse)).collect()
        })
        .await
    }

    async fn put_bundle(&self, bundle: Bundle, author: &str) -> Result<(), StoreError> {
        let author = author.to_string();
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                conn.prepare_cached(sql::BUNDLE_DELETE)?
                    .execute([bundle.kit.as_str()])?;
                let mut stmt = conn.prepare_cached(sql::SQLITE_BUNDLE_COMPONENT_INSERT)?;
                for (position, component) in bundle.components.iter().enumerate() {
                    stmt.execute(params![
                        bundle.kit.as_str(),
                        position as i64,
                        component.sku.as_str(),
                        component.qty
                    ])?;
                }
                conn.prepare_cached(sql::KIT_CHANGE_INSERT)?
                    .execute(params![
                        Utc::now().timestamp_millis(),
                        bundle.kit.as_str(),
                        "put",
                        serde_json::to_string(&bundle.components)?,
                        author
                    ])?;
                conn.prepare_cached(hot::BUMP_SETUP)?.execute([])?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_bundle(&self, kit: &Sku, author: &str) -> Result<bool, StoreError> {
        let kit = kit.clone();
        let author = author.to_string();
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let deleted = conn
                    .prepare_cached(sql::BUNDLE_DELETE)?
                    .execute([kit.as_str()])?;
                if deleted > 0 {
                    conn.prepare_cached(sql::KIT_CHANGE_INSERT)?
                        .execute(params![
                            Utc::now().timestamp_millis(),
                            kit.as_str(),
                            "delete",
                            "[]",
                            author
                        ])?;
                }
                conn.prepare_cached(hot::BUMP_SETUP)?.execute([])?;
                Ok(deleted > 0)
            })
        })
        .await
    }

    async fn kit_changes(
        &self,
        kit: Option<&Sku>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<KitChange>, StoreError> {
        let kit = kit.map(|k| k.as_str().to_string());
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(sql::KIT_CHANGES)?
                .query_map(params![kit, after.unwrap_or(0), limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(id, at, kit, action, components, author)| {
                    KitChange::from_columns(id, at, kit, action, &components, author)
                })
                .collect()
        })
        .await
    }

    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        self.read(bundles_on).await
    }

    async fn add_rules_version(
        &self,
        document: RulesDocument,
        message: String,
        author: String,
    ) -> Result<RulesVersion, StoreError> {
        self.read(move |conn| {
            in_transaction(conn, |conn| {
                let created_at = Utc::now();
                let version: i64 = conn.prepare_cached(sql::RULES_INSERT_NEXT)?.query_row(
                    params![
                        serde_json::to_string(&document)?,
                        message,
                        author,
                        created_at.to_rfc3339()
                    ],
                    |r| r.get(0),
                )?;
                conn.prepare_cached(hot::BUMP_SETUP)?.execute([])?;
                Ok(RulesVersion {
                    version: u32::try_from(version).map_err(crate::rows::corrupt)?,
                    document,
                    message,
                    author,
                    created_at,
                })
            })
        })
        .await
    }

    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError> {
        self.read(active_rules_on).await
    }

    async fn rules_version(&self, version: u32) -> Result<Option<RulesVersion>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(sql::RULES_ONE)?
                .query_row([version], rules_version_row)
                .optional()?
                .map(to_rules_version)
                .transpose()
        })
        .await
    }

    async fn rules_versions(&self) -> Result<Vec<RulesVersion>, StoreError> {
        self.read(|conn| {
            let raw = conn
                .prepare_cached(sql::RULES_ALL)?
                .query_map([], rules_version_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(to_rules_version).collect()
        })
        .await
    }

    async fn known_variants(&self, skus: &[Sku]) -> Result<Vec<Sku>, StoreError> {
        let skus = skus.to_vec();
        self.read(move |conn| {
            let mut found = std::collections::HashSet::with_capacity(skus.len());
            batch::each_batch(
                conn,
                batch::variants_exist_in(),
                &[],
                &batch::distinct(&skus),
                |r| r.get::<_, String>(0),
                |sku| {
                    found.insert(sku);
                    Ok(())
                },
            )?;
            Ok(skus
                .into_iter()
                .filter(|s| found.contains(s.as_str()))
                .collect())
        })
        .await
    }

    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError> {
        let skus = skus.to_vec();
        self.read(move |conn| variant_stock_on(conn, &skus)).await
    }

    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError> {
        let skus = skus.to_vec();
        self.read(move |conn| sales_since_on(conn, &skus, since))
            .await
    }
}
