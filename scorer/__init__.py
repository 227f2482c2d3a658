"""Offline scoring: tag a folder of posters without a server, through the shared core."""
