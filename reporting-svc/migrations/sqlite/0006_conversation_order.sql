-- The per-conversation export reads conversations a page at a time in (creation time, id)
-- order: with the id in the index, each page starts where the last ended and needs no
-- sort, instead of sorting what remains of the range for every page.
DROP INDEX conversation_facts_created;
CREATE INDEX conversation_facts_created ON conversation_facts (tenant_id, created_at, conversation_id);
