-- A spike of unsubscribes from Gmail recipients is a warning signal (issue 18): Gmail never
-- reports complaints to SES, and its users unsubscribe where others would complain. Kept as the
-- send ledger changes: per workspace and hour, the Gmail (gmail.com, googlemail.com) mails sent
-- and the unsubscribes among them. When a statement adds an unsubscribe and, over the last 24
-- hours, at least the workspace's min_volume Gmail mails went out and the unsubscribes reached
-- its warn_gmail_unsubscribe_rate (1% unless its admins set 0.1% to 10%), the owner and admins
-- get a sending.warning notification, at most once a day.

alter table public.deliverability_settings add column warn_gmail_unsubscribe_rate numeric(6, 5)
  not null default 0.01 check (warn_gmail_unsubscribe_rate between 0.001 and 0.1);

comment on column public.deliverability_settings.warn_gmail_unsubscribe_rate is
  'Share of the last 24 hours'' Gmail mails unsubscribed from at which the admins are warned (Gmail sends no complaints to SES).';

grant insert (warn_gmail_unsubscribe_rate), update (warn_gmail_unsubscribe_rate)
  on public.deliverability_settings to authenticated;

-- The workspace's thresholds, its defaults filled in (now with the Gmail unsubscribe rate).
create or replace function private.deliverability_thresholds(p_workspace_id uuid)
returns public.deliverability_settings
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select s from public.deliverability_settings s where s.workspace_id = p_workspace_id),
    row(p_workspace_id, 0.02, 0.05, 0.0008, 0.001, 500, now(), 180, 0.01)::public.deliverability_settings
  )
$$;

revoke all on function private.deliverability_thresholds(uuid) from public, anon, authenticated;

create table private.gmail_unsubscribe_counts (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  hour timestamptz not null,
  sends integer not null default 0,
  unsubscribes integer not null default 0,
  primary key (workspace_id, hour)
);

comment on table private.gmail_unsubscribe_counts is
  'Per workspace and hour: Gmail mails sent and unsubscribes from them, kept as the send ledger changes.';

create table private.gmail_unsubscribe_warnings (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  warned_at timestamptz not null
);

comment on table private.gmail_unsubscribe_warnings is
  'When a workspace was last warned of a spike of Gmail unsubscribes (at most once a day).';

revoke all on private.gmail_unsubscribe_counts, private.gmail_unsubscribe_warnings
  from public, anon, authenticated;

-- After a statement on the send ledger: count its Gmail sends and unsubscribes, then warn the
-- workspaces it gave an unsubscribe whose last 24 hours are over the threshold.
create function private.count_gmail_unsubscribes()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_spike record;
begin
  with changed as (
    select n.workspace_id,
           count(*) filter (where n.sent_at is not null and o.sent_at is null) as sends,
           count(*) filter (where n.unsubscribed_at is not null and o.unsubscribed_at is null) as unsubscribes
    from new_rows n
    join old_rows o on o.id = n.id
    where lower(split_part(n.email, '@', 2)) in ('gmail.com', 'googlemail.com')
    group by n.workspace_id
  )
  insert into private.gmail_unsubscribe_counts as g (workspace_id, hour, sends, unsubscribes)
  select c.workspace_id, date_trunc('hour', now()), c.sends, c.unsubscribes
  from changed c
  where c.sends > 0 or c.unsubscribes > 0
  order by c.workspace_id
  on conflict (workspace_id, hour) do update
    set sends = g.sends + excluded.sends, unsubscribes = g.unsubscribes + excluded.unsubscribes;

  for v_spike in
    select w.workspace_id, w.sends, w.unsubscribes, t.min_volume, t.warn_gmail_unsubscribe_rate
    from (select distinct n.workspace_id from new_rows n join old_rows o on o.id = n.id
          where n.unsubscribed_at is not null and o.unsubscribed_at is null
            and lower(split_part(n.email, '@', 2)) in ('gmail.com', 'googlemail.com')) s
    cross join lateral (
      select s.workspace_id, sum(g.sends) as sends, sum(g.unsubscribes) as unsubscribes
      from private.gmail_unsubscribe_counts g
      where g.workspace_id = s.workspace_id and g.hour > now() - interval '24 hours'
    ) w
    cross join lateral private.deliverability_thresholds(s.workspace_id) t
    where w.sends >= t.min_volume
      and w.unsubscribes::numeric / w.sends >= t.warn_gmail_unsubscribe_rate
      and not exists (select 1 from private.gmail_unsubscribe_warnings x
                      where x.workspace_id = s.workspace_id and x.warned_at > now() - interval '24 hours')
  loop
    insert into private.gmail_unsubscribe_warnings as x (workspace_id, warned_at)
    values (v_spike.workspace_id, now())
    on conflict (workspace_id) do update set warned_at = excluded.warned_at;
    perform private.notify_members_at_least(
      v_spike.workspace_id, 'admin', 'sending.warning',
      'Deliverability warning: Gmail unsubscribes',
      format('%s of %s mails to Gmail in the last 24 hours were unsubscribed from (%s%%; warning at %s%%). Gmail does not report complaints: its users'' unsubscribes are the signal.',
             v_spike.unsubscribes, v_spike.sends,
             round(100 * v_spike.unsubscribes::numeric / v_spike.sends, 2),
             round(100 * v_spike.warn_gmail_unsubscribe_rate, 2)),
      jsonb_build_object('signal', 'gmail_unsubscribes'));
  end loop;
  return null;
end
$$;

revoke all on function private.count_gmail_unsubscribes() from public, anon, authenticated;

create trigger campaign_recipients_count_gmail_unsubscribes
  after update on public.campaign_recipients
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.count_gmail_unsubscribes();
