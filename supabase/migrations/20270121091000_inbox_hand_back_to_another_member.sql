-- Round-robin: a conversation a member hands back goes to another member with room.
--
-- Unassigning a conversation of an auto-assigning team frees the assignee's place, and the
-- freed place goes to the team's waiting conversations (20270115091000_inbox_waiting_
-- conversations_assigned.sql), the handed-back one among them. When the member who let it go
-- was next in turn (or the only one with room after it), it came straight back to them. Now
-- the member who handed a conversation back comes last for it: it goes to the next member in
-- turn with room, and back to that member only when nobody else has room.

-- next_team_assignee gains the member to pass over when another has room.
drop function private.next_team_assignee(uuid);

-- The team's member next in turn with room (least recently assigned first); p_handed_back_by,
-- when given, is taken only if no other member has room. Answers null when nobody has room.
create function private.next_team_assignee(p_team_id uuid, p_handed_back_by uuid default null)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_team public.inbox_teams;
  v_user uuid;
begin
  select * into v_team from public.inbox_teams t where t.id = p_team_id for update;
  if v_team.id is null then
    return null;
  end if;
  select m.user_id into v_user
  from public.inbox_team_members m
  left join private.inbox_assignee_loads l on l.workspace_id = m.workspace_id and l.user_id = m.user_id
  where m.team_id = p_team_id
    and coalesce(l.open_count, 0) < coalesce(m.capacity, v_team.default_capacity)
    and exists (select from public.workspace_members w
                where w.workspace_id = m.workspace_id and w.user_id = m.user_id)
  order by m.user_id is not distinct from p_handed_back_by, m.last_assigned_at nulls first, m.user_id
  limit 1;
  if v_user is not null then
    update public.inbox_team_members m set last_assigned_at = clock_timestamp()
    where m.team_id = p_team_id and m.user_id = v_user;
  end if;
  return v_user;
end
$$;

revoke all on function private.next_team_assignee(uuid, uuid) from public, anon, authenticated;

grant execute on function private.next_team_assignee(uuid, uuid) to service_role;

-- assign_waiting_conversations gains who handed each conversation back.
drop function private.assign_waiting_conversations(uuid[]);

-- Assigns each team's waiting conversations (open or pending, no assignee), oldest first, to
-- its members next in turn with room, while there is room; teams that do not auto-assign
-- are left alone. p_handed_back maps a conversation id to the member who just handed it back
-- (who gets it again only when nobody else has room). Answers how many it assigned.
create function private.assign_waiting_conversations(p_team_ids uuid[], p_handed_back jsonb default null)
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
      v_assignee := private.next_team_assignee(v_team, (p_handed_back ->> v_waiting.id::text)::uuid);
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

revoke all on function private.assign_waiting_conversations(uuid[], jsonb) from public, anon, authenticated;

grant execute on function private.assign_waiting_conversations(uuid[], jsonb) to service_role;

-- Conversations that stopped counting against an assignee's capacity (resolved, snoozed,
-- unassigned, reassigned) free a place in each team of that assignee; one left open or
-- pending without an assignee was handed back by that assignee, who is passed over for it.
create or replace function private.release_assignee_capacity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_teams uuid[];
  v_handed_back jsonb;
begin
  select array_agg(distinct m.team_id) into v_teams
  from old_rows o
  join new_rows n on n.id = o.id
  join public.inbox_team_members m on m.workspace_id = o.workspace_id and m.user_id = o.assignee_id
  where o.assignee_id is not null and o.status in ('open', 'pending')
    and (n.assignee_id is distinct from o.assignee_id or n.status not in ('open', 'pending'));
  if v_teams is not null then
    select jsonb_object_agg(n.id, o.assignee_id) into v_handed_back
    from old_rows o
    join new_rows n on n.id = o.id
    where o.assignee_id is not null and n.assignee_id is null and n.status in ('open', 'pending');
    perform private.assign_waiting_conversations(v_teams, v_handed_back);
  end if;
  return null;
end
$$;

revoke all on function private.release_assignee_capacity() from public, anon, authenticated;
