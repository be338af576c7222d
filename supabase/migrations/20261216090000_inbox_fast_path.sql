-- The senders' conversations of an inbound delivery (private.inbox_conversations_for), driven
-- from the senders: every lookup is one index probe per sender (LATERAL subqueries kept apart
-- with OFFSET 0, so no plan can scan a workspace's identities or a channel's conversations
-- however stale the statistics), and
-- the usual case is read-only: when every sender already has an identity and an unresolved
-- conversation on the channel, nothing is written before the message itself (no upserts, no
-- locks, no triggers). Measured with scripts/bench_inbox: the old joins planned as nested
-- loops over every conversation of the channel, so each delivery got slower as the inbox grew.

create or replace function private.inbox_conversations_for(p_channel_id uuid, p_senders jsonb)
returns table (address text, identity_id uuid, conversation_id uuid, contact_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_channel public.channels;
  v_addresses text[];
  v_found integer;
  v_room integer;
begin
  select * into v_channel from public.channels c where c.id = p_channel_id;
  select coalesce(array_agg(distinct x.address), '{}') into v_addresses
  from jsonb_to_recordset(p_senders) as x(address text)
  where x.address is not null;

  -- The usual case, read only.
  select count(*) into v_found
  from unnest(v_addresses) as s(address)
  cross join lateral (
    select i.id from public.contact_identities i
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = s.address
    offset 0
  ) as i
  cross join lateral (
    select c.id from public.conversations c
    where c.channel_id = v_channel.id and c.identity_id = i.id and c.status <> 'resolved'
    offset 0
  ) as c;

  if v_found < cardinality(v_addresses) then
    insert into public.contact_identities (workspace_id, kind, address, display_name)
    select distinct on (x.address) v_channel.workspace_id, v_channel.kind, x.address, left(x.display_name, 200)
    from jsonb_to_recordset(p_senders) as x(address text, display_name text)
    where x.address is not null
    order by x.address
    on conflict (workspace_id, kind, address) do nothing;

    -- Known people: the workspace's contact with that address or phone.
    update public.contact_identities i set contact_id = k.id
    from unnest(v_addresses) as s(address)
    cross join lateral (
      select c.id from public.contacts c
      where c.workspace_id = v_channel.workspace_id and c.erased_at is null
        and ((v_channel.kind = 'email' and c.email = s.address)
             or (v_channel.kind = 'whatsapp' and c.phone = '+' || s.address))
      order by c.created_at
      limit 1
    ) as k
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind
      and i.address = s.address and i.contact_id is null;

    if exists (
      select from unnest(v_addresses) as s(address)
      join public.contact_identities i
        on i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = s.address
      where i.contact_id is null
    ) then
      v_room := private.contacts_room(v_channel.workspace_id);
      with fresh as (
        select i.id, i.kind, i.address, i.display_name, gen_random_uuid() as contact_id
        from unnest(v_addresses) as s(address)
        join public.contact_identities i
          on i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = s.address
        where i.contact_id is null
        order by i.address
        limit v_room
      ),
      created as (
        insert into public.contacts (id, workspace_id, email, phone, first_name)
        select f.contact_id, v_channel.workspace_id,
               case when f.kind = 'email' and f.address ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then f.address end,
               case when f.kind = 'whatsapp' and f.address ~ '^[1-9][0-9]{6,14}$' then '+' || f.address end,
               f.display_name
        from fresh f
        on conflict do nothing
        returning id
      )
      update public.contact_identities i set contact_id = f.contact_id
      from fresh f join created c on c.id = f.contact_id
      where i.id = f.id;
    end if;

    insert into public.conversations (workspace_id, channel_id, identity_id, contact_id, subject)
    select v_channel.workspace_id, v_channel.id, i.id, i.contact_id, left(x.subject, 998)
    from (select distinct on (y.address) y.address, y.subject
          from jsonb_to_recordset(p_senders) as y(address text, subject text)
          where y.address is not null order by y.address) as x
    cross join lateral (
      select i.id, i.contact_id from public.contact_identities i
      where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = x.address
      offset 0
    ) as i
    on conflict (channel_id, identity_id) where status <> 'resolved' do nothing;
  end if;

  return query
  select s.address, i.id, c.id, i.contact_id
  from unnest(v_addresses) as s(address)
  cross join lateral (
    select i.id, i.contact_id from public.contact_identities i
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = s.address
    offset 0
  ) as i
  cross join lateral (
    select c.id from public.conversations c
    where c.channel_id = v_channel.id and c.identity_id = i.id and c.status <> 'resolved'
    offset 0
  ) as c;
end
$$;

revoke all on function private.inbox_conversations_for(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.inbox_conversations_for(uuid, jsonb) to service_role;
