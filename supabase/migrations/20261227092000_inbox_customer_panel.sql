-- What the marketing backend knows about the customer of a conversation, for the panel beside
-- it (what Chatwoot cannot show): the contact, their latest RFM segment, their order totals and
-- last orders, and the campaign or flow their reply answers.

-- One call per opened conversation. Security invoker: every part is read under the caller's row
-- level security, so a conversation the caller may not see answers null, and so does a part
-- they may not read. The campaign a reply answers is the conversation's, else that of its
-- latest inbound message that answers one.
create function public.conversation_customer(p_conversation_id uuid)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select jsonb_build_object(
    'conversation_id', c.id,
    'contact', (
      select jsonb_build_object('id', k.id, 'first_name', k.first_name, 'last_name', k.last_name,
                                'email', k.email, 'phone', k.phone, 'tags', k.tags)
      from public.contacts k where k.id = c.contact_id and k.erased_at is null
    ),
    'rfm', (
      select jsonb_build_object('segment', s.segment, 'r_score', s.r_score, 'f_score', s.f_score,
                                'm_score', s.m_score, 'snapshot_month', s.snapshot_month)
      from analytics.rfm_snapshots s
      where s.contact_id = c.contact_id and s.workspace_id = c.workspace_id
      order by s.snapshot_month desc
      limit 1
    ),
    'orders', (
      select jsonb_build_object('count', f.orders_count, 'revenue', f.revenue,
                                'average_order_value', f.average_order_value,
                                'first_order_at', f.first_order_at, 'last_order_at', f.last_order_at,
                                'last_product_title', f.last_product_title)
      from public.customer_facts f
      where f.contact_id = c.contact_id and f.workspace_id = c.workspace_id
    ),
    'recent_orders', coalesce((
      select jsonb_agg(jsonb_build_object('id', o.id, 'source', o.source, 'external_id', o.external_id,
                                          'status', o.status, 'placed_at', o.placed_at,
                                          'total', o.total, 'currency', o.currency)
                       order by o.placed_at desc)
      from (select * from public.orders o
            where o.contact_id = c.contact_id and o.workspace_id = c.workspace_id
            order by o.placed_at desc limit 5) as o
    ), '[]'::jsonb),
    'answers', (
      select jsonb_build_object('campaign_id', p.id, 'campaign_name', p.name,
                                'flow_id', fs.flow_id, 'flow_name', fl.name, 'flow_step_id', fs.id)
      from public.campaign_recipients r
      join public.campaigns p on p.id = r.campaign_id
      left join public.flow_steps fs on fs.id = p.flow_step_id
      left join public.flows fl on fl.id = fs.flow_id
      where r.id = coalesce(c.campaign_recipient_id, (
        select m.campaign_recipient_id from public.messages m
        where m.conversation_id = c.id and m.direction = 'inbound' and m.campaign_recipient_id is not null
        order by m.provider_timestamp desc limit 1))
    )
  )
  from public.conversations c
  where c.id = p_conversation_id
$$;

revoke all on function public.conversation_customer(uuid) from public, anon;

grant execute on function public.conversation_customer(uuid) to authenticated, service_role;

comment on function public.conversation_customer(uuid) is
  'The customer beside a conversation: contact, latest RFM segment, order totals and last 5 orders, and the campaign or flow the reply answers. Null for a conversation the caller cannot see.';
