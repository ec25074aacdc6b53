-- The shared event log of authledger nodes (ADR 0019).
--
-- Writers never take a lock across nodes: each group of appends is one transaction that
-- inserts its events under its own transaction id (xid8). The global order is (xid, idx),
-- and it is fixed only below the oldest transaction still running, which
-- authledger_sequence() alone numbers into authledger_order.

CREATE TABLE authledger_events (
    -- The writing transaction; with idx, the event's place in the global order.
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- The event's index within its transaction, from 0.
    idx integer NOT NULL,
    stream text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    -- The event's id (also in record): what a node's next append to the stream expects to
    -- follow, when it sent that one itself.
    id uuid NOT NULL,
    -- The event as stored: the log's binary envelope, position 0 (it is not known yet); or,
    -- for an event imported from an embedded log (`authledger migrate`), its stored bytes
    -- there, which the nodes' copies then keep as they are.
    record bytea NOT NULL,
    -- SHA-256 of record.
    hash bytea NOT NULL,
    -- The stream's chain: SHA-256 of the previous event's chain (32 zero bytes for the
    -- first) and this event's hash.
    chain bytea NOT NULL,
    PRIMARY KEY (xid, idx),
    UNIQUE (stream, version)
);

-- One row per committed transaction of events, numbered in (xid, idx) order.
CREATE TABLE authledger_order (
    -- The global position of the transaction's first event; the others follow by idx.
    position bigint PRIMARY KEY,
    xid xid8 NOT NULL UNIQUE,
    count integer NOT NULL CHECK (count > 0),
    -- SHA-256 of the previous row's chain (32 zero bytes for the first) and the hashes of
    -- this transaction's events in idx order: the streams' chains tied into one.
    chain bytea NOT NULL
);

-- How far the sequencer has numbered: every transaction below horizon is in authledger_order.
CREATE TABLE authledger_sequencer (
    id integer PRIMARY KEY CHECK (id = 1),
    horizon xid8 NOT NULL
);
INSERT INTO authledger_sequencer VALUES (1, '0'::xid8);

-- Which log this is, so that a node's local copy never follows another database.
CREATE TABLE authledger_identity (
    id integer PRIMARY KEY CHECK (id = 1),
    log_id uuid NOT NULL
);
INSERT INTO authledger_identity VALUES (1, md5(random()::text || clock_timestamp()::text)::uuid);

-- Appends a group: per append, its stream, the version it expects (-1: any), the id of the event it
-- expects at that version (NULL: any), and how many of the records (and ids) are its. An
-- append whose stream is not there is skipped, and its stream's actual version is returned
-- in its place (NULL for an append written); `landed` gives each written append's first
-- version. The expected id catches what a version alone
-- cannot: a node pipelines appends to a stream, each expecting the one before it, and when
-- one of them fails another node's event may take its version.
CREATE FUNCTION authledger_append(
    streams text[], expected bigint[], prev_ids uuid[], counts integer[], records bytea[],
    ids uuid[]
) RETURNS TABLE (txid bigint, actual bigint[], landed bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    j integer;
    k integer := 0;
    n integer := 0;
    cur bigint;
    prev bytea;
    last_id uuid;
    h bytea;
    outcome bigint[] := '{}';
    -- Per append written, the version of its first event (an append at any version learns
    -- where it landed); NULL for one refused.
    firsts bigint[] := '{}';
BEGIN
    -- One writer per stream at a time, whichever node it is on, the locks taken in one order:
    -- two groups that share streams then wait for each other instead of deadlocking on the
    -- (stream, version) index, and the second sees the first's rows and reports a stale
    -- version instead of failing on a duplicate key.
    PERFORM pg_advisory_xact_lock(4242, q.h)
        FROM (SELECT DISTINCT hashtext(s) AS h FROM unnest(streams) AS s ORDER BY 1) AS q;
    FOR i IN 1 .. coalesce(array_length(streams, 1), 0) LOOP
        SELECT e.version, e.chain, e.id INTO cur, prev, last_id
            FROM authledger_events e
            WHERE e.stream = streams[i]
            ORDER BY e.version DESC LIMIT 1;
        IF NOT FOUND THEN
            cur := 0;
            prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
            last_id := NULL;
        END IF;
        -- expected -1: at whatever version the stream is at.
        IF expected[i] >= 0 AND (cur <> expected[i]
                OR (prev_ids[i] IS NOT NULL AND last_id IS DISTINCT FROM prev_ids[i])) THEN
            outcome := outcome || cur;
            firsts := firsts || NULL::bigint;
            k := k + counts[i];
            CONTINUE;
        END IF;
        firsts := firsts || (cur + 1);
        FOR j IN 1 .. counts[i] LOOP
            k := k + 1;
            cur := cur + 1;
            h := sha256(records[k]);
            prev := sha256(prev || h);
            INSERT INTO authledger_events (xid, idx, stream, version, id, record, hash, chain)
                VALUES (pg_current_xact_id(), n, streams[i], cur, ids[k], records[k], h, prev);
            n := n + 1;
        END LOOP;
        outcome := outcome || NULL::bigint;
    END LOOP;
    IF n = 0 THEN
        RETURN QUERY SELECT 0::bigint, outcome, firsts;
    ELSE
        RETURN QUERY SELECT pg_current_xact_id()::text::bigint, outcome, firsts;
    END IF;
END
$$;

-- Numbers every transaction of events that finished below the oldest one still running.
-- Only one runs at a time (an advisory lock); writers never wait for it. Returns how many
-- events it numbered, and wakes the followers when there were any.
CREATE FUNCTION authledger_sequence() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    low xid8;
    high xid8;
    pos bigint;
    tie bytea;
    r record;
    numbered bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(4242170001);
    -- Taken after the lock, so that it is at least the horizon of the run before.
    high := pg_snapshot_xmin(pg_current_snapshot());
    SELECT s.horizon INTO low FROM authledger_sequencer s WHERE s.id = 1;
    IF high <= low THEN
        RETURN 0;
    END IF;
    SELECT o.position + o.count, o.chain INTO pos, tie
        FROM authledger_order o ORDER BY o.position DESC LIMIT 1;
    IF NOT FOUND THEN
        pos := 1;
        tie := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
    FOR r IN
        SELECT e.xid, count(*)::integer AS n, string_agg(e.hash, ''::bytea ORDER BY e.idx) AS hashes
            FROM authledger_events e
            WHERE e.xid >= low AND e.xid < high
            GROUP BY e.xid ORDER BY e.xid
    LOOP
        tie := sha256(tie || r.hashes);
        INSERT INTO authledger_order (position, xid, count, chain) VALUES (pos, r.xid, r.n, tie);
        pos := pos + r.n;
        numbered := numbered + r.n;
    END LOOP;
    UPDATE authledger_sequencer SET horizon = high WHERE id = 1;
    IF numbered > 0 THEN
        PERFORM pg_notify('authledger_log', '');
    END IF;
    RETURN numbered;
END
$$;

-- Snapshots of aggregates: a cache shared by the nodes, never the truth.
CREATE TABLE authledger_snapshots (
    stream text PRIMARY KEY,
    version bigint NOT NULL,
    state bytea NOT NULL
);
