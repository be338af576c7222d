-- Supabase Realtime's database side: Broadcast from the database writes rows into
-- realtime.messages, and RLS on that table decides who may join a private channel.

create schema if not exists realtime;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp not null default now(),
  inserted_at timestamp not null default now(),
  id uuid not null default gen_random_uuid(),
  primary key (id, inserted_at)
);

do $$
begin
  if not (select relrowsecurity from pg_catalog.pg_class where oid = 'realtime.messages'::regclass) then
    alter table realtime.messages enable row level security;
  end if;
end
$$;

do $$
begin
  if to_regprocedure('realtime.topic()') is null then
    create function realtime.topic() returns text
    language sql stable
    as $f$
      select nullif(current_setting('realtime.topic', true), '')::text
    $f$;
    grant execute on function realtime.topic() to anon, authenticated, service_role;
  end if;
  if to_regprocedure('realtime.send(jsonb, text, text, boolean)') is null then
    -- Like Supabase's: a failed broadcast is a warning, never a failed transaction.
    create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $f$
    begin
      begin
        perform set_config('realtime.topic', topic, true);
        insert into realtime.messages (payload, event, topic, private, extension)
        values (payload, event, topic, private, 'broadcast');
      exception when others then
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
      end;
    end
    $f$;
  end if;
  if to_regprocedure('realtime.broadcast_changes(text, text, text, text, text, record, record, text)') is null then
    create function realtime.broadcast_changes(
      topic_name text, event_name text, operation text, table_name text, table_schema text,
      new record, old record, level text default 'ROW'
    )
    returns void
    language plpgsql
    as $f$
    begin
      if level = 'STATEMENT' then
        raise exception 'function can only be triggered for each row, not for each statement';
      end if;
      if operation not in ('INSERT', 'UPDATE', 'DELETE') then
        raise exception 'Unexpected operation type: %', operation;
      end if;
      perform realtime.send(
        jsonb_build_object(
          'old_record', old, 'record', new, 'operation', operation,
          'table', table_name, 'schema', table_schema
        ),
        event_name,
        topic_name
      );
    end
    $f$;
  end if;
end
$$;

do $$
begin
  if not has_schema_privilege('authenticated', 'realtime', 'usage') then
    grant usage on schema realtime to anon, authenticated, service_role;
  end if;
  if not has_table_privilege('authenticated', 'realtime.messages', 'select') then
    grant select, insert, update on realtime.messages to anon, authenticated, service_role;
  end if;
end
$$;

do $$
begin
  if not exists (select from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
