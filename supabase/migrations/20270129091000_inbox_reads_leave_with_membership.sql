-- A member's read state in a workspace's inbox (their read positions, `conversation_reads`, and
-- their read totals per channel, `inbox_channel_member_reads`) went only with their account (a
-- cascade from auth.users) or the workspace: a member who left, or was removed, kept it, though
-- nothing of the workspace was theirs to read any more. Now a membership that goes takes it
-- with it, whoever deletes the membership (leave_workspace, remove_member, an account's
-- deletion); invited back, the member starts with everything unread.

-- triggers ------------------------------------------------------------------------------------

-- The departed members' read totals first, then their read positions (whose delete trigger then
-- finds no total to lower), each through its (user_id, workspace_id) index.
create function private.inbox_reads_of_departed_members()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.inbox_channel_member_reads r
  using old_rows o
  where r.user_id = o.user_id and r.workspace_id = o.workspace_id;
  delete from public.conversation_reads r
  using old_rows o
  where r.user_id = o.user_id and r.workspace_id = o.workspace_id;
  return null;
end
$$;

revoke all on function private.inbox_reads_of_departed_members() from public, anon, authenticated;

create trigger workspace_members_inbox_reads_deleted
  after delete on public.workspace_members
  referencing old table as old_rows
  for each statement execute function private.inbox_reads_of_departed_members();

-- Read state already left behind by memberships that went before this.
delete from public.inbox_channel_member_reads r
where not exists (
  select from public.workspace_members m where m.user_id = r.user_id and m.workspace_id = r.workspace_id
);

delete from public.conversation_reads r
where not exists (
  select from public.workspace_members m where m.user_id = r.user_id and m.workspace_id = r.workspace_id
);
