-- The application's database. CREATE DATABASE cannot run inside a transaction
-- block: the engine sees that and runs this file in autocommit.
CREATE DATABASE projectdb;
