"""Every request, query and response schema of the API, one module per area."""
