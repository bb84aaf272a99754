-- Every change of a kit definition, for the audit trail: who changed which
-- kit, when, and the components after the change (`[]` for a removal).
-- Written in the transaction that changes bundle_components. Times are Unix
-- milliseconds.
CREATE TABLE kit_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    kit TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('put', 'delete')),
    components TEXT NOT NULL,
    author TEXT NOT NULL
);
CREATE INDEX kit_changes_kit ON kit_changes (kit, id);
