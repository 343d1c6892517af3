"""The pure planner: a function from a cluster model, rules and a policy to a plan.

It does no I/O, reads no clock and keeps no globals (tests/planner/test_purity.py fails if a
module here imports one that does). `framework.plan` runs the strategies in order on one
`Context`, which alone admits moves; `search` refines the result; `verify` checks any plan step
by step, independently of how it was made; `report` renders plans as tables and JSON.
"""
