-- The index on contacts(workspace_id) alone is dropped (issue 14). Every lookup by workspace is
-- served as well by (workspace_id, id) or (workspace_id, email), which lead with the same column;
-- the lone index cost every contact insert one more index entry, and it is the index the
-- foreign-key checks of contact events, external ids and facts were planned on while `contacts`
-- was nearly empty, reading every contact of the workspace for each check thereafter (see
-- 20270107090000_imports_keep_planner_statistics.sql).
drop index public.contacts_workspace_id_idx;
