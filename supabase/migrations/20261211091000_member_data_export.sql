-- A Growthbase user's own access request: everything the platform keeps about them as a user
-- (their account's address and sign-in times, profile, memberships, invitations addressed to
-- them, what they did as recorded in the audit log, the API keys they created, their
-- notifications and the access requests they asked for), as one JSON document. The contacts
-- of the shops they work for are not theirs to export here (that is the workspace's access
-- request, for admins). Only the caller's own rows, whatever workspace they sit in.

create function public.my_personal_data()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_email text;
begin
  select lower(u.email) into v_email from auth.users u where u.id = v_user;
  return jsonb_build_object(
    'generated_at', now(),
    'account', (select jsonb_build_object('id', u.id, 'email', u.email, 'phone', u.phone,
                                          'created_at', u.created_at, 'last_sign_in_at', u.last_sign_in_at,
                                          'email_confirmed_at', u.email_confirmed_at)
                from auth.users u where u.id = v_user),
    'profile', (select to_jsonb(p) from public.profiles p where p.id = v_user),
    'memberships', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', m.workspace_id, 'workspace_name', w.name,
                                                                 'role', m.role, 'since', m.created_at,
                                                                 'workspace_deleted_at', w.deleted_at)
                                              order by m.created_at)
                             from public.workspace_members m join public.workspaces w on w.id = m.workspace_id
                             where m.user_id = v_user), '[]'),
    'invitations', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', i.workspace_id, 'role', i.role,
                                                                  'created_at', i.created_at, 'expires_at', i.expires_at,
                                                                  'accepted_at', i.accepted_at, 'revoked_at', i.revoked_at)
                                              order by i.created_at)
                             from public.workspace_invitations i
                             where v_email is not null and i.email = v_email), '[]'),
    'audit_log', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', a.workspace_id, 'action', a.action,
                                                               'target_type', a.target_type, 'target_id', a.target_id,
                                                               'details', a.details, 'request_id', a.request_id,
                                                               'ip', host(a.ip), 'created_at', a.created_at)
                                            order by a.id)
                           from public.audit_log a where a.actor_id = v_user), '[]'),
    'api_keys_created', coalesce((select jsonb_agg(jsonb_build_object('id', k.id, 'workspace_id', k.workspace_id,
                                                                      'name', k.name, 'prefix', k.prefix,
                                                                      'created_at', k.created_at, 'revoked_at', k.revoked_at)
                                                   order by k.created_at)
                                  from public.api_keys k where k.created_by = v_user), '[]'),
    'notifications', coalesce((select jsonb_agg(jsonb_build_object('workspace_id', n.workspace_id, 'kind', n.kind,
                                                                   'title', n.title, 'created_at', n.created_at,
                                                                   'read_at', n.read_at)
                                                order by n.created_at)
                               from public.notifications n where n.user_id = v_user), '[]'),
    'access_requests_made', coalesce((select jsonb_agg(jsonb_build_object('id', e.id, 'workspace_id', e.workspace_id,
                                                                          'status', e.status, 'created_at', e.created_at)
                                                       order by e.created_at)
                                      from public.contact_exports e where e.requested_by = v_user), '[]')
  );
end
$$;

revoke all on function public.my_personal_data() from public, anon;

grant execute on function public.my_personal_data() to authenticated;

comment on function public.my_personal_data() is
  'The caller''s own access request as a Growthbase user: account, profile, memberships, invitations to their address, their audit entries, API keys they created, notifications and access requests they made.';
