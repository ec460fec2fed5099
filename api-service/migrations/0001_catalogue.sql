-- The scholarship catalogue. Amounts are whole US dollars; GPA on the 4.0 scale.
CREATE TABLE scholarships (
    id                 UUID PRIMARY KEY,
    name               TEXT NOT NULL,
    provider           TEXT NOT NULL,
    description        TEXT NOT NULL,
    field_of_study     TEXT NOT NULL,
    level              TEXT NOT NULL CHECK (level IN ('undergraduate', 'masters', 'doctoral')),
    country            CHAR(2) NOT NULL,
    -- ISO 3166-1 alpha-2 codes of residencies that may apply; empty means open to all.
    eligible_residency TEXT[] NOT NULL DEFAULT '{}',
    min_gpa            NUMERIC(3, 2) NOT NULL CHECK (min_gpa BETWEEN 0 AND 4),
    amount_usd         INTEGER NOT NULL CHECK (amount_usd > 0),
    deadline           DATE NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keyset pagination walks (deadline, id); filters narrow it.
CREATE INDEX scholarships_deadline_id ON scholarships (deadline, id);
CREATE INDEX scholarships_field_level ON scholarships (field_of_study, level);
