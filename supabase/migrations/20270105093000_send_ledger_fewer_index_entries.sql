-- Every claim and every outcome rewrites a send-ledger row (its status changes, so the update
-- cannot be HOT) and adds the new version to each of the ledger's indexes whose predicate it
-- meets: index maintenance is most of what a recipient costs the database (issue 18). Two
-- indexes took entries they can never be used for:
--   - flow_run_step_id is unique only among flow emails; every campaign row (null) had an entry
--     too. Only flow emails are indexed now (a lookup by a step visit's id implies not null).
--   - the retention sweep finds addresses by `sent_at < …` (never null); unsent rows (every
--     claim, every row still queued) had entries too. Only sent rows are indexed now.
-- What each index answers is unchanged.

create unique index campaign_recipients_flow_run_step_sent_idx on public.campaign_recipients (flow_run_step_id)
  where flow_run_step_id is not null;

drop index public.campaign_recipients_flow_run_step_idx;

alter index public.campaign_recipients_flow_run_step_sent_idx rename to campaign_recipients_flow_run_step_idx;

create index campaign_recipients_retention_sent_idx on public.campaign_recipients (sent_at)
  where email is not null and sent_at is not null;

drop index public.campaign_recipients_retention_idx;

alter index public.campaign_recipients_retention_sent_idx rename to campaign_recipients_retention_idx;
