CREATE TABLE integrations (
    id                      TEXT PRIMARY KEY,
    org                     TEXT NOT NULL,
    workspace_id            TEXT NOT NULL DEFAULT '',
    slug                    TEXT NOT NULL,
    name                    TEXT NOT NULL,
    provider                TEXT NOT NULL,
    auth_type               TEXT NOT NULL DEFAULT '',
    description             TEXT NOT NULL DEFAULT '',
    status                  TEXT NOT NULL DEFAULT 'active',
    -- non-secret values and masked_* forms only; secret values live in secrets
    configurations          TEXT NOT NULL DEFAULT '{}',
    masked_key              TEXT NOT NULL DEFAULT '',
    allow_all_models        INTEGER NOT NULL DEFAULT 1,
    global_workspace_access TEXT NOT NULL DEFAULT '{}',
    created_by              TEXT NOT NULL DEFAULT '',
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    UNIQUE (org, slug),
    UNIQUE (org, workspace_id, name)
);
CREATE INDEX integrations_org_provider ON integrations (org, provider);
CREATE INDEX integrations_org_created ON integrations (org, created_at, id);

CREATE TABLE secrets (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    field          TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    ciphertext     BYTEA NOT NULL,
    PRIMARY KEY (integration_id, field)
);
CREATE INDEX secrets_key_id ON secrets (key_id);

CREATE TABLE integration_models (
    integration_id  TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    slug            TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    model_name      TEXT NOT NULL DEFAULT '',
    is_custom       INTEGER NOT NULL DEFAULT 0,
    is_finetune     INTEGER NOT NULL DEFAULT 0,
    base_model_slug TEXT NOT NULL DEFAULT '',
    configurations  TEXT NOT NULL DEFAULT '{}',
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (integration_id, slug)
);

CREATE TABLE integration_workspaces (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    workspace_id   TEXT NOT NULL,
    enabled        INTEGER NOT NULL,
    usage_limits   TEXT NOT NULL DEFAULT 'null',
    rate_limits    TEXT NOT NULL DEFAULT 'null',
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (integration_id, workspace_id)
);

CREATE TABLE service_keys (
    id         TEXT PRIMARY KEY,
    org        TEXT NOT NULL,
    name       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
