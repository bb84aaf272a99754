//! Orders read through GraphQL: the `orders` connection (`sortKey`,
//! `reverse`, `query` with `updated_at`), `Order`, its `lineItems` and
//! `refunds`, and a refund's `refundLineItems`
//! (<https://shopify.dev/docs/api/admin-graphql/latest/queries/orders>,
//! <https://shopify.dev/docs/api/admin-graphql/latest/objects/Order>).
//! The simulator's refunds refund every line in full.

use super::*;

/// Whether an order's `updated_at` (RFC 3339) meets a search value such as
/// `>'2026-12-06T04:00:00Z'` (`>`, `>=`, `<`, `<=`, or equal); a value that
/// is not a date matches nothing, as Shopify's search then finds nothing.
pub(super) fn date_matches(updated_at: &str, value: &str) -> bool {
    let (op, rest) = [">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| value.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("=", value));
    let rest = rest.trim_matches(|c| c == '"' || c == '\'');
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let (Some(at), Some(bound)) = (parse(updated_at), parse(rest)) else {
        return false;
    };
    match op {
        ">=" => at >= bound,
        "<=" => at <= bound,
        ">" => at > bound,
        "<" => at < bound,
        _ => at == bound,
    }
}

impl Exec<'_> {
    /// The `orders` connection: by id unless `sortKey` is `UPDATED_AT` or
    /// `CREATED_AT` (ties by id).
    pub(super) fn orders(&mut self, f: &Field, path: &mut Vec<String>) -> Value {
        let st = self.st;
        let mut all: Vec<&super::super::state::Order> = st.orders.values().collect();
        match self.arg(f, "sortKey").as_str() {
            Some("UPDATED_AT") => {
                all.sort_by(|a, b| (&a.updated_at, a.id).cmp(&(&b.updated_at, b.id)))
            }
            Some("CREATED_AT") => {
                all.sort_by(|a, b| (&a.created_at, a.id).cmp(&(&b.created_at, b.id)))
            }
            _ => all.sort_by_key(|o| o.id),
        }
        let all = all.into_iter().map(|o| Obj::Order(o.id)).collect();
        self.connection("Order", all, f, path)
    }

    pub(super) fn order_field(&mut self, o: &Obj, f: &Field, path: &mut Vec<String>) -> Value {
        let st = self.st;
        let order_id = match o {
            Obj::Order(id)
            | Obj::LineItem { order: id, .. }
            | Obj::Refund { order: id, .. }
            | Obj::RefundLine { order: id, .. } => *id,
            _ => return Value::Null,
        };
        let Some(order) = st.orders.get(&order_id) else {
            return Value::Null;
        };
        match o {
            Obj::Order(id) => match f.name.as_str() {
                "id" => json!(gid("Order", *id)),
                "legacyResourceId" => json!(id.to_string()),
                "name" => json!(format!("#{}", order.number)),
                "createdAt" => json!(order.created_at),
                "updatedAt" => json!(order.updated_at),
                "cancelledAt" => json!(order.cancelled_at),
                "lineItems" => {
                    let all = order
                        .lines
                        .iter()
                        .map(|l| Obj::LineItem {
                            order: *id,
                            line: l.id,
                        })
                        .collect();
                    self.connection("LineItem", all, f, path)
                }
                "refunds" => {
                    let first = self
                        .arg(f, "first")
                        .as_u64()
                        .map_or(usize::MAX, |n| n as usize);
                    let mut out = Vec::new();
                    for index in 0..order.refunds.len().min(first) {
                        path.push(index.to_string());
                        let refund = Obj::Refund { order: *id, index };
                        out.push(self.sub(Some(refund), f, path));
                        path.pop();
                    }
                    Value::Array(out)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::LineItem { line, .. } => {
                let Some(l) = order.lines.iter().find(|l| l.id == *line) else {
                    return Value::Null;
                };
                let open = order.cancelled_at.is_none() && !order.refunded;
                match f.name.as_str() {
                    "id" => json!(gid("LineItem", l.id)),
                    "quantity" => json!(l.quantity),
                    "currentQuantity" => json!(if open { l.quantity } else { 0 }),
                    "sku" => json!(l.sku),
                    "variant" => {
                        let variant = self
                            .item_of_variant(l.variant_id)
                            .map(|_| Obj::Variant(l.variant_id));
                        self.sub(variant, f, path)
                    }
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Refund { index, .. } => {
                let Some(r) = order.refunds.get(*index) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(gid("Refund", r.id)),
                    "legacyResourceId" => json!(r.id.to_string()),
                    "createdAt" => json!(r.created_at),
                    "refundLineItems" => {
                        let all = (0..order.lines.len())
                            .map(|i| Obj::RefundLine {
                                order: order_id,
                                refund: *index,
                                index: i,
                            })
                            .collect();
                        self.connection("RefundLineItem", all, f, path)
                    }
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::RefundLine { refund, index, .. } => {
                let (Some(r), Some(l)) = (order.refunds.get(*refund), order.lines.get(*index))
                else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "quantity" => json!(l.quantity),
                    "restockType" => json!(if r.restock { "RETURN" } else { "NO_RESTOCK" }),
                    "restocked" => json!(r.restock),
                    "lineItem" => {
                        let line = Obj::LineItem {
                            order: order_id,
                            line: l.id,
                        };
                        self.sub(Some(line), f, path)
                    }
                    _ => self.not_emulated(o, f, path),
                }
            }
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::date_matches;

    #[test]
    fn updated_at_searches_compare_dates() {
        let at = "2026-12-06T04:00:10Z";
        assert!(date_matches(at, ">'2026-12-06T04:00:09Z'"));
        assert!(!date_matches(at, ">'2026-12-06T04:00:10Z'"));
        assert!(date_matches(at, ">=2026-12-06T04:00:10Z"));
        assert!(date_matches(at, "<'2026-12-07T00:00:00+01:00'"));
        assert!(!date_matches(at, ">yesterday"));
    }
}
