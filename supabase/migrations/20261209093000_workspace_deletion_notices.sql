-- Members are told when a workspace they belong to is deleted or restored. The broadcast that
-- public.delete_workspace sends reaches only clients that joined the members channel before
-- (Realtime authorises at join, and every membership helper leaves a deleted workspace out),
-- so a member who was away learned nothing. Now every member gets an in-app notification
-- (public.notifications) in their personal workspace — the deleted one is hidden from them, the
-- personal one never is — saying which workspace went, when it will be purged and who may
-- restore it; a restore notifies them in the workspace itself, visible again.

create function private.notify_members_of_workspace_deletion()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.deleted_at is not null then
    insert into public.notifications (workspace_id, user_id, kind, title, body, link)
    select p.id, m.user_id, 'workspace.deleted',
           left(format('Workspace "%s" was deleted', new.name), 200),
           format('Its data is kept until %s, when it is purged; an owner may restore it until then.',
                  to_char(new.purge_after at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')),
           jsonb_build_object('workspace_id', new.id, 'purge_after', new.purge_after)
    from public.workspace_members m
    cross join lateral (
      select w.id from public.workspaces w
      join public.workspace_members pm on pm.workspace_id = w.id and pm.user_id = m.user_id
      where w.personal and w.deleted_at is null
      order by w.created_at
      limit 1
    ) as p
    where m.workspace_id = new.id;
  else
    perform private.notify_users(
      new.id,
      array(select m.user_id from public.workspace_members m where m.workspace_id = new.id),
      'workspace.restored',
      left(format('Workspace "%s" was restored', new.name), 200),
      null,
      jsonb_build_object('workspace_id', new.id)
    );
  end if;
  return null;
end
$$;

revoke all on function private.notify_members_of_workspace_deletion() from public, anon, authenticated;

create trigger workspaces_notify_members_of_deletion
  after update of deleted_at on public.workspaces
  for each row
  when ((old.deleted_at is null) <> (new.deleted_at is null))
  execute function private.notify_members_of_workspace_deletion();
