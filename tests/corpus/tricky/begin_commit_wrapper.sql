-- golang-migrate style: the file wraps itself in one transaction.
BEGIN;
SET LOCAL lock_timeout = '5s';
CREATE TABLE ledger (id integer PRIMARY KEY, amount numeric(12,2) NOT NULL CHECK (amount <> 0));
SAVEPOINT before_rows;
INSERT INTO ledger VALUES (1, 10.5), (2, -3);
RELEASE SAVEPOINT before_rows;
CREATE FUNCTION ledger_total() RETURNS numeric LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT sum(amount) FROM ledger); -- BEGIN; COMMIT; in a body are not transaction control
END;
$$;
COMMIT;
