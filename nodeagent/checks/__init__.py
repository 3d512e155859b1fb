"""Agent checks, one module per concern."""
