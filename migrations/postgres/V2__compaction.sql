-- Compaction of the shared log (`authledger compact`, ADR 0019). A compacted event's row
-- stays, without its stored bytes: its hash and its stream's chain still verify, and a node
-- copying the log afresh steps over it with the hash its copy gives that event.

ALTER TABLE authledger_events ALTER COLUMN record DROP NOT NULL;
-- SHA-256 of the event as the nodes' copies store it (the copies' chain), once compacted.
ALTER TABLE authledger_events ADD COLUMN copy_hash bytea;
-- The position of the HistoryCompacted event that lists it, once compacted.
ALTER TABLE authledger_events ADD COLUMN compacted_by bigint;

-- Drops the stored bytes of the events at `positions` (global positions), keeping their
-- hashes; answers how many rows it changed.
CREATE FUNCTION authledger_compact(positions bigint[], copy_hashes bytea[], by_event bigint)
RETURNS bigint
LANGUAGE sql AS $$
    WITH p AS (
        SELECT u.pos, u.h FROM unnest(positions, copy_hashes) AS u(pos, h)
    ), t AS (
        SELECT p.pos, p.h, o.xid, (p.pos - o.position)::integer AS idx
        FROM p CROSS JOIN LATERAL (
            SELECT x.xid, x.position FROM authledger_order x
            WHERE x.position <= p.pos ORDER BY x.position DESC LIMIT 1
        ) o
    ), changed AS (
        UPDATE authledger_events e
            SET record = NULL, copy_hash = t.h, compacted_by = by_event
            FROM t
            WHERE e.xid = t.xid AND e.idx = t.idx AND e.record IS NOT NULL
            RETURNING 1
    )
    SELECT count(*) FROM changed
$$;
