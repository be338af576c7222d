-- Round-robin: a conversation that found its team full is assigned when a member has room.
--
-- A team's new conversation is assigned at creation to the member next in turn with room
-- (private.next_team_assignee, 20261209103000_inbox_support.sql). When every member was at
-- capacity it stayed unassigned in the team, and nothing ever assigned it: resolving a
-- conversation freed a place, but the next *new* conversation took it, so the one that had
-- waited longest waited for ever unless someone picked it by hand. Now a freed place (a
-- conversation of a member resolved, snoozed, unassigned, given to someone else or erased; a member
-- joining a team or given more capacity; a team's capacity raised or auto-assignment switched
-- on) goes first to the team's conversations waiting without an assignee, oldest first, in
-- turn among the members with room, told and logged as any auto-assignment.

-- Assigns each team's waiting conversations (open or pending, no assignee), oldest first, to
-- its members next in turn with room, while there is room; teams that do not auto-assign
-- are left alone. Answers how many it assigned.
create function private.assign_waiting_conversations(p_team_ids uuid[])
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_team uuid;
  v_waiting public.conversations;
  v_assignee uuid;
  v_assigned integer := 0;
begin
  for v_team in
    select t.id from public.inbox_teams t
    where t.id = any(p_team_ids) and t.auto_assign
    order by t.id
  loop
    loop
      select * into v_waiting from public.conversations c
      where c.team_id = v_team and c.assignee_id is null and c.status in ('open', 'pending')
      order by c.created_at, c.id
      limit 1
      for update skip locked;
      exit when v_waiting.id is null;
      v_assignee := private.next_team_assignee(v_team);
      exit when v_assignee is null;
      update public.conversations c set assignee_id = v_assignee, updated_at = now()
      where c.id = v_waiting.id;
      insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
      values (v_waiting.workspace_id, v_waiting.id, null, 'assigned',
              jsonb_build_object('assignee_id', v_assignee, 'team_id', v_team, 'auto', true, 'waited', true));
      perform private.notify_users(v_waiting.workspace_id, array[v_assignee], 'conversation.assigned',
                                   'A conversation was assigned to you', null,
                                   jsonb_build_object('conversation_id', v_waiting.id), v_waiting.contact_id);
      v_assigned := v_assigned + 1;
    end loop;
  end loop;
  return v_assigned;
end
$$;

revoke all on function private.assign_waiting_conversations(uuid[]) from public, anon, authenticated;

grant execute on function private.assign_waiting_conversations(uuid[]) to service_role;

-- Conversations that stopped counting against an assignee's capacity (resolved, snoozed,
-- unassigned, reassigned) free a place in each team of that assignee.
create function private.release_assignee_capacity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_teams uuid[];
begin
  select array_agg(distinct m.team_id) into v_teams
  from old_rows o
  join new_rows n on n.id = o.id
  join public.inbox_team_members m on m.workspace_id = o.workspace_id and m.user_id = o.assignee_id
  where o.assignee_id is not null and o.status in ('open', 'pending')
    and (n.assignee_id is distinct from o.assignee_id or n.status not in ('open', 'pending'));
  if v_teams is not null then
    perform private.assign_waiting_conversations(v_teams);
  end if;
  return null;
end
$$;

revoke all on function private.release_assignee_capacity() from public, anon, authenticated;

-- After conversations_loads_updated (triggers fire in name order), so the loads are current.
create trigger conversations_release_capacity
  after update on public.conversations
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.release_assignee_capacity();

-- Conversations deleted (a contact's erasure) free their assignees' places likewise.
create function private.release_deleted_assignee_capacity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_teams uuid[];
begin
  select array_agg(distinct m.team_id) into v_teams
  from old_rows o
  join public.inbox_team_members m on m.workspace_id = o.workspace_id and m.user_id = o.assignee_id
  where o.assignee_id is not null and o.status in ('open', 'pending');
  if v_teams is not null then
    perform private.assign_waiting_conversations(v_teams);
  end if;
  return null;
end
$$;

revoke all on function private.release_deleted_assignee_capacity() from public, anon, authenticated;

-- After conversations_loads_deleted, so the loads are current.
create trigger conversations_release_deleted_capacity
  after delete on public.conversations
  referencing old table as old_rows
  for each statement execute function private.release_deleted_assignee_capacity();

-- A member joining a team, or given more room, takes the team's waiting conversations.
create function private.team_member_room_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.assign_waiting_conversations(array[new.team_id]);
  return null;
end
$$;

revoke all on function private.team_member_room_changed() from public, anon, authenticated;

create trigger inbox_team_members_room_changed
  after insert or update of capacity on public.inbox_team_members
  for each row execute function private.team_member_room_changed();

-- A team's capacity raised or its auto-assignment switched on: its waiting conversations go.
create function private.team_room_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.assign_waiting_conversations(array[new.id]);
  return null;
end
$$;

revoke all on function private.team_room_changed() from public, anon, authenticated;

create trigger inbox_teams_room_changed
  after update of default_capacity, auto_assign on public.inbox_teams
  for each row
  when (new.auto_assign and (new.default_capacity is distinct from old.default_capacity
                             or not old.auto_assign))
  execute function private.team_room_changed();
