-- Two more kinds of fact as contact events: the products and categories of a new order (so a
-- flow can start on an order containing a product or a category), and a contact's first open and
-- first click of a campaign or flow email (so a flow can start, wait or branch on engagement).
--
-- An order's lines are written after the order itself (a separate statement), so the event the
-- order recorded knows no products. When lines are inserted for an order placed in the last two
-- days, a second `order_placed` event records them: {order_id, lines: true, product_ids,
-- categories (lower case)}. Flows scoped to a product or category enrol on that one only; flows
-- on any (or the first) order, goals and wait_for steps use the order's own event only, so one
-- order never counts twice. Lines linked to the catalog later (private.link_order_items, after a
-- sync writes products) record nothing more.

create function private.record_order_lines()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
  select o.workspace_id, o.contact_id, 'order_placed',
         jsonb_build_object(
           'order_id', o.id, 'lines', true,
           'product_ids', coalesce(jsonb_agg(distinct i.product_id) filter (where i.product_id is not null), '[]'::jsonb),
           'categories', coalesce(jsonb_agg(distinct lower(p.category)) filter (where p.category is not null), '[]'::jsonb)),
         o.placed_at
  from new_items i
  join public.orders o on o.id = i.order_id
  join public.contacts c on c.id = o.contact_id and c.erased_at is null
  left join public.products p on p.id = i.product_id
  where o.placed_at > now() - interval '2 days'
  group by o.id, o.workspace_id, o.contact_id, o.placed_at;
  return null;
end
$$;

revoke all on function private.record_order_lines() from public, anon, authenticated;

create trigger order_items_record_lines
  after insert on public.order_items
  referencing new table as new_items
  for each statement execute function private.record_order_lines();

-- A recipient's first open or click (SES's events set opened_at and clicked_at once).
create function private.record_email_engagement()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
  select new.workspace_id, new.contact_id, tg_argv[0],
         jsonb_build_object('campaign_id', new.campaign_id, 'recipient_id', new.id),
         coalesce(case tg_argv[0] when 'email_opened' then new.opened_at else new.clicked_at end, now())
  from public.contacts c
  where c.id = new.contact_id and c.erased_at is null;
  return null;
end
$$;

revoke all on function private.record_email_engagement() from public, anon, authenticated;

create trigger campaign_recipients_record_opened
  after update of opened_at on public.campaign_recipients
  for each row when (old.opened_at is null and new.opened_at is not null)
  execute function private.record_email_engagement('email_opened');

create trigger campaign_recipients_record_clicked
  after update of clicked_at on public.campaign_recipients
  for each row when (old.clicked_at is null and new.clicked_at is not null)
  execute function private.record_email_engagement('email_clicked');
