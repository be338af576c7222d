-- WhatsApp (Cloud API) in the inbox: the channel's message templates as Meta approved them
-- (synced by the edge), the check a template send must pass, and the applier of the stored
-- webhooks: inbound messages (text, media, buttons, locations, reactions) become messages of
-- the sender's conversation, status callbacks move outbound messages forward.
--
-- A webhook delivered three times, in any order, ends as one row per message in its furthest
-- state: messages are unique per (channel, wamid), statuses only move forward.

-- tables -------------------------------------------------------------------------------------

create table public.whatsapp_templates (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  channel_id uuid not null references public.channels (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 512),
  language text not null check (char_length(language) between 1 and 20),
  category text check (char_length(category) <= 40),
  status text not null check (char_length(status) between 1 and 40),
  variables integer not null default 0 check (variables between 0 and 100),
  components jsonb not null default '[]'::jsonb check (jsonb_typeof(components) = 'array'),
  synced_at timestamptz not null default now(),
  unique (channel_id, name, language)
);

comment on table public.whatsapp_templates is
  'A WhatsApp channel''s message templates as Meta lists them (name, language, category, status, body variables); only APPROVED ones can be sent.';

create index whatsapp_templates_workspace_id_idx on public.whatsapp_templates (workspace_id);

-- helpers --------------------------------------------------------------------------------------

-- A JSON value when it is an array, else an empty one (provider payloads are read defensively).
create function private.jsonb_array_or_empty(p_value jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select case when jsonb_typeof(p_value) = 'array' then p_value else '[]'::jsonb end
$$;

revoke all on function private.jsonb_array_or_empty(jsonb) from public, anon, authenticated;

grant execute on function private.jsonb_array_or_empty(jsonb) to service_role;

-- A provider's Unix time in seconds (as a string or number), or now when it is not one.
create function private.unix_time_or_now(p_value text)
returns timestamptz
language sql
stable
set search_path = ''
as $$
  select case when p_value ~ '^[0-9]{1,11}$' then to_timestamp(p_value::bigint) else now() end
$$;

revoke all on function private.unix_time_or_now(text) from public, anon, authenticated;

grant execute on function private.unix_time_or_now(text) to service_role;

-- The readable text of an inbound WhatsApp message of any type.
create function private.whatsapp_text(p_message jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(case p_message ->> 'type'
    when 'text' then p_message -> 'text' ->> 'body'
    when 'image' then p_message -> 'image' ->> 'caption'
    when 'video' then p_message -> 'video' ->> 'caption'
    when 'document' then p_message -> 'document' ->> 'caption'
    when 'button' then p_message -> 'button' ->> 'text'
    when 'interactive' then coalesce(p_message -> 'interactive' -> 'button_reply' ->> 'title',
                                     p_message -> 'interactive' -> 'list_reply' ->> 'title')
    when 'location' then nullif(concat_ws(', ', p_message -> 'location' ->> 'name',
                                          p_message -> 'location' ->> 'address'), '')
    when 'reaction' then p_message -> 'reaction' ->> 'emoji'
    else null end, 200000)
$$;

revoke all on function private.whatsapp_text(jsonb) from public, anon, authenticated;

grant execute on function private.whatsapp_text(jsonb) to service_role;

-- The media of an inbound WhatsApp message, as attachments to fetch from the Graph API.
create function private.whatsapp_attachments(p_message jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select case when p_message ->> 'type' in ('image', 'audio', 'video', 'document', 'sticker')
                   and jsonb_typeof(p_message -> (p_message ->> 'type')) = 'object'
    then jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
      'kind', p_message ->> 'type',
      'provider_media_id', left(p_message -> (p_message ->> 'type') ->> 'id', 200),
      'mime_type', left(p_message -> (p_message ->> 'type') ->> 'mime_type', 200),
      'sha256', left(p_message -> (p_message ->> 'type') ->> 'sha256', 200),
      'filename', left(p_message -> (p_message ->> 'type') ->> 'filename', 255)
    )))
    else '[]'::jsonb end
$$;

revoke all on function private.whatsapp_attachments(jsonb) from public, anon, authenticated;

grant execute on function private.whatsapp_attachments(jsonb) to service_role;

-- A template send names an approved template of the channel with as many text parameters as
-- its body has variables: {"name", "language", "parameters": [text…]}.
create function private.require_approved_template(p_channel_id uuid, p_template jsonb)
returns public.whatsapp_templates
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_template public.whatsapp_templates;
  v_parameters jsonb := coalesce(p_template -> 'parameters', '[]'::jsonb);
begin
  if jsonb_typeof(p_template) <> 'object' or jsonb_typeof(p_template -> 'name') <> 'string'
     or jsonb_typeof(p_template -> 'language') <> 'string' or jsonb_typeof(v_parameters) <> 'array'
     or exists (select from jsonb_array_elements(v_parameters) as p
                where jsonb_typeof(p) <> 'string' or char_length(p #>> '{}') not between 1 and 1024) then
    perform private.fail(422, 'invalid_message',
      'A template is {"name", "language", "parameters": [text, ...]} with non-empty texts');
  end if;
  select * into v_template from public.whatsapp_templates t
  where t.channel_id = p_channel_id and t.name = p_template ->> 'name'
    and t.language = p_template ->> 'language' and t.status = 'APPROVED';
  if v_template.id is null then
    perform private.fail(409, 'template_not_approved',
      'No approved template of this channel has that name and language; sync the templates');
  end if;
  if jsonb_array_length(v_parameters) <> v_template.variables then
    perform private.fail(422, 'invalid_message',
      format('The template takes %s parameter(s)', v_template.variables));
  end if;
  return v_template;
end
$$;

revoke all on function private.require_approved_template(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.require_approved_template(uuid, jsonb) to service_role;

-- The edge stores the templates Meta listed for a channel: upserted, and those Meta no longer
-- lists deleted. p_templates: [{"name", "language", "category", "status", "variables",
-- "components"}]. Answers how many the channel has now.
create function private.sync_whatsapp_templates(p_channel_id uuid, p_templates jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
  v_count integer;
begin
  select * into v_channel from public.channels c where c.id = p_channel_id and c.kind = 'whatsapp';
  if v_channel.id is null then
    perform private.fail(404, 'channel_not_found', 'Channel not found');
  end if;
  insert into public.whatsapp_templates as t
    (workspace_id, channel_id, name, language, category, status, variables, components, synced_at)
  select distinct on (x.name, x.language) v_channel.workspace_id, p_channel_id, x.name, x.language,
         x.category, x.status, x.variables, coalesce(x.components, '[]'::jsonb), now()
  from jsonb_to_recordset(p_templates) as x(name text, language text, category text, status text,
                                            variables integer, components jsonb)
  order by x.name, x.language
  on conflict (channel_id, name, language) do update
  set category = excluded.category, status = excluded.status, variables = excluded.variables,
      components = excluded.components, synced_at = excluded.synced_at;
  delete from public.whatsapp_templates t
  where t.channel_id = p_channel_id
    and not exists (select from jsonb_to_recordset(p_templates) as x(name text, language text)
                    where x.name = t.name and x.language = t.language);
  select count(*) into v_count from public.whatsapp_templates t where t.channel_id = p_channel_id;
  return v_count;
end
$$;

revoke all on function private.sync_whatsapp_templates(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.sync_whatsapp_templates(uuid, jsonb) to service_role;

-- the applier --------------------------------------------------------------------------------

-- Applies one stored WhatsApp webhook (stored under `<channel id>:<body sha256>`): the
-- `messages` changes of the channel's number only. Inbound messages join their sender's
-- conversation (created with the identity and contact as needed); statuses move outbound
-- messages forward, carrying Meta's error code and reason when one failed.
create function private.apply_whatsapp_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_channel public.channels;
  v_values jsonb;
  v_senders jsonb;
  v_statuses jsonb;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'whatsapp'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  select * into v_channel from public.channels c
  where c.id::text = split_part(v_stored.event_id, ':', 1) and c.kind = 'whatsapp';
  if v_channel.id is null then
    v_outcome := 'ignored:channel_gone';
  else
    select coalesce(jsonb_agg(c.change -> 'value'), '[]'::jsonb) into v_values
    from jsonb_array_elements(private.jsonb_array_or_empty(v_stored.body::jsonb -> 'entry')) as e(entry),
         jsonb_array_elements(private.jsonb_array_or_empty(e.entry -> 'changes')) as c(change)
    where jsonb_typeof(c.change -> 'value') = 'object' and c.change ->> 'field' = 'messages'
      and c.change -> 'value' -> 'metadata' ->> 'phone_number_id' = v_channel.account_id;

    select coalesce(jsonb_agg(s), '[]'::jsonb) into v_senders
    from (
      select distinct on (m.msg ->> 'from') m.msg ->> 'from' as address,
             (select left(k -> 'profile' ->> 'name', 200)
              from jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'contacts')) as k
              where k ->> 'wa_id' = m.msg ->> 'from' limit 1) as display_name
      from jsonb_array_elements(v_values) as v(val),
           jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      where m.msg ->> 'from' ~ '^[1-9][0-9]{5,14}$'
      order by m.msg ->> 'from'
    ) as s;

    if jsonb_array_length(v_senders) > 0 then
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp, context)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             private.whatsapp_text(m.msg), private.whatsapp_attachments(m.msg), m.msg ->> 'id',
             'received', private.unix_time_or_now(m.msg ->> 'timestamp'),
             jsonb_strip_nulls(jsonb_build_object('type', left(m.msg ->> 'type', 40),
                                                  'reply_to', left(m.msg -> 'context' ->> 'id', 998)))
      from jsonb_array_elements(v_values) as v(val)
      cross join jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      join private.inbox_conversations_for(v_channel.id, v_senders) as c on c.address = m.msg ->> 'from'
      where char_length(m.msg ->> 'id') between 1 and 998
      on conflict (channel_id, provider_message_id) do nothing;
    end if;

    select coalesce(jsonb_agg(jsonb_build_object(
             'id', st.s ->> 'id', 'status', st.s ->> 'status',
             'status_at', private.unix_time_or_now(st.s ->> 'timestamp'),
             'error_code', st.s -> 'errors' -> 0 ->> 'code',
             'error_text', coalesce(st.s -> 'errors' -> 0 -> 'error_data' ->> 'details',
                                    st.s -> 'errors' -> 0 ->> 'message',
                                    st.s -> 'errors' -> 0 ->> 'title'))), '[]'::jsonb)
    into v_statuses
    from jsonb_array_elements(v_values) as v(val),
         jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'statuses')) as st(s)
    where jsonb_typeof(st.s) = 'object';
    if jsonb_array_length(v_statuses) > 0 then
      perform private.apply_message_statuses(v_channel.id, v_statuses);
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_whatsapp_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_whatsapp_event(uuid) to service_role;

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'whatsapp_templates', 'name', 'none', 'not_personal', 'the workspace''s templates'),
  ('public', 'whatsapp_templates', 'language', 'none', 'not_personal', null),
  ('public', 'whatsapp_templates', 'category', 'none', 'not_personal', null),
  ('public', 'whatsapp_templates', 'status', 'none', 'not_personal', null),
  ('public', 'whatsapp_templates', 'components', 'none', 'not_personal', null);

-- grants --------------------------------------------------------------------------------------

revoke all on public.whatsapp_templates from anon, authenticated, public;

grant select on public.whatsapp_templates to authenticated, service_role;

-- row level security --------------------------------------------------------------------------

alter table public.whatsapp_templates enable row level security;

-- Members of any role may read their workspaces' WhatsApp templates; the edge syncs them from Meta.
create policy whatsapp_templates_select_members on public.whatsapp_templates
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
