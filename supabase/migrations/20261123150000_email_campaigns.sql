-- Email campaigns: lists, segments (saved JSON rules the database compiles to SQL),
-- suppressions, templates, sender identities, campaigns with A/B variants, and the
-- per-recipient send ledger the workers drain.
--
-- Who is mailed: a campaign's audience is the union of its lists, narrowed by its segment when
-- it has both (a segment alone runs over all contacts). From that audience a campaign only ever
-- mails contacts with an email, consent `granted` (unknown consent is not consent), not
-- unsubscribed, not erased and not on the workspace's suppression list. The audience is frozen
-- into campaign_recipients when the campaign starts (unique per campaign and contact, so
-- nothing is sent twice), and checked again as each recipient is claimed, so an unsubscribe
-- or a bounce mid-campaign stops the mail that has not gone out yet.
--
-- Sending: each recipient row is its own small state machine (queued → sending → sent, or
-- skipped / failed / cancelled). Workers claim rows with skip-locked leases at no more than
-- the configured rate (a token bucket shared by all instances), send one raw MIME message per
-- row through SESv2 and record the outcome on that row at once. A worker that dies leaves its
-- rows leased; when the lease runs out they are claimed again, so a crash loses nothing and
-- only a message SES accepted in the instant before the crash can go twice.

-- lists -----------------------------------------------------------------------------------------

create table public.email_lists (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, name),
  unique (id, workspace_id)
);

create table public.email_list_members (
  list_id uuid not null,
  workspace_id uuid not null,
  contact_id uuid not null,
  added_at timestamptz not null default now(),
  primary key (list_id, contact_id),
  foreign key (list_id, workspace_id) references public.email_lists (id, workspace_id) on delete cascade,
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id) on delete cascade
);

create index email_list_members_contact_id_idx on public.email_list_members (contact_id);

create index email_list_members_workspace_id_idx on public.email_list_members (workspace_id);

create trigger email_lists_touch_updated_at
  before update on public.email_lists
  for each row execute function private.touch_updated_at();

-- suppressions ----------------------------------------------------------------------------------

-- Addresses a workspace must never mail: permanent bounces and complaints (added from SES
-- events), unsubscribes (so they outlive the contact row: a deleted contact that comes back
-- through an import stays unsubscribed) and addresses an admin suppressed by hand.
create table public.email_suppressions (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  email text not null check (email = lower(btrim(email)) and char_length(email) <= 320),
  reason text not null check (reason in ('bounce', 'complaint', 'unsubscribe', 'manual')),
  detail text check (char_length(detail) <= 1000),
  created_at timestamptz not null default now(),
  primary key (workspace_id, email)
);

-- templates -------------------------------------------------------------------------------------

-- Merge fields use Jinja syntax ({{ first_name | default("there") }}, {{ attributes.city }},
-- {{ unsubscribe_url }}); the edge renders them sandboxed, HTML-escaped in the HTML part.
create table public.email_templates (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  subject text not null check (char_length(subject) between 1 and 998),
  html text not null check (char_length(html) <= 500000),
  text text check (char_length(text) <= 500000),
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index email_templates_workspace_id_idx on public.email_templates (workspace_id);

create trigger email_templates_touch_updated_at
  before update on public.email_templates
  for each row execute function private.touch_updated_at();

-- sender identities -----------------------------------------------------------------------------

-- A domain or address registered with SES. One SES account serves every workspace, so an
-- identity belongs to exactly one workspace; the edge writes SES's answers here.
create table public.sender_identities (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  identity text not null unique check (
    identity = lower(btrim(identity))
    and identity ~ '^([^@\s]+@)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$'
    and char_length(identity) <= 320
  ),
  kind text not null generated always as (
    case when identity like '%@%' then 'email_address' else 'domain' end
  ) stored,
  verified boolean not null default false,
  dkim_status text,
  dkim_records jsonb not null default '[]'::jsonb check (jsonb_typeof(dkim_records) = 'array'),
  last_checked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id)
);

create index sender_identities_workspace_id_idx on public.sender_identities (workspace_id);

create trigger sender_identities_touch_updated_at
  before update on public.sender_identities
  for each row execute function private.touch_updated_at();

-- A campaign that is scheduled, sending or paused keeps its sender: removing it would strand the
-- campaign (only drafts can be edited). Deleting the whole workspace (a cascade, one trigger
-- level down) removes both and is not refused.
create function private.keep_sender_of_live_campaigns()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if pg_catalog.pg_trigger_depth() = 1 and exists (
    select 1 from public.campaigns c
    where c.sender_identity_id = old.id and c.status in ('scheduled', 'sending', 'paused')
  ) then
    perform private.fail(409, 'identity_in_use', 'A scheduled, sending or paused campaign uses this sender');
  end if;
  return old;
end
$$;

create trigger sender_identities_keep_live_senders
  before delete on public.sender_identities
  for each row execute function private.keep_sender_of_live_campaigns();

-- segments --------------------------------------------------------------------------------------

create table public.segments (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  rule jsonb not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, name),
  unique (id, workspace_id)
);

create trigger segments_touch_updated_at
  before update on public.segments
  for each row execute function private.touch_updated_at();

-- campaigns -------------------------------------------------------------------------------------

create table public.campaigns (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  status text not null default 'draft' check (status in (
    'draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled'
  )),
  sender_identity_id uuid,
  from_name text check (char_length(from_name) <= 200 and from_name !~ '[\r\n]'),
  from_email text check (from_email = lower(btrim(from_email)) and from_email ~ '^[^@\s]+@[^@\s]+$'),
  reply_to text check (reply_to ~ '^[^@\s]+@[^@\s]+$'),
  list_ids uuid[] not null default '{}',
  segment_id uuid,
  scheduled_at timestamptz,
  -- Orders up to this many days after a recipient's click are attributed to the campaign.
  attribution_days integer not null default 5 check (attribution_days between 1 and 90),
  recipients integer,
  error text,
  started_at timestamptz,
  finished_at timestamptz,
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id),
  foreign key (sender_identity_id, workspace_id)
    references public.sender_identities (id, workspace_id) on delete set null (sender_identity_id),
  foreign key (segment_id, workspace_id)
    references public.segments (id, workspace_id) on delete set null (segment_id)
);

create index campaigns_workspace_id_idx on public.campaigns (workspace_id, created_at desc);

create index campaigns_due_idx on public.campaigns (scheduled_at) where status = 'scheduled';

create index campaigns_sender_identity_id_idx on public.campaigns (sender_identity_id);

create index campaigns_segment_id_idx on public.campaigns (segment_id);

create trigger campaigns_touch_updated_at
  before update on public.campaigns
  for each row execute function private.touch_updated_at();

-- The allowed moves; anything else is refused whoever tries it.
create function private.guard_campaign_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = old.status then
    return new;
  end if;
  if (old.status, new.status) not in (
    ('draft', 'scheduled'), ('draft', 'sending'), ('draft', 'cancelled'),
    ('scheduled', 'draft'), ('scheduled', 'sending'), ('scheduled', 'cancelled'),
    ('sending', 'paused'), ('sending', 'sent'), ('sending', 'cancelled'),
    ('paused', 'sending'), ('paused', 'cancelled')
  ) then
    perform private.fail(409, 'invalid_transition',
      format('A %s campaign cannot become %s', old.status, new.status));
  end if;
  return new;
end
$$;

create trigger campaigns_guard_status
  before update of status on public.campaigns
  for each row execute function private.guard_campaign_status();

-- Live campaign status on the workspace's private channel (workspace:<id>:campaigns), authorised
-- by the realtime.messages policy: the dashboard sees a campaign start, pause and finish.
create function private.broadcast_campaign_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    perform realtime.send(
      jsonb_build_object(
        'id', new.id, 'status', new.status, 'previous_status', old.status,
        'recipients', new.recipients, 'error', new.error, 'updated_at', new.updated_at
      ),
      'campaign_status',
      format('workspace:%s:campaigns', new.workspace_id),
      true
    );
  end if;
  return null;
end
$$;

create trigger campaigns_broadcast_status
  after update of status on public.campaigns
  for each row execute function private.broadcast_campaign_status();

create table public.campaign_variants (
  id uuid primary key default gen_random_uuid(),
  campaign_id uuid not null,
  workspace_id uuid not null,
  name text not null default 'A' check (char_length(name) between 1 and 50),
  subject text not null check (char_length(subject) between 1 and 998),
  html text not null check (char_length(html) <= 500000),
  text text check (char_length(text) <= 500000),
  -- Recipients are split across variants in proportion to their weights.
  weight integer not null default 1 check (weight between 1 and 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (campaign_id, name),
  foreign key (campaign_id, workspace_id)
    references public.campaigns (id, workspace_id) on delete cascade
);

create index campaign_variants_workspace_id_idx on public.campaign_variants (workspace_id);

create trigger campaign_variants_touch_updated_at
  before update on public.campaign_variants
  for each row execute function private.touch_updated_at();

-- Copies a template into a draft campaign as a variant: later edits to the template do not
-- change a campaign that was already composed.
create function public.add_campaign_variant(
  p_campaign_id uuid, p_template_id uuid, p_name text default 'A', p_weight integer default 1
)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text, weight)
  select c.id, c.workspace_id, p_name, t.subject, t.html, t.text, p_weight
  from public.campaigns c
  join public.email_templates t on t.id = p_template_id and t.workspace_id = c.workspace_id
  where c.id = p_campaign_id
  returning id into v_id;
  if v_id is null then
    perform private.fail(404, 'not_found', 'Campaign or template not found');
  end if;
  return v_id;
end
$$;

-- the send ledger -------------------------------------------------------------------------------

create table public.campaign_recipients (
  id uuid primary key default gen_random_uuid(),
  campaign_id uuid not null,
  workspace_id uuid not null,
  variant_id uuid not null references public.campaign_variants (id) on delete cascade,
  contact_id uuid not null references public.contacts (id) on delete cascade,
  email text not null,
  status text not null default 'queued' check (status in (
    'queued', 'sending', 'sent', 'failed', 'skipped', 'cancelled'
  )),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  locked_until timestamptz,
  error text,
  ses_message_id text,
  sent_at timestamptz,
  delivered_at timestamptz,
  opened_at timestamptz,
  last_opened_at timestamptz,
  opens integer not null default 0,
  clicked_at timestamptz,
  last_clicked_at timestamptz,
  clicks integer not null default 0,
  bounced_at timestamptz,
  bounce_type text,
  complained_at timestamptz,
  rejected_at timestamptz,
  delayed_at timestamptz,
  rendering_failed_at timestamptz,
  unsubscribed_at timestamptz,
  unique (campaign_id, contact_id),
  foreign key (campaign_id, workspace_id) references public.campaigns (id, workspace_id) on delete cascade
);

create index campaign_recipients_due_idx on public.campaign_recipients (next_attempt_at)
  where status in ('queued', 'sending');

create index campaign_recipients_campaign_status_idx on public.campaign_recipients (campaign_id, status);

create index campaign_recipients_contact_opened_idx on public.campaign_recipients (contact_id, last_opened_at)
  where last_opened_at is not null;

create index campaign_recipients_contact_clicked_idx on public.campaign_recipients (contact_id, last_clicked_at)
  where last_clicked_at is not null;

create index campaign_recipients_variant_id_idx on public.campaign_recipients (variant_id);

create index campaign_recipients_workspace_id_idx on public.campaign_recipients (workspace_id);

create unique index campaign_recipients_ses_message_id_idx on public.campaign_recipients (ses_message_id)
  where ses_message_id is not null;

-- segments: rule → SQL ----------------------------------------------------------------------------

-- Compiles a segment rule into a boolean SQL condition over `public.contacts c`, with the
-- workspace id as $1. Every value from the rule is quoted (%L) or cast to a number, date or
-- uuid, and every name comes from a fixed list, so a rule can never inject SQL. The grammar:
--   {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}
--   {"field": "email|first_name|last_name|phone|consent_state|created_at", "op": OP, "value": V}
--   {"attribute": "<key>", "op": OP, "value": V}
--     OP: eq, neq, in (value is an array), contains, starts_with, exists, missing,
--         gt, gte, lt, lte (numbers compare as numbers, strings as text)
--   {"in_list": "<list uuid>"}
--   {"rfm_segment": "At Risk"}                      (RFM segment as of today)
--   {"orders": {"min_count": 1, "max_count": 3, "min_revenue": 100, "within_days": 90}}
--   {"opened_within_days": 60}   {"clicked_within_days": 30}
create function private.segment_condition(p_rule jsonb, p_depth integer default 0)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_key text;
  v_parts text[];
  v_target text;
  v_op text := p_rule ->> 'op';
  v_value jsonb := p_rule -> 'value';
  v_orders jsonb;
  v_days integer;
begin
  if jsonb_typeof(p_rule) is distinct from 'object' then
    perform private.fail(422, 'invalid_segment_rule', 'Each segment rule must be a JSON object');
  end if;
  if p_depth > 20 then
    perform private.fail(422, 'invalid_segment_rule', 'Segment rules may nest at most 20 levels deep');
  end if;
  if p_rule ? 'all' or p_rule ? 'any' then
    v_key := case when p_rule ? 'all' then 'all' else 'any' end;
    if jsonb_typeof(p_rule -> v_key) is distinct from 'array' or jsonb_array_length(p_rule -> v_key) = 0 then
      perform private.fail(422, 'invalid_segment_rule', format('"%s" needs a non-empty array of rules', v_key));
    end if;
    select array_agg(private.segment_condition(r.value, p_depth + 1) order by r.ordinality) into v_parts
    from jsonb_array_elements(p_rule -> v_key) with ordinality as r;
    return '(' || array_to_string(v_parts, case v_key when 'all' then ' and ' else ' or ' end) || ')';
  elsif p_rule ? 'not' then
    return '(not coalesce(' || private.segment_condition(p_rule -> 'not', p_depth + 1) || ', false))';
  elsif p_rule ? 'in_list' then
    return format(
      'exists (select 1 from public.email_list_members m where m.contact_id = c.id and m.list_id = %L::uuid)',
      private.segment_uuid(p_rule -> 'in_list'));
  elsif p_rule ? 'rfm_segment' then
    if not exists (select 1 from analytics.rfm_segment_map s where s.segment = p_rule ->> 'rfm_segment') then
      perform private.fail(422, 'invalid_segment_rule', format('Unknown RFM segment %s', p_rule -> 'rfm_segment'));
    end if;
    return format(
      'c.id in (select r.contact_id from private.rfm_scores(current_date, array[$1]) r'
      ' join analytics.rfm_segment_map s on s.r_score = r.r_score and s.f_score = r.f_score'
      ' where s.segment = %L)', p_rule ->> 'rfm_segment');
  elsif p_rule ? 'opened_within_days' or p_rule ? 'clicked_within_days' then
    v_key := case when p_rule ? 'opened_within_days' then 'opened' else 'clicked' end;
    v_days := private.segment_days(p_rule -> (v_key || '_within_days'));
    return format(
      'exists (select 1 from public.campaign_recipients e where e.contact_id = c.id'
      ' and e.last_%s_at >= now() - make_interval(days => %s))', v_key, v_days);
  elsif p_rule ? 'orders' then
    v_orders := p_rule -> 'orders';
    if jsonb_typeof(v_orders) is distinct from 'object'
       or exists (select 1 from jsonb_object_keys(v_orders) k
                  where k not in ('min_count', 'max_count', 'min_revenue', 'within_days')) then
      perform private.fail(422, 'invalid_segment_rule',
        '"orders" takes min_count, max_count, min_revenue and within_days');
    end if;
    v_target := format(
      '(select count(*) as n, coalesce(sum(o.base_total), 0) as revenue from public.orders o'
      ' where o.workspace_id = $1 and o.contact_id = c.id and o.status in (''paid'', ''fulfilled'')%s)',
      case when v_orders ? 'within_days'
        then format(' and o.placed_at >= now() - make_interval(days => %s)', private.segment_days(v_orders -> 'within_days'))
        else '' end);
    return format('exists (select 1 from %s as h where h.n >= %s%s%s)',
      v_target,
      coalesce(private.segment_number(v_orders -> 'min_count'), 1),
      case when v_orders ? 'max_count' then format(' and h.n <= %s', private.segment_number(v_orders -> 'max_count')) else '' end,
      case when v_orders ? 'min_revenue' then format(' and h.revenue >= %s', private.segment_number(v_orders -> 'min_revenue')) else '' end);
  elsif p_rule ? 'field' or p_rule ? 'attribute' then
    if p_rule ? 'field' then
      v_target := case p_rule ->> 'field'
        when 'email' then 'c.email'
        when 'first_name' then 'c.first_name'
        when 'last_name' then 'c.last_name'
        when 'phone' then 'c.phone'
        when 'consent_state' then 'c.consent_state'
        when 'created_at' then 'c.created_at::text'
      end;
      if v_target is null then
        perform private.fail(422, 'invalid_segment_rule', format('Unknown contact field %s', p_rule -> 'field'));
      end if;
    else
      if jsonb_typeof(p_rule -> 'attribute') is distinct from 'string' then
        perform private.fail(422, 'invalid_segment_rule', '"attribute" must name an attribute');
      end if;
      v_target := format('(c.attributes ->> %L)', p_rule ->> 'attribute');
    end if;
    if v_op in ('exists', 'missing') then
      return format('(%s is %s null)', v_target, case v_op when 'exists' then 'not' else '' end);
    end if;
    if v_value is null or jsonb_typeof(v_value) = 'null' then
      perform private.fail(422, 'invalid_segment_rule', format('Operator %s needs a value', coalesce(v_op, '(none)')));
    end if;
    if v_op = 'in' then
      if jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0 then
        perform private.fail(422, 'invalid_segment_rule', '"in" needs a non-empty array');
      end if;
      return format('(%s = any (%L::text[]))', v_target,
        array(select jsonb_array_elements_text(v_value)));
    end if;
    if v_op in ('gt', 'gte', 'lt', 'lte') and jsonb_typeof(v_value) = 'number' then
      return format('(case when %1$s ~ ''^-?[0-9]{1,30}(\.[0-9]{1,30})?$'' then %1$s::numeric %2$s %3$s end)',
        v_target, case v_op when 'gt' then '>' when 'gte' then '>=' when 'lt' then '<' else '<=' end,
        private.segment_number(v_value));
    end if;
    return case v_op
      when 'eq' then format('(%s = %L)', v_target, v_value #>> '{}')
      when 'neq' then format('(%s is distinct from %L)', v_target, v_value #>> '{}')
      when 'contains' then format('(strpos(lower(%s), lower(%L)) > 0)', v_target, v_value #>> '{}')
      when 'starts_with' then format('(starts_with(lower(%s), lower(%L)))', v_target, v_value #>> '{}')
      when 'gt' then format('(%s > %L)', v_target, v_value #>> '{}')
      when 'gte' then format('(%s >= %L)', v_target, v_value #>> '{}')
      when 'lt' then format('(%s < %L)', v_target, v_value #>> '{}')
      when 'lte' then format('(%s <= %L)', v_target, v_value #>> '{}')
      else private.fail_text(422, 'invalid_segment_rule', format('Unknown operator %s', coalesce(v_op, '(none)')))
    end;
  end if;
  perform private.fail(422, 'invalid_segment_rule',
    format('Unknown segment rule with keys %s', (select string_agg(k, ', ') from jsonb_object_keys(p_rule) k)));
  return null;
end
$$;

-- private.fail for expressions that need a value of some type.
create function private.fail_text(p_status integer, p_code text, p_message text)
returns text
language plpgsql
set search_path = ''
as $$
begin
  perform private.fail(p_status, p_code, p_message);
  return null;
end
$$;

create function private.segment_number(p_value jsonb)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null then
    return null;
  end if;
  if jsonb_typeof(p_value) <> 'number' then
    perform private.fail(422, 'invalid_segment_rule', format('%s is not a number', p_value));
  end if;
  return (p_value #>> '{}')::numeric;
end
$$;

create function private.segment_days(p_value jsonb)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_days numeric := private.segment_number(p_value);
begin
  if v_days is null or v_days <> trunc(v_days) or v_days not between 1 and 3650 then
    perform private.fail(422, 'invalid_segment_rule', 'Days must be a whole number from 1 to 3650');
  end if;
  return v_days::integer;
end
$$;

create function private.segment_uuid(p_value jsonb)
returns uuid
language plpgsql
immutable
set search_path = ''
as $$
begin
  if jsonb_typeof(p_value) is distinct from 'string' then
    perform private.fail(422, 'invalid_segment_rule', format('%s is not a list id', coalesce(p_value::text, 'null')));
  end if;
  return (p_value #>> '{}')::uuid;
exception when invalid_text_representation then
  perform private.fail(422, 'invalid_segment_rule', format('%s is not a list id', p_value));
  return null;
end
$$;

create function private.validate_segment_rule()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform private.segment_condition(new.rule);
  return new;
end
$$;

create trigger segments_validate_rule
  before insert or update of rule on public.segments
  for each row execute function private.validate_segment_rule();

-- The contacts of a workspace a rule selects (erased contacts never match).
create function private.segment_contact_ids(p_workspace_id uuid, p_rule jsonb)
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return query execute format(
    'select c.id from public.contacts c where c.workspace_id = $1 and c.erased_at is null and %s',
    private.segment_condition(p_rule)
  ) using p_workspace_id;
end
$$;

-- How many contacts a rule selects and a sample of them, for members of the workspace.
create function public.preview_segment(p_workspace_id uuid, p_rule jsonb, p_sample integer default 10)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
begin
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  v_ids := array(select private.segment_contact_ids(p_workspace_id, p_rule));
  return jsonb_build_object(
    'count', cardinality(v_ids),
    'sample', coalesce((
      select jsonb_agg(jsonb_build_object('id', c.id, 'email', c.email, 'first_name', c.first_name,
                                          'last_name', c.last_name) order by c.email)
      from (select * from public.contacts c where c.id = any (v_ids)
            order by c.email limit least(greatest(p_sample, 0), 100)) c
    ), '[]'::jsonb)
  );
end
$$;

-- campaign lifecycle ------------------------------------------------------------------------------

create function private.campaign_for_update(p_campaign_id uuid, p_min_role text)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id;
  if v_campaign.id is null or v_campaign.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'campaign_not_found', 'Campaign not found');
  end if;
  perform private.lock_workspace_as(v_campaign.workspace_id, p_min_role);
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  return v_campaign;
end
$$;

-- Everything a campaign needs before it may go out, as one clear error each.
create function private.assert_campaign_ready(p_campaign public.campaigns)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_identity public.sender_identities;
begin
  if not exists (select 1 from public.campaign_variants v where v.campaign_id = p_campaign.id) then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no content variant');
  end if;
  if cardinality(p_campaign.list_ids) = 0 and p_campaign.segment_id is null then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no audience (lists or a segment)');
  end if;
  if exists (select 1 from unnest(p_campaign.list_ids) l(id)
             where not exists (select 1 from public.email_lists e
                               where e.id = l.id and e.workspace_id = p_campaign.workspace_id)) then
    perform private.fail(422, 'campaign_incomplete', 'The campaign names a list that does not exist');
  end if;
  select * into v_identity from public.sender_identities s where s.id = p_campaign.sender_identity_id;
  if v_identity.id is null or p_campaign.from_email is null then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no sender identity and from address');
  end if;
  if not v_identity.verified then
    perform private.fail(409, 'sender_not_verified', 'The sender identity is not verified with SES yet');
  end if;
  if p_campaign.from_email <> v_identity.identity
     and (v_identity.kind <> 'domain' or split_part(p_campaign.from_email, '@', 2) <> v_identity.identity) then
    perform private.fail(422, 'sender_mismatch', 'The from address is not covered by the sender identity');
  end if;
end
$$;

-- Freezes the audience into the ledger, splits it across the variants by weight, reserves the
-- month's emails and starts sending. No user check here: callers do that.
create function private.launch_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_rule jsonb;
  v_count integer;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.status not in ('draft', 'scheduled') then
    perform private.fail(409, 'invalid_transition', format('A %s campaign cannot be started', v_campaign.status));
  end if;
  perform private.assert_campaign_ready(v_campaign);
  select s.rule into v_rule from public.segments s where s.id = v_campaign.segment_id;

  insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email)
  with audience as (
    select c.id, c.email
    from public.contacts c
    where c.workspace_id = v_campaign.workspace_id
      and (cardinality(v_campaign.list_ids) = 0 or exists (
        select 1 from public.email_list_members m
        where m.contact_id = c.id and m.list_id = any (v_campaign.list_ids)))
      and (v_rule is null or c.id in (select private.segment_contact_ids(v_campaign.workspace_id, v_rule)))
      and c.email is not null
      and c.consent_state = 'granted'
      and c.unsubscribed_at is null
      and c.erased_at is null
      and not exists (select 1 from public.email_suppressions s
                      where s.workspace_id = c.workspace_id and s.email = c.email)
  ),
  numbered as (
    select a.*, row_number() over (order by md5(a.id::text || p_campaign_id::text)) - 1 as n
    from audience a
  ),
  variants as (
    select v.id,
           sum(v.weight) over (order by v.name) - v.weight as low,
           sum(v.weight) over (order by v.name) as high,
           sum(v.weight) over () as total
    from public.campaign_variants v where v.campaign_id = p_campaign_id
  )
  select p_campaign_id, v_campaign.workspace_id, v.id, a.id, a.email
  from numbered a
  join variants v on a.n % v.total >= v.low and a.n % v.total < v.high;
  get diagnostics v_count = row_count;

  if v_count = 0 then
    perform private.fail(409, 'empty_audience', 'No contact in the audience may be mailed');
  end if;
  perform private.reserve_monthly_emails(v_campaign.workspace_id, v_count);
  update public.campaigns
  set status = 'sending', started_at = now(), recipients = v_count, error = null
  where id = p_campaign_id;
  -- Fresh statistics for the rows just added: without them the first claims plan a walk over
  -- the whole new audience (about 40 ms per claim at 10,000) instead of the due index.
  analyze public.campaign_recipients;
  return v_count;
end
$$;

-- Members start a draft or scheduled campaign now; answers the number of recipients.
create function public.start_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.campaign_for_update(p_campaign_id, 'member');
  return private.launch_campaign(p_campaign_id);
end
$$;

-- Members schedule a ready draft for a time in the future (the cron starts it).
create function public.schedule_campaign(p_campaign_id uuid, p_at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
begin
  if p_at is null or p_at <= now() then
    perform private.fail(422, 'invalid_input', 'The scheduled time must be in the future');
  end if;
  perform private.assert_campaign_ready(v_campaign);
  update public.campaigns set status = 'scheduled', scheduled_at = p_at where id = p_campaign_id;
end
$$;

-- Members move a scheduled campaign back to draft.
create function public.unschedule_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.campaign_for_update(p_campaign_id, 'member');
  update public.campaigns set status = 'draft', scheduled_at = null where id = p_campaign_id;
end
$$;

-- Members pause a sending campaign (workers stop claiming it) or resume a paused one.
create function public.pause_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.campaign_for_update(p_campaign_id, 'member');
  update public.campaigns set status = 'paused' where id = p_campaign_id;
end
$$;

create function public.resume_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.campaign_for_update(p_campaign_id, 'member');
  update public.campaigns set status = 'sending' where id = p_campaign_id;
end
$$;

-- Members cancel a campaign: what has not gone out never will, and the month's unused
-- reservation is given back.
create function public.cancel_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_unsent integer;
begin
  update public.campaigns set status = 'cancelled', finished_at = now() where id = p_campaign_id;
  update public.campaign_recipients r
  set status = 'cancelled', locked_until = null
  where r.campaign_id = p_campaign_id and r.status = 'queued';
  get diagnostics v_unsent = row_count;
  if v_unsent > 0 and date_trunc('month', v_campaign.started_at) = date_trunc('month', now()) then
    update private.monthly_email_usage u
    set emails = greatest(0, u.emails - v_unsent)
    where u.workspace_id = v_campaign.workspace_id and u.month = date_trunc('month', now())::date;
  end if;
  return v_unsent;
end
$$;

-- Starts every scheduled campaign that is due. One that cannot start (over the plan, sender
-- no longer verified, nobody to mail) returns to draft with the reason, rather than blocking
-- the others or retrying forever.
create function private.start_due_campaigns()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_started integer := 0;
begin
  for v_id in
    select c.id from public.campaigns c
    where c.status = 'scheduled' and c.scheduled_at <= now()
    order by c.scheduled_at
    for update skip locked
  loop
    begin
      perform private.launch_campaign(v_id);
      v_started := v_started + 1;
    exception when others then
      update public.campaigns set status = 'draft', error = left(sqlerrm, 1000) where id = v_id;
    end;
  end loop;
  return v_started;
end
$$;

-- the workers' side -------------------------------------------------------------------------------

-- One token bucket for the whole SES account: every instance draws from it, so together they
-- never exceed the configured rate.
create table private.email_send_rate (
  id boolean primary key default true check (id),
  tokens double precision not null,
  refilled_at timestamptz not null
);

-- Claims up to p_limit due recipients of sending campaigns, no more than the bucket allows.
-- A campaign whose sender identity lost its verification (or was removed) waits instead of
-- having every remaining recipient refused by SES.
-- Recipients who may no longer be mailed (unsubscribed, erased, consent withdrawn, suppressed
-- since the campaign started) are marked skipped instead of being handed out.
create function private.claim_email_batch(p_limit integer, p_lease_seconds integer, p_per_second double precision)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tokens double precision;
  v_take integer;
  v_claimed integer;
begin
  insert into private.email_send_rate (id, tokens, refilled_at)
  values (true, greatest(1, p_per_second), clock_timestamp())
  on conflict (id) do nothing;
  update private.email_send_rate
  set tokens = least(greatest(1, p_per_second),
                     tokens + p_per_second * extract(epoch from clock_timestamp() - refilled_at)),
      refilled_at = clock_timestamp()
  where id
  returning tokens into v_tokens;
  v_take := least(p_limit, floor(v_tokens)::integer);
  if v_take <= 0 then
    return;
  end if;

  return query
  with picked as (
    select r.id,
           case
             when not (ct.email = r.email and ct.consent_state = 'granted'
                       and ct.unsubscribed_at is null and ct.erased_at is null
                       and not exists (select 1 from public.email_suppressions s
                                       where s.workspace_id = r.workspace_id and s.email = r.email))
               then 'skip'
             when r.attempts >= 8 then 'give_up'
             else 'send'
           end as verdict
    from public.campaign_recipients r
    join public.campaigns c on c.id = r.campaign_id and c.status = 'sending'
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    join public.contacts ct on ct.id = r.contact_id
    where r.status in ('queued', 'sending')
      and r.next_attempt_at <= now()
      and (r.locked_until is null or r.locked_until < now())
    order by r.next_attempt_at
    limit v_take
    for update of r skip locked
  ),
  skipped as (
    update public.campaign_recipients r
    set status = 'skipped', locked_until = null,
        error = 'no longer mailable (unsubscribed, suppressed or without consent)'
    from picked k
    where k.id = r.id and k.verdict = 'skip'
  ),
  given_up as (
    -- Claimed eight times without an outcome: the worker died on it each time.
    update public.campaign_recipients r
    set status = 'failed', locked_until = null,
        error = 'gave up after 8 attempts that ended without an outcome'
    from picked k
    where k.id = r.id and k.verdict = 'give_up'
  ),
  claimed as (
    update public.campaign_recipients r
    set status = 'sending', attempts = r.attempts + 1,
        locked_until = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes)
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.email_send_rate set tokens = tokens - v_claimed where id;
end
$$;

-- How long a worker should wait before claiming again: null when nothing is due, 0 when
-- something is due now, else the seconds until the bucket holds a token.
create function private.email_send_wait(p_per_second double precision)
returns double precision
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when not exists (
      select 1 from public.campaign_recipients r
      join public.campaigns c on c.id = r.campaign_id and c.status = 'sending'
      join public.sender_identities si on si.id = c.sender_identity_id and si.verified
      where r.status in ('queued', 'sending') and r.next_attempt_at <= now()
        and (r.locked_until is null or r.locked_until < now())
    ) then null
    else greatest(0, (1 - coalesce((
      select least(greatest(1, p_per_second), b.tokens + p_per_second * extract(epoch from clock_timestamp() - b.refilled_at))
      from private.email_send_rate b), p_per_second)) / p_per_second)
  end
$$;

-- Outcomes carry the attempt number of the claim they answer: a worker whose lease ran out
-- (and whose row another worker claimed again) cannot overwrite the newer claim's outcome.
create function private.email_sent(p_recipient_id uuid, p_ses_message_id text, p_attempt integer default null)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.campaign_recipients
  set status = 'sent', sent_at = now(), ses_message_id = p_ses_message_id, locked_until = null, error = null
  where id = p_recipient_id and status = 'sending' and (p_attempt is null or attempts = p_attempt)
$$;

-- A failed send: throttling and transient errors retry with backoff and full jitter (never
-- sooner than a second, nor sooner than p_min_delay_seconds), permanent ones and the eighth
-- attempt fail the recipient for good. When SES may have accepted the message (a timeout after
-- sending) the edge asks for a delay long enough for SES's event to arrive and mark the row
-- sent before it could be sent again.
create function private.email_failed(
  p_recipient_id uuid, p_error text, p_retryable boolean, p_min_delay_seconds integer default null,
  p_attempt integer default null
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_attempts integer;
  v_campaign_status text;
begin
  select r.attempts, c.status into v_attempts, v_campaign_status
  from public.campaign_recipients r join public.campaigns c on c.id = r.campaign_id
  where r.id = p_recipient_id and r.status = 'sending' and (p_attempt is null or r.attempts = p_attempt)
  for update of r;
  if v_attempts is null then
    return 'unknown';
  end if;
  if v_campaign_status not in ('sending', 'paused') then
    update public.campaign_recipients
    set status = 'cancelled', locked_until = null, error = left(p_error, 1000)
    where id = p_recipient_id;
    return 'cancelled';
  end if;
  if p_retryable and v_attempts < 8 then
    update public.campaign_recipients
    set status = 'queued', locked_until = null, error = left(p_error, 1000),
        next_attempt_at = now() + make_interval(secs => greatest(
          1 + random() * least(3600, 10 * power(2, v_attempts - 1)), coalesce(p_min_delay_seconds, 0)))
    where id = p_recipient_id;
    return 'retrying';
  end if;
  update public.campaign_recipients
  set status = 'failed', locked_until = null, error = left(p_error, 1000)
  where id = p_recipient_id;
  return 'failed';
end
$$;

-- Marks sending campaigns with nothing left to send as sent.
create function private.finish_sent_campaigns()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_finished integer;
begin
  update public.campaigns c
  set status = 'sent', finished_at = now()
  where c.status = 'sending'
    and not exists (select 1 from public.campaign_recipients r
                    where r.campaign_id = c.id and r.status in ('queued', 'sending'));
  get diagnostics v_finished = row_count;
  return v_finished;
end
$$;

-- One-click unsubscribe (the edge verified the signed token): the contact is never mailed by
-- any campaign again, and its address stays suppressed even if the contact is deleted and
-- imported again. Repeating it changes nothing.
create function private.unsubscribe_contact(p_workspace_id uuid, p_contact_id uuid, p_recipient_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = p_workspace_id for update;
  if v_contact.id is null then
    return 'unknown_contact';
  end if;
  update public.contacts set unsubscribed_at = coalesce(unsubscribed_at, now()) where id = p_contact_id;
  update public.campaign_recipients r
  set unsubscribed_at = coalesce(r.unsubscribed_at, now())
  where r.id = p_recipient_id and r.contact_id = p_contact_id;
  if v_contact.email is not null then
    insert into public.email_suppressions (workspace_id, email, reason)
    values (p_workspace_id, v_contact.email, 'unsubscribe')
    on conflict (workspace_id, email) do nothing;
  end if;
  return case when v_contact.unsubscribed_at is null then 'unsubscribed' else 'already_unsubscribed' end;
end
$$;

-- The edge records SES's view of an identity it created or refreshed.
create function private.save_sender_identity(
  p_identity_id uuid, p_verified boolean, p_dkim_status text, p_dkim_records jsonb
)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.sender_identities
  set verified = p_verified, dkim_status = p_dkim_status,
      dkim_records = coalesce(p_dkim_records, dkim_records), last_checked_at = now()
  where id = p_identity_id
$$;

-- Admins register an identity for their workspace (the edge then creates it in SES). One SES
-- account serves every workspace, so a name is refused when another workspace holds it, or
-- holds a domain it falls under (a verified domain covers its subdomains' and addresses'
-- mail). Squatting is bounded: an identity left unverified for 72 hours (when SES gives up
-- verifying a domain) is released to whoever registers it next, and a workspace may hold at
-- most five unverified identities at once.
create function public.register_sender_identity(p_workspace_id uuid, p_identity text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_identity text := lower(btrim(p_identity));
  v_domain text := case when v_identity like '%@%' then split_part(v_identity, '@', 2) else v_identity end;
  v_id uuid;
begin
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  select s.id into v_id from public.sender_identities s
  where s.identity = v_identity and s.workspace_id = p_workspace_id;
  if v_id is not null then
    return v_id;
  end if;
  delete from public.sender_identities s
  where s.identity = v_identity and s.workspace_id <> p_workspace_id
    and not s.verified and s.created_at < now() - interval '72 hours';
  if exists (
    select 1 from public.sender_identities s
    where s.workspace_id <> p_workspace_id
      and (s.identity = v_identity
           or (s.kind = 'domain' and (v_domain = s.identity or v_domain like '%.' || s.identity)))
  ) then
    perform private.fail(409, 'identity_taken', 'Another workspace has registered this sender or its domain');
  end if;
  if (select count(*) from public.sender_identities s
      where s.workspace_id = p_workspace_id and not s.verified) >= 5 then
    perform private.fail(409, 'too_many_unverified_identities',
      'Verify or remove one of your five unverified senders first');
  end if;
  insert into public.sender_identities (workspace_id, identity) values (p_workspace_id, v_identity)
  returning id into v_id;
  return v_id;
exception when check_violation then
  perform private.fail(422, 'invalid_input', 'Not a domain or email address');
  return null;
end
$$;

-- grants ------------------------------------------------------------------------------------------

revoke all on public.email_lists from anon, authenticated, public;

revoke all on public.email_list_members from anon, authenticated, public;

revoke all on public.email_suppressions from anon, authenticated, public;

revoke all on public.email_templates from anon, authenticated, public;

revoke all on public.sender_identities from anon, authenticated, public;

revoke all on public.segments from anon, authenticated, public;

revoke all on public.campaigns from anon, authenticated, public;

revoke all on public.campaign_variants from anon, authenticated, public;

revoke all on public.campaign_recipients from anon, authenticated, public;

revoke all on private.email_send_rate from public;

grant select, insert, delete on public.email_lists to authenticated;

grant update (name) on public.email_lists to authenticated;

grant select, insert, delete on public.email_list_members to authenticated;

grant select, insert, delete on public.email_suppressions to authenticated;

grant select, insert, delete on public.email_templates to authenticated;

grant update (name, subject, html, text) on public.email_templates to authenticated;

grant select on public.sender_identities to authenticated;

grant delete on public.sender_identities to authenticated;

grant select, insert, delete on public.segments to authenticated;

grant update (name, rule) on public.segments to authenticated;

grant select, delete on public.campaigns to authenticated;

grant insert (workspace_id, name, sender_identity_id, from_name, from_email, reply_to, list_ids,
  segment_id, attribution_days) on public.campaigns to authenticated;

grant update (name, sender_identity_id, from_name, from_email, reply_to, list_ids, segment_id,
  attribution_days) on public.campaigns to authenticated;

grant select, delete on public.campaign_variants to authenticated;

grant insert (campaign_id, workspace_id, name, subject, html, text, weight)
  on public.campaign_variants to authenticated;

grant update (name, subject, html, text, weight) on public.campaign_variants to authenticated;

grant select on public.campaign_recipients to authenticated;

grant all on public.email_lists, public.email_list_members, public.email_suppressions,
  public.email_templates, public.sender_identities, public.segments, public.campaigns,
  public.campaign_variants, public.campaign_recipients to service_role;

revoke all on function private.guard_campaign_status() from public, anon, authenticated;

revoke all on function private.broadcast_campaign_status() from public, anon, authenticated;

revoke all on function private.keep_sender_of_live_campaigns() from public, anon, authenticated;

revoke all on function private.segment_condition(jsonb, integer) from public, anon, authenticated;

revoke all on function private.fail_text(integer, text, text) from public, anon, authenticated;

revoke all on function private.segment_number(jsonb) from public, anon, authenticated;

revoke all on function private.segment_days(jsonb) from public, anon, authenticated;

revoke all on function private.segment_uuid(jsonb) from public, anon, authenticated;

revoke all on function private.validate_segment_rule() from public, anon, authenticated;

revoke all on function private.segment_contact_ids(uuid, jsonb) from public, anon, authenticated;

revoke all on function private.campaign_for_update(uuid, text) from public, anon, authenticated;

revoke all on function private.assert_campaign_ready(public.campaigns) from public, anon, authenticated;

revoke all on function private.launch_campaign(uuid) from public, anon, authenticated;

revoke all on function private.start_due_campaigns() from public, anon, authenticated;

revoke all on function private.claim_email_batch(integer, integer, double precision) from public, anon, authenticated;

revoke all on function private.email_send_wait(double precision) from public, anon, authenticated;

revoke all on function private.email_sent(uuid, text, integer) from public, anon, authenticated;

revoke all on function private.email_failed(uuid, text, boolean, integer, integer) from public, anon, authenticated;

revoke all on function private.finish_sent_campaigns() from public, anon, authenticated;

revoke all on function private.unsubscribe_contact(uuid, uuid, uuid) from public, anon, authenticated;

revoke all on function private.save_sender_identity(uuid, boolean, text, jsonb) from public, anon, authenticated;

revoke all on function public.add_campaign_variant(uuid, uuid, text, integer) from public, anon;

revoke all on function public.preview_segment(uuid, jsonb, integer) from public, anon;

revoke all on function public.start_campaign(uuid) from public, anon;

revoke all on function public.schedule_campaign(uuid, timestamptz) from public, anon;

revoke all on function public.unschedule_campaign(uuid) from public, anon;

revoke all on function public.pause_campaign(uuid) from public, anon;

revoke all on function public.resume_campaign(uuid) from public, anon;

revoke all on function public.cancel_campaign(uuid) from public, anon;

revoke all on function public.register_sender_identity(uuid, text) from public, anon;

grant execute on function private.segment_condition(jsonb, integer) to authenticated, service_role;

grant execute on function private.fail_text(integer, text, text) to authenticated, service_role;

grant execute on function private.segment_number(jsonb) to authenticated, service_role;

grant execute on function private.segment_days(jsonb) to authenticated, service_role;

grant execute on function private.segment_uuid(jsonb) to authenticated, service_role;

grant execute on function public.add_campaign_variant(uuid, uuid, text, integer) to authenticated;

grant execute on function public.preview_segment(uuid, jsonb, integer) to authenticated;

grant execute on function public.start_campaign(uuid) to authenticated;

grant execute on function public.schedule_campaign(uuid, timestamptz) to authenticated;

grant execute on function public.unschedule_campaign(uuid) to authenticated;

grant execute on function public.pause_campaign(uuid) to authenticated;

grant execute on function public.resume_campaign(uuid) to authenticated;

grant execute on function public.cancel_campaign(uuid) to authenticated;

grant execute on function public.register_sender_identity(uuid, text) to authenticated;

grant execute on function private.start_due_campaigns() to service_role;

grant execute on function private.claim_email_batch(integer, integer, double precision) to service_role;

grant execute on function private.email_send_wait(double precision) to service_role;

grant execute on function private.email_sent(uuid, text, integer) to service_role;

grant execute on function private.email_failed(uuid, text, boolean, integer, integer) to service_role;

grant execute on function private.finish_sent_campaigns() to service_role;

grant execute on function private.unsubscribe_contact(uuid, uuid, uuid) to service_role;

grant execute on function private.save_sender_identity(uuid, boolean, text, jsonb) to service_role;

-- row level security ------------------------------------------------------------------------------

alter table public.email_lists enable row level security;

alter table public.email_list_members enable row level security;

alter table public.email_suppressions enable row level security;

alter table public.email_templates enable row level security;

alter table public.sender_identities enable row level security;

alter table public.segments enable row level security;

alter table public.campaigns enable row level security;

alter table public.campaign_variants enable row level security;

alter table public.campaign_recipients enable row level security;

-- Members of any role may read their workspaces' lists.
create policy email_lists_select_members on public.email_lists
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may create lists.
create policy email_lists_insert_members on public.email_lists
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may rename lists.
create policy email_lists_update_members on public.email_lists
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may delete lists.
create policy email_lists_delete_members on public.email_lists
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may see who is on their workspaces' lists.
create policy email_list_members_select_members on public.email_list_members
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may add contacts to lists (the keys keep list and contact in one workspace).
create policy email_list_members_insert_members on public.email_list_members
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may take contacts off lists.
create policy email_list_members_delete_members on public.email_list_members
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may see their workspaces' suppressed addresses.
create policy email_suppressions_select_members on public.email_suppressions
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners may suppress an address by hand.
create policy email_suppressions_insert_admins on public.email_suppressions
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')) and reason = 'manual');

-- Admins and owners may lift a manual or bounce suppression; an unsubscribe or a complaint is
-- the recipient's decision and stays.
create policy email_suppressions_delete_admins on public.email_suppressions
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')) and reason in ('manual', 'bounce'));

-- Members of any role may read their workspaces' templates.
create policy email_templates_select_members on public.email_templates
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may write templates.
create policy email_templates_insert_members on public.email_templates
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit templates.
create policy email_templates_update_members on public.email_templates
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may delete templates.
create policy email_templates_delete_members on public.email_templates
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may see their workspaces' sender identities and DKIM records.
create policy sender_identities_select_members on public.sender_identities
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners may remove a sender identity.
create policy sender_identities_delete_admins on public.sender_identities
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read their workspaces' segments.
create policy segments_select_members on public.segments
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may save segments.
create policy segments_insert_members on public.segments
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit segments.
create policy segments_update_members on public.segments
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may delete segments.
create policy segments_delete_members on public.segments
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may read their workspaces' campaigns.
create policy campaigns_select_members on public.campaigns
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may create campaigns (always as drafts).
create policy campaigns_insert_members on public.campaigns
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit a campaign while it is a draft.
create policy campaigns_update_members on public.campaigns
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')) and status = 'draft')
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')) and status = 'draft');

-- Members and above may delete a campaign that never started.
create policy campaigns_delete_members on public.campaigns
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')) and started_at is null);

-- Members of any role may read their workspaces' campaign variants.
create policy campaign_variants_select_members on public.campaign_variants
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may add variants to a draft campaign.
create policy campaign_variants_insert_members on public.campaign_variants
  for insert to authenticated
  with check (
    workspace_id in (select private.user_workspace_ids_at_least('member'))
    and exists (select 1 from public.campaigns c where c.id = campaign_id and c.status = 'draft')
  );

-- Members and above may edit the variants of a draft campaign.
create policy campaign_variants_update_members on public.campaign_variants
  for update to authenticated
  using (
    workspace_id in (select private.user_workspace_ids_at_least('member'))
    and exists (select 1 from public.campaigns c where c.id = campaign_id and c.status = 'draft')
  );

-- Members and above may remove the variants of a draft campaign.
create policy campaign_variants_delete_members on public.campaign_variants
  for delete to authenticated
  using (
    workspace_id in (select private.user_workspace_ids_at_least('member'))
    and exists (select 1 from public.campaigns c where c.id = campaign_id and c.status = 'draft')
  );

-- Members of any role may read their workspaces' send ledger; only workers write it.
create policy campaign_recipients_select_members on public.campaign_recipients
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
