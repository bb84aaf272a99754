//! PostgreSQL side of `ChannelStore`: pooled connections, one transaction
//! per write.

use super::{to_inbound, to_quantities, PgStore, WRITER_LOCK_ID};
use crate::channels::{
    self as sql, bundles_from_rows, channel_from_columns, listing_from_columns,
    listing_key_from_columns, locations_column, sales_in, ChannelRecord, ChannelStore, KitChange,
    ListingRecord, RulesVersion, VariantStock,
};
use crate::hot;
use crate::outbox::pg;
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use stockd_core::availability::{Bundle, Listing, Sale};
use stockd_core::rules::RulesDocument;
use stockd_core::{ChannelId, LocationId, Sku, Variant};
use tokio_postgres::{Client, Row};

/// Serialises rules versions across instances.
const RULES_LOCK_ID: i64 = WRITER_LOCK_ID + 2;

fn to_channel(row: &Row) -> Result<ChannelRecord, StoreError> {
    channel_from_columns(row.get(0), row.get(1), row.get(2), row.get(3))
}

fn to_listing(row: &Row) -> Result<ListingRecord, StoreError> {
    listing_from_columns(row.get(0), row.get(1), row.get(2), row.get(3))
}

fn to_rules_version(row: &Row) -> Result<RulesVersion, StoreError> {
    let version: i32 = row.get(0);
    let document: &str = row.get(1);
    Ok(RulesVersion {
        version: u32::try_from(version).map_err(crate::rows::corrupt)?,
        document: serde_json::from_str(document)?,
        message: row.get(2),
        author: row.get(3),
        created_at: row.get(4),
    })
}

pub(crate) async fn channels_on(client: &Client) -> Result<Vec<ChannelRecord>, StoreError> {
    let rows = client.query(sql::CHANNELS_ALL, &[]).await?;
    rows.iter().map(to_channel).collect()
}

pub(crate) async fn listings_of_on(
    client: &Client,
    skus: &[Sku],
) -> Result<Vec<ListingRecord>, StoreError> {
    let skus: Vec<&str> = skus.iter().map(Sku::as_str).collect();
    let rows = client.query(hot::PG_LISTINGS_OF, &[&skus]).await?;
    rows.iter().map(to_listing).collect()
}

pub(crate) async fn listing_keys_on(
    client: &Client,
    skus: &[Sku],
) -> Result<Vec<Listing>, StoreError> {
    let skus: Vec<&str> = skus.iter().map(Sku::as_str).collect();
    let rows = client.query(hot::PG_LISTING_KEYS_OF, &[&skus]).await?;
    rows.iter()
        .map(|r| listing_key_from_columns(r.get(0), r.get(1), r.get(2)))
        .collect()
}

pub(crate) async fn bundles_on(client: &Client) -> Result<Vec<Bundle>, StoreError> {
    let rows = client.query(sql::BUNDLES_ALL, &[]).await?;
    bundles_from_rows(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), i64::from(r.get::<_, i32>(2))))
            .collect(),
    )
}

pub(crate) async fn active_rules_on(client: &Client) -> Result<Option<RulesVersion>, StoreError> {
    let row = client.query_opt(sql::RULES_ACTIVE, &[]).await?;
    row.as_ref().map(to_rules_version).transpose()
}

pub(crate) async fn variant_stock_on(
    client: &Client,
    skus: &[Sku],
) -> Result<Vec<VariantStock>, StoreError> {
    let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
    let variants = client.query(hot::PG_VARIANTS, &[&names]).await?;
    let mut out: Vec<VariantStock> = Vec::with_capacity(variants.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for row in &variants {
        let sku: String = row.get(0);
        at.insert(sku.clone(), out.len());
        out.push(VariantStock {
            variant: Variant {
                sku: parse_id(sku, Sku::parse)?,
                title: row.get(1),
                product_id: row.get(2),
                gtin: row.get(3),
            },
            stock: Vec::new(),
            inbound: Vec::new(),
        });
    }
    let stock = client.query(hot::PG_STOCK_OF, &[&names]).await?;
    for row in &stock {
        let sku: &str = row.get(0);
        if let Some(&i) = at.get(sku) {
            out[i].stock.push((
                parse_id(row.get(1), LocationId::parse)?,
                to_quantities(row, 2),
            ));
        }
    }
    let inbound = client.query(hot::PG_INBOUND_OF, &[&names]).await?;
    for row in &inbound {
        let line = to_inbound(row)?;
        if let Some(&i) = at.get(line.sku.as_str()) {
            out[i].inbound.push(line);
        }
    }
    Ok(out)
}

pub(crate) async fn sales_since_on(
    client: &Client,
    skus: &[Sku],
    since: DateTime<Utc>,
) -> Result<Vec<Sale>, StoreError> {
    let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
    let rows = client.query(hot::PG_SALES_SINCE, &[&names, &since]).await?;
    let mut sales = Vec::new();
    for row in &rows {
        let sku = parse_id(row.get(0), Sku::parse)?;
        sales.extend(sales_in(row.get(1), &sku, row.get(2))?);
    }
    Ok(sales)
}

#[async_trait]
impl ChannelStore for PgStore {
    async fn upsert_channel(&self, channel: ChannelRecord) -> Result<(), StoreError> {
        let client = self.reader().await?;
        client
            .execute(
                &pg(sql::CHANNEL_UPSERT),
                &[
                    &channel.id.as_str(),
                    &channel.kind.as_str(),
                    &locations_column(&channel)?,
                    &channel.enabled,
                ],
            )
            .await?;
        client.execute(hot::BUMP_SETUP, &[]).await?;
        Ok(())
    }

    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        channels_on(&**self.reader().await?).await
    }

    async fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_opt(&pg(sql::CHANNEL_ONE), &[&id.as_str()])
            .await?;
        row.as_ref().map(to_channel).transpose()
    }

    async fn upsert_listings(&self, listings: Vec<ListingRecord>) -> Result<usize, StoreError> {
        // The last entry for a (channel, SKU) wins, as it would row by row.
        let mut latest: HashMap<(&str, &str), &ListingRecord> = HashMap::new();
        for listing in &listings {
            latest.insert((listing.channel.as_str(), listing.sku.as_str()), listing);
        }
        let unique: Vec<&ListingRecord> = latest.into_values().collect();
        let channels: Vec<&str> = unique.iter().map(|l| l.channel.as_str()).collect();
        let skus: Vec<&str> = unique.iter().map(|l| l.sku.as_str()).collect();
        let external = unique
            .iter()
            .map(|l| serde_json::to_string(&l.external))
            .collect::<Result<Vec<_>, _>>()?;
        let ranks: Vec<Option<i32>> = unique.iter().map(|l| l.rank).collect();
        self.reader()
            .await?
            .execute(
                &pg(sql::PG_LISTINGS_UPSERT),
                &[&channels, &skus, &external, &ranks],
            )
            .await?;
        // (The writer counts the states the following refresh writes.)
        self.keep_statistics(&["listings"], unique.len() as u64)
            .await;
        Ok(listings.len())
    }

    async fn listings(
        &self,
        channel: &ChannelId,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<ListingRecord>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(hot::LISTINGS_PAGE),
                &[
                    &channel.as_str(),
                    &after.map_or("", |s| s.as_str()),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter().map(to_listing).collect()
    }

    async fn listings_of(&self, skus: &[Sku]) -> Result<Vec<ListingRecord>, StoreError> {
        listings_of_on(&**self.reader().await?, skus).await
    }

    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
        listing_keys_on(&**self.reader().await?, skus).await
    }

    async fn listed_skus(&self, after: Option<&Sku>, limit: u32) -> Result<Vec<Sku>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(hot::LISTED_AFTER),
                &[&after.map_or("", |s| s.as_str()), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| parse_id(r.get(0), Sku::parse))
            .collect()
    }

    async fn put_bundle(&self, bundle: Bundle, author: &str) -> Result<(), StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        tx.execute(&pg(sql::BUNDLE_DELETE), &[&bundle.kit.as_str()])
            .await?;
        let positions: Vec<i32> = (0..bundle.components.len() as i32).collect();
        let components: Vec<&str> = bundle.components.iter().map(|c| c.sku.as_str()).collect();
        let qtys: Vec<i32> = bundle
            .components
            .iter()
            .map(|c| i32::try_from(c.qty).unwrap_or(i32::MAX))
            .collect();
        tx.execute(
            &pg(sql::PG_BUNDLE_COMPONENTS_INSERT),
            &[&bundle.kit.as_str(), &positions, &components, &qtys],
        )
        .await?;
        let recorded = serde_json::to_string(&bundle.components)?;
        tx.execute(
            &pg(sql::KIT_CHANGE_INSERT),
            &[
                &Utc::now().timestamp_millis(),
                &bundle.kit.as_str(),
                &"put",
                &recorded,
                &author,
            ],
        )
        .await?;
        tx.execute(hot::BUMP_SETUP, &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_bundle(&self, kit: &Sku, author: &str) -> Result<bool, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute(&pg(sql::BUNDLE_DELETE), &[&kit.as_str()])
            .await?;
        if deleted > 0 {
            tx.execute(
                &pg(sql::KIT_CHANGE_INSERT),
                &[
                    &Utc::now().timestamp_millis(),
                    &kit.as_str(),
                    &"delete",
                    &"[]",
                    &author,
                ],
            )
            .await?;
        }
        tx.execute(hot::BUMP_SETUP, &[]).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn kit_changes(
        &self,
        kit: Option<&Sku>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<KitChange>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &pg(sql::KIT_CHANGES),
                &[
                    &kit.map(|k| k.as_str()),
                    &after.unwrap_or(0),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                KitChange::from_columns(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get::<_, &str>(4),
                    r.get(5),
                )
            })
            .collect()
    }

    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        bundles_on(&**self.reader().await?).await
    }

    async fn add_rules_version(
        &self,
        document: RulesDocument,
        message: String,
        author: String,
    ) -> Result<RulesVersion, StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RULES_LOCK_ID])
            .await?;
        let created_at = Utc::now();
        let row = tx
            .query_one(
                &pg(sql::RULES_INSERT_NEXT),
                &[
                    &serde_json::to_string(&document)?,
                    &message,
                    &author,
                    &created_at,
                ],
            )
            .await?;
        tx.execute(hot::BUMP_SETUP, &[]).await?;
        tx.commit().await?;
        let version: i32 = row.get(0);
        Ok(RulesVersion {
            version: u32::try_from(version).map_err(crate::rows::corrupt)?,
            document,
            message,
            author,
            created_at,
        })
    }

    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError> {
        active_rules_on(&**self.reader().await?).await
    }

    async fn rules_version(&self, version: u32) -> Result<Option<RulesVersion>, StoreError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(None);
        };
        let client = self.reader().await?;
        let row = client.query_opt(&pg(sql::RULES_ONE), &[&version]).await?;
        row.as_ref().map(to_rules_version).transpose()
    }

    async fn rules_versions(&self) -> Result<Vec<RulesVersion>, StoreError> {
        let client = self.reader().await?;
        let rows = client.query(sql::RULES_ALL, &[]).await?;
        rows.iter().map(to_rules_version).collect()
    }

    async fn known_variants(&self, skus: &[Sku]) -> Result<Vec<Sku>, StoreError> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let client = self.reader().await?;
        let rows = client.query(hot::PG_LOAD_VARIANTS, &[&names]).await?;
        rows.iter()
            .map(|r| parse_id(r.get::<_, String>(0), Sku::parse))
            .collect()
    }

    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError> {
        variant_stock_on(&**self.reader().await?, skus).await
    }

    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError> {
        sales_since_on(&**self.reader().await?, skus, since).await
    }
}
