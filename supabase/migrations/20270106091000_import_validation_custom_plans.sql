-- An import's validation plans each statement for the file at hand (issue 14 §1: no step of a
-- job may run past the call's budget). Validation runs once per job, but on a pooled
-- connection every job's validation is one more call of the same function, and from the sixth
-- call plpgsql may keep a generic plan, which guesses a handful of staged rows: in
-- tests/imports/test_import_jobs.py run whole, `validate_orders_import` of 25,000 staged rows
-- ran for minutes (seen active after 50 s; the commit call took 275-350 s, under load 10) when
-- earlier tests had run validations on the same pooled connection; with custom plans forced
-- (PGOPTIONS, then this file) the same run's commit took 2-5 s. Planning a few statements once
-- per job costs nothing beside that.
-- A later `create or replace` of one of these functions must keep this setting.

alter function private.validate_orders_import(uuid) set plan_cache_mode = force_custom_plan;

alter function private.validate_contacts_import(uuid) set plan_cache_mode = force_custom_plan;

alter function private.validate_products_import(uuid) set plan_cache_mode = force_custom_plan;
