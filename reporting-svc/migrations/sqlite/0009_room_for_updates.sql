-- PostgreSQL's rollups and facts keep room in their pages for updates (fillfactor);
-- SQLite has no such setting, and this number keeps both in step.
SELECT 1;
