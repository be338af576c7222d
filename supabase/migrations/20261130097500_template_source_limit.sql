-- Templates and variants are refused at save when their source is larger than the edge will
-- compile (api/email_templates.py MAX_TEMPLATE_CHARACTERS, 65,536 characters): compiling a
-- larger source costs seconds of a shared worker, so the edge answers template_too_large at
-- preview and send, and the Data API now refuses it where it is written. Rows saved earlier
-- stay (not valid): they keep failing at preview and send with template_too_large.

alter table public.email_templates drop constraint email_templates_html_check;

alter table public.email_templates
  add constraint email_templates_html_check check (char_length(html) <= 65536) not valid;

alter table public.email_templates drop constraint email_templates_text_check;

alter table public.email_templates
  add constraint email_templates_text_check check (char_length(text) <= 65536) not valid;

alter table public.campaign_variants drop constraint campaign_variants_html_check;

alter table public.campaign_variants
  add constraint campaign_variants_html_check check (char_length(html) <= 65536) not valid;

alter table public.campaign_variants drop constraint campaign_variants_text_check;

alter table public.campaign_variants
  add constraint campaign_variants_text_check check (char_length(text) <= 65536) not valid;
