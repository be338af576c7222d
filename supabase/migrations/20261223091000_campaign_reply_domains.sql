-- Campaign replies thread into the inbox: the send worker gives each campaign email a
-- per-recipient `Reply-To: reply+r<recipient id>@<domain>` when the workspace receives mail on
-- that domain (an active email channel of the inbox), the address private.email_channel_for and
-- private.ingest_inbound_email already match to the recipient when a client drops the thread
-- headers. This function tells the worker those domains, one query per claimed batch (the claim
-- itself is unchanged).

-- The domains of the active email channels of these workspaces, oldest channel first.
create function private.inbox_reply_domains(p_workspace_ids uuid[])
returns table (workspace_id uuid, domain text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.workspace_id, lower(split_part(c.account_id, '@', 2))
  from public.channels c
  where c.workspace_id = any (p_workspace_ids) and c.kind = 'email' and c.status = 'active'
    and c.account_id like '%_@_%'
  order by c.workspace_id, c.created_at
$$;

revoke all on function private.inbox_reply_domains(uuid[]) from public, anon, authenticated;

grant execute on function private.inbox_reply_domains(uuid[]) to service_role;
