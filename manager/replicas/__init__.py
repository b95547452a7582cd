"""Several manager replicas over one database: leases, and who reaps a dead replica's Hubs."""
