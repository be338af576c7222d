-- RFM kept scores current when an import ends (issue 14, performance: right after an import the
-- workspace's kept scores were stale, so the RFM dashboard a shop owner opens first was counted
-- from every customer's facts, 0.26–0.32 s against 0.3 s asked, until pg_cron's next refresh).
--
-- An import changes thousands of customers, more than a read can check against the kept cut
-- points (…_rfm_kept_after_small_writes.sql), so the workspace was counted until refreshed. Now
-- the transaction that ends an import job (orders, contacts, products, a shop backfill; done or
-- failed, as what a job imported before it failed stays) also refreshes its workspace's kept
-- scores, after every part the job wrote: the job's end and the scores commit
-- together, so once a member hears the job ended, reads take kept scores. The refresh costs
-- what pg_cron's would (about 0.7–1 s for 200k customers, in the job's last step, well inside a
-- step's 50 s); a workspace already current costs a lookup. A refresh of the workspace running
-- at that moment (pg_cron's) is waited for rather than skipped: it read the facts before this
-- job's last part, so skipping would leave the workspace stale. A cancelled job is left to
-- pg_cron's refresh: a member cancels in their own transaction, under the signed-in user's
-- statement timeout, and a large workspace's refresh must not make the cancel fail.

-- After the job's last status change: its workspace's kept scores refreshed in the same
-- transaction.
create function private.refresh_rfm_kept_of_ended_import()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- The lock refresh_rfm_kept tries, held here until commit (it is taken again there): a
  -- refresh already running finishes first, and this one then reads every fact it did not.
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.rfm_kept'), pg_catalog.hashtext(new.workspace_id::text)
  );
  perform private.refresh_rfm_kept(array[new.workspace_id]);
  return null;
end
$$;

revoke all on function private.refresh_rfm_kept_of_ended_import() from public, anon, authenticated;

create trigger import_jobs_refresh_rfm_kept
  after update of status on public.import_jobs
  for each row when (new.status in ('done', 'failed') and old.status <> new.status)
  execute function private.refresh_rfm_kept_of_ended_import();
