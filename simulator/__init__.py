"""pvebalance-sim: a faithful Proxmox VE API over HTTPS with a load model and fault injection."""
