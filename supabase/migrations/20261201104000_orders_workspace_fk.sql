-- Orders keep one foreign key to their tenant, not two: (project_id, workspace_id) already
-- references projects (id, workspace_id), whose workspace_id references workspaces, and deleting
-- a workspace deletes its projects and so their orders. The direct key to workspaces checked the
-- same thing again for every inserted order, a third of the per-row key checks of a bulk import
-- (issue 14: set-based imports). Orders still carry workspace_id, indexed, for RLS.

alter table public.orders drop constraint orders_workspace_id_fkey;
