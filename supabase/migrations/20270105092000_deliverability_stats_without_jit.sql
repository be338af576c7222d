-- analytics.deliverability_stats (behind analytics.deliverability and analytics.ses_tenants)
-- runs a window function for every visible scope; its plan is costed far above the work, so
-- JIT compiled it on every call: 1.3-1.9 s against 0.37 s without, for 1,500 workspaces with
-- ten hours of counts each before autovacuum had analyzed them (the shape of a test database).
-- Its siblings measured the same way (every other analytics function without arguments) showed
-- no such difference; the functions that had one already run without JIT.
-- A later `create or replace` of this function must keep `set jit = off`.
alter function analytics.deliverability_stats() set jit = off;
