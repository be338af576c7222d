-- WhatsApp 131049 (Meta's per-user marketing limit): no new marketing template to that contact
-- for 24 hours.
--
-- Meta answers 131049 ("not delivered to maintain healthy ecosystem engagement") when a user
-- has had their share of marketing templates; it counts per user, so another marketing template
-- to them soon after fails the same way. The failed message was kept failed with Meta's code
-- and reason (never retried), but a member could at once send the next marketing template to
-- the same contact, and the one after, each failing at Meta. Now a MARKETING template to a
-- contact on a number whose marketing template failed with 131049 less than 24 hours ago is
-- refused before it is queued: 409 whatsapp_marketing_capped, saying from when it may be sent.
-- Utility and authentication templates, and free text inside the service window, still go.

-- A WhatsApp marketing template to a contact who hit Meta's marketing limit on this number less
-- than 24 hours ago is refused.
create function private.refuse_capped_marketing_templates()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_capped_at timestamptz;
begin
  if not exists (select from public.whatsapp_templates t
                 where t.channel_id = new.channel_id and t.name = new.template ->> 'name'
                   and t.language = new.template ->> 'language' and upper(t.category) = 'MARKETING') then
    return new;
  end if;
  select max(m.status_at) into v_capped_at
  from public.conversations this
  join public.conversations c on c.channel_id = this.channel_id and c.identity_id = this.identity_id
  join public.messages m on m.conversation_id = c.id
  where this.id = new.conversation_id
    and m.direction = 'outbound' and m.status = 'failed' and m.error_code = '131049'
    and m.status_at > now() - interval '24 hours';
  if v_capped_at is not null then
    perform private.fail(409, 'whatsapp_marketing_capped',
      format('WhatsApp refused a marketing message to this contact (131049) at %s; send marketing templates again from %s',
             to_char(v_capped_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
             to_char((v_capped_at + interval '24 hours') at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')));
  end if;
  return new;
end
$$;

revoke all on function private.refuse_capped_marketing_templates() from public, anon, authenticated;

create trigger messages_refuse_capped_marketing_templates
  before insert on public.messages
  for each row when (new.direction = 'outbound' and new.template is not null)
  execute function private.refuse_capped_marketing_templates();
