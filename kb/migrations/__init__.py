"""Alembic migrations of the tac-kb schema; run them with ``kb.db.upgrade`` / ``kb.db.downgrade`` (no alembic.ini).

``env.py`` runs on the connection ``kb.db`` passes in; ``versions/`` holds one script per revision, numbered
``0001``, ``0002``, ... (the revision id is the number). Constraint names are written out in the scripts: unnamed
single-column unique constraints, primary and foreign keys get the names PostgreSQL would give them
(``<table>_<column>_key``, ``<table>_pkey``, ``<table>_<column>_fkey``) on both backends, so a later script can
drop them by name on SQLite as well.
"""
