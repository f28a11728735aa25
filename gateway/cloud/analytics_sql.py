"""The shopper-path analytics as SQL functions (migration 2), so BI tools and `shelfgate paths`
read the same k-anonymous figures. Every function takes k (default 5) and the time zone the hours
are counted in, and never returns a cell with fewer than k distinct tags.

Where this runs, and why there: in the database, from the pseudonyms (HMAC-SHA256 of the tag with
the per-store key). The events table is pseudonymous personal data (GDPR Art. 4(5)): only the
consumer's role writes it and only these functions read it for analysts (SECURITY DEFINER,
`GRANT EXECUTE` to an analyst role with no SELECT on shelfgate_events). Aggregating on the
gateway would keep the pseudonyms in the store, but paths across gateways of one store and
k over a whole store-hour need the union, and the backend needs event-level data anyway (offers,
deduplication). What leaves these functions are counts over >= k people.
"""

ANALYTICS_SQL = """
CREATE FUNCTION shelfgate_zone_hours(k integer DEFAULT 5, tz text DEFAULT 'UTC')
RETURNS TABLE (store text, hour timestamp, zone text, visits bigint, tags bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT e.store, date_trunc('hour', e.start_at AT TIME ZONE tz), e.zone,
           count(*), count(DISTINCT e.tag)
    FROM shelfgate_events e
    WHERE e.type = 'dwell'
    GROUP BY 1, 2, 3
    HAVING count(DISTINCT e.tag) >= k
$$;

CREATE FUNCTION shelfgate_dwell_histogram(k integer DEFAULT 5, tz text DEFAULT 'UTC')
RETURNS TABLE (store text, hour timestamp, zone text, bucket integer, label text,
               visits bigint, tags bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT e.store, date_trunc('hour', e.start_at AT TIME ZONE tz), e.zone,
           width_bucket(e.duration_s, ARRAY[60, 120, 300, 600, 1200]::float8[]),
           (ARRAY['<1 min', '1-2 min', '2-5 min', '5-10 min', '10-20 min', '>=20 min'])
               [width_bucket(e.duration_s, ARRAY[60, 120, 300, 600, 1200]::float8[]) + 1],
           count(*), count(DISTINCT e.tag)
    FROM shelfgate_events e
    WHERE e.type = 'dwell'
    GROUP BY 1, 2, 3, 4, 5
    HAVING count(DISTINCT e.tag) >= k
$$;

-- consecutive dwells of one tag in one store, at most max_gap_s apart: the paths
CREATE FUNCTION shelfgate_transitions(
    k integer DEFAULT 5, tz text DEFAULT 'UTC', max_gap_s double precision DEFAULT 1800)
RETURNS TABLE (store text, hour timestamp, from_zone text, to_zone text, moves bigint,
               tags bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    WITH ordered AS (
        SELECT e.store, e.tag, e.zone, e.start_at,
               lag(e.zone) OVER w AS prev_zone, lag(e.end_at) OVER w AS prev_end
        FROM shelfgate_events e
        WHERE e.type = 'dwell'
        WINDOW w AS (PARTITION BY e.store, e.tag ORDER BY e.start_at)
    )
    SELECT o.store, date_trunc('hour', o.start_at AT TIME ZONE tz), o.prev_zone, o.zone,
           count(*), count(DISTINCT o.tag)
    FROM ordered o
    WHERE o.prev_zone IS NOT NULL AND o.prev_zone <> o.zone
      AND o.start_at - o.prev_end <= make_interval(secs => max_gap_s)
    GROUP BY 1, 2, 3, 4
    HAVING count(DISTINCT o.tag) >= k
$$;

-- of the tags that dwelt in a zone in an hour, how many triggered an offer there; a count of
-- offer tags between 1 and k-1 would single out fewer than k people: such cells are suppressed
CREATE FUNCTION shelfgate_conversion(k integer DEFAULT 5, tz text DEFAULT 'UTC')
RETURNS TABLE (store text, hour timestamp, zone text, dwell_tags bigint, offer_tags bigint,
               conversion double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT c.store, c.hour, c.zone, c.dwell_tags, c.offer_tags,
           c.offer_tags::float8 / c.dwell_tags
    FROM (
        SELECT e.store, date_trunc('hour', e.start_at AT TIME ZONE tz) AS hour, e.zone,
               count(DISTINCT e.tag) FILTER (WHERE e.type = 'dwell') AS dwell_tags,
               count(DISTINCT e.tag) FILTER (WHERE e.type = 'offer_triggered') AS offer_tags
        FROM shelfgate_events e
        WHERE e.type IN ('dwell', 'offer_triggered')
        GROUP BY 1, 2, 3
    ) c
    WHERE c.dwell_tags >= k AND (c.offer_tags = 0 OR c.offer_tags >= k)
$$;
"""
