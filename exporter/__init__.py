"""pvebalance-exporter: Proxmox VE gauges for Prometheus (reads the API through `pveapi`)."""
