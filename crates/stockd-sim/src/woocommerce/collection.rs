//! The query parameters every product and variation collection takes besides paging:
//!
//! - `orderby` (`date` by default; `id`, `include`, `title`, `slug`, `modified`, and the
//!   product controller's `price`, `popularity`, `rating`, `menu_order`) and `order` (`desc`
//!   by default, or `asc`); a value outside those enums is refused with WordPress's
//!   `rest_invalid_param` (<https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-products>,
//!   <https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-product-variations>,
//!   <https://developer.wordpress.org/rest-api/extending-the-rest-api/schema/#enum>).
//!   Every simulated product has the same price, no sales or ratings and menu order 0, so
//!   those four order by id alone; ties order by id.
//! - `_fields`: each resource keeps only the named fields (nested ones with dots, `a.b`);
//!   `_links` stays only when asked for
//!   (<https://developer.wordpress.org/rest-api/using-the-rest-api/global-parameters/#_fields>).

use super::*;

const ORDERBY: [&str; 10] = [
    "date",
    "id",
    "include",
    "title",
    "slug",
    "modified",
    "price",
    "popularity",
    "rating",
    "menu_order",
];

fn param<'a>(ctx: &'a Ctx, name: &str) -> Option<&'a str> {
    ctx.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// WordPress's list of enum values: `a, b and c`.
fn enum_list(values: &[&str]) -> String {
    match values.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn invalid_param(name: &str, values: &[&str]) -> Response {
    wc_json(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": "rest_invalid_param",
            "message": format!("Invalid parameter(s): {name}"),
            "data": {"status": 400, "params": {
                name: format!("{name} is not one of {}.", enum_list(values)),
            }},
        }),
    )
}

fn id_of(v: &Value) -> u64 {
    v.get("id").and_then(Value::as_u64).unwrap_or(0)
}

fn text_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Orders `items` (given newest first, the default order) as `orderby` and `order` ask.
pub(super) fn order_items(ctx: &Ctx, mut items: Vec<Value>) -> Result<Vec<Value>, Box<Response>> {
    let orderby = param(ctx, "orderby").unwrap_or("date");
    if !ORDERBY.contains(&orderby) {
        return Err(Box::new(invalid_param("orderby", &ORDERBY)));
    }
    let ascending = match param(ctx, "order").unwrap_or("desc") {
        "desc" => false,
        "asc" => true,
        _ => return Err(Box::new(invalid_param("order", &["asc", "desc"]))),
    };
    match orderby {
        // The order `include` lists is the order the filter kept.
        "include" => return Ok(items),
        "date" => items.sort_by(|a, b| {
            (text_of(a, "date_created"), id_of(a)).cmp(&(text_of(b, "date_created"), id_of(b)))
        }),
        "modified" => items.sort_by(|a, b| {
            (text_of(a, "date_modified"), id_of(a)).cmp(&(text_of(b, "date_modified"), id_of(b)))
        }),
        "title" => items
            .sort_by(|a, b| (text_of(a, "name"), id_of(a)).cmp(&(text_of(b, "name"), id_of(b)))),
        "slug" => items.sort_by(|a, b| {
            let slug = |v: &Value| text_of(v, "name").to_lowercase().replace(' ', "-");
            (slug(a), id_of(a)).cmp(&(slug(b), id_of(b)))
        }),
        _ => items.sort_by_key(id_of),
    }
    if !ascending {
        items.reverse();
    }
    Ok(items)
}

/// Keeps the `_fields` of every resource, when the request names them.
pub(super) fn filter_fields(ctx: &Ctx, items: Vec<Value>) -> Vec<Value> {
    let Some(fields) = param(ctx, "_fields") else {
        return items;
    };
    let paths: Vec<Vec<&str>> = fields
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.split('.').collect())
        .collect();
    if paths.is_empty() {
        return items;
    }
    items.into_iter().map(|v| keep(v, &paths)).collect()
}

fn keep(value: Value, paths: &[Vec<&str>]) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let mut out = Map::new();
    for (k, v) in map {
        let under: Vec<Vec<&str>> = paths
            .iter()
            .filter(|p| p.first() == Some(&k.as_str()))
            .map(|p| p[1..].to_vec())
            .collect();
        if under.is_empty() {
            continue;
        }
        if under.iter().any(Vec::is_empty) {
            out.insert(k, v);
        } else {
            out.insert(k, keep(v, &under));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(query: &[(&str, &str)]) -> Ctx {
        Ctx {
            method: Method::GET,
            segs: vec![],
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Value::Null,
            path: "/wp-json/wc/v3/products".into(),
        }
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"id": 3, "name": "b", "date_created": "2026-01-02T00:00:00", "x": {"y": 1, "z": 2}, "_links": {}}),
            json!({"id": 2, "name": "a", "date_created": "2026-01-01T00:00:00", "x": {"y": 3, "z": 4}, "_links": {}}),
            json!({"id": 1, "name": "c", "date_created": "2026-01-01T00:00:00", "x": {"y": 5, "z": 6}, "_links": {}}),
        ]
    }

    fn ids(v: &[Value]) -> Vec<u64> {
        v.iter().map(id_of).collect()
    }

    #[test]
    fn orders_by_the_requested_field() {
        let by = |q: &[(&str, &str)]| ids(&order_items(&ctx(q), items()).expect("valid"));
        assert_eq!(by(&[]), vec![3, 2, 1]);
        assert_eq!(by(&[("orderby", "id"), ("order", "asc")]), vec![1, 2, 3]);
        assert_eq!(by(&[("orderby", "date"), ("order", "asc")]), vec![1, 2, 3]);
        assert_eq!(by(&[("orderby", "title"), ("order", "asc")]), vec![2, 3, 1]);
        assert!(order_items(&ctx(&[("orderby", "sku")]), items()).is_err());
        assert!(order_items(&ctx(&[("order", "up")]), items()).is_err());
        assert_eq!(enum_list(&["asc", "desc"]), "asc and desc");
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let kept = filter_fields(&ctx(&[("_fields", "id,x.y")]), items());
        assert_eq!(kept[0], json!({"id": 3, "x": {"y": 1}}));
        let all = filter_fields(&ctx(&[]), items());
        assert_eq!(all, items());
    }
}
