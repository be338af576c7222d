-- Telegram (Bot API) in the inbox: the applier of a bot's stored updates and the revisions an
-- edited message leaves. An update is stored under `<channel id>:<update_id>` (Telegram numbers
-- updates sequentially and redelivers the same id), so a redelivery is a duplicate; a message
-- is `<chat id>:<message_id>` (message ids are unique per chat), so it is one row however
-- often it comes. An edit never overwrites: the text it replaces is kept as a revision.

-- tables -------------------------------------------------------------------------------------

create table public.message_revisions (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  message_id uuid not null references public.messages (id) on delete cascade,
  text text check (char_length(text) <= 200000),
  replaced_at timestamptz not null,
  created_at timestamptz not null default now()
);

comment on table public.message_revisions is
  'Earlier texts of an edited message (Telegram edits), each with when it was replaced.';

create index message_revisions_message_id_idx on public.message_revisions (message_id, replaced_at);

create index message_revisions_workspace_id_idx on public.message_revisions (workspace_id);

-- helpers --------------------------------------------------------------------------------------

-- The media of a Telegram message, as attachments to fetch with getFile.
create function private.telegram_attachments(p_message jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_strip_nulls(a)), '[]'::jsonb)
  from (
    select jsonb_build_object(
             'kind', k.kind,
             'provider_media_id', left(coalesce(
               case when k.kind = 'photo' then p_message -> 'photo' -> -1 ->> 'file_id' end,
               p_message -> k.kind ->> 'file_id'), 200),
             'mime_type', left(p_message -> k.kind ->> 'mime_type', 200),
             'filename', left(p_message -> k.kind ->> 'file_name', 255),
             'size', case when jsonb_typeof(p_message -> k.kind -> 'file_size') = 'number'
                          then p_message -> k.kind -> 'file_size' end
           ) as a
    from unnest(array['photo', 'document', 'audio', 'voice', 'video', 'video_note', 'sticker', 'animation']) as k(kind)
    where jsonb_typeof(p_message -> k.kind) in ('object', 'array')
  ) as found
  where a ->> 'provider_media_id' is not null
$$;

revoke all on function private.telegram_attachments(jsonb) from public, anon, authenticated;

grant execute on function private.telegram_attachments(jsonb) to service_role;

-- the applier --------------------------------------------------------------------------------

-- Applies one stored Telegram update: a `message` (or `channel_post`) joins its chat's
-- conversation; an `edited_message` (or `edited_channel_post`) replaces the text of the message
-- it edits, keeping the old text as a revision (an edit of a message we never saw is kept as
-- a new message). Bots' own messages and service messages without content are skipped.
create function private.apply_telegram_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_channel public.channels;
  v_update jsonb;
  v_message jsonb;
  v_edited boolean;
  v_chat text;
  v_id text;
  v_text text;
  v_attachments jsonb;
  v_sent_at timestamptz;
  v_conversation uuid;
  v_existing public.messages;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'telegram'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  select * into v_channel from public.channels c
  where c.id::text = split_part(v_stored.event_id, ':', 1) and c.kind = 'telegram';
  v_update := v_stored.body::jsonb;
  v_edited := jsonb_typeof(coalesce(v_update -> 'edited_message', v_update -> 'edited_channel_post')) = 'object';
  v_message := coalesce(v_update -> 'message', v_update -> 'channel_post',
                        v_update -> 'edited_message', v_update -> 'edited_channel_post');
  v_chat := v_message -> 'chat' ->> 'id';
  v_text := left(coalesce(v_message ->> 'text', v_message ->> 'caption'), 200000);
  v_attachments := case when jsonb_typeof(v_message) = 'object' then private.telegram_attachments(v_message) else '[]'::jsonb end;
  if v_channel.id is null then
    v_outcome := 'ignored:channel_gone';
  elsif jsonb_typeof(v_message) <> 'object' or v_chat is null or v_chat !~ '^-?[1-9][0-9]{0,19}$'
        or coalesce(v_message ->> 'message_id', '') !~ '^[0-9]{1,19}$' then
    v_outcome := 'ignored:not_a_message';
  elsif v_message -> 'from' -> 'is_bot' = 'true'::jsonb then
    v_outcome := 'ignored:bot';
  elsif v_text is null and jsonb_array_length(v_attachments) = 0 then
    v_outcome := 'ignored:no_content';
  else
    v_id := v_chat || ':' || (v_message ->> 'message_id');
    v_sent_at := private.unix_time_or_now(coalesce(v_message ->> 'edit_date', v_message ->> 'date'));
    select * into v_existing from public.messages m
    where m.channel_id = v_channel.id and m.provider_message_id = v_id
    for update;
    if v_edited and v_existing.id is not null then
      if v_existing.text is distinct from v_text then
        insert into public.message_revisions (workspace_id, message_id, text, replaced_at)
        values (v_existing.workspace_id, v_existing.id, v_existing.text, v_sent_at);
        update public.messages m
        set text = v_text, attachments = v_attachments, edited_at = v_sent_at
        where m.id = v_existing.id;
      end if;
    elsif v_existing.id is null then
      select c.conversation_id into v_conversation
      from private.inbox_conversations_for(
        v_channel.id,
        jsonb_build_array(jsonb_build_object(
          'address', v_chat,
          'display_name', left(coalesce(
            nullif(concat_ws(' ', v_message -> 'from' ->> 'first_name', v_message -> 'from' ->> 'last_name'), ''),
            v_message -> 'chat' ->> 'title',
            v_message -> 'from' ->> 'username'), 200)))
      ) as c;
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp,
                                   context, edited_at)
      values (v_channel.workspace_id, v_conversation, v_channel.id, 'inbound', v_text, v_attachments,
              v_id, 'received', private.unix_time_or_now(v_message ->> 'date'),
              jsonb_strip_nulls(jsonb_build_object(
                'update_id', v_update -> 'update_id',
                'reply_to', case when v_message -> 'reply_to_message' ->> 'message_id' ~ '^[0-9]{1,19}$'
                                 then v_chat || ':' || (v_message -> 'reply_to_message' ->> 'message_id') end)),
              case when v_edited then v_sent_at end)
      on conflict (channel_id, provider_message_id) do nothing;
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_telegram_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_telegram_event(uuid) to service_role;

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'message_revisions', 'text', 'contact', 'row_deleted', 'an edited message''s earlier text; deleted with the message');

-- grants --------------------------------------------------------------------------------------

revoke all on public.message_revisions from anon, authenticated, public;

grant select on public.message_revisions to authenticated, service_role;

-- row level security --------------------------------------------------------------------------

alter table public.message_revisions enable row level security;

-- Members of any role may read the earlier texts of their workspaces' edited messages.
create policy message_revisions_select_members on public.message_revisions
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
