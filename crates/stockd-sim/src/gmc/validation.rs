//! Product names, int64 fields and enums as the Merchant API reads them
//! (protos in `specs/gmc/`, from <https://github.com/googleapis/googleapis>).

use super::*;

/// A decoded `{productinput}` / `{product}` path id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProductId {
    pub(super) legacy_local: bool,
    pub(super) content_language: String,
    pub(super) feed_label: String,
    pub(super) offer_id: String,
}

impl ProductId {
    pub(super) fn key(&self) -> String {
        let plain = format!(
            "{}~{}~{}",
            self.content_language, self.feed_label, self.offer_id
        );
        if self.legacy_local {
            format!("local~{plain}")
        } else {
            plain
        }
    }
}

/// `lang~label~offerId` (a `~` marks the plain form) or its unpadded base64url.
pub(super) fn decode_product_id(seg: &str) -> Option<ProductId> {
    let (plain, encoded) = if seg.contains('~') {
        (seg.to_string(), false)
    } else {
        (String::from_utf8(b64url_decode(seg)?).ok()?, true)
    };
    let (legacy_local, rest) = match plain.strip_prefix("local~") {
        Some(rest) => (true, rest),
        None => (false, plain.as_str()),
    };
    let mut parts = rest.splitn(3, '~');
    let lang = parts.next()?.to_string();
    let label = parts.next()?.to_string();
    let offer = parts.next()?.to_string();
    // In the plain form the offer id itself cannot hold `~`, `/` or `%`.
    if lang.is_empty()
        || label.is_empty()
        || offer.is_empty()
        || (!encoded && offer.contains(['~', '/', '%']))
    {
        return None;
    }
    Some(ProductId {
        legacy_local,
        content_language: lang,
        feed_label: label,
        offer_id: offer,
    })
}

/// int64 fields of the v1 protos (products_common, types, inventories_common): proto3 JSON
/// writes them as strings; numbers are accepted on input.
pub(super) const INT64_FIELDS: &[&str] = &[
    "amountMicros",
    "sellOnGoogleQuantity",
    "quantity",
    "multipack",
    "maxHandlingTime",
    "minHandlingTime",
    "minTransitTime",
    "maxTransitTime",
    "fixedMinTransitTime",
    "fixedMaxTransitTime",
    "numberOfUnits",
    "loyaltyPoints",
    "pointsValue",
    "periodLength",
    "months",
    "year",
    "locationId",
    "versionNumber",
];

pub(super) fn normalize_int64(v: &mut Value, path: &str) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if INT64_FIELDS.contains(&k.as_str()) {
                    let n = match &*x {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        Value::Null => continue,
                        _ => None,
                    };
                    match n {
                        Some(n) => *x = Value::String(n.to_string()),
                        None => return Err(format!("Invalid value at '{p}': not an int64")),
                    }
                } else {
                    normalize_int64(x, &p)?;
                }
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                normalize_int64(x, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validate an enum field against its names (proto3 JSON also takes the numbers).
pub(super) fn check_enum(
    m: &mut Map<String, Value>,
    field: &str,
    names: &[&str],
    path: &str,
) -> Result<(), String> {
    let Some(v) = m.get(field) else {
        return Ok(());
    };
    let name = match v {
        Value::String(s) if names.contains(&s.as_str()) => s.clone(),
        Value::Number(n) => match n.as_u64().and_then(|i| names.get(i as usize)) {
            Some(s) => s.to_string(),
            None => return Err(format!("Invalid value at '{path}.{field}'")),
        },
        Value::Null => return Ok(()),
        other => return Err(format!("Invalid value at '{path}.{field}' ({other})")),
    };
    m.insert(field.into(), Value::String(name));
    Ok(())
}

/// products_common.proto `Availability`, in enum-number order.
pub(super) const AVAILABILITY: &[&str] = &[
    "AVAILABILITY_UNSPECIFIED",
    "IN_STOCK",
    "OUT_OF_STOCK",
    "PREORDER",
    "LIMITED_AVAILABILITY",
    "BACKORDER",
];
pub(super) const LOCAL_AVAILABILITY: &[&str] = &[
    "LOCAL_INVENTORY_AVAILABILITY_UNSPECIFIED",
    "IN_STOCK",
    "LIMITED_AVAILABILITY",
    "ON_DISPLAY_TO_ORDER",
    "OUT_OF_STOCK",
];
pub(super) const PICKUP_METHOD: &[&str] = &[
    "PICKUP_METHOD_UNSPECIFIED",
    "BUY",
    "RESERVE",
    "SHIP_TO_STORE",
    "NOT_SUPPORTED",
];
pub(super) const PICKUP_SLA: &[&str] = &[
    "PICKUP_SLA_UNSPECIFIED",
    "SAME_DAY",
    "NEXT_DAY",
    "TWO_DAY",
    "THREE_DAY",
    "FOUR_DAY",
    "FIVE_DAY",
    "SIX_DAY",
    "SEVEN_DAY",
    "MULTI_WEEK",
];

pub(super) fn check_timestamp(
    m: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<(), String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
        Some(_) => Err(format!(
            "Invalid value at '{path}.{field}': not an RFC 3339 timestamp"
        )),
    }
}

pub(super) fn check_product_attributes(input: &mut Map<String, Value>) -> Result<(), String> {
    let Some(attrs) = input.get_mut("productAttributes") else {
        return Ok(());
    };
    let Value::Object(a) = attrs else {
        return Err("Invalid value at 'productAttributes': not an object".into());
    };
    check_enum(a, "availability", AVAILABILITY, "productAttributes")?;
    check_timestamp(a, "availabilityDate", "productAttributes")?;
    if let Some(Value::String(q)) = a.get("sellOnGoogleQuantity") {
        if q.starts_with('-') {
            return Err("productAttributes.sellOnGoogleQuantity must be >= 0".into());
        }
    }
    Ok(())
}

pub(super) fn check_local_attributes(attrs: &mut Map<String, Value>) -> Result<(), String> {
    let p = "localInventoryAttributes";
    check_enum(attrs, "availability", LOCAL_AVAILABILITY, p)?;
    check_enum(attrs, "pickupMethod", PICKUP_METHOD, p)?;
    check_enum(attrs, "pickupSla", PICKUP_SLA, p)?;
    if let Some(Value::String(q)) = attrs.get("quantity") {
        if q.starts_with('-') {
            return Err(format!("{p}.quantity must be >= 0"));
        }
    }
    // A pickup method must come with a pickup SLA and vice versa.
    let has = |k: &str| attrs.get(k).is_some_and(|v| !v.is_null());
    if has("pickupMethod") != has("pickupSla") {
        return Err(format!(
            "{p}.pickupMethod and {p}.pickupSla must be set together"
        ));
    }
    if let Some(Value::String(loc)) = attrs.get("instoreProductLocation") {
        if loc.len() > 20 {
            return Err(format!(
                "{p}.instoreProductLocation is longer than 20 bytes"
            ));
        }
    }
    Ok(())
}

pub(super) fn valid_feed_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `sell_on_google_quantity` → `sellOnGoogleQuantity`, for field-mask paths.
pub(super) fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn listing_availability(product: &Value) -> &'static str {
    match product
        .pointer("/productAttributes/availability")
        .and_then(Value::as_str)
    {
        Some("IN_STOCK") | Some("LIMITED_AVAILABILITY") => "in_stock",
        Some("BACKORDER") | Some("PREORDER") => "backorder",
        _ => "out_of_stock",
    }
}

pub(super) fn int64_of(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}
