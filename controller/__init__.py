"""pvebalance, the controller: the imperative shell around the pure `planner` package.

Data flows one way: Proxmox API (`observe`) and Prometheus (`promql`) -> `planner.model.ClusterModel`
-> `planner.framework.plan` (pure) -> `planner.model.Plan` -> `report` / `executor` -> Proxmox API.
"""
