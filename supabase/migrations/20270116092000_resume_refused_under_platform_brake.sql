-- Resuming a paused campaign while the platform brake is engaged is refused with the reason (409
-- platform_brake_engaged), as the guardrails' comment on resume_campaign always said: before, the
-- campaign showed `sending` while the claim sent nothing. Otherwise as in
-- 20261210092000_deliverability_guardrails.sql.

-- Members resume a paused campaign, as before, unless a guardrail pause covers it or the
-- platform brake is engaged (409 with the reason).
create or replace function public.resume_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_detail text;
begin
  perform private.require_campaign_status(v_campaign, array['paused'], 'resumed');
  perform private.assert_campaign_sender(v_campaign);
  select p.detail into v_detail from public.sending_pauses p
  where p.workspace_id = v_campaign.workspace_id and p.acknowledged_at is null
    and (p.sender_identity_id is null or p.sender_identity_id = v_campaign.sender_identity_id)
  limit 1;
  if v_detail is not null then
    perform private.fail(409, 'sending_paused',
      'Sending is paused until an admin acknowledges it: ' || v_detail);
  end if;
  -- The brake's reason holds the platform's totals across tenants: not for a tenant's eyes.
  if (select b.engaged from private.platform_brake b) then
    perform private.fail(409, 'platform_brake_engaged',
      'Sending is stopped for the whole platform; the campaign can be resumed once it is released');
  end if;
  update public.campaigns set status = 'sending', paused_by = null where id = p_campaign_id;
end
$$;

revoke all on function public.resume_campaign(uuid) from public, anon, authenticated;

grant execute on function public.resume_campaign(uuid) to authenticated;

comment on function public.resume_campaign(uuid) is
  'Members resume a paused campaign (only a paused one; start_campaign starts drafts), unless a guardrail pause covers it or the platform brake is engaged.';
