-- A time-ordered id (UUIDv7, RFC 9562): 48 bits of Unix milliseconds, then random bits, as
-- taskfleet.core.ids.uuid7 makes them in Python. New rows' ids then go to the right-hand edge
-- of their B-trees instead of a random page (PostgreSQL 15 has no uuidv7() of its own).
-- A v4 from gen_random_uuid() with its first 6 bytes replaced by the time and its version
-- nibble turned from 4 (0100) into 7 (0111): bits 52 and 53, counted from the low bit of
-- the first byte, as set_bit counts them. sql, not plpgsql: it is inlined into its callers.
CREATE OR REPLACE FUNCTION tf_uuid7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                                                     * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
