-- Deferred constraint checks are pending until commit; psql commits each statement.
CREATE TABLE parents (id integer PRIMARY KEY);
CREATE TABLE children (
    id integer PRIMARY KEY,
    parent_id integer REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
);
INSERT INTO parents VALUES (1);
INSERT INTO children VALUES (1, 1);
ALTER TABLE children ADD COLUMN note text;
