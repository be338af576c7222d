-- Media of inbound messages into Storage: each attachment a provider names by id (WhatsApp's
-- media id) is queued when its message arrives; the edge's cron fetches it from the provider
-- and stores it in the private `inbox` bucket under `<workspace id>/<conversation id>/<message
-- id>/…` (workspace-folder policies: members read), then records the path, size and state on
-- the message's attachment. Files over 25 MB are not fetched (`too_large`); failures are
-- retried with backoff, five times at most (`failed` after).

create table private.inbox_media_queue (
  message_id uuid not null references public.messages (id) on delete cascade,
  attachment_index integer not null check (attachment_index >= 0),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  status text not null default 'pending' check (status in ('pending', 'stored', 'too_large', 'failed')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_error text check (char_length(last_error) <= 500),
  primary key (message_id, attachment_index)
);

comment on table private.inbox_media_queue is
  'Attachments of inbound messages waiting to be fetched from their provider into Storage.';

create index inbox_media_queue_due_idx on private.inbox_media_queue (next_attempt_at) where status = 'pending';

create index inbox_media_queue_workspace_id_idx on private.inbox_media_queue (workspace_id);

create function private.queue_inbox_media()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.inbox_media_queue (message_id, attachment_index, workspace_id)
  select n.id, (a.ordinal - 1)::integer, n.workspace_id
  from new_rows n
  cross join lateral jsonb_array_elements(n.attachments) with ordinality as a(attachment, ordinal)
  where n.direction = 'inbound' and a.attachment ? 'provider_media_id'
  on conflict (message_id, attachment_index) do nothing;
  return null;
end
$$;

revoke all on function private.queue_inbox_media() from public, anon, authenticated;

create trigger messages_queue_media
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.queue_inbox_media();

-- Claims due attachments for one worker (skip locked; the next attempt is pushed out, so a
-- worker that dies leaves them due again later). What the fetch needs comes with each.
create function private.claim_inbox_media(p_limit integer)
returns table (message_id uuid, attachment_index integer, workspace_id uuid, conversation_id uuid, channel_id uuid, attachment jsonb)
language sql
security definer
set search_path = ''
as $$
  with claimed as (
    update private.inbox_media_queue q
    set attempts = q.attempts + 1, next_attempt_at = now() + interval '5 minutes'
    where (q.message_id, q.attachment_index) in (
      select d.message_id, d.attachment_index from private.inbox_media_queue d
      where d.status = 'pending' and d.next_attempt_at <= now()
      order by d.next_attempt_at
      limit p_limit
      for update skip locked
    )
    returning q.message_id, q.attachment_index, q.workspace_id
  )
  select c.message_id, c.attachment_index, c.workspace_id, m.conversation_id, m.channel_id, m.attachments -> c.attachment_index
  from claimed c join public.messages m on m.id = c.message_id
$$;

revoke all on function private.claim_inbox_media(integer) from public, anon, authenticated;

grant execute on function private.claim_inbox_media(integer) to service_role;

-- Records a fetch: `stored` with its path and size, `too_large`, or a failure to retry
-- (`retry`, after backoff; `failed` once five attempts are spent). The attachment on the
-- message carries the outcome.
create function private.inbox_media_done(
  p_message_id uuid, p_position integer, p_status text, p_storage_path text, p_size bigint, p_error text
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_queued private.inbox_media_queue;
  v_status text := p_status;
begin
  select * into v_queued from private.inbox_media_queue q
  where q.message_id = p_message_id and q.attachment_index = p_position for update;
  if v_queued.message_id is null then
    return 'unknown';
  end if;
  if v_status = 'retry' and v_queued.attempts >= 5 then
    v_status := 'failed';
  end if;
  if v_status = 'retry' then
    update private.inbox_media_queue q
    set next_attempt_at = now() + make_interval(secs => 30 * power(2, q.attempts)), last_error = left(p_error, 500)
    where q.message_id = p_message_id and q.attachment_index = p_position;
    return 'retrying';
  end if;
  update private.inbox_media_queue q set status = v_status, last_error = left(p_error, 500)
  where q.message_id = p_message_id and q.attachment_index = p_position;
  update public.messages m
  set attachments = jsonb_set(m.attachments, array[p_position::text],
    (m.attachments -> p_position) || jsonb_strip_nulls(jsonb_build_object(
      'status', v_status, 'storage_path', p_storage_path, 'size', p_size)))
  where m.id = p_message_id and jsonb_typeof(m.attachments -> p_position) = 'object';
  return v_status;
end
$$;

revoke all on function private.inbox_media_done(uuid, integer, text, text, bigint, text) from public, anon, authenticated;

grant execute on function private.inbox_media_done(uuid, integer, text, text, bigint, text) to service_role;

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'inbox_media_queue', 'status', 'none', 'not_personal', null),
  ('private', 'inbox_media_queue', 'last_error', 'none', 'not_personal', 'the fetch''s error class and status');

-- grants --------------------------------------------------------------------------------------

revoke all on private.inbox_media_queue from anon, authenticated, public;

alter table private.inbox_media_queue enable row level security;
