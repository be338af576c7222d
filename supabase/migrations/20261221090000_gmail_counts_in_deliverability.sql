-- Gmail unsubscribes were counted twice: by the deliverability counts (gmail_unsubscribes) and
-- by a second statement trigger into private.gmail_unsubscribe_counts (20261219102000), which
-- also counted the mails sent to Gmail. One count remains: the Gmail sends become a column of
-- private.deliverability_counts, kept by private.count_deliverability, which now also warns of
-- a spike of Gmail unsubscribes exactly as before (at least the workspace's min_volume Gmail
-- mails in the last 24 hours, unsubscribes at or over warn_gmail_unsubscribe_rate, at most once
-- a day per workspace, remembered in private.gmail_unsubscribe_warnings). The separate counts,
-- their trigger and function go.

alter table private.deliverability_counts add column gmail_sends integer not null default 0;

comment on column private.deliverability_counts.gmail_sends is
  'Mails sent to gmail.com and googlemail.com addresses (the base of the Gmail unsubscribe rate).';

comment on table private.deliverability_counts is
  'Per workspace, sender identity and hour: sends (Gmail''s apart), permanent bounces (suppression-list hits apart), transient bounces, complaints and unsubscribes (Gmail''s apart), kept by a trigger on the send ledger.';

-- The Gmail sends counted so far move over, to the hour's busiest identity of the workspace
-- (the spike is judged per workspace, so which identity holds them does not matter).
insert into private.deliverability_counts as d (workspace_id, sender_identity_id, hour, gmail_sends)
select g.workspace_id,
       (select x.sender_identity_id from private.deliverability_counts x
        where x.workspace_id = g.workspace_id and x.hour = g.hour
        order by x.sends desc, x.sender_identity_id nulls first limit 1),
       g.hour, g.sends
from private.gmail_unsubscribe_counts g
where g.sends > 0
on conflict (workspace_id, sender_identity_id, hour) do update set gmail_sends = excluded.gmail_sends;

drop trigger campaign_recipients_count_gmail_unsubscribes on public.campaign_recipients;

drop function private.count_gmail_unsubscribes();

drop table private.gmail_unsubscribe_counts;

-- As in 20261210092000_deliverability_guardrails.sql (counts per workspace, identity and hour;
-- each scope that gained a bounce or complaint checked, the workspace first), and: the Gmail
-- sends are counted, and each workspace the statement gave a Gmail unsubscribe is checked for
-- a spike of them over the last 24 hours (as 20261219102000_gmail_unsubscribe_spike.sql did).
create or replace function private.count_deliverability()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspaces uuid[];
  v_identities uuid[];
  v_gmail uuid[];
  v_at integer;
  v_spike record;
begin
  with changes as (
    select n.workspace_id, c.sender_identity_id,
           (n.status = 'sent' and o.status <> 'sent') as sent,
           (n.sent_at is not null and o.sent_at is null) as first_sent,
           (n.bounce_type = 'Permanent' and o.bounce_type is distinct from 'Permanent') as bounced,
           coalesce(n.bounce_subtype in ('Suppressed', 'OnAccountSuppressionList'), false) as suppressed,
           (n.bounce_type = 'Transient' and o.bounced_at is null and n.bounced_at is not null) as soft,
           (n.complained_at is not null and o.complained_at is null) as complained,
           (n.unsubscribed_at is not null and o.unsubscribed_at is null) as unsubscribed,
           lower(split_part(n.email, '@', 2)) in ('gmail.com', 'googlemail.com') as gmail
    from new_rows n
    join old_rows o on o.id = n.id
    join public.campaigns c on c.id = n.campaign_id
  ),
  counted as (
    select ch.workspace_id, ch.sender_identity_id,
           count(*) filter (where ch.sent) as sends,
           count(*) filter (where ch.first_sent and ch.gmail) as gmail_sends,
           count(*) filter (where ch.bounced and not ch.suppressed) as bounces,
           count(*) filter (where ch.bounced and ch.suppressed) as suppressed_bounces,
           count(*) filter (where ch.soft) as transient_bounces,
           count(*) filter (where ch.complained) as complaints,
           count(*) filter (where ch.unsubscribed) as unsubscribes,
           count(*) filter (where ch.unsubscribed and ch.gmail) as gmail_unsubscribes
    from changes ch
    group by ch.workspace_id, ch.sender_identity_id
  ),
  stored as (
    insert into private.deliverability_counts as d (
      workspace_id, sender_identity_id, hour, sends, gmail_sends, bounces, suppressed_bounces,
      transient_bounces, complaints, unsubscribes, gmail_unsubscribes
    )
    select k.workspace_id, k.sender_identity_id, date_trunc('hour', now()), k.sends, k.gmail_sends,
           k.bounces, k.suppressed_bounces, k.transient_bounces, k.complaints, k.unsubscribes,
           k.gmail_unsubscribes
    from counted k
    where k.sends + k.gmail_sends + k.bounces + k.suppressed_bounces + k.transient_bounces
          + k.complaints + k.unsubscribes > 0
    order by k.workspace_id, k.sender_identity_id
    on conflict (workspace_id, sender_identity_id, hour) do update
    set sends = d.sends + excluded.sends,
        gmail_sends = d.gmail_sends + excluded.gmail_sends,
        bounces = d.bounces + excluded.bounces,
        suppressed_bounces = d.suppressed_bounces + excluded.suppressed_bounces,
        transient_bounces = d.transient_bounces + excluded.transient_bounces,
        complaints = d.complaints + excluded.complaints,
        unsubscribes = d.unsubscribes + excluded.unsubscribes,
        gmail_unsubscribes = d.gmail_unsubscribes + excluded.gmail_unsubscribes
  )
  -- Each workspace that gained a bounce or complaint as a whole (null), then its identities;
  -- and the workspaces that gained a Gmail unsubscribe.
  select array_agg(x.workspace_id order by x.sender_identity_id nulls first),
         array_agg(x.sender_identity_id order by x.sender_identity_id nulls first),
         (select array_agg(distinct k.workspace_id) from counted k where k.gmail_unsubscribes > 0)
  into v_workspaces, v_identities, v_gmail
  from (
    select k.workspace_id, k.sender_identity_id from counted k where k.bounces + k.complaints > 0
    union
    select k.workspace_id, null::uuid from counted k where k.bounces + k.complaints > 0
  ) x;
  for v_at in 1 .. coalesce(cardinality(v_workspaces), 0) loop
    perform private.check_deliverability(v_workspaces[v_at], v_identities[v_at]);
  end loop;

  for v_spike in
    select w.workspace_id, w.sends, w.unsubscribes, t.min_volume, t.warn_gmail_unsubscribe_rate
    from unnest(coalesce(v_gmail, '{}')) as s (workspace_id)
    cross join lateral (
      select s.workspace_id, sum(d.gmail_sends) as sends, sum(d.gmail_unsubscribes) as unsubscribes
      from private.deliverability_counts d
      where d.workspace_id = s.workspace_id and d.hour > now() - interval '24 hours'
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

revoke all on function private.count_deliverability() from public, anon, authenticated;
