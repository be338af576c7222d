-- A realtime broadcast is visible only on the channel the user joined (issue 12: the row's
-- topic is realtime.topic()) and only when that channel belongs to one of the user's workspaces.

drop policy realtime_messages_select_workspace_members on realtime.messages;

-- Members may receive the broadcasts of the channel they joined (realtime.topic()) when it is
-- one of their workspaces' private channels `workspace:<id>:<name>`.
create policy realtime_messages_select_workspace_members on realtime.messages
  for select to authenticated
  using (
    extension = 'broadcast'
    and topic = (select realtime.topic())
    and (select realtime.topic()) like 'workspace:%:%'
    and split_part((select realtime.topic()), ':', 2) in (
      select id::text from private.user_workspace_ids() as id
    )
  );
