"""The read-only web UI that `kubereach serve` can serve beside the Slack endpoint: a page per
investigation, search, and digest trends, reached only through signed, expiring links from Slack."""
