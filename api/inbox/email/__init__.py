"""Email in the inbox: SES receiving through SNS, MIME parsing, and replies through SES."""
