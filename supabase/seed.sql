-- Demo data for local development: an owner and a teammate. Signing up creates each one's
-- profile and personal workspace; the teammate also joins the owner's workspace as a member.
-- Safe to apply more than once.

insert into auth.users (id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
values
  ('00000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'demo@growthbase.local',
   now(), '{"provider": "email", "providers": ["email"]}', '{"full_name": "Dana Demo"}'),
  ('00000000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'teammate@growthbase.local',
   now(), '{"provider": "email", "providers": ["email"]}', '{"full_name": "Tomas Teammate"}')
on conflict (id) do nothing;

update public.workspaces
set plan_tier = 'team', credits_remaining = 500, base_currency = 'CZK'
where created_by = '00000000-0000-4000-8000-000000000001' and plan_tier = 'free';

insert into public.workspace_members (workspace_id, user_id, role)
select w.id, '00000000-0000-4000-8000-000000000002', 'member'
from public.workspaces w
where w.created_by = '00000000-0000-4000-8000-000000000001'
on conflict do nothing;

insert into public.projects (id, workspace_id, name, type, website_url, created_by)
select '00000000-0000-4000-8000-0000000000a1', w.id, 'Demo e-shop', 'eshop',
       'https://demo-shop.example', '00000000-0000-4000-8000-000000000001'
from public.workspaces w
where w.created_by = '00000000-0000-4000-8000-000000000001'
on conflict (id) do nothing;
