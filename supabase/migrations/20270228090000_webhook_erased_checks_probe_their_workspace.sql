-- A webhook event applied is checked against its workspace's erased people, and a workspace
-- nobody was erased from skips the keyed hashes: as the contact check
-- (20270223090000_erased_check_probes_its_workspace.sql), the skip asked "does any erased
-- identity of this workspace exist", whose plan (kept per connection, planned from the
-- suppression list's statistics) is a scan whenever a workspace holds many erasures on
-- average: with three workspaces of 10,000 erasures each, analyzed, twenty events of a
-- workspace without any read 450,015 erased identities. The skip now asks for the workspace's
-- first erased identity in the primary key's order, which only the key's index answers without
-- reading and sorting every row.
--
-- Redefines private.webhook_names_erased_person(uuid, text[]) from
-- 20261227091000_inbox_apply_cheaper.sql and private.attribute_applied_webhook_event() from
-- 20270110090000_inbox_store_schedules_drain.sql (only the skip's query changes in each).

create or replace function private.webhook_names_erased_person(p_workspace_id uuid, p_tokens text[])
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if (select e.identity_key from private.erased_identities e
      where e.workspace_id = p_workspace_id
      order by e.workspace_id, e.identity_key limit 1) is null then
    return false;
  end if;
  return exists (
    select from private.erased_identities e
    where e.workspace_id = p_workspace_id
      and e.identity_key in (
        select private.identity_key(p_workspace_id, 'email', t) from unnest(p_tokens) as t where t like '%@%'
        union all
        select private.identity_key(p_workspace_id, 'phone', p)
        from unnest(p_tokens) as t, lateral (values (t), ('+' || t)) as v (p)
        where t ~ '^[0-9]{7,15}$'
      )
  );
end
$$;

revoke all on function private.webhook_names_erased_person(uuid, text[]) from public, anon, authenticated;

grant execute on function private.webhook_names_erased_person(uuid, text[]) to service_role;

create or replace function private.attribute_applied_webhook_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_message jsonb;
  v_decoded text;
  v_tokens text[];
begin
  if new.workspace_id is null then
    new.workspace_id := private.applied_webhook_workspace(new.provider, new.body);
  end if;
  if new.provider = 'ses_inbound' then
    v_tokens := private.identifier_tokens(new.body);
    begin
      v_message := (new.body::jsonb ->> 'Message')::jsonb;
      if upper(v_message #>> '{receipt,action,encoding}') = 'BASE64' then
        v_decoded := convert_from(decode(left(v_message ->> 'content', 4000000), 'base64'), 'UTF8');
        v_tokens := v_tokens || private.identifier_tokens(v_decoded);
        new.identity_keys := new.identity_keys || private.identifier_keys(v_tokens);
      end if;
    exception when others then
      null;  -- content that is not Base64 UTF-8 text has nothing more to index
    end;
  end if;
  -- A dead-lettered payload keeps its body (what failed is worth reading) for its days.
  if new.status <> 'failed'
     and (new.workspace_id is null
          or ((select e.identity_key from private.erased_identities e
               where e.workspace_id = new.workspace_id
               order by e.workspace_id, e.identity_key limit 1) is not null
              and private.webhook_names_erased_person(new.workspace_id,
                                                      coalesce(v_tokens, private.identifier_tokens(new.body))))) then
    new.body := private.webhook_payload_skeleton(new.provider, new.body);
    new.identity_keys := private.identifier_keys(private.identifier_tokens(new.body));
  end if;
  return new;
end
$$;

revoke all on function private.attribute_applied_webhook_event() from public, anon, authenticated;
