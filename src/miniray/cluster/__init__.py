"""Clusters: a head process that drivers (and, later, other nodes) join over TCP."""
