-- The senders' conversations of an inbound delivery (private.inbox_conversations_for) take a
-- read-only path in the usual case: every sender already has an identity and an unresolved
-- conversation on the channel, so a message in an ongoing conversation writes nothing before
-- the message itself (no identity or conversation upserts, no locks, no triggers).

-- Senders' conversations, as before, with a read-only path for the usual case (every sender
-- known, with an unresolved conversation on the channel): no writes, so no locks and no
-- triggers for a message in an ongoing conversation.
create or replace function private.inbox_conversations_for(p_channel_id uuid, p_senders jsonb)
returns table (address text, identity_id uuid, conversation_id uuid, contact_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_channel public.channels;
  v_room integer;
begin
  select * into v_channel from public.channels c where c.id = p_channel_id;
  -- The usual case, read only: every sender is known and has an unresolved conversation here.
  if (select count(distinct x.address) from jsonb_to_recordset(p_senders) as x(address text))
     = (select count(*)
        from public.contact_identities i
        join public.conversations c on c.identity_id = i.id and c.channel_id = v_channel.id and c.status <> 'resolved'
        where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind
          and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))) then
    return query
    select i.address, i.id, c.id, i.contact_id
    from public.contact_identities i
    join public.conversations c on c.identity_id = i.id and c.channel_id = v_channel.id and c.status <> 'resolved'
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind
      and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text));
    return;
  end if;
  insert into public.contact_identities (workspace_id, kind, address, display_name)
  select distinct on (x.address) v_channel.workspace_id, v_channel.kind, x.address, left(x.display_name, 200)
  from jsonb_to_recordset(p_senders) as x(address text, display_name text)
  order by x.address
  on conflict (workspace_id, kind, address) do nothing;

  -- Known people: the workspace's contact with that address or phone.
  update public.contact_identities i set contact_id = c.id
  from public.contacts c
  where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
    and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
    and c.workspace_id = v_channel.workspace_id and c.erased_at is null
    and ((i.kind = 'email' and c.email = i.address) or (i.kind = 'whatsapp' and c.phone = '+' || i.address));

  if exists (
    select from public.contact_identities i
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
      and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
  ) then
    v_room := private.contacts_room(v_channel.workspace_id);
    with fresh as (
      select i.id, i.kind, i.address, i.display_name, gen_random_uuid() as contact_id
      from public.contact_identities i
      where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
        and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
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
  from jsonb_to_recordset(p_senders) as x(address text, subject text)
  join public.contact_identities i
    on i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = x.address
  on conflict (channel_id, identity_id) where status <> 'resolved' do nothing;

  return query
  select i.address, i.id, c.id, i.contact_id
  from public.contact_identities i
  join public.conversations c on c.identity_id = i.id and c.channel_id = v_channel.id and c.status <> 'resolved'
  where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind
    and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text));
end
$$;

revoke all on function private.inbox_conversations_for(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.inbox_conversations_for(uuid, jsonb) to service_role;
