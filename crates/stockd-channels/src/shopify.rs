//! Shopify Admin API (GraphQL) connector.
