-- Every foreign key gets an index whose leading columns are the key's columns (Supabase's
-- advisor, lint 0001), so deleting a user, contact, campaign or lookup row finds the rows that
-- reference it without scanning the table: erasure of a user sets `created_by`-style columns
-- to null, erasure of a contact deletes its snapshots and send ledger rows. Lookup-table keys
-- (plans, prices) are included, so changing or removing a lookup row stays cheap too.
-- This migration runs last; tests/test_catalog.py lists any foreign key still without one.
--
-- Where a key is (x_id, workspace_id) and an index on (x_id) alone existed, the new index
-- replaces it (same leading column, one index less to write).

-- tenancy
create index workspaces_created_by_idx on public.workspaces (created_by);

create index workspace_invitations_invited_by_idx on public.workspace_invitations (invited_by);

create index workspace_invitations_accepted_by_idx on public.workspace_invitations (accepted_by);

create index projects_created_by_idx on public.projects (created_by);

-- automations
create index automations_project_id_workspace_id_idx on public.automations (project_id, workspace_id);

drop index if exists public.automations_project_id_idx;

create index automations_started_by_idx on public.automations (started_by);

create index automations_type_idx on public.automations (type);

-- contacts and orders
create index contact_external_ids_contact_id_workspace_id_idx
  on public.contact_external_ids (contact_id, workspace_id);

drop index if exists public.contact_external_ids_contact_id_idx;

create index orders_project_id_workspace_id_idx on public.orders (project_id, workspace_id);

drop index if exists public.orders_project_id_idx;

create index integrations_workspace_id_idx on private.integrations (workspace_id);

-- analytics
create index rfm_snapshots_contact_id_idx on analytics.rfm_snapshots (contact_id);

-- ai
create index ai_calls_user_id_idx on public.ai_calls (user_id);

create index ai_calls_feature_idx on public.ai_calls (feature);

-- billing
create index subscriptions_plan_tier_idx on public.subscriptions (plan_tier);

create index subscriptions_created_by_idx on public.subscriptions (created_by);

create index billing_payments_subscription_id_idx on public.billing_payments (subscription_id);

-- email
create index email_templates_created_by_idx on public.email_templates (created_by);

create index email_list_members_contact_id_workspace_id_idx
  on public.email_list_members (contact_id, workspace_id);

drop index if exists public.email_list_members_contact_id_idx;

create index email_list_members_list_id_workspace_id_idx
  on public.email_list_members (list_id, workspace_id);

create index campaigns_created_by_idx on public.campaigns (created_by);

create index campaigns_segment_id_workspace_id_idx on public.campaigns (segment_id, workspace_id);

drop index if exists public.campaigns_segment_id_idx;

create index campaigns_sender_identity_id_workspace_id_idx
  on public.campaigns (sender_identity_id, workspace_id);

drop index if exists public.campaigns_sender_identity_id_idx;

create index campaign_variants_campaign_id_workspace_id_idx
  on public.campaign_variants (campaign_id, workspace_id);

create index campaign_recipients_campaign_id_workspace_id_idx
  on public.campaign_recipients (campaign_id, workspace_id);

create index campaign_recipients_contact_id_idx on public.campaign_recipients (contact_id);
