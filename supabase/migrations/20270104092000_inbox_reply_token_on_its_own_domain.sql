-- A conversation's reply address counts only on its own channel's domain. Mail to
-- `reply+c<conversation>@<domain>` was filed into that conversation whatever the domain, so a
-- mail to one workspace's receiving domain naming another workspace's conversation landed in the
-- other workspace's inbox. Now, like the campaign recipient's `reply+r…` address already, the
-- token is honoured only on the domain of the conversation's email channel; elsewhere the mail
-- matches no channel and is stored as `ignored:no_channel`.

create or replace function private.email_channel_for(p_recipients text[])
returns table (channel_id uuid, token_kind text, token uuid)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_token text;
  v_domain text;
  v_channel uuid;
begin
  select c.id into v_channel
  from public.channels c
  where c.kind = 'email'
    and c.account_id in (select regexp_replace(lower(r), '\+[^@]*@', '@') from unnest(p_recipients) as r)
  order by c.created_at
  limit 1;
  select substring(lower(r) from '^reply\+([cr][0-9a-f]{32})@'), split_part(lower(r), '@', 2)
  into v_token, v_domain
  from unnest(p_recipients) as r
  where lower(r) ~ '^reply\+[cr][0-9a-f]{32}@'
  limit 1;
  if v_channel is null and v_token like 'c%' then
    select c.channel_id into v_channel from public.conversations c
    join public.channels ch on ch.id = c.channel_id and ch.kind = 'email'
    where c.id = substring(v_token from 2)::uuid and split_part(ch.account_id, '@', 2) = v_domain;
  elsif v_channel is null and v_token like 'r%' then
    select ch.id into v_channel
    from public.campaign_recipients r
    join public.channels ch on ch.workspace_id = r.workspace_id and ch.kind = 'email'
    where r.id = substring(v_token from 2)::uuid and split_part(ch.account_id, '@', 2) = v_domain
    order by ch.created_at
    limit 1;
  end if;
  return query select v_channel, left(v_token, 1), substring(v_token from 2)::uuid;
end
$$;

revoke all on function private.email_channel_for(text[]) from public, anon, authenticated;

grant execute on function private.email_channel_for(text[]) to service_role;
