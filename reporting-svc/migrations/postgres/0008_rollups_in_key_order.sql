-- SQLite's rollups are now stored in their key's order (WITHOUT ROWID). PostgreSQL has no
-- such table layout; its rollups are unchanged, and this number keeps both in step.
SELECT 1;
