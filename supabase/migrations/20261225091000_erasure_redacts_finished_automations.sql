-- Erasing a person named in a finished (completed or failed) automation's result or error
-- failed with 409 illegal_transition: the guard that keeps finished automations unchanged also
-- refused erasure's redaction, so the whole erasure rolled back. A finished automation may now
-- change in one way only: spans of its result and error replaced by '[erased]'
-- (private.redact_text), nothing else.

-- Whether p_new is p_old with one or more spans replaced by '[erased]' and nothing else changed.
create function private.is_redaction_of(p_old text, p_new text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_old is not distinct from p_new
    or (p_old is not null and p_new is not null
        and (char_length(p_new) - char_length(replace(p_new, '[erased]', '')))
            > (char_length(p_old) - char_length(replace(p_old, '[erased]', '')))
        and p_old ~ ('^' || replace(regexp_replace(p_new, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'),
                                    '\[erased\]', '.+') || '$'))
$$;

revoke all on function private.is_redaction_of(text, text) from public, anon, authenticated;

create or replace function private.guard_automation_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not (
      (old.status = 'queued' and new.status in ('processing', 'completed', 'failed'))
      or (old.status = 'processing' and new.status in ('completed', 'failed'))
    ) then
      perform private.fail(409, 'illegal_transition',
        format('An automation cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'processing' then
      new.started_at := coalesce(new.started_at, now());
    elsif new.status in ('completed', 'failed') then
      new.started_at := coalesce(new.started_at, now());
      new.finished_at := now();
    end if;
  elsif old.status in ('completed', 'failed') and (new.result, new.error) is distinct from (old.result, old.error)
        and not (private.is_redaction_of(old.result::text, new.result::text)
                 and private.is_redaction_of(old.error, new.error)) then
    perform private.fail(409, 'illegal_transition', 'A finished automation cannot change');
  end if;
  new.updated_at := now();
  return new;
end
$$;

revoke all on function private.guard_automation_status() from public, anon, authenticated;
