-- Rollup rows are added to many times while their quarter hour is recent, and a
-- conversation's facts row is rewritten at each assignment. Pages kept partly free let
-- PostgreSQL write the new version beside the old one without touching the indexes (a
-- heap-only update) whenever no indexed column changed: every rollup update, and a facts
-- update that changes only the owner or the counts. Pages written from now on keep the
-- room; existing ones get it when rewritten.
ALTER TABLE rollups SET (fillfactor = 70);
ALTER TABLE conversation_facts SET (fillfactor = 80);
