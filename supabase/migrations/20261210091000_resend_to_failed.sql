-- Resend to failed (issue 18): every recipient row keeps its outcome and reason; a member may
-- send a campaign again to its failed rows alone. They go back to the queue with their attempts
-- reset (their last error stays until a new outcome replaces it), are reserved again against
-- the month's emails, and are checked at claim like any row, so someone who unsubscribed or
-- bounced since gets nothing. A sent campaign goes back to sending for them, and is sent again
-- only when every row is final.

alter table public.campaign_recipients add column resent_at timestamptz;

comment on column public.campaign_recipients.resent_at is
  'When a member last sent the campaign again to this failed row (resend_to_failed).';

-- The allowed moves, as before, and one more: a sent campaign back to sending, only inside
-- resend_to_failed (which sets growthbase.resending to the campaign's id for its transaction).
create or replace function private.guard_campaign_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = old.status then
    return new;
  end if;
  if (old.status, new.status) not in (
    ('draft', 'scheduled'), ('draft', 'sending'), ('draft', 'cancelled'),
    ('scheduled', 'draft'), ('scheduled', 'sending'), ('scheduled', 'cancelled'),
    ('sending', 'paused'), ('sending', 'sent'), ('sending', 'cancelled'),
    ('paused', 'sending'), ('paused', 'cancelled')
  ) and not (
    (old.status, new.status) = ('sent', 'sending')
    and pg_catalog.current_setting('growthbase.resending', true) = old.id::text
  ) or (
    new.status = 'sending' and old.status in ('draft', 'scheduled')
    and (old.started_at is not null or new.started_at is null)
  ) then
    perform private.fail(409, 'invalid_transition',
      format('A %s campaign cannot become %s', old.status, new.status));
  end if;
  return new;
end
$$;

revoke all on function private.guard_campaign_status() from public, anon, authenticated;

-- Members send a sending, paused or sent campaign again to its failed recipients; answers how
-- many. A sent campaign needs its sender still verified, as a resumed one does.
create function public.resend_to_failed(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_failed integer;
begin
  perform private.require_campaign_status(v_campaign, array['sending', 'paused', 'sent'], 'resent');
  select count(*) into v_failed
  from public.campaign_recipients r
  where r.campaign_id = p_campaign_id and r.status = 'failed';
  if v_failed = 0 then
    return 0;
  end if;
  if v_campaign.status = 'sent' then
    perform private.assert_campaign_sender(v_campaign);
  end if;
  perform private.reserve_monthly_emails(v_campaign.workspace_id, v_failed);
  update public.campaign_recipients r
  set status = 'queued', attempts = 0, next_attempt_at = now(), locked_until = null,
      resent_at = now()
  where r.campaign_id = p_campaign_id and r.status = 'failed';
  if v_campaign.status = 'sent' then
    perform pg_catalog.set_config('growthbase.resending', p_campaign_id::text, true);
    update public.campaigns set status = 'sending', finished_at = null where id = p_campaign_id;
    perform pg_catalog.set_config('growthbase.resending', '', true);
  end if;
  return v_failed;
end
$$;

revoke all on function public.resend_to_failed(uuid) from public, anon, authenticated;

grant execute on function public.resend_to_failed(uuid) to authenticated;

comment on function public.resend_to_failed(uuid) is
  'Members send a sending, paused or sent campaign again to its failed recipients alone; answers how many (reserved again against the month''s emails).';
