-- A Razorpay payer is found by what Razorpay says about the payment, not only by the account's
-- address. Deleting an account deleted the Razorpay payloads naming the user's email or phone,
-- and the user's own export showed none: a member who started a subscription and paid with
-- another address (or only a phone) kept their payer details in stored payloads, unseen and
-- unerased. Now the payer is, besides the account's email and phone, whoever Razorpay's payloads
-- for the subscriptions the user started name as paying: the payment's `email`, `contact` and
-- `customer_id` (and the subscription's `customer_id`). Every Razorpay payload naming one of
-- those goes when the account goes (before the account row, while subscriptions still say who
-- started them), and the user's own export (public.my_personal_data) lists them under
-- `billing`, with the subscriptions they started.

-- The text as JSON, or null when it is not JSON.
create function private.jsonb_or_null(p_text text)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  return p_text::jsonb;
exception when others then
  return null;
end
$$;

revoke all on function private.jsonb_or_null(text) from public, anon, authenticated;

-- The stored Razorpay payloads that name the user as payer (see above).
create function private.billing_payloads_of_user(p_user_id uuid)
returns table (id uuid, received_at timestamptz, body jsonb)
language sql
stable
security definer
set search_path = ''
as $$
  with started as (
    select e.id, private.jsonb_or_null(e.body) as doc
    from public.subscriptions s
    join private.webhook_events e
      on e.workspace_id = s.workspace_id and e.provider = 'razorpay'
     and strpos(e.body, s.razorpay_subscription_id) > 0
    where s.created_by = p_user_id
  ),
  payer as (
    select lower(nullif(btrim(u.email), '')) as email, private.phone_digits(u.phone) as phone,
           null::text as customer
    from auth.users u where u.id = p_user_id
    union
    select lower(nullif(btrim(t.doc #>> '{payload,payment,entity,email}'), '')),
           private.phone_digits(t.doc #>> '{payload,payment,entity,contact}'),
           coalesce(t.doc #>> '{payload,payment,entity,customer_id}',
                    t.doc #>> '{payload,subscription,entity,customer_id}')
    from started t
  ),
  found as (
    select private.identifier_keys(array(select p.email from payer p where p.email is not null
                                         union select p.phone from payer p where p.phone is not null)) as keys,
           array(select distinct p.customer from payer p where p.customer ~ '^cust_[A-Za-z0-9]{14}$') as customers
  )
  select e.id, e.received_at, private.jsonb_or_null(e.body)
  from private.webhook_events e, found f
  where e.provider = 'razorpay'
    and (e.identity_keys && f.keys
         or e.id in (select t.id from started t)
         or exists (select from unnest(f.customers) as c where strpos(e.body, c) > 0))
$$;

revoke all on function private.billing_payloads_of_user(uuid) from public, anon, authenticated;

-- What the billing side keeps about a user: the subscriptions they started and the Razorpay
-- payloads that name them as payer.
create function private.billing_data_of_user(p_user_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'subscriptions_started', coalesce((
      select jsonb_agg(jsonb_build_object('workspace_id', s.workspace_id, 'plan_tier', s.plan_tier,
                                          'status', s.status, 'razorpay_subscription_id', s.razorpay_subscription_id,
                                          'created_at', s.created_at)
                       order by s.created_at)
      from public.subscriptions s where s.created_by = p_user_id), '[]'),
    'razorpay_payloads', coalesce((
      select jsonb_agg(jsonb_build_object('received_at', b.received_at, 'payload', b.body) order by b.received_at)
      from private.billing_payloads_of_user(p_user_id) as b), '[]')
  )
$$;

revoke all on function private.billing_data_of_user(uuid) from public, anon, authenticated;

create or replace function public.my_personal_data()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_email text;
begin
  select lower(u.email) into v_email from auth.users u where u.id = v_user;
  return jsonb_build_object(
    'generated_at', now(),
    'account', (select jsonb_build_object('id', u.id, 'email', u.email, 'phone', u.phone,
                                          'created_at', u.created_at, 'last_sign_in_at', u.last_sign_in_at,
                                          'email_confirmed_at', u.email_confirmed_at)
                from auth.users u where u.id = v_user),
    'profile', (select to_jsonb(p) from public.profiles p where p.id = v_user),
    'memberships', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', m.workspace_id, 'workspace_name', w.name,
                                                                 'role', m.role, 'since', m.created_at,
                                                                 'workspace_deleted_at', w.deleted_at)
                                              order by m.created_at)
                             from public.workspace_members m join public.workspaces w on w.id = m.workspace_id
                             where m.user_id = v_user), '[]'),
    'invitations', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', i.workspace_id, 'role', i.role,
                                                                  'created_at', i.created_at, 'expires_at', i.expires_at,
                                                                  'accepted_at', i.accepted_at, 'revoked_at', i.revoked_at)
                                              order by i.created_at)
                             from public.workspace_invitations i
                             where v_email is not null and i.email = v_email), '[]'),
    'audit_log', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', a.workspace_id, 'action', a.action,
                                                               'target_type', a.target_type, 'target_id', a.target_id,
                                                               'details', a.details, 'request_id', a.request_id,
                                                               'ip', host(a.ip), 'created_at', a.created_at)
                                            order by a.id)
                           from public.audit_log a where a.actor_id = v_user), '[]'),
    'api_keys_created', coalesce((select jsonb_agg(jsonb_build_object('id', k.id, 'workspace_id', k.workspace_id,
                                                                      'name', k.name, 'prefix', k.prefix,
                                                                      'created_at', k.created_at, 'revoked_at', k.revoked_at)
                                                   order by k.created_at)
                                  from public.api_keys k where k.created_by = v_user), '[]'),
    'notifications', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', n.workspace_id, 'kind', n.kind,
                                                                   'title', n.title, 'created_at', n.created_at,
                                                                   'read_at', n.read_at)
                                                order by n.created_at)
                               from public.notifications n where n.user_id = v_user), '[]'),
    'access_requests_made', coalesce((select jsonb_agg(jsonb_build_object('id', e.id, 'workspace_id', e.workspace_id,
                                                                          'status', e.status, 'created_at', e.created_at)
                                                       order by e.created_at)
                                      from public.contact_exports e where e.requested_by = v_user), '[]'),
    'billing', private.billing_data_of_user(v_user)
  );
end
$$;

revoke all on function public.my_personal_data() from public, anon;

grant execute on function public.my_personal_data() to authenticated;

comment on function public.my_personal_data() is
  'The caller''s own access request as a Growthbase user: account, profile, memberships, invitations to their address, their audit entries, API keys they created, notifications, access requests they made, and billing (subscriptions they started, the Razorpay payloads naming them as payer).';

-- An account's deletion takes the Razorpay payloads naming its user as payer, before the row
-- goes (the subscriptions' created_by is cleared with it).
create function private.erase_billing_payloads_before_user_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.webhook_events e
  where e.id in (select b.id from private.billing_payloads_of_user(old.id) as b);
  return old;
end
$$;

revoke all on function private.erase_billing_payloads_before_user_deleted() from public, anon, authenticated;

drop trigger on_auth_user_deleted_billing_payloads on auth.users;

drop function private.erase_billing_payloads_of_user();

create trigger on_auth_user_deleting_billing_payloads
  before delete on auth.users
  for each row execute function private.erase_billing_payloads_before_user_deleted();
