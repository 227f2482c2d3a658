"""What the project's own tooling shares: bench/, deploy/, tools/ and tests/ (never app/ or the
core). Not installed with the package and not in the image: it is imported from the project root
(`python -m bench.run`, `python -m deploy.docker_check`, pytest)."""
