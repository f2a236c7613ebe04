-- psql commits ALTER TYPE ... ADD VALUE before the next statement uses the new label.
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE people (id integer PRIMARY KEY, feeling mood NOT NULL DEFAULT 'happy');
INSERT INTO people VALUES (1, 'happy'), (2, 'sad');
ALTER TYPE mood ADD VALUE 'curious; really' AFTER 'happy';
UPDATE people SET feeling = 'curious; really' WHERE id = 2;
ALTER TABLE people ALTER COLUMN feeling SET DEFAULT 'curious; really';
