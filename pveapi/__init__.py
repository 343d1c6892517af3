"""The one Proxmox VE access layer shared by the exporter and the controller.

Nothing else in pvebalance talks to proxmoxer directly: connections are made from
`settings.ConnectionSettings` by `client.PveClient`, every Proxmox error is translated in
`errors.py`, and `/cluster/resources` is parsed once, into the types in `inventory.py`.
"""
