-- Replies and opt-outs from the inbox.
--
-- A customer's message linked to a campaign recipient (an email reply matched by its thread
-- and sender, or by its reply+ address) marks that recipient replied, once, at the first
-- reply; auto-replies never count, and bounces never become messages. Campaign performance
-- gains `replies` and `reply_rate` (replies / sent).
--
-- An inbound "STOP" or "unsubscribe" (alone in the message, in any channel, a few languages)
-- suppresses that contact for that channel, recorded with the message it came from: email
-- addresses join the workspace's email suppressions (reason `unsubscribe`); WhatsApp, Telegram
-- and X addresses are listed in `channel_suppressions`, and no template (a business-initiated
-- message) is sent to them any more; answering them within the service window stays possible.

-- tables -------------------------------------------------------------------------------------

alter table public.campaign_recipients add column replied_at timestamptz;

comment on column public.campaign_recipients.replied_at is
  'When the recipient first replied (through the inbox; auto-replies never count).';

create index campaign_recipients_replied_idx on public.campaign_recipients (campaign_id)
  where replied_at is not null;

create table public.channel_suppressions (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  kind text not null check (kind in ('email', 'whatsapp', 'telegram', 'x')),
  address text not null check (char_length(address) between 1 and 320),
  contact_id uuid references public.contacts (id) on delete cascade,
  source_message_id uuid references public.messages (id) on delete set null,
  keyword text not null check (char_length(keyword) <= 40),
  created_at timestamptz not null default now(),
  primary key (workspace_id, kind, address)
);

comment on table public.channel_suppressions is
  'Addresses that asked (STOP, unsubscribe) to get no more business-initiated messages on a channel kind, with the message they asked in.';

create index channel_suppressions_contact_id_idx on public.channel_suppressions (contact_id);

create index channel_suppressions_source_message_id_idx on public.channel_suppressions (source_message_id);

-- functions -----------------------------------------------------------------------------------

-- The opt-out word of a message that is only that word ("STOP", "Unsubscribe.", "odhlásit"),
-- or null.
create function private.opt_out_keyword(p_text text)
returns text
language sql
immutable
set search_path = ''
as $$
  select (regexp_match(lower(btrim(p_text)),
    '^(stop|stopp|stop all|unsubscribe|unsub|cancel|end|quit|odhlásit|odhlasit|desinscrire|désinscrire|abmelden|baja)[.! ]*$'))[1]
$$;

revoke all on function private.opt_out_keyword(text) from public, anon, authenticated;

grant execute on function private.opt_out_keyword(text) to service_role;

-- New inbound messages: campaign recipients they answer are marked replied (the first reply
-- counts), and opt-out words suppress the sender on that channel kind.
create function private.inbox_inbound_effects()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaign_recipients r
  set replied_at = d.first_reply
  from (
    select n.campaign_recipient_id, min(n.provider_timestamp) as first_reply
    from new_rows n
    where n.direction = 'inbound' and n.campaign_recipient_id is not null and not n.auto_reply
    group by n.campaign_recipient_id
  ) as d
  where r.id = d.campaign_recipient_id and (r.replied_at is null or r.replied_at > d.first_reply);

  insert into public.channel_suppressions (workspace_id, kind, address, contact_id, source_message_id, keyword)
  select distinct on (n.workspace_id, ch.kind, i.address)
         n.workspace_id, ch.kind, i.address, i.contact_id, n.id, private.opt_out_keyword(n.text)
  from new_rows n
  join public.channels ch on ch.id = n.channel_id
  join public.conversations c on c.id = n.conversation_id
  join public.contact_identities i on i.id = c.identity_id
  where n.direction = 'inbound' and not n.auto_reply and private.opt_out_keyword(n.text) is not null
  order by n.workspace_id, ch.kind, i.address, n.provider_timestamp
  on conflict (workspace_id, kind, address) do nothing;

  insert into public.email_suppressions (workspace_id, email, reason, detail)
  select distinct on (n.workspace_id, i.address) n.workspace_id, i.address, 'unsubscribe',
         format('Replied "%s" in the inbox (message %s)', private.opt_out_keyword(n.text), n.id)
  from new_rows n
  join public.channels ch on ch.id = n.channel_id and ch.kind = 'email'
  join public.conversations c on c.id = n.conversation_id
  join public.contact_identities i on i.id = c.identity_id
  where n.direction = 'inbound' and not n.auto_reply and private.opt_out_keyword(n.text) is not null
  order by n.workspace_id, i.address, n.provider_timestamp
  on conflict (workspace_id, email) do nothing;
  return null;
end
$$;

revoke all on function private.inbox_inbound_effects() from public, anon, authenticated;

create trigger messages_inbound_effects
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.inbox_inbound_effects();

-- A template (business-initiated) send to an address that opted out of the channel is refused.
create function private.refuse_suppressed_templates()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.direction = 'outbound' and new.template is not null and exists (
    select from public.conversations c
    join public.contact_identities i on i.id = c.identity_id
    join public.channel_suppressions s
      on s.workspace_id = i.workspace_id and s.kind = i.kind and s.address = i.address
    where c.id = new.conversation_id
  ) then
    perform private.fail(409, 'contact_opted_out',
      'This contact asked to receive no more messages on this channel');
  end if;
  return new;
end
$$;

revoke all on function private.refuse_suppressed_templates() from public, anon, authenticated;

create trigger messages_refuse_suppressed_templates
  before insert on public.messages
  for each row when (new.direction = 'outbound' and new.template is not null)
  execute function private.refuse_suppressed_templates();

-- Erasing a contact forgets their channel opt-outs (their email and phone live on as keyed
-- hashes, which no new contact can be created from).
create function private.erase_channel_suppressions()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.channel_suppressions s where s.contact_id = new.id;
  return new;
end
$$;

revoke all on function private.erase_channel_suppressions() from public, anon, authenticated;

create trigger contacts_erase_channel_suppressions
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_channel_suppressions();

-- Replies per campaign, for the workspaces the caller may see (all of them for an analyst).
create function analytics.campaign_replies()
returns table (workspace_id uuid, campaign_id uuid, replies bigint)
language sql
stable
security definer
set search_path = ''
as $$
  select r.workspace_id, r.campaign_id, count(*)
  from public.campaign_recipients r
  where r.replied_at is not null
    and (private.analytics_workspace_ids() is null or r.workspace_id = any (private.analytics_workspace_ids()))
  group by r.workspace_id, r.campaign_id
$$;

revoke all on function analytics.campaign_replies() from public, anon;

grant execute on function analytics.campaign_replies() to authenticated, growthbase_analyst;

comment on function analytics.campaign_replies() is
  'Recipients who replied, per campaign, in the workspaces the caller may see (auto-replies never count).';

-- views ---------------------------------------------------------------------------------------

create or replace view analytics.campaign_performance with (security_invoker = true) as
  with totals as (
    select s.workspace_id, s.campaign_id, s.campaign_name, s.campaign_status, s.started_at,
           s.finished_at, s.attribution_days, count(*) as variants,
           sum(s.recipients)::bigint as recipients, sum(s.sent)::bigint as sent,
           sum(s.delivered)::bigint as delivered, sum(s.bounced)::bigint as bounced,
           sum(s.unique_opens)::bigint as unique_opens, sum(s.unique_clicks)::bigint as unique_clicks,
           sum(s.complained)::bigint as complained, sum(s.unsubscribed)::bigint as unsubscribed,
           sum(s.attributed_orders)::bigint as attributed_orders,
           sum(s.attributed_revenue)::numeric(14, 2) as attributed_revenue, s.currency
    from analytics.campaign_variant_stats() s
    group by s.workspace_id, s.campaign_id, s.campaign_name, s.campaign_status, s.started_at,
             s.finished_at, s.attribution_days, s.currency
  )
  select t.workspace_id, t.campaign_id, t.campaign_name, t.campaign_status, t.started_at,
         t.finished_at, t.attribution_days, t.variants,
         t.recipients, t.sent, t.delivered, t.bounced, t.unique_opens, t.unique_clicks,
         t.complained, t.unsubscribed,
         round(t.unique_opens::numeric / nullif(t.delivered, 0), 4) as open_rate,
         round(t.unique_clicks::numeric / nullif(t.delivered, 0), 4) as click_rate,
         round(t.unique_clicks::numeric / nullif(t.unique_opens, 0), 4) as click_to_open_rate,
         round(t.bounced::numeric / nullif(t.sent, 0), 4) as bounce_rate,
         round(t.complained::numeric / nullif(t.delivered, 0), 4) as complaint_rate,
         round(t.unsubscribed::numeric / nullif(t.delivered, 0), 4) as unsubscribe_rate,
         t.attributed_orders, t.attributed_revenue, t.currency,
         coalesce(x.replies, 0) as replies,
         round(coalesce(x.replies, 0)::numeric / nullif(t.sent, 0), 4) as reply_rate
  from totals t
  left join analytics.campaign_replies() x on x.campaign_id = t.campaign_id;

comment on view analytics.campaign_performance is
  'Per campaign: counts and rates of the send ledger (see campaign_variant_stats), attributed orders, and replies with reply_rate = replies / sent.';

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'channel_suppressions', 'kind', 'none', 'not_personal', null),
  ('public', 'channel_suppressions', 'address', 'contact', 'row_deleted', 'the address that opted out; an erasure keeps only the keyed hash of email and phone'),
  ('public', 'channel_suppressions', 'keyword', 'none', 'not_personal', null);

-- grants --------------------------------------------------------------------------------------

revoke all on public.channel_suppressions from anon, authenticated, public;

grant select on public.channel_suppressions to authenticated, service_role;

-- row level security --------------------------------------------------------------------------

alter table public.channel_suppressions enable row level security;

-- Members of any role may read their workspaces' channel opt-outs; inbound messages write them.
create policy channel_suppressions_select_members on public.channel_suppressions
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
