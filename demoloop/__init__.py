"""`pvebalance-demo`: the whole loop on a simulated cluster, on one machine, without Docker.

simulator -> history backfilled through the exporter's collector -> exporter -> Prometheus
-> `pvebalance plan` (and `apply` with --apply). See docs/demo.md.
"""
