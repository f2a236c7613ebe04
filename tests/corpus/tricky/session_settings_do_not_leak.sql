-- Everything here ends with the psql session: the next file must not see any of it.
CREATE SCHEMA side;
SET search_path TO side;
SET TIME ZONE 'America/New_York';
SET DateStyle = 'SQL, DMY';
SET default_transaction_isolation = 'serializable';
SET check_function_bodies = false;
SET session_replication_role = replica;
CREATE TEMP TABLE probe_scratch AS SELECT g AS n FROM generate_series(1, 3) AS g;
CREATE TABLE side.from_scratch AS SELECT n FROM probe_scratch;
PREPARE probe_plan AS SELECT 1;
CREATE TABLE side.local_noon (id integer, at timestamptz DEFAULT '2024-06-01 12:00');
