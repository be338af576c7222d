-- Email in the inbox: mail SES receives for a channel's address arrives through SNS; the edge
-- parses the MIME (standard library), sanitises the HTML (nh3) and hands the result to
-- private.ingest_inbound_email, which decides the conversation:
--   1. a reply to one of our inbox replies (In-Reply-To / References naming its Message-ID or
--      SES id) from the address that reply went to;
--   2. else the `reply+c<conversation>@…` address our replies carry as Reply-To (clients that
--      drop the thread headers);
--   3. else a reply to a campaign message (its SES id in the references) from the recipient it
--      went to, or to `reply+r<recipient>@…`: the conversation is linked to that recipient, so
--      replies of different subscribers to one campaign never merge;
--   4. else the sender's conversation on the channel, joined while its last message is within
--      the channel's join window (settings.join_window_hours, 72 by default); an older one is
--      resolved and a new one started.
-- Bounces are not conversations; auto-replies are kept, flagged, and never count as replies.

-- Email channels have no secrets of their own (SES is the deployment's): connecting one
-- stores none. Otherwise as before: another workspace's channel on the same account is 409
-- channel_taken; the same workspace's is updated (reconnected) with the new secrets.
create or replace function private.connect_channel(
  p_workspace_id uuid, p_kind text, p_name text, p_account_id text, p_settings jsonb,
  p_secrets_encrypted text
)
returns public.channels
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
begin
  select * into v_channel from public.channels c
  where c.kind = p_kind and c.account_id = p_account_id for update;
  if v_channel.id is not null and v_channel.workspace_id <> p_workspace_id then
    perform private.fail(409, 'channel_taken', 'This account is connected to another workspace');
  end if;
  if v_channel.id is null then
    insert into public.channels (workspace_id, kind, name, account_id, settings)
    values (p_workspace_id, p_kind, p_name, p_account_id, coalesce(p_settings, '{}'::jsonb))
    returning * into v_channel;
  else
    update public.channels c
    set name = p_name, settings = coalesce(p_settings, '{}'::jsonb), status = 'active', status_reason = null
    where c.id = v_channel.id
    returning * into v_channel;
  end if;
  if p_secrets_encrypted is not null then
    insert into private.channel_secrets (channel_id, secrets_encrypted)
    values (v_channel.id, p_secrets_encrypted)
    on conflict (channel_id) do update set secrets_encrypted = excluded.secrets_encrypted, updated_at = now();
  end if;
  return v_channel;
end
$$;

revoke all on function private.connect_channel(uuid, text, text, text, jsonb, text) from public, anon, authenticated;

grant execute on function private.connect_channel(uuid, text, text, text, jsonb, text) to service_role;

-- Our replies' own Message-IDs, found when a reply names them.
create index messages_email_message_id_idx on public.messages (channel_id, (context ->> 'email_message_id'))
  where direction = 'outbound';

-- The email channel mail to these envelope recipients belongs to: one whose address is a
-- recipient (`+tags` ignored), else the channel a `reply+…` token leads to.
create function private.email_channel_for(p_recipients text[])
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
    where c.id = substring(v_token from 2)::uuid;
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

-- Files one parsed inbound mail (stored webhook p_event_id, which it marks applied) into its
-- conversation; answers the outcome. p_mail: {"message_id", "ses_message_id", "from",
-- "from_name", "subject", "references": [ids without <>], "text", "quoted_text", "html",
-- "attachments", "auto_reply", "bounce"}.
create function private.ingest_inbound_email(
  p_event_id uuid, p_recipients text[], p_mail jsonb, p_received_at timestamptz
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_found record;
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
  select * into v_found from private.email_channel_for(p_recipients) as f;
  select * into v_channel from public.channels c where c.id = v_found.channel_id;
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
    if v_conversation.id is null and v_found.token_kind = 'c' then
      select c.* into v_conversation from public.conversations c
      where c.id = v_found.token and c.channel_id = v_channel.id;
    end if;
    -- 3. a reply to a campaign message, from its recipient (or to its reply+r token)
    if v_conversation.id is null then
      select r.* into v_recipient from public.campaign_recipients r
      where r.workspace_id = v_channel.workspace_id
        and ((r.ses_message_id = any (v_locals) and r.email = v_from)
             or (v_found.token_kind = 'r' and r.id = v_found.token))
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
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.ingest_inbound_email(uuid, text[], jsonb, timestamptz) from public, anon, authenticated;

grant execute on function private.ingest_inbound_email(uuid, text[], jsonb, timestamptz) to service_role;
