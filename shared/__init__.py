"""Domain code shared by the CLI, the web app and the workers (engine in `shared.model`, data in `shared.db`)."""
