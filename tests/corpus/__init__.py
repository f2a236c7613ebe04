"""A migration corpus for the tests: a generator, a psql oracle, and a schema fingerprint.

``generator`` writes a seeded migration set in our layout that looks like the sets of
large open-source projects; ``oracle.apply_with_psql`` applies a set the way a human
with psql would (one psql per file, autocommit per statement); ``schema.fingerprint``
captures what a server ends up holding so that two runs can be compared.
"""
