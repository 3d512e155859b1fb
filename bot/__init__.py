"""kubereach bot: Slack app, parser, resolver, fleet client, playbook, history, digests, renderers, CLI."""
