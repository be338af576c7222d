-- What every inbox delivery paid for nothing, found with track_functions = 'all' on
-- scripts/bench_inbox's deliveries (pg_stat_user_functions, per call):
--
-- * private.inbox_inbound_effects ran its campaign-reply update even when no new message
--   answers a campaign, and the statement-level triggers of campaign_recipients (deliverability
--   counts, warm-up counts: 1.4-1.7 ms) ran for the zero rows it updated; the opt-out inserts
--   likewise. Each statement now runs only when a new message calls for it.
-- * private.identifier_tokens and private.webhook_names_erased_person, run for each stored and
--   each applied delivery, were SQL functions that cannot be inlined, so each call planned its
--   query anew (0.6 and 0.9 ms). As plpgsql their plans are kept per session; the erased check
--   first asks whether the workspace has erased anyone at all.

create or replace function private.inbox_inbound_effects()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (select from new_rows n
             where n.direction = 'inbound' and n.campaign_recipient_id is not null and not n.auto_reply) then
    update public.campaign_recipients r
    set replied_at = d.first_reply
    from (
      select n.campaign_recipient_id, min(n.provider_timestamp) as first_reply
      from new_rows n
      where n.direction = 'inbound' and n.campaign_recipient_id is not null and not n.auto_reply
      group by n.campaign_recipient_id
    ) as d
    where r.id = d.campaign_recipient_id and (r.replied_at is null or r.replied_at > d.first_reply);
  end if;

  if not exists (select from new_rows n
                 where n.direction = 'inbound' and not n.auto_reply
                   and private.opt_out_keyword(n.text) is not null) then
    return null;
  end if;

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

create or replace function private.identifier_tokens(p_text text)
returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(distinct t), '{}')
    from (
      select lower(m[1]) as t
      from regexp_matches(p_text, '([A-Za-z0-9._%+''-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') as m
      union all
      select d
      from regexp_matches(p_text, '(\+?[0-9][0-9 ().-]{5,22}[0-9])', 'g') as m,
           regexp_replace(m[1], '[^0-9]', '', 'g') as d
      where char_length(d) between 7 and 20
      union all
      select lower(m[1])
      from regexp_matches(p_text, '([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})', 'g') as m
    ) as tokens
  );
end
$$;

create or replace function private.webhook_names_erased_person(p_workspace_id uuid, p_tokens text[])
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if not exists (select from private.erased_identities e where e.workspace_id = p_workspace_id) then
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
