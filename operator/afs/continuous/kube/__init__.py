"""Everything Kubernetes: the custom resources' API models, CRD generation, and (with
the operator) controllers. Importing this package needs no cluster and no kopf."""
