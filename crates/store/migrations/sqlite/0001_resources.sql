-- Current version of every resource. `content` is the FHIR JSON as returned to clients.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT NOT NULL,
    project_id TEXT,
    last_updated TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    content TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_project ON resources (project_id, resource_type);

-- Every version ever written, including deletions, for vread and history. `seq` grows with each
-- write, so history lists versions in write order even when several share a `last_updated` or
-- come from server processes whose clocks disagree.
CREATE TABLE resource_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    content TEXT NOT NULL,
    UNIQUE (resource_type, id, version_id)
);
CREATE INDEX resource_versions_history ON resource_versions (resource_type, id, seq);

-- Search values of the current versions, extracted at write time.
CREATE TABLE search_index (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    code TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX search_index_lookup ON search_index (resource_type, code, value);
CREATE INDEX search_index_resource ON search_index (resource_type, resource_id);

-- One-time actions such as the first-start bootstrap: a row means the action happened.
CREATE TABLE claims (
    name TEXT PRIMARY KEY,
    claimed_at TEXT NOT NULL
);
