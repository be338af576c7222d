-- Erasure finds a person's stored webhooks through hashed identifier tokens; digit runs were
-- hashed only up to 15 digits (an E.164 phone), so an X user id (up to 19 digits, a 64-bit
-- number) or a long Telegram chat id was never a token, and erasing its person left their stored
-- X deliveries behind. Digit runs of 7 to 20 digits are tokens now, and stored payloads holding
-- a run of 16 digits or more are indexed again.

create or replace function private.identifier_tokens(p_text text)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select coalesce(array_agg(distinct t), '{}')
  from (
    select lower(m[1]) as t
    from regexp_matches(p_text, '([A-Za-z0-9._%+''-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') as m
    union all
    select d
    from regexp_matches(p_text, '(\+?[0-9][0-9 ().-]{5,22}[0-9])', 'g') as m,
         regexp_replace(m[1], '[^0-9]', '', 'g') as d
    where char_length(d) between 7 and 20
    union all
    select lower(m[1])
    from regexp_matches(p_text, '([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})', 'g') as m
  ) as tokens
$$;

revoke all on function private.identifier_tokens(text) from public, anon, authenticated;

update private.webhook_events e
set identity_keys = private.identifier_keys(private.identifier_tokens(e.body))
where e.body ~ '[0-9]{16}';
