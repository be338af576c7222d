-- The columns 20261229090000_ses_tenants.sql and 20261229091000_dmarc_check.sql added, in the
-- personal-data register: none holds a person's data (SES's names and states of the
-- workspace's tenant; the sending domain's DNS and MAIL FROM results).
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'ses_tenancy', 'account', 'none', 'not_personal', 'which SES account, by its configured name'),
  ('private', 'ses_tenants', 'account', 'none', 'not_personal', null),
  ('private', 'ses_tenants', 'resources', 'none', 'not_personal', 'ARNs of the identity and configuration set associated with the tenant'),
  ('private', 'ses_tenants', 'sending_status', 'none', 'not_personal', null),
  ('private', 'ses_tenants', 'tenant_arn', 'none', 'not_personal', null),
  ('private', 'ses_tenants', 'tenant_name', 'none', 'not_personal', 'growthbase-<workspace id>'),
  ('public', 'sender_identities', 'dmarc', 'none', 'not_personal', 'the sending domain''s DMARC record as looked up'),
  ('public', 'sender_identities', 'mail_from_domain', 'none', 'not_personal', null),
  ('public', 'sender_identities', 'mail_from_status', 'none', 'not_personal', null);
