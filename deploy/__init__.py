"""The image checks, run from the project root by deploy/*.sh: `python -m deploy.docker_check`,
`python -m deploy.replicas_check`, `python -m deploy.compose_replicas_check`. deploy/compose.py
also runs as a file under any python3 (deploy/engine.sh): standard library only, no imports of
its own package."""
