-- A sequence with CACHE 20 hands each session its own block of values: the next file's session
-- (a new psql) starts at 21, not at 2.
CREATE SEQUENCE ticket_numbers START WITH 1 CACHE 20;
CREATE TABLE tickets (id bigint PRIMARY KEY DEFAULT nextval('ticket_numbers'), title text);
INSERT INTO tickets (title) VALUES ('first; ticket');
