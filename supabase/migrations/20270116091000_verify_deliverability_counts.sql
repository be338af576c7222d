-- The deliverability counts are kept on write by a statement trigger on the send ledger
-- (private.count_deliverability), so reading a rate never re-aggregates history. This proves they
-- have not drifted: per workspace and sender identity, the kept sends, permanent bounces
-- (suppression-list hits apart) and complaints against the ledger's own rows, all time. It reads
-- the whole ledger of the workspaces it checks: an operator's check, never on a write path.
-- A contact deleted outright takes its ledger rows with it while the counts keep them (the rates
-- go on counting mail that was sent, as SES's do): there the kept counts are the larger.

-- Each workspace and sender identity whose kept counts differ from its ledger's (none: no drift);
-- every workspace when p_workspace_id is null.
create function private.verify_deliverability_counts(p_workspace_id uuid default null)
returns table (
  workspace_id uuid, sender_identity_id uuid, kept_sends bigint, ledger_sends bigint,
  kept_bounces bigint, ledger_bounces bigint, kept_complaints bigint, ledger_complaints bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  with kept as (
    select d.workspace_id, d.sender_identity_id, sum(d.sends)::bigint as sends,
           sum(d.bounces)::bigint as bounces, sum(d.complaints)::bigint as complaints
    from private.deliverability_counts d
    where p_workspace_id is null or d.workspace_id = p_workspace_id
    group by d.workspace_id, d.sender_identity_id
  ),
  ledger as (
    select r.workspace_id, c.sender_identity_id,
           count(*) filter (where r.status = 'sent') as sends,
           count(*) filter (where r.bounce_type = 'Permanent'
                              and r.bounce_subtype is distinct from 'Suppressed'
                              and r.bounce_subtype is distinct from 'OnAccountSuppressionList') as bounces,
           count(*) filter (where r.complained_at is not null) as complaints
    from public.campaign_recipients r
    join public.campaigns c on c.id = r.campaign_id
    where p_workspace_id is null or r.workspace_id = p_workspace_id
    group by r.workspace_id, c.sender_identity_id
  )
  select coalesce(k.workspace_id, l.workspace_id), coalesce(k.sender_identity_id, l.sender_identity_id),
         coalesce(k.sends, 0), coalesce(l.sends, 0), coalesce(k.bounces, 0), coalesce(l.bounces, 0),
         coalesce(k.complaints, 0), coalesce(l.complaints, 0)
  from kept k
  full join ledger l on l.workspace_id = k.workspace_id
                    and l.sender_identity_id is not distinct from k.sender_identity_id
  where (coalesce(k.sends, 0), coalesce(k.bounces, 0), coalesce(k.complaints, 0))
        is distinct from (coalesce(l.sends, 0), coalesce(l.bounces, 0), coalesce(l.complaints, 0))
$$;

revoke all on function private.verify_deliverability_counts(uuid) from public, anon, authenticated;

grant execute on function private.verify_deliverability_counts(uuid) to service_role;
