"""pvebalance: plans and applies balance moves.

Data flows one way: Proxmox API (`observe`) and Prometheus (`promql`) -> `model.ClusterModel`
-> `planner.plan` (pure) -> `model.Plan` -> `report` / `executor` -> Proxmox API.
"""
