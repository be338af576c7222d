-- Inbound mail addressed to several workspaces' addresses is filed to each of them. A mail to
-- support@a.example and help@b.example (two workspaces' email channels) was filed to the first
-- channel only: the other workspace never saw it. Now each workspace whose email channel the
-- envelope names gets its own conversation, message and contact, each under its own RLS, and
-- its own copy of the stored mail (private.webhook_events, event id `<channel id>:<SNS message
-- id>`, attributed to it), so its retention, erasure, export and attachment fetches act on its
-- copy alone: erasing the sender in one workspace deletes that workspace's copy and leaves the
-- other's. One channel per workspace (its oldest, as before); the first workspace keeps the
-- original row.

-- The email channels a mail's envelope recipients lead to, one per workspace: first the one
-- private.email_channel_for picks (the mail's own row is attributed to it), then the other
-- workspaces' channels the envelope names, each with the reply token.
create function private.email_channels_for(p_recipients text[])
returns table (channel_id uuid, token_kind text, token uuid)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_first record;
begin
  select * into v_first from private.email_channel_for(p_recipients) as f;
  if v_first.channel_id is null then
    return;
  end if;
  return query select v_first.channel_id, v_first.token_kind, v_first.token;
  return query
    select distinct on (c.workspace_id) c.id, v_first.token_kind, v_first.token
    from public.channels c
    where c.kind = 'email'
      and c.account_id in (select regexp_replace(lower(r), '\+[^@]*@', '@') from unnest(p_recipients) as r)
      and c.workspace_id <> (select ch.workspace_id from public.channels ch where ch.id = v_first.channel_id)
    order by c.workspace_id, c.created_at;
end
$$;

revoke all on function private.email_channels_for(text[]) from public, anon, authenticated;

-- Files one parsed inbound mail into one channel's conversation; answers the outcome (the
-- caller finishes the stored webhook). What private.ingest_inbound_email did for its one channel.
create function private.file_inbound_email(
  p_channel_id uuid, p_token_kind text, p_token uuid, p_mail jsonb, p_received_at timestamptz
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
  v_from text := lower(p_mail ->> 'from');
  v_refs text[];
  v_locals text[];
  v_conversation public.conversations;
  v_conversation_id uuid;
  v_recipient public.campaign_recipients;
  v_window interval;
  v_outcome text := 'applied';
begin
  select * into v_channel from public.channels c where c.id = p_channel_id;
  select coalesce(array_agg(left(r, 900)), '{}') into v_refs
  from jsonb_array_elements_text(private.jsonb_array_or_empty(p_mail -> 'references')) as r;
  v_locals := array(select split_part(r, '@', 1) from unnest(v_refs) as r);
  if v_channel.id is null then
    v_outcome := 'ignored:no_channel';
  elsif p_mail -> 'bounce' = 'true'::jsonb then
    v_outcome := 'ignored:bounce';
  elsif v_from is null or v_from !~ '^[^@\s]+@[^@\s]+$' or char_length(v_from) > 320 then
    v_outcome := 'ignored:no_sender';
  else
    -- 1. a reply to one of our inbox replies, from the address it went to
    select c.* into v_conversation
    from public.messages m
    join public.conversations c on c.id = m.conversation_id
    join public.contact_identities i on i.id = c.identity_id
    where m.channel_id = v_channel.id and m.direction = 'outbound'
      and (m.context ->> 'email_message_id' = any (v_refs) or m.provider_message_id = any (v_locals))
      and i.address = v_from
    order by m.created_at desc
    limit 1;
    -- 2. the reply+c token of our replies' Reply-To
    if v_conversation.id is null and p_token_kind = 'c' then
      select c.* into v_conversation from public.conversations c
      where c.id = p_token and c.channel_id = v_channel.id;
    end if;
    -- 3. a reply to a campaign message, from its recipient (or to its reply+r token)
    if v_conversation.id is null then
      select r.* into v_recipient from public.campaign_recipients r
      where r.workspace_id = v_channel.workspace_id
        and ((r.ses_message_id = any (v_locals) and r.email = v_from)
             or (p_token_kind = 'r' and r.id = p_token))
      order by r.sent_at desc nulls last
      limit 1;
    end if;
    -- 4. the sender's conversation on this channel, within the join window
    if v_conversation.id is null then
      v_window := make_interval(hours => case when v_channel.settings ->> 'join_window_hours' ~ '^[0-9]{1,5}$'
                                              then (v_channel.settings ->> 'join_window_hours')::integer else 72 end);
      update public.conversations c set status = 'resolved', snoozed_until = null, resolved_at = now()
      from public.contact_identities i
      where i.id = c.identity_id and i.workspace_id = v_channel.workspace_id and i.kind = 'email'
        and i.address = v_from and c.channel_id = v_channel.id and c.status <> 'resolved'
        and c.last_message_at < now() - v_window;
      -- Two statements: a query does not see the rows a function it calls inserted.
      select f.conversation_id into v_conversation_id
      from private.inbox_conversations_for(
        v_channel.id,
        jsonb_build_array(jsonb_build_object('address', v_from, 'display_name', p_mail ->> 'from_name',
                                             'subject', p_mail ->> 'subject'))
      ) as f;
      select * into v_conversation from public.conversations c where c.id = v_conversation_id;
    elsif v_conversation.status = 'resolved' then
      -- A resolved thread comes back, unless the sender has another open conversation here.
      if exists (select from public.conversations c
                 where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
                   and c.status <> 'resolved') then
        select * into v_conversation from public.conversations c
        where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
          and c.status <> 'resolved';
      else
        update public.conversations c set status = 'open', resolved_at = null
        where c.id = v_conversation.id
        returning * into v_conversation;
      end if;
    end if;
    if v_recipient.id is not null and v_conversation.campaign_recipient_id is null then
      update public.conversations c set campaign_recipient_id = v_recipient.id where c.id = v_conversation.id;
    end if;
    insert into public.messages (workspace_id, conversation_id, channel_id, direction, text, html,
                                 quoted_text, attachments, provider_message_id, status,
                                 provider_timestamp, context, campaign_recipient_id, auto_reply)
    values (v_channel.workspace_id, v_conversation.id, v_channel.id, 'inbound',
            left(p_mail ->> 'text', 200000), left(p_mail ->> 'html', 2000000),
            left(p_mail ->> 'quoted_text', 2000000),
            private.jsonb_array_or_empty(p_mail -> 'attachments'),
            left(coalesce(p_mail ->> 'message_id', 'ses:' || (p_mail ->> 'ses_message_id')), 998),
            'received', coalesce(p_received_at, now()),
            jsonb_strip_nulls(jsonb_build_object(
              'email_message_id', left(p_mail ->> 'message_id', 998),
              'references', to_jsonb(v_refs),
              'subject', left(p_mail ->> 'subject', 998),
              'from_name', left(p_mail ->> 'from_name', 200))),
            v_recipient.id,
            coalesce(p_mail -> 'auto_reply' = 'true'::jsonb, false))
    on conflict (channel_id, provider_message_id) do nothing;
  end if;
  return v_outcome;
end
$$;

revoke all on function private.file_inbound_email(uuid, text, uuid, jsonb, timestamptz) from public, anon, authenticated;

-- The parsed mail as filed from a workspace's copy: its attachments are fetched from the copy.
create function private.inbound_mail_from_copy(p_mail jsonb, p_copy_id uuid)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_set(p_mail, '{attachments}', coalesce((
    select jsonb_agg(case when a.value ? 'provider_media_id'
                          then a.value || jsonb_build_object('provider_media_id',
                                 p_copy_id::text || ':' || split_part(a.value ->> 'provider_media_id', ':', 2))
                          else a.value end
                     order by a.ordinality)
    from jsonb_array_elements(private.jsonb_array_or_empty(p_mail -> 'attachments')) with ordinality as a
  ), '[]'::jsonb))
$$;

revoke all on function private.inbound_mail_from_copy(jsonb, uuid) from public, anon, authenticated;

-- Files one parsed inbound mail (stored webhook p_event_id, which it finishes) to each
-- workspace its envelope names; answers the outcome: `applied` when any workspace took it.
create or replace function private.ingest_inbound_email(
  p_event_id uuid, p_recipients text[], p_mail jsonb, p_received_at timestamptz
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_found record;
  v_event private.webhook_events;
  v_copy uuid;
  v_one text;
  v_outcome text;
begin
  select * into v_event from private.webhook_events e where e.id = p_event_id;
  for v_found in select * from private.email_channels_for(p_recipients) as f loop
    if v_outcome is null then
      v_outcome := private.file_inbound_email(v_found.channel_id, v_found.token_kind, v_found.token,
                                              p_mail, p_received_at);
      continue;
    end if;
    v_copy := null;
    insert into private.webhook_events (provider, event_id, body, received_at)
    values ('ses_inbound', v_found.channel_id::text || ':' || v_event.event_id, v_event.body,
            coalesce(v_event.received_at, now()))
    on conflict (provider, event_id) do nothing
    returning id into v_copy;
    if v_copy is null then
      continue;  -- this workspace's copy was filed already
    end if;
    v_one := private.file_inbound_email(v_found.channel_id, v_found.token_kind, v_found.token,
                                        private.inbound_mail_from_copy(p_mail, v_copy), p_received_at);
    perform private.finish_webhook_event(v_copy, v_one);
    if v_one = 'applied' then
      v_outcome := 'applied';
    end if;
  end loop;
  v_outcome := coalesce(v_outcome, 'ignored:no_channel');
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.ingest_inbound_email(uuid, text[], jsonb, timestamptz) from public, anon, authenticated;

grant execute on function private.ingest_inbound_email(uuid, text[], jsonb, timestamptz) to service_role;
