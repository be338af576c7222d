-- The free plan's monthly credits go to each account's personal workspace (the one sign-up
-- creates), not to every free workspace: anyone may create workspaces through the Data API, and
-- granting each new one 20 credits let a user mint credits by creating (or deleting and
-- re-creating) workspaces. Other workspaces get credits from a paid plan's charges.

alter table public.workspaces add column personal boolean not null default false;

comment on column public.workspaces.personal is
  'Created at sign-up for its owner; only personal workspaces on the free plan get its monthly credits. Set by the database, never by users.';

-- Workspaces that existed before this column: each creator's first workspace was the sign-up one.
update public.workspaces w
set personal = true
where w.id in (
  select distinct on (f.created_by) f.id
  from public.workspaces f
  where f.created_by is not null
  order by f.created_by, f.created_at, f.id
);

create or replace function private.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_display text := nullif(btrim(coalesce(
    new.raw_user_meta_data ->> 'full_name', new.raw_user_meta_data ->> 'name', ''
  )), '');
  v_workspace public.workspaces;
begin
  insert into public.profiles (id, display_name) values (new.id, left(v_display, 80));
  v_workspace := private.create_workspace_for(
    new.id,
    left(coalesce(v_display, nullif(split_part(new.email, '@', 1), ''), 'My') || '''s workspace', 80),
    'EUR',
    null
  );
  update public.workspaces set personal = true where id = v_workspace.id;
  return new;
end
$$;

revoke all on function private.handle_new_user() from public, anon, authenticated;

-- A workspace that becomes personal on the free plan gets this month's free credits at once.
create or replace function private.grant_free_credits_to_new_workspace()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.personal and new.plan_tier = 'free' then
    perform private.grant_credits(
      new.id,
      (select p.monthly_credits from public.plans p where p.tier = 'free'),
      private.free_credits_reference(new.id)
    );
  end if;
  return null;
end
$$;

revoke all on function private.grant_free_credits_to_new_workspace() from public, anon, authenticated;

drop trigger workspaces_grant_free_credits on public.workspaces;

create trigger workspaces_grant_free_credits
  after insert or update of personal on public.workspaces
  for each row execute function private.grant_free_credits_to_new_workspace();

-- Grants this month's free credits to up to p_limit personal workspaces on the free plan that
-- have not had them yet, in one statement; returns how many it granted. The cron calls it until
-- it grants fewer than p_limit. Workspaces another run holds are skipped (that run grants them),
-- and the unique grant reference turns a grant committed meanwhile into a no-op.
create or replace function private.grant_free_monthly_credits(p_limit integer)
returns integer
language sql
security definer
set search_path = ''
as $$
  with free_plan as (
    select p.monthly_credits from public.plans p where p.tier = 'free' and p.monthly_credits > 0
  ),
  due as (
    select w.id, w.credits_remaining, private.free_credits_reference(w.id) as reference
    from public.workspaces w
    where w.plan_tier = 'free'
      and w.personal
      and not exists (
        select from public.credit_ledger l where l.grant_reference = private.free_credits_reference(w.id)
      )
    limit greatest(p_limit, 0)
    for update of w skip locked
  ),
  granted as (
    insert into public.credit_ledger (workspace_id, delta, balance_after, reason, grant_reference)
    select d.id, f.monthly_credits, d.credits_remaining + f.monthly_credits, 'grant', d.reference
    from due d cross join free_plan f
    on conflict (grant_reference) where grant_reference is not null do nothing
    returning workspace_id, delta
  ),
  credited as (
    update public.workspaces w set credits_remaining = w.credits_remaining + g.delta
    from granted g
    where w.id = g.workspace_id
    returning w.id
  )
  select count(*)::integer from credited
$$;

revoke all on function private.grant_free_monthly_credits(integer) from public, anon, authenticated;

grant execute on function private.grant_free_monthly_credits(integer) to service_role;
