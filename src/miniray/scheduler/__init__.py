"""The node's scheduler: plain state with pure transitions (state.py) and the node's main loop (node.py)."""
