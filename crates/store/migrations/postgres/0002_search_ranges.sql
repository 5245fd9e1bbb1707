-- Typed search values: token systems, string and display texts, date ranges and numbers.
-- Dates are stored as the low and high ends of the range their precision covers, as UTC
-- instants in one fixed-width text form (`2020-05-01T00:00:00.000Z`), so text comparison
-- orders them in time. The C collation makes that comparison byte by byte whatever the
-- database's default collation is.
ALTER TABLE search_index ADD COLUMN system TEXT;
ALTER TABLE search_index ADD COLUMN text TEXT;
ALTER TABLE search_index ADD COLUMN low TEXT COLLATE "C";
ALTER TABLE search_index ADD COLUMN high TEXT COLLATE "C";
ALTER TABLE search_index ADD COLUMN number DOUBLE PRECISION;

CREATE INDEX search_index_system ON search_index (resource_type, code, system, value);
CREATE INDEX search_index_date ON search_index (resource_type, code, low, high);
CREATE INDEX search_index_number ON search_index (resource_type, code, number);
-- Orders resources written in the same millisecond by creation, as SQLite's rowid does.
-- Existing rows are numbered in no particular order.
ALTER TABLE resources ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;

-- `_lastUpdated` compares the same fixed-width instants, so that column is byte-ordered too.
ALTER TABLE resources ALTER COLUMN last_updated TYPE TEXT COLLATE "C";
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);

-- The version of the extraction rules the index was built with. Version 0 is the index of
-- the first migration; a server whose rules differ rebuilds the index at start-up.
CREATE TABLE search_index_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO search_index_version (id, version) VALUES (1, 0);
