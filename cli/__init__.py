"""The `deepfake` command line: thin adapters over shared/, web/ and worker/."""
