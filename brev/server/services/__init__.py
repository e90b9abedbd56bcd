"""What the control plane does, independent of HTTP: routers call these, tests may too."""
