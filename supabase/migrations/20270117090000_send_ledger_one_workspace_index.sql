-- One index entry less for every write of a send-ledger row (issue 18: index maintenance is most
-- of what a recipient costs the database; each claim and each outcome rewrites the row, and the
-- status change keeps the update from being HOT, so every index takes a new entry each time).
--
-- Two indexes answered questions one index answers:
--   - campaign_recipients_workspace_id_idx (workspace_id): the tenant's rows (RLS, erasure,
--     per-workspace reports);
--   - campaign_recipients_campaign_id_workspace_id_idx (campaign_id, workspace_id): the foreign
--     key to public.campaigns (id, workspace_id), used when a campaign is deleted or its key
--     checked.
-- One index on (workspace_id, campaign_id) serves both: workspace_id leads it, and the foreign
-- key's two columns are its leading columns (the order does not matter to a lookup by both;
-- tests/security/test_catalog.py accepts it as the key's index). A lookup by campaign_id alone
-- still has campaign_recipients_campaign_contact_all_idx (campaign_id, contact_id).

create index campaign_recipients_workspace_id_campaign_id_idx
  on public.campaign_recipients (workspace_id, campaign_id);

drop index public.campaign_recipients_workspace_id_idx;

drop index public.campaign_recipients_campaign_id_workspace_id_idx;
