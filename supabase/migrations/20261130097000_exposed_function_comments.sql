-- Every function the Data API exposes says what it does and who may call it: Supabase Studio
-- and the generated API docs show these comments (tests/test_exposed_functions.py checks that
-- none is missing).

comment on function public.create_workspace(text, text, text) is
  'Creates a workspace with the caller as its owner; 422 for a bad name, currency or slug, 409 slug_taken. New workspaces start on the free plan without free credits (only the personal one gets them).';

comment on function public.invite_member(uuid, text, text, interval) is
  'Admins invite an email address with a role (only owners invite owners); answers the invitation id, its one-time token and expiry. Replaces a pending invitation to the same address; counts against the plan''s seats.';

comment on function public.revoke_invitation(uuid) is
  'Admins withdraw a pending invitation of their workspace; 410 once it was accepted.';

comment on function public.accept_invitation(text) is
  'The signed-in user joins the workspace of an invitation token sent to their own email address; answers the workspace id. 410 when used, withdrawn or expired.';

comment on function public.change_member_role(uuid, uuid, text) is
  'Admins change a member''s role; only owners change, make or remove owners, and a workspace always keeps an owner.';

comment on function public.remove_member(uuid, uuid) is
  'Admins remove a member; only owners remove owners, and a workspace always keeps an owner.';

comment on function public.leave_workspace(uuid) is
  'The caller leaves a workspace; its last owner cannot leave.';

comment on function public.assert_billing_manager(uuid) is
  'Refuses (403/404) unless the caller is an owner or admin of the workspace; changes nothing. The edge asks it before any Razorpay call.';

comment on function public.purchasable_plan_id(text) is
  'The Razorpay plan id a tier is bought with; 422 for a tier that cannot be bought.';

comment on function public.prepare_subscription(uuid, text) is
  'Owners and admins: checks the workspace has no live subscription and answers the Razorpay plan id to buy; changes nothing.';

comment on function public.start_campaign(uuid) is
  'Members start a ready draft or scheduled campaign now: the audience is frozen and the month''s emails reserved (402 when over the plan); answers the number of recipients.';

comment on function public.register_sender_identity(uuid, text) is
  'Admins register a domain or address for their workspace (the edge then creates it in SES); 409 when another workspace holds it or a domain it falls under.';

comment on function analytics.rfm(date) is
  'Per-contact recency, frequency and monetary scores and segment as of a date, for the workspaces the caller may see.';

comment on function analytics.ai_usage_summary() is
  'AI calls, credits and failure rate per workspace, model and feature, for the workspaces the caller may see.';

comment on function analytics.campaign_variant_stats() is
  'Per variant of every started campaign the caller may see: sends, deliveries, opens, clicks, bounces, complaints, unsubscribes and attributed revenue.';
