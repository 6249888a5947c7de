-- The reassignments reports read the rollups; no statement reads the assignment facts by
-- tenant and reassignment any more, and the index cost every assignment folded a third
-- more work.
DROP INDEX IF EXISTS assignment_facts_reassigned;
