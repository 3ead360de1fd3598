"""Cluster mode on Redis (docs/cluster.md): ``workers`` runs N processes on one host sharing the
CoAP ports; ``node`` makes each process a node that records which devices it holds, routes
downlinks to the node holding a device and shares its events with every node."""
