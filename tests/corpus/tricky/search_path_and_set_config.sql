-- pg_dump headers: an empty search_path for the rest of this file only; the next file starts afresh.
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET client_min_messages = warning;
CREATE SCHEMA app;
CREATE TABLE app.things (id integer NOT NULL, label text);
ALTER TABLE ONLY app.things ADD CONSTRAINT things_pkey PRIMARY KEY (id);
-- check_function_bodies = false lets a SQL function refer to a table created later.
CREATE FUNCTION app.count_later() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM app.later';
CREATE TABLE app.later (id integer);
SET search_path TO app, public;
CREATE TABLE unqualified_goes_to_app (id integer);
