-- The Data API roles lose every privilege on sequences (issue 12: setval to the maximum broke
-- every tenant's inserts), and default privileges keep new sequences, tables and functions
-- revoked from them (and functions from PUBLIC) until a migration grants what is needed.

-- Identity columns draw from their sequence without a privilege check, so no API role needs
-- one; serial-style defaults would, and none of ours are.
revoke all on all sequences in schema public from public, anon, authenticated;

revoke all on all sequences in schema private from public, anon, authenticated;

revoke all on all sequences in schema analytics from public, anon, authenticated;

-- New objects start revoked from the API roles: Supabase's (and sql/local's) defaults grant
-- every new object in public to anon and authenticated, and Postgres grants EXECUTE on every
-- new function to PUBLIC. Set for the migrating role and, where it exists and we may act for
-- it, for `postgres` (the role Supabase migrations and the SQL editor create objects as).
do $$
declare
  v_role name;
  v_schema name;
begin
  for v_role in
    select r.rolname from pg_catalog.pg_roles r
    where r.rolname in (current_user, 'postgres')
      and pg_catalog.pg_has_role(current_user, r.oid, 'usage')
  loop
    execute format('alter default privileges for role %I revoke execute on functions from public', v_role);
    foreach v_schema in array array['public', 'private', 'analytics'] loop
      execute format(
        'alter default privileges for role %I in schema %I revoke all on tables from anon, authenticated',
        v_role, v_schema
      );
      execute format(
        'alter default privileges for role %I in schema %I revoke all on sequences from anon, authenticated',
        v_role, v_schema
      );
      execute format(
        'alter default privileges for role %I in schema %I revoke all on functions from public, anon, authenticated',
        v_role, v_schema
      );
    end loop;
  end loop;
end
$$;
