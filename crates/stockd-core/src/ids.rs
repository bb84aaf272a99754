//! Domain identifiers. Each is a newtype constructed by `parse`, so an
//! invalid identifier cannot exist past the edge of the system.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest identifier accepted anywhere (keys, SKUs, ids).
pub const ID_LEN_MAX: usize = 255;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {ID_LEN_MAX} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlChar,
}

fn check_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.chars().count() > ID_LEN_MAX {
        return Err(IdError::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::ControlChar);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_id(&raw)?;
                Ok(Self(raw))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Stock-keeping unit of one variant (size/colour): the unit stock is kept at.
    Sku
);
id_type!(
    /// A place where stock is held (warehouse, store, 3PL).
    LocationId
);
id_type!(
    /// Client-chosen idempotency key of an event (1–255 characters).
    IdempotencyKey
);
id_type!(
    /// A sales channel instance (one shop, one marketplace account).
    ChannelId
);
id_type!(
    /// An order id as the selling channel knows it.
    OrderId
);
id_type!(
    /// An order line id as the selling channel knows it.
    LineId
);
id_type!(
    /// A purchase order (supplier delivery) id.
    PoId
);
id_type!(
    /// A return merchandise authorisation id.
    RmaId
);

/// An order is identified by its channel (absent for orders entered directly)
/// and the channel's order id: two channels may use the same order number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelId>,
    pub order_id: OrderId,
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.channel {
            Some(channel) => write!(f, "{channel}/{}", self.order_id),
            None => write!(f, "{}", self.order_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert_eq!(Sku::parse(""), Err(IdError::Empty));
        assert_eq!(Sku::parse("a".repeat(256)), Err(IdError::TooLong));
        assert!(Sku::parse("a".repeat(255)).is_ok());
        assert_eq!(Sku::parse("A\nB"), Err(IdError::ControlChar));
        assert_eq!(Sku::parse("TEE-RED-M").unwrap().as_str(), "TEE-RED-M");
    }
}
