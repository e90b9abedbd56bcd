"""The agent that runs on every instance and registered machine: it collects what the host and
its GPUs are doing and reports it to the control plane. It never opens a port."""
