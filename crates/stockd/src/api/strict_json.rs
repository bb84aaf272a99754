//! JSON parsing that refuses an object naming one member twice. Parsers
//! disagree on which of two equal keys wins (serde_json keeps the last, others
//! the first), so a payload whose meaning depends on that must not be applied.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value parsed with duplicate object members refused.
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has one number type: `2.0` is the integer 2 (as JSON Schema
        // says), so it is accepted wherever an integer is.
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: larger floats are not exact
        if v.fract() == 0.0 && v.abs() <= EXACT {
            return Ok(Value::from(v as i64));
        }
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "member {key:?} appears twice in one object"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::StrictValue;

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        let parse = |s: &str| serde_json::from_str::<StrictValue>(s).map(|v| v.0);
        assert!(parse(r#"{"a": 1, "a": 2}"#).is_err());
        assert!(parse(r#"[{"b": {"c": 1, "c": 1}}]"#).is_err());
        let value = parse(r#"{"a": [1, -2, 3.5, "x", null, true], "b": {"a": 1}}"#).unwrap();
        assert_eq!(value["a"][1], -2);
        assert_eq!(value["b"]["a"], 1);
        // An integral float is the integer; a fraction stays a float.
        assert_eq!(
            parse("[2.0, -3.0, 2.5]").unwrap(),
            serde_json::json!([2, -3, 2.5])
        );
    }
}
