"""The control plane's database: models, engine and migrations."""
