-- Warm-up for new sender identities (issue 18). Mailbox providers judge a sender they have not
-- seen by its first weeks: a new identity that sends a whole list on day one looks like a
-- spammer. A sender identity with warm-up on (every identity registered from now on; admins may
-- turn it off, or on again) sends at most its daily cap (UTC days): 200 the first day, then each
-- day the cap steps up ×1.5 only when the previous day's cap was reached with that day's
-- bounces under 2% and complaints under 0.05% of its sends, steps back ÷1.5 (never below 200)
-- after a deliverability warning of the identity or its workspace, and otherwise stays. Gmail,
-- Microsoft and Yahoo addresses each get at most half of the day's cap (a provider sees the
-- sender ramp on its own). The cap is filled by engagement: contacts who clicked or ordered in
-- the last 30 days first, then 60, then 90, then the rest (a campaign's audience is frozen in
-- that order for a warming identity, and each claim ranks its rows the same way). It applies
-- across the identity's campaigns and flows (transactional flows' mail counts but is never
-- held); what exceeds the cap waits for the next day, through private.may_send_to's `hold`.
-- Each claimed send counts (private.sender_warmup_days, per identity and day), so a retry
-- counts again.

alter table public.sender_identities add column warmup boolean not null default false;

-- Identities registered from now on warm up; the ones already sending do not.
alter table public.sender_identities alter column warmup set default true;

comment on column public.sender_identities.warmup is
  'Whether the identity is warming up: its mail is held to a daily cap that grows ×1.5 a day while its rates are clean (on for new identities; admins may change it).';

create table private.sender_warmup_days (
  sender_identity_id uuid not null references public.sender_identities (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  day date not null,
  cap integer not null check (cap > 0),
  claimed integer not null default 0,
  gmail integer not null default 0,
  microsoft integer not null default 0,
  yahoo integer not null default 0,
  primary key (sender_identity_id, day)
);

comment on table private.sender_warmup_days is
  'Per warming sender identity and UTC day: the day''s cap and the sends claimed (all, and to Gmail, Microsoft and Yahoo).';

create index sender_warmup_days_workspace_id_idx on private.sender_warmup_days (workspace_id);

revoke all on private.sender_warmup_days from public, anon, authenticated;

grant select on private.sender_warmup_days to service_role;

grant update (warmup) on public.sender_identities to authenticated;

-- Admins turn their identities' warm-up on or off (the only column they may change).
create policy sender_identities_update_admins on public.sender_identities
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- The big mailbox provider an address belongs to (gmail, microsoft, yahoo), else null.
create function private.mailbox_provider(p_email text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when d in ('gmail.com', 'googlemail.com') then 'gmail'
    when d in ('outlook.com', 'hotmail.com', 'live.com', 'msn.com', 'passport.com')
      or d ~ '^(outlook|hotmail|live)\.[a-z.]+$' then 'microsoft'
    when d in ('yahoo.com', 'ymail.com', 'rocketmail.com', 'aol.com', 'aim.com')
      or d ~ '^yahoo\.[a-z.]+$' then 'yahoo'
  end
  from (select lower(split_part(p_email, '@', 2)) as d) a
$$;

revoke all on function private.mailbox_provider(text) from public, anon, authenticated;

-- 0: clicked or ordered within 30 days, 1: within 60, 2: within 90, 3: not (the fill order).
create function private.engagement_tier(p_contact_id uuid)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when e.last >= now() - interval '30 days' then 0
    when e.last >= now() - interval '60 days' then 1
    when e.last >= now() - interval '90 days' then 2
    else 3
  end
  from (
    select greatest(
      (select max(r.last_clicked_at) from public.campaign_recipients r
       where r.contact_id = p_contact_id and r.last_clicked_at is not null),
      (select max(f.last_order_at) from public.customer_facts f where f.contact_id = p_contact_id)
    ) as last
  ) e
$$;

revoke all on function private.engagement_tier(uuid) from public, anon, authenticated;

-- The identity's cap on a UTC day: the day's own once counted; else from the last day counted
-- before it (the day before: ×1.5 when its cap was reached with clean rates, ÷1.5 after a
-- warning; an older one: unchanged); 200 for the first.
create function private.warmup_cap(p_sender_identity_id uuid, p_day date)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    t.cap,
    case
      when p.day is null then 200
      when p.day < p_day - 1 then p.cap
      when exists (select 1 from private.deliverability_warnings w
                   where w.workspace_id = p.workspace_id
                     and (w.sender_identity_id is null or w.sender_identity_id = p_sender_identity_id)
                     and w.warned_at >= p.day::timestamp at time zone 'UTC')
        then greatest(200, floor(p.cap / 1.5)::integer)
      when p.claimed >= p.cap
           and coalesce(r.bounces::numeric / nullif(r.sends, 0), 0) < 0.02
           and coalesce(r.complaints::numeric / nullif(r.sends, 0), 0) < 0.0005
        then ceil(p.cap * 1.5)::integer
      else p.cap
    end)
  from (select 1) one
  left join private.sender_warmup_days t on t.sender_identity_id = p_sender_identity_id and t.day = p_day
  left join lateral (
    select d.* from private.sender_warmup_days d
    where d.sender_identity_id = p_sender_identity_id and d.day < p_day
    order by d.day desc limit 1
  ) p on true
  left join lateral (
    select sum(c.sends) as sends, sum(c.bounces) as bounces, sum(c.complaints) as complaints
    from private.deliverability_counts c
    where c.workspace_id = p.workspace_id and c.sender_identity_id = p_sender_identity_id
      and c.hour >= p.day::timestamp at time zone 'UTC'
      and c.hour < (p.day + 1)::timestamp at time zone 'UTC'
  ) r on true
$$;

revoke all on function private.warmup_cap(uuid, date) from public, anon, authenticated;

grant execute on function private.warmup_cap(uuid, date) to service_role;

-- After a statement on the send ledger: the sends it claimed from warming identities count
-- towards their day (the day's row is made with its cap on the first).
create function private.count_warmup_sends()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_day date := (now() at time zone 'UTC')::date;
begin
  insert into private.sender_warmup_days as w (sender_identity_id, workspace_id, day, cap, claimed, gmail, microsoft, yahoo)
  select k.sender_identity_id, k.workspace_id, v_day, private.warmup_cap(k.sender_identity_id, v_day),
         k.claimed, k.gmail, k.microsoft, k.yahoo
  from (
    select c.sender_identity_id, c.workspace_id, count(*) as claimed,
           count(*) filter (where private.mailbox_provider(n.email) = 'gmail') as gmail,
           count(*) filter (where private.mailbox_provider(n.email) = 'microsoft') as microsoft,
           count(*) filter (where private.mailbox_provider(n.email) = 'yahoo') as yahoo
    from new_rows n
    join old_rows o on o.id = n.id
    join public.campaigns c on c.id = n.campaign_id
    join public.sender_identities si on si.id = c.sender_identity_id and si.warmup
    where n.status = 'sending' and n.attempts > o.attempts
    group by c.sender_identity_id, c.workspace_id
  ) k
  order by k.sender_identity_id
  on conflict (sender_identity_id, day) do update
  set claimed = w.claimed + excluded.claimed, gmail = w.gmail + excluded.gmail,
      microsoft = w.microsoft + excluded.microsoft, yahoo = w.yahoo + excluded.yahoo;
  return null;
end
$$;

revoke all on function private.count_warmup_sends() from public, anon, authenticated;

create trigger campaign_recipients_count_warmup_sends
  after update on public.campaign_recipients
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.count_warmup_sends();

-- After recipients are frozen for a warming identity's campaign: the most engaged are due
-- first (a second earlier per tier above the least engaged), so the day's cap goes to them.
create function private.order_warmup_sends()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaign_recipients r
  set next_attempt_at = r.next_attempt_at - (3 - private.engagement_tier(r.contact_id)) * interval '1 second'
  from frozen n
  join public.campaigns c on c.id = n.campaign_id
  join public.sender_identities si on si.id = c.sender_identity_id and si.warmup
  where r.id = n.id and n.flow_run_step_id is null;
  return null;
end
$$;

revoke all on function private.order_warmup_sends() from public, anon, authenticated;

create trigger campaign_recipients_order_warmup_sends
  after insert on public.campaign_recipients
  referencing new table as frozen
  for each statement execute function private.order_warmup_sends();

-- As in 20261221091000_may_send_to.sql (the claim's rules: address unchanged, consent, not
-- unsubscribed or erased, suppressed nowhere; an unknown test sends), and: a warming identity's
-- rows beyond the room left in its day (or in its day's share for Gmail, Microsoft or Yahoo),
-- taken most engaged first, are held until the next UTC day (a second later per engagement
-- tier, so the most engaged go first then too). Transactional flows' mail is never held.
create or replace function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  with judged as (
    select r.id, r.next_attempt_at, r.contact_id, c.sender_identity_id,
           coalesce(si.warmup, false) and not coalesce(f.transactional, false) as warming,
           private.mailbox_provider(r.email) as provider,
           (ct.email = r.email
            and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
            and ct.unsubscribed_at is null and ct.erased_at is null
            and not exists (select 1 from public.email_suppressions s
                            where s.workspace_id = r.workspace_id and s.email = r.email)
            and not exists (select 1 from private.platform_suppressions p
                            where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
           is not false as mailable
    from public.campaign_recipients r
    join public.contacts ct on ct.id = r.contact_id
    join public.campaigns c on c.id = r.campaign_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    left join public.sender_identities si on si.id = c.sender_identity_id
    left join public.flow_steps fs on fs.id = c.flow_step_id
    left join public.flows f on f.id = fs.flow_id
    where r.id = any (p_recipients)
  ),
  tiered as (
    select j.id, j.sender_identity_id, j.provider, private.engagement_tier(j.contact_id) as tier,
           j.next_attempt_at
    from judged j
    where j.mailable and j.warming
  ),
  room as (
    select i.sender_identity_id, k.cap,
           k.cap - coalesce(d.claimed, 0) as left_all,
           jsonb_build_object(
             'gmail', ceil(k.cap * 0.5) - coalesce(d.gmail, 0),
             'microsoft', ceil(k.cap * 0.5) - coalesce(d.microsoft, 0),
             'yahoo', ceil(k.cap * 0.5) - coalesce(d.yahoo, 0)) as left_provider
    from (select distinct t.sender_identity_id from tiered t) i
    cross join lateral (select private.warmup_cap(i.sender_identity_id, (now() at time zone 'UTC')::date) as cap) k
    left join private.sender_warmup_days d
      on d.sender_identity_id = i.sender_identity_id and d.day = (now() at time zone 'UTC')::date
  ),
  -- First each provider's share, then the day's cap over the rows within their share.
  shared as (
    select t.*, rm.cap, rm.left_all,
           t.provider is null
             or row_number() over (partition by t.sender_identity_id, t.provider
                                   order by t.tier, t.next_attempt_at, t.id)
                <= (rm.left_provider ->> t.provider)::numeric as within_share
    from tiered t
    join room rm on rm.sender_identity_id = t.sender_identity_id
  ),
  placed as (
    select s.*,
           row_number() over (partition by s.sender_identity_id, s.within_share
                              order by s.tier, s.next_attempt_at, s.id) as n_all
    from shared s
  ),
  verdicts as (
    select j.id, j.mailable, w.tier, w.provider, w.cap,
           w.id is not null and (not w.within_share or w.n_all > w.left_all) as over_cap,
           w.id is not null and not w.within_share as provider_only
    from judged j
    left join placed w on w.id = j.id
  )
  select v.id,
         case when not v.mailable then 'skip' when v.over_cap then 'hold' else 'send' end,
         case
           when not v.mailable then 'no longer mailable (unsubscribed, suppressed or without consent)'
           when v.over_cap and v.provider_only then
             format('warm-up: today''s share for %s (half of the daily cap of %s) is used; waiting for tomorrow',
                    initcap(v.provider), v.cap)
           when v.over_cap then format('warm-up: today''s cap of %s is used; waiting for tomorrow', v.cap)
         end,
         case when v.mailable and v.over_cap then
           ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC' + v.tier * interval '1 second'
         end
  from verdicts v
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;
