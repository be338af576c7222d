-- Signed-in users' Data API calls run without JIT compilation.
--
-- Postgres compiles a query to machine code once its estimated cost passes jit_above_cost, and
-- estimates over function scans and generic plans pass it easily on small tables: measured at
-- stop 23, analytics.deliverability_stats took about 1.4 s on a nearly empty database and 28 ms
-- with jit off, and several import, flow and erasure functions had to turn it off one by one.
-- The dashboard's and analysts' calls are short reads and writes whose compile time is never
-- won back, so the `authenticated` role (which PostgREST impersonates, applying the role's
-- settings to each request as it does its statement_timeout) does without it. The setting is
-- made for this database only, so projects sharing a server do not race on the role.
do $$
begin
  execute format('alter role authenticated in database %I set jit = off', current_database());
end
$$;
