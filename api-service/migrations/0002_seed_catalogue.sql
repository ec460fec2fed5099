-- A deterministic, realistic catalogue of 240 scholarships: every combination of provider,
-- field and level appears, deadlines spread over two academic years, ids derived from the row
-- number so they are the same in every environment.
INSERT INTO scholarships (id, name, provider, description, field_of_study, level, country,
                          eligible_residency, min_gpa, amount_usd, deadline)
SELECT
    md5('scholarship-' || n)::uuid,
    p.name || ' ' || f.title || ' ' ||
        (ARRAY['Excellence Award', 'Scholarship', 'Fellowship', 'Grant', 'Merit Award'])[1 + n % 5],
    p.name,
    'Supports ' || l.level || ' students of ' || lower(f.title) || ' studying in ' || p.country ||
        '. Awarded on academic merit' ||
        CASE WHEN n % 3 = 0 THEN ' and financial need.' ELSE '.' END,
    f.slug,
    l.level,
    p.country,
    CASE n % 4
        WHEN 0 THEN '{}'::text[]
        WHEN 1 THEN ARRAY[p.country]
        WHEN 2 THEN ARRAY[p.country, 'US', 'CA', 'GB']
        ELSE ARRAY['DE', 'FR', 'IT', 'ES', 'NL', 'SE', 'PL', 'IE']
    END,
    (2.50 + (n % 11) * 0.15)::numeric(3, 2),
    (1000 + (n * 7919) % 49000) / 500 * 500 + 500,
    DATE '2026-09-01' + ((n * 37) % 640)
FROM generate_series(1, 240) AS n
JOIN LATERAL (
    SELECT (ARRAY['Fulbright Commission', 'DAAD', 'Chevening', 'Gates Cambridge Trust',
                  'Rhodes Trust', 'Erasmus Mundus', 'Knight-Hennessy', 'Schwarzman',
                  'Vanier Canada', 'Australia Awards', 'MEXT', 'Swiss Excellence'])[1 + (n - 1) % 12] AS name,
           (ARRAY['US', 'DE', 'GB', 'GB', 'GB', 'BE', 'US', 'CN', 'CA', 'AU', 'JP', 'CH'])[1 + (n - 1) % 12] AS country
) p ON true
JOIN LATERAL (
    SELECT (ARRAY['computer-science', 'medicine', 'law', 'economics', 'engineering',
                  'public-health', 'education', 'physics', 'fine-arts', 'environmental-science'])[1 + (n - 1) / 12 % 10] AS slug,
           (ARRAY['Computer Science', 'Medicine', 'Law', 'Economics', 'Engineering',
                  'Public Health', 'Education', 'Physics', 'Fine Arts', 'Environmental Science'])[1 + (n - 1) / 12 % 10] AS title
) f ON true
JOIN LATERAL (
    SELECT (ARRAY['undergraduate', 'masters', 'doctoral'])[1 + (n - 1) / 120 + (n % 2)] AS level
) l ON true;
