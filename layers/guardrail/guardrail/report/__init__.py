"""Report: the incident message and its delivery (SNS, Slack). Knows nothing of how incidents are kept."""
