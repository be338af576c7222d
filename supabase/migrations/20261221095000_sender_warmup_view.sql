-- Where each sender identity's warm-up stands today, for its workspace's members (and
-- analysts): whether it warms up, today's cap (UTC day) and what has been claimed against it,
-- in all and to Gmail, Microsoft and Yahoo, with each provider's share (half the cap). The
-- counts live in private.sender_warmup_days; members read them only through this view.

-- Every visible sender identity with its warm-up today.
create function analytics.sender_warmup_stats()
returns table (
  workspace_id uuid, sender_identity_id uuid, identity text, warmup boolean, day date,
  daily_cap integer, claimed integer, provider_share integer, gmail integer, microsoft integer,
  yahoo integer
)
language sql
stable
security definer
set search_path = ''
as $$
  select s.workspace_id, s.id, s.identity, s.warmup, t.day,
         case when s.warmup then private.warmup_cap(s.id, t.day) end,
         coalesce(d.claimed, 0),
         case when s.warmup then ceil(private.warmup_cap(s.id, t.day) * 0.5)::integer end,
         coalesce(d.gmail, 0), coalesce(d.microsoft, 0), coalesce(d.yahoo, 0)
  from public.sender_identities s
  cross join (select (now() at time zone 'UTC')::date as day) t
  left join private.sender_warmup_days d on d.sender_identity_id = s.id and d.day = t.day
  where (select private.analytics_sees_all())
     or s.workspace_id in (select private.user_workspace_ids())
$$;

revoke all on function analytics.sender_warmup_stats() from public, anon;

grant execute on function analytics.sender_warmup_stats() to authenticated, growthbase_analyst;

comment on function analytics.sender_warmup_stats() is
  'Each sender identity of the workspaces the caller may see: whether it warms up, today''s cap (UTC) and sends claimed against it, per big mailbox provider too.';

create view analytics.sender_warmup with (security_invoker = true) as
  select * from analytics.sender_warmup_stats();

revoke all on analytics.sender_warmup from public, anon;

grant select on analytics.sender_warmup to authenticated, growthbase_analyst;

comment on view analytics.sender_warmup is
  'Warm-up of each sender identity today (UTC): the daily cap, sends claimed against it, each big mailbox provider''s share and count; cap null when warm-up is off.';
