-- A campaign's first send to a freshly imported list is capped (issue 18): one bad list must
-- not go out whole before its bounces are known. A contact created by a CSV import is stamped
-- (contacts.imported_at); while it is unproven (imported within 30 days and never sent any
-- mail), a campaign sends to at most 1,000 such contacts at once (its probe, counted in
-- campaigns.unproven_probed across freezing chunks) and holds the rest of them for 24 hours
-- (their next_attempt_at), while the probe's bounces arrive and the guardrails pause the
-- workspace if they are bad. Proven contacts are sent as before; flow emails are not capped.

alter table public.contacts add column imported_at timestamptz;

comment on column public.contacts.imported_at is
  'When a CSV import created this contact (null otherwise): until it has been sent mail it counts towards a campaign''s capped first send.';

alter table public.campaigns add column unproven_probed integer not null default 0;

comment on column public.campaigns.unproven_probed is
  'How many freshly imported, never-mailed contacts this campaign sends to at once (at most 1,000); the rest of them wait 24 hours.';

-- After an import chunk's work rows go: the contacts it created are stamped as imported.
create function private.stamp_imported_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.contacts k
  set imported_at = now()
  from gone o
  join public.import_jobs j on j.id = o.job_id
  where o.contact_id is null and o.problem is null
    and k.workspace_id = j.workspace_id and k.email = o.email
    and k.imported_at is null and k.created_at >= j.created_at;
  return null;
end
$$;

revoke all on function private.stamp_imported_contacts() from public, anon, authenticated;

create trigger import_contact_work_stamp_imported
  after delete on private.import_contact_work
  referencing old table as gone
  for each statement execute function private.stamp_imported_contacts();

-- After campaign recipients are frozen: unproven contacts beyond the campaign's probe wait.
create function private.cap_first_send()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  with unproven as (
    select n.id, n.campaign_id,
           row_number() over (partition by n.campaign_id order by n.contact_id) as rank
    from frozen n
    join public.contacts k on k.id = n.contact_id
    where n.flow_run_step_id is null
      and k.imported_at > now() - interval '30 days'
      and not exists (select 1 from public.campaign_recipients r
                      where r.contact_id = n.contact_id and r.sent_at is not null)
  ),
  probes as (
    select c.id, c.unproven_probed as before, u.total
    from public.campaigns c
    join (select campaign_id, count(*) as total from unproven group by campaign_id) u
      on u.campaign_id = c.id
  ),
  counted as (
    update public.campaigns c
    set unproven_probed = least(1000, p.before + p.total)
    from probes p
    where c.id = p.id
  )
  update public.campaign_recipients r
  set next_attempt_at = now() + interval '24 hours'
  from unproven u
  join probes p on p.id = u.campaign_id
  where r.id = u.id and p.before + u.rank > 1000;
  return null;
end
$$;

revoke all on function private.cap_first_send() from public, anon, authenticated;

create trigger campaign_recipients_cap_first_send
  after insert on public.campaign_recipients
  referencing new table as frozen
  for each statement execute function private.cap_first_send();
