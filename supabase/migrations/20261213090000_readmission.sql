-- An erased person may come back, but only by opting in anew. Erasure keeps a keyed hash of
-- their address so no import, sync or member brings them back (the insert is skipped), and
-- until now nothing could lift it. public.readmit_contact is that way back: a member records
-- that the person signed up again (a form, at checkout, by API), which lifts the hash of that
-- address only (a phone stays blocked until it is given anew the same way), creates a new
-- contact (the erased tombstone stays as it was) and records the email-marketing answer as
-- `pending` whatever the workspace's double opt-in setting, so it becomes a grant only when the
-- person confirms through the confirmation link (until then the workspace's consent rule treats
-- them as any sign-up without an answer). The audit log says who readmitted whom.

create function public.readmit_contact(
  p_workspace_id uuid, p_email text, p_source text default 'form',
  p_wording text default null, p_wording_version text default null
)
returns public.contacts
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_email text := lower(btrim(p_email));
  v_deleted integer;
  v_contact public.contacts;
begin
  perform private.require_user();
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  perform private.workspace_role_as(p_workspace_id, 'member');
  if v_email is null or char_length(v_email) > 320 or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform private.fail(422, 'invalid_email', 'That is not an email address');
  end if;
  if p_source is null or p_source not in ('form', 'shop_checkout', 'api', 'inbox_keyword') then
    perform private.fail(422, 'invalid_source', 'A person opts in anew through a form, a checkout, the API or an inbox keyword');
  end if;
  delete from private.erased_identities e
  where e.workspace_id = p_workspace_id
    and e.identity_key = private.identity_key(p_workspace_id, 'email', v_email);
  get diagnostics v_deleted = row_count;
  if v_deleted = 0 then
    perform private.fail(409, 'not_erased', 'This address was not erased: add the contact as usual');
  end if;
  insert into public.contacts (workspace_id, email)
  values (p_workspace_id, v_email)
  returning * into v_contact;
  perform public.record_consent(v_contact.id, 'email_marketing', 'pending', p_source, p_wording, p_wording_version);
  perform private.audit(p_workspace_id, 'contact.readmitted', 'contact', v_contact.id::text,
                        jsonb_build_object('source', p_source));
  select * into v_contact from public.contacts c where c.id = v_contact.id;
  return v_contact;
end
$$;

revoke all on function public.readmit_contact(uuid, text, text, text, text) from public, anon;

grant execute on function public.readmit_contact(uuid, text, text, text, text) to authenticated;

comment on function public.readmit_contact(uuid, text, text, text, text) is
  'Brings back an erased person who opted in anew (members and above): lifts the keyed hash of that address, creates the contact and records email marketing as pending until they confirm through the link. 404 workspace_not_found, 403 insufficient_role, 409 not_erased, 422 invalid_email or invalid_source.';
