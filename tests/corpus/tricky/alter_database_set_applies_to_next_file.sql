-- A database-level setting takes effect for new sessions: psql's next file is one.
CREATE SCHEMA tenant;
ALTER DATABASE trickydb SET search_path TO tenant, public;
ALTER DATABASE trickydb SET "TimeZone" TO 'Asia/Tokyo';
