-- Channels, listings, kits and versioned rules.
CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    locations TEXT,
    enabled BOOLEAN NOT NULL
);
CREATE TABLE listings (
    channel TEXT NOT NULL,
    sku TEXT NOT NULL,
    external TEXT NOT NULL,
    rank INTEGER,
    PRIMARY KEY (channel, sku)
);
CREATE INDEX listings_by_sku ON listings (sku);
CREATE TABLE bundle_components (
    kit TEXT NOT NULL,
    position INTEGER NOT NULL,
    component TEXT NOT NULL,
    qty INTEGER NOT NULL,
    PRIMARY KEY (kit, position)
);
CREATE TABLE rules_versions (
    version INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
